/* SPDX-License-Identifier: Apache-2.0 */
/* L4 authorization at the destination (inbound HBONE, inbound plaintext,
 * same-node delivery): evaluate the registry's policies for a new
 * connection, and keep every allowed connection on a list so that a policy
 * change closes the ones that are no longer allowed. */
#ifndef DAEMON_AUTHZ_H
#define DAEMON_AUTHZ_H

#include <stdint.h>
#include <sys/socket.h>

#include <weft/spiffe.h>

struct weftd;
struct relay;

/* One connection under policy; embed it in the connection's state. */
struct authz_conn {
	struct authz_conn *next, **pprev;
	struct relay *relay;			/* reset when no longer allowed */
	char dst_uid[256];			/* destination workload */
	char principal[SPIFFE_ID_MAX];		/* "" without identity */
	struct sockaddr_storage src;
	uint16_t dst_port;
	const char *direction;			/* for the log line */
};

/* Decide for c (filled in by the caller). 0 allowed (c is tracked once
 * authz_track() is called), -EACCES denied with why (one sentence naming
 * the policy and rule). */
int authz_check(struct weftd *d, struct authz_conn *c, char *why, size_t whylen);
/* The same decision without counting it (explain): 0 allowed, -EACCES. */
int authz_decide(const struct weftd *d, const struct authz_conn *c, char *why, size_t whylen);
/* Track an allowed connection (its relay is known by now). */
void authz_track(struct authz_conn *c, struct relay *r);
/* The connection ended: forget it. Safe on untracked entries. */
void authz_forget(struct authz_conn *c);
/* Policies changed: re-check every tracked connection, reset the denied. */
void authz_recheck(struct weftd *d);

#endif
