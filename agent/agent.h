/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's process-wide state, shared by its server, service and
 * registry-watch modules. */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdint.h>
#include <sys/socket.h>

#include <weft/h2conn.h>
#include <weft/loop.h>
#include <weft/spiffe.h>

struct agent_config;
struct ca;
struct tokens;
struct regwatch;
struct tls_ctx;
struct server;
struct service;
struct httpsrv;
struct remote;

struct agent {
	struct loop *loop;
	struct agent_config *cfg;
	struct ca *ca;
	struct tokens *tokens;
	struct regwatch *reg;
	struct tls_ctx *tls;
	struct server *server;
	struct service *service;
	struct httpsrv *metrics;	/* NULL with metrics_listen: off */
	struct remote *remote;		/* NULL without remote_networks */
	/* The agent's own SVID, spiffe://<td>/weft/agent: its serving
	 * certificate, and its client certificate toward remote agents. */
	char *id_chain;
	size_t id_chain_len;
	char *id_key;			/* sodium memory (x509_secret_free) */
	size_t id_key_len;
	int draining;
};

/* One client connection as the gRPC handlers see it. */
struct agent_conn {
	struct agent *agent;
	struct h2conn h2c;		/* the conn and grpc; frees us (lib/h2conn.h) */
	struct grpc_session *grpc;	/* NULL once the conn closed */
	struct loop_timer deadline;	/* earliest grpc-timeout of its calls */
	char peer[64];			/* "ip:port" */
	struct sockaddr_storage peer_addr;
	int unauth;			/* counted in the server's per-address
					 * table until a call authenticates */
	char peer_id[SPIFFE_ID_MAX];	/* client certificate's SPIFFE ID, or "" */
};

/* Ask for the connection's pending gRPC output to be written soon (after
 * the current dispatch); safe to call many times. */
void server_conn_kick(struct agent_conn *ac);
/* A call on ac authenticated its caller: the connection no longer counts
 * against its address's unauthenticated ones. */
void server_conn_authenticated(struct agent_conn *ac);

#endif
