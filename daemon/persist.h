/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's state files (the registry snapshot, pod enrollments) written off
 * the data path: the write, its fsyncs and the rename run on the chores
 * thread, in the order asked, so no data-path completion waits on a disk. */
#ifndef DAEMON_PERSIST_H
#define DAEMON_PERSIST_H

#include <stddef.h>
#include <stdint.h>

struct weftd;

/* Replace path atomically (mode 0600) with buf (taken, freed after); what
 * names it in the warning a failure logs. inflight, when not NULL, is
 * counted up now and down once the write is done (to coalesce). */
void persist_write(struct weftd *d, const char *path, uint8_t *buf, size_t len,
		   const char *what, unsigned *inflight);
/* Remove path, after every write asked before. */
void persist_unlink(struct weftd *d, const char *path);

#endif
