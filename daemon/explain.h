/* SPDX-License-Identifier: Apache-2.0 */
/* explain SRC DST:PORT (DESIGN §7): what would happen to a connection from
 * an enrolled pod to an address, from this node's live state and with the
 * decisions real connections use (outbound_decide, authz_decide, the
 * certificate and tunnel state): capture -> destination -> route ->
 * certificate -> policy -> one sentence. */
#ifndef DAEMON_EXPLAIN_H
#define DAEMON_EXPLAIN_H

#include <stddef.h>

struct weftd;

/* src: the pod's IP or uid; dst: "ip:port". The answer as a JSON object
 * into buf (at most len bytes); its length. */
size_t explain_json(struct weftd *d, const char *src, const char *dst, char *buf, size_t len);

#endif
