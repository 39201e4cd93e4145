/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl's client of weftd's admin API: one HTTP/1.1 request per
 * connection to "ip:port" (the node's 127.0.0.1:15000) or "unix:PATH" (a
 * sidecar's admin.sock), bounded in time and size. */
#ifndef CTL_ADMIN_H
#define CTL_ADMIN_H

#include <stddef.h>

#define CTL_BODY_MAX (16u << 20)
#define CTL_TIMEOUT_MS 5000

/* 0 with *status and *body (NUL-terminated, the caller frees), or -1 with
 * err saying why the daemon could not be asked. */
int ctl_request(const char *admin, const char *method, const char *path, int *status,
		char **body, char *err, size_t errlen);

#endif
