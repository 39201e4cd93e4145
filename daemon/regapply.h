/* SPDX-License-Identifier: Apache-2.0 */
/* Registry updates applied off the data path. The control thread keeps its
 * own copy of the registry: each Watch message is applied there (decode,
 * validation, index rebuild: ~10 ms for 10,000 workloads), and a copy of
 * the result replaces weftd's registry on the loop in one pointer swap,
 * after which the loop runs what follows a change (federation, pods'
 * identities, policy re-checks). The registry it replaced is freed on the
 * control thread. A burst of updates makes one copy, of the newest. */
#ifndef DAEMON_REGAPPLY_H
#define DAEMON_REGAPPLY_H

#include <stddef.h>
#include <stdint.h>

struct weftd;
struct regapply;

/* After d->reg is loaded (the control thread starts from a copy of it).
 * changed runs on the loop after each swap. NULL with errno. */
struct regapply *regapply_start(struct weftd *d, void (*changed)(struct weftd *d));
/* One serialized WatchResponse from the agent (copied). */
void regapply_msg(struct regapply *ra, const uint8_t *msg, size_t len);
/* The registry snapshot for the state file, made on the control thread;
 * done(d, buf, len) runs on the loop (buf NULL when there is none: no
 * snapshot yet, or out of memory). */
void regapply_snapshot(struct regapply *ra, void (*done)(struct weftd *d, uint8_t *buf,
							  size_t len));
/* Updates queued or being applied, and how long the last one took on the
 * control thread (apply and copy), for /stats and tests. */
unsigned regapply_pending(const struct regapply *ra);
double regapply_last_ms(const struct regapply *ra);
/* Finish what is queued and stop the thread (before the loop is freed). */
void regapply_stop(struct regapply *ra);

#endif
