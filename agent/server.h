/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent's listener: accepts TLS connections on the loop and runs a
 * gRPC session on each. */
#ifndef AGENT_SERVER_H
#define AGENT_SERVER_H

#include <stddef.h>

struct agent;
struct server;

/* Bind and listen on cfg->listen. NULL with err on failure. */
struct server *server_new(struct agent *a, char *err, size_t errlen);
/* Stop accepting and send GOAWAY on every connection. */
void server_drain(struct server *s);
unsigned server_conn_count(const struct server *s);
void server_free(struct server *s);
/* The bound address, "host:port". */
const char *server_addr(const struct server *s);

#endif
