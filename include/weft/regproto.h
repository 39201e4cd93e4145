/* SPDX-License-Identifier: Apache-2.0 */
/* Registry <-> weft.registry.v1 messages: a full snapshot, and the delta
 * between two registries (changed and removed resources by key). */
#ifndef WEFT_REGPROTO_H
#define WEFT_REGPROTO_H

#include <stddef.h>
#include <stdint.h>

struct registry;

/* Serialized WatchResponse with snapshot=true and every resource.
 * Returns 0 and a malloc'd buffer, or -ENOMEM. */
int regproto_snapshot(const struct registry *r, uint64_t version,
		      uint8_t **out, size_t *len);
/* Serialized WatchResponse with snapshot=false: upserts for resources that
 * are new or changed in next, removals for keys gone from prev. *out is
 * NULL and *len 0 when nothing changed. */
int regproto_delta(const struct registry *prev, const struct registry *next,
		   uint64_t version, uint8_t **out, size_t *len);

#endif
