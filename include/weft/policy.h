/* SPDX-License-Identifier: Apache-2.0 */
/* L4 authorization in Istio's shape (DESIGN §6), pure: given the
 * registry's policies, the destination workload and what is known of the
 * source, decide ALLOW or DENY and name the policy and rule that decided. */
#ifndef WEFT_POLICY_H
#define WEFT_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct registry;
struct reg_workload;

/* What the destination knows about a connection. */
struct policy_conn {
	const char *principal;		/* source SPIFFE ID, or NULL (plaintext, no identity) */
	const char *src_namespace;	/* from the principal (/ns/<ns>/...), or NULL */
	const struct sockaddr *src;	/* source IP (port ignored) */
	uint16_t dst_port;		/* the app's port */
};

enum policy_verdict {
	POLICY_ALLOW = 0,
	POLICY_DENY,
};

/* "ns/name": a DNS-1123 label, '/', a DNS-1123 subdomain, NUL. */
#define POLICY_NAME_MAX 320

/* The decision owns its strings, so it stays valid after the registry it
 * was computed from is replaced (a log line, a re-check on policy change). */
struct policy_decision {
	enum policy_verdict verdict;
	char policy[POLICY_NAME_MAX];	/* "ns/name" ("/name" for global) that decided, or "" */
	int rule;			/* index of the matching rule, -1 for none */
	char why[256];			/* "denied by DENY policy default/deny-legacy rule 0 (...)" */
};

/* Decide for a connection to workload dst. Any matching DENY rule denies;
 * with no ALLOW policy applying to dst the connection is allowed;
 * otherwise some ALLOW rule must match. Principals and namespaces match
 * exactly, by prefix ("pre*"), by suffix ("*suf"), or "*" (any identity);
 * principals may be written with or without "spiffe://" (Istio omits it).
 * A rule with principals or namespaces never matches a connection without
 * identity; not_principals/not_namespaces never exclude one. A policy
 * with no rules matches nothing (ALLOW: allow-nothing; DENY: no effect).
 * When no ALLOW rule matched, policy names the first ALLOW policy that
 * applies (rule -1). reg may be NULL (no policies). Never allocates. */
void policy_decide(const struct registry *reg, const struct reg_workload *dst,
		   const struct policy_conn *c, struct policy_decision *out);

#endif
