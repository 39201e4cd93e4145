/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's admin API (127.0.0.1:15000, or state_dir/admin.sock in sidecar
 * mode; JSON) and readiness (:15021). */
#ifndef DAEMON_ADMIN_H
#define DAEMON_ADMIN_H

#include <stddef.h>

struct weftd;
struct admin;

/* on_quit runs for POST /quitquitquit (drain and exit). */
struct admin *admin_new(struct weftd *d, void (*on_quit)(struct weftd *d), char *err,
			size_t errlen);
void admin_free(struct admin *a);
/* Where the admin API listens, for logs ("admin 127.0.0.1:15000"). */
const char *admin_where(const struct admin *a);

#endif
