/* SPDX-License-Identifier: Apache-2.0 */
/* The registry's services and policies as JSON for the admin API
 * (/services, /policy; weftctl reads them). */
#ifndef DAEMON_REGJSON_H
#define DAEMON_REGJSON_H

#include <stddef.h>

#include <weft/registry.h>

/* Into buf (at most len bytes, NUL-terminated when it fits); the length
 * written, len when cut. */
size_t regjson_services(const struct registry *r, char *buf, size_t len);
size_t regjson_policies(const struct registry *r, char *buf, size_t len);

#endif
