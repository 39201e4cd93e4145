/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the L4 authorization engine: the input is a
 * registry YAML; whatever parses has every workload judged against a set
 * of synthetic connections (each workload's own identity, foreign and
 * malformed principals, plaintext; v4, v6, v4-mapped and no source; ports
 * the policies name and others). Each decision must be well formed and
 * name a policy of the right action that really applies, and must not
 * change when asked twice. ASan/UBSan catch the rest. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/policy.h>
#include <weft/registry.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WORKLOADS 32

/* The policy named "ns/name" in r, or NULL. */
static const struct reg_policy *find_policy(const struct registry *r, const char *key)
{
	char name[POLICY_NAME_MAX];
	size_t i;

	for (i = 0; i < r->n_policies; i++) {
		snprintf(name, sizeof(name), "%s/%s", r->policies[i].namespace ?
			 r->policies[i].namespace : "", r->policies[i].name);
		if (strcmp(name, key) == 0)
			return &r->policies[i];
	}
	return NULL;
}

static void check(const struct registry *r, const struct reg_workload *w,
		  const struct policy_conn *c)
{
	struct policy_decision d, again;
	const struct reg_policy *po;

	memset(&d, 0x5a, sizeof(d));
	policy_decide(r, w, c, &d);
	if (d.verdict != POLICY_ALLOW && d.verdict != POLICY_DENY)
		abort();
	if (!memchr(d.why, '\0', sizeof(d.why)) || !memchr(d.policy, '\0', sizeof(d.policy)))
		abort();
	if (strncmp(d.why, d.verdict == POLICY_ALLOW ? "allowed" : "denied",
		    d.verdict == POLICY_ALLOW ? 7 : 6) != 0)
		abort();
	if (d.policy[0] == '\0') {
		/* only the default allow names no policy */
		if (d.verdict != POLICY_ALLOW || d.rule != -1)
			abort();
	} else {
		po = find_policy(r, d.policy);
		if (!po)
			abort();
		if (d.rule < -1 || (d.rule >= 0 && (size_t)d.rule >= po->n_rules))
			abort();
		/* a named rule decided with its policy's own action; no rule
		 * means no ALLOW rule matched */
		if (d.rule >= 0 && (int)po->action != (d.verdict == POLICY_ALLOW ?
							REG_ACTION_ALLOW : REG_ACTION_DENY))
			abort();
		if (d.rule < 0 && (d.verdict != POLICY_DENY || po->action != REG_ACTION_ALLOW))
			abort();
		if (!strstr(d.why, d.policy) && strlen(d.why) < sizeof(d.why) - 1)
			abort();
	}
	policy_decide(r, w, c, &again);
	if (again.verdict != d.verdict || again.rule != d.rule ||
	    strcmp(again.policy, d.policy) != 0 || strcmp(again.why, d.why) != 0)
		abort();
}

/* A source address inside cidr (its network address), so the CIDR
 * matchers see hits as well as misses. 0 or -1. */
static int cidr_source(const char *cidr, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	snprintf(buf, sizeof(buf), "%s", cidr);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed_principals[] = {
		NULL, "", "spiffe://cluster.local/ns/legacy/sa/x", "spiffe://other.td/ns/a/sa/b",
		"spiffe://cluster.local/weft/node/n1", "spiffe://cluster.local/ns//sa/x", "*",
	};
	static const uint16_t fixed_ports[] = { 1, 80, 8080, 15000, 65535 };
	char err[REG_ERR_MAX], principal[600];
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 }, m6 = { .sin6_family = AF_INET6 };
	const struct sockaddr *srcs[4];
	struct policy_conn c;
	struct registry *r;
	size_t i, j, k, p;

	r = registry_parse((const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if (!r)
		return 0;
	inet_pton(AF_INET, "10.20.1.2", &a4.sin_addr);
	inet_pton(AF_INET6, "fd00:20:1::2", &a6.sin6_addr);
	inet_pton(AF_INET6, "::ffff:10.20.1.2", &m6.sin6_addr);
	srcs[0] = NULL;
	srcs[1] = (const struct sockaddr *)&a4;
	srcs[2] = (const struct sockaddr *)&a6;
	srcs[3] = (const struct sockaddr *)&m6;

	for (i = 0; i < r->n_workloads && i < MAX_WORKLOADS; i++) {
		const struct reg_workload *w = &r->workloads[i];
		/* every workload's identity as a source, plus the fixed ones */
		size_t n_pr = sizeof(fixed_principals) / sizeof(*fixed_principals) + 1;

		for (j = 0; j < n_pr; j++) {
			memset(&c, 0, sizeof(c));
			if (j + 1 < n_pr) {
				c.principal = fixed_principals[j];
			} else {
				snprintf(principal, sizeof(principal), "spiffe://%s/ns/%s/sa/%s",
					 r->trust_domain ? r->trust_domain : "cluster.local",
					 r->workloads[(i + 1) % r->n_workloads].namespace,
					 r->workloads[(i + 1) % r->n_workloads].service_account);
				c.principal = principal;
			}
			for (k = 0; k < 4; k++) {
				c.src = srcs[k];
				for (p = 0; p < sizeof(fixed_ports) / sizeof(*fixed_ports); p++) {
					c.dst_port = fixed_ports[p];
					check(r, w, &c);
				}
			}
			/* the addresses and ports the first policies' first
			 * rules name */
			for (k = 0; k < r->n_policies && k < 4; k++) {
				const struct reg_rule *ru;
				struct sockaddr_storage ss;
				size_t q;

				if (!r->policies[k].n_rules)
					continue;
				ru = &r->policies[k].rules[0];
				c.dst_port = ru->ports.n ? ru->ports.v[0] : 80;
				for (q = 0; q < ru->source_ips.n && q < 2; q++)
					if (!cidr_source(ru->source_ips.v[q], &ss)) {
						c.src = (const struct sockaddr *)&ss;
						check(r, w, &c);
					}
				for (q = 0; q < ru->not_source_ips.n && q < 2; q++)
					if (!cidr_source(ru->not_source_ips.v[q], &ss)) {
						c.src = (const struct sockaddr *)&ss;
						check(r, w, &c);
					}
				c.src = srcs[1];
				for (p = 0; p < ru->ports.n && p < 4; p++) {
					c.dst_port = ru->ports.v[p];
					check(r, w, &c);
				}
				for (p = 0; p < ru->not_ports.n && p < 4; p++) {
					c.dst_port = ru->not_ports.v[p];
					check(r, w, &c);
				}
			}
		}
	}
	registry_free(r);
	return 0;
}
