/* SPDX-License-Identifier: Apache-2.0 */
/* The last failed connections (DESIGN §7: weftd keeps the last failures in
 * a bounded ring for weftctl why / explain): what their access-log line
 * said, by trace id and destination. */
#ifndef DAEMON_FAILURES_H
#define DAEMON_FAILURES_H

#include <stddef.h>

#include "accesslog.h"

#define FAILURES_MAX 256

/* e ended with a flag or an error: keep it (the oldest goes). */
void failures_record(const struct access_entry *e);
/* The kept failures as a JSON array, newest first: those with trace id
 * trace, or toward dst ("ip:port" or a workload uid), or all (both NULL),
 * at most max of them. */
size_t failures_json(const char *trace, const char *dst, size_t max, char *buf, size_t len);
/* The newest failure toward dst ("ip:port", the endpoint as the access log
 * names it): 1 with a sentence in out, or 0. */
int failures_last_toward(const char *dst, char *out, size_t len);

#endif
