/* SPDX-License-Identifier: Apache-2.0 */
/* Trace ids (W3C Trace Context): every proxied connection has one, in its
 * access-log lines on both nodes and in the traceparent header its CONNECT
 * carries, so the source's and the destination's lines of one connection
 * can be joined (DESIGN §7). */
#ifndef DAEMON_TRACE_H
#define DAEMON_TRACE_H

#define TRACE_ID_LEN 32			/* hex digits */
#define TRACE_PARENT_LEN 55		/* "00-<32>-<16>-01" */

/* A new random trace id (lower-case hex, NUL-terminated). */
void trace_new(char id[TRACE_ID_LEN + 1]);
/* "00-<id>-<new span id>-01". */
void trace_parent(char out[TRACE_PARENT_LEN + 1], const char id[TRACE_ID_LEN + 1]);
/* The trace id of a peer's traceparent: version 00, 32 and 16 lower-case
 * hex digits that are not all zero, two flag digits, nothing more. 0 and id
 * filled in, or -1 (then id is a new one of ours). */
int trace_from_parent(const char *tp, char id[TRACE_ID_LEN + 1]);

#endif
