/* SPDX-License-Identifier: Apache-2.0 */
/* The access log (DESIGN §7): one "connection complete" line per proxied
 * connection, text (key=value) or JSON (access_log_format), with the trace
 * id its tunnel carries so the two nodes' lines join. */
#ifndef DAEMON_ACCESSLOG_H
#define DAEMON_ACCESSLOG_H

#include <stdint.h>

struct weftd;

struct access_entry {
	const char *direction;		/* outbound, inbound, inbound-plaintext */
	const char *trace;		/* 32 hex digits, or NULL */
	const char *src, *dst;		/* "ip:port" */
	const char *src_id;		/* SPIFFE ID, or "" */
	const char *dst_workload;	/* registry uid, or "" */
	uint64_t sent, received;	/* bytes the client app sent / got */
	uint64_t ms;
	const char *flag;		/* response_flags, or NULL */
	const char *error;		/* in words, or NULL */
};

void access_log(const struct weftd *d, const struct access_entry *e);

#endif
