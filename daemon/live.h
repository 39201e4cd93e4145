/* SPDX-License-Identifier: Apache-2.0 */
/* The proxied connections open now, for weftctl connections (admin
 * /connections): each connection's state embeds an entry, linked while it
 * lives. The strings point into the owner's state, valid while linked. */
#ifndef DAEMON_LIVE_H
#define DAEMON_LIVE_H

#include <stddef.h>
#include <stdint.h>

struct live_conn {
	struct live_conn *next, **pprev;
	const char *direction, *trace, *src, *dst, *src_id, *dst_workload;
	uint64_t start_ms;
};

/* Link c (its fields set) / unlink it (safe when not linked). */
void live_add(struct live_conn *c, uint64_t now_ms);
void live_del(struct live_conn *c);
/* The newest max of them as a JSON array, with age_ms. */
size_t live_json(uint64_t now_ms, size_t max, char *buf, size_t len);

#endif
