/* SPDX-License-Identifier: Apache-2.0 */
/* L4 authorization in Istio's AuthorizationPolicy shape (DESIGN §6): which
 * policies apply to a destination workload, whether a rule matches a
 * connection, and a one-sentence account of the decision. Pure and
 * allocation-free: it runs on every new connection at the destination. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <weft/policy.h>
#include <weft/registry.h>

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* The source as the matcher sees it, computed once per decision. Absent
 * fields (no identity, no address) make positive clauses fail and negative
 * clauses pass, as in Istio. */
struct src {
	const char *principal;	/* NULL: plaintext, no identity */
	size_t principal_len;
	const char *ns;		/* NULL: unknown (always NULL without principal) */
	size_t ns_len;
	int af;			/* AF_INET, AF_INET6, or 0 for no address */
	unsigned char addr[16];	/* v4-mapped v6 is stored as AF_INET */
	uint16_t port;
};

/* ---- matching ------------------------------------------------------------- */

/* Istio's string match: "*" is any non-empty value, "*suf" a suffix,
 * "pre*" a prefix, anything else exact; tested in Istio's order, so "*a*"
 * is the suffix "a*". s need not be NUL-terminated. */
static bool str_match(const char *pat, const char *s, size_t len)
{
	size_t pl = strlen(pat);

	if (pl == 1 && pat[0] == '*')
		return len > 0;
	if (pl > 1 && pat[0] == '*')
		return len >= pl - 1 && memcmp(s + len - (pl - 1), pat + 1, pl - 1) == 0;
	if (pl > 1 && pat[pl - 1] == '*')
		return len >= pl - 1 && memcmp(s, pat, pl - 1) == 0;
	return len == pl && memcmp(s, pat, pl) == 0;
}

/* Istio writes principals without the scheme ("cluster.local/ns/x/sa/y");
 * accept both that and the full SPIFFE ID so either form of a policy works. */
static bool principal_match(const char *pat, const struct src *s)
{
	if (str_match(pat, s->principal, s->principal_len))
		return true;
	return s->principal_len > SPIFFE_SCHEME_LEN &&
	       memcmp(s->principal, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) == 0 &&
	       str_match(pat, s->principal + SPIFFE_SCHEME_LEN,
			 s->principal_len - SPIFFE_SCHEME_LEN);
}

/* True if the source address lies in cidr ("a/len" or a bare address, in
 * the registry's canonical text). Parsed on the fly into stack memory; a
 * string the registry would not have accepted never matches. */
static bool cidr_contains(const char *cidr, const struct src *s)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char net[16];
	size_t n = strlen(cidr), i;
	char *slash;
	unsigned plen;
	int af;

	if (!s->af || n >= sizeof(buf))
		return false;
	memcpy(buf, cidr, n + 1);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	af = strchr(buf, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(af, buf, net) != 1)
		return false;
	plen = af == AF_INET ? 32 : 128;
	if (slash) {
		const char *d = slash + 1;

		if (!*d || strlen(d) > 3)
			return false;
		for (plen = 0; *d; d++) {
			if (*d < '0' || *d > '9')
				return false;
			plen = plen * 10 + (unsigned)(*d - '0');
		}
		if (plen > (af == AF_INET ? 32u : 128u))
			return false;
	}
	/* A v4-mapped CIDR covering only mapped addresses is a v4 CIDR, so it
	 * compares with v4 sources the same way a mapped source does. */
	if (af == AF_INET6 && plen >= 96 && memcmp(net, v4mapped, 12) == 0) {
		memmove(net, net + 12, 4);
		af = AF_INET;
		plen -= 96;
	}
	if (af != s->af)
		return false;
	for (i = 0; i < plen / 8; i++)
		if (net[i] != s->addr[i])
			return false;
	if (plen % 8) {
		unsigned char mask = (unsigned char)(0xffu << (8 - plen % 8));

		if ((net[i] ^ s->addr[i]) & mask)
			return false;
	}
	return true;
}

/* Index of the first value of a clause that the source satisfies, or -1.
 * Called only for a field the source has (principal, namespace, address). */
enum field { F_PRINCIPAL, F_NAMESPACE, F_IP };

static int strv_find(const struct reg_strv *v, enum field f, const struct src *s)
{
	size_t i;

	for (i = 0; i < v->n; i++) {
		bool hit = false;

		switch (f) {
		case F_PRINCIPAL:
			hit = principal_match(v->v[i], s);
			break;
		case F_NAMESPACE:
			hit = str_match(v->v[i], s->ns, s->ns_len);
			break;
		case F_IP:
			hit = cidr_contains(v->v[i], s);
			break;
		}
		if (hit)
			return (int)i;
	}
	return -1;
}

static bool portv_has(const struct reg_portv *v, uint16_t port)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (v->v[i] == port)
			return true;
	return false;
}

static bool field_present(const struct src *s, enum field f)
{
	return f == F_PRINCIPAL ? s->principal != NULL :
	       f == F_NAMESPACE ? s->ns != NULL : s->af != 0;
}

/* A positive clause: empty passes; otherwise the source must have the
 * field and some value must match it. */
static bool pos_ok(const struct reg_strv *v, enum field f, const struct src *s)
{
	return v->n == 0 || (field_present(s, f) && strv_find(v, f, s) >= 0);
}

/* A negative clause: a source without the field is not in the list. */
static bool neg_ok(const struct reg_strv *v, enum field f, const struct src *s)
{
	return v->n == 0 || !field_present(s, f) || strv_find(v, f, s) < 0;
}

/* All non-empty clauses hold (AND); an empty rule matches everything. */
static bool rule_match(const struct reg_rule *ru, const struct src *s)
{
	return pos_ok(&ru->principals, F_PRINCIPAL, s) &&
	       pos_ok(&ru->namespaces, F_NAMESPACE, s) &&
	       pos_ok(&ru->source_ips, F_IP, s) &&
	       (ru->ports.n == 0 || portv_has(&ru->ports, s->port)) &&
	       neg_ok(&ru->not_principals, F_PRINCIPAL, s) &&
	       neg_ok(&ru->not_namespaces, F_NAMESPACE, s) &&
	       neg_ok(&ru->not_source_ips, F_IP, s) &&
	       !portv_has(&ru->not_ports, s->port);
}

/* Rules are ORed. A policy without rules matches nothing, for ALLOW
 * (Istio's allow-nothing) and DENY alike. */
static int policy_rule_find(const struct reg_policy *po, const struct src *s)
{
	size_t i;

	for (i = 0; i < po->n_rules; i++)
		if (rule_match(&po->rules[i], s))
			return (int)i;
	return -1;
}

/* True if every selector label is among the workload's labels, same value. */
static bool selector_match(const struct reg_policy *po, const struct reg_workload *w)
{
	size_t i, j;

	for (i = 0; i < po->n_selector; i++) {
		for (j = 0; j < w->n_labels; j++)
			if (strcmp(po->selector[i].key, w->labels[j].key) == 0)
				break;
		if (j == w->n_labels || strcmp(po->selector[i].value, w->labels[j].value) != 0)
			return false;
	}
	return true;
}

/* Every policy is tested on every connection; most are in some other
 * namespace, and the first byte usually says so without a call. */
static bool ns_eq(const char *a, const char *b)
{
	return a[0] == b[0] && strcmp(a, b) == 0;
}

static bool policy_applies(const struct reg_policy *po, const struct reg_workload *dst)
{
	const char *ns = po->namespace ? po->namespace : "";

	switch (po->scope) {
	case REG_SCOPE_GLOBAL:
		return true;
	case REG_SCOPE_NAMESPACE:
		return ns_eq(ns, dst->namespace);
	case REG_SCOPE_WORKLOAD:
		return ns_eq(ns, dst->namespace) && selector_match(po, dst);
	}
	return false;
}

/* ---- the source ----------------------------------------------------------- */

/* The namespace in spiffe://<td>/ns/<ns>/sa/<sa>, or NULL for another shape. */
static const char *principal_ns(const char *p, size_t len, size_t *ns_len)
{
	const char *end = p + len, *q, *ns, *e;

	if (len <= SPIFFE_SCHEME_LEN || memcmp(p, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0)
		return NULL;
	q = memchr(p + SPIFFE_SCHEME_LEN, '/', len - SPIFFE_SCHEME_LEN);
	if (!q || end - q < 4 || memcmp(q, "/ns/", 4) != 0)
		return NULL;
	ns = q + 4;
	e = memchr(ns, '/', (size_t)(end - ns));
	if (!e || e == ns || end - e < 4 || memcmp(e, "/sa/", 4) != 0)
		return NULL;
	*ns_len = (size_t)(e - ns);
	return ns;
}

static void src_init(struct src *s, const struct policy_conn *c)
{
	memset(s, 0, sizeof(*s));
	s->port = c->dst_port;
	if (c->principal && c->principal[0]) {
		s->principal = c->principal;
		s->principal_len = strlen(c->principal);
		if (c->src_namespace && c->src_namespace[0]) {
			s->ns = c->src_namespace;
			s->ns_len = strlen(c->src_namespace);
		} else {
			s->ns = principal_ns(s->principal, s->principal_len, &s->ns_len);
		}
	}
	if (!c->src)
		return;
	if (c->src->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)c->src;

		s->af = AF_INET;
		memcpy(s->addr, &a->sin_addr, 4);
	} else if (c->src->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)c->src;

		if (memcmp(a->sin6_addr.s6_addr, v4mapped, 12) == 0) {
			s->af = AF_INET;
			memcpy(s->addr, a->sin6_addr.s6_addr + 12, 4);
		} else {
			s->af = AF_INET6;
			memcpy(s->addr, &a->sin6_addr, 16);
		}
	}
}

/* ---- the account of a decision -------------------------------------------- */

/* A bounded string builder: appends truncate, never overflow. */
struct sbuf {
	char *p;
	size_t cap, len;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->len + 1 >= b->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	b->len += (size_t)n;
	if (b->len >= b->cap)
		b->len = b->cap - 1;
}

static void policy_name(char *out, size_t len, const struct reg_policy *po)
{
	snprintf(out, len, "%s/%s", po->namespace ? po->namespace : "", po->name);
}

/* Clause separator: nothing before the first, ", " after. */
static void sb_sep(struct sbuf *b, bool *first)
{
	if (!*first)
		sb_add(b, ", ");
	*first = false;
}

static void explain_strv(struct sbuf *b, bool *first, const struct reg_strv *v,
			 const struct reg_strv *nv, enum field f, const struct src *s)
{
	static const char *const what[] = { "principal", "namespace", "source" };
	static const char *const nfield[] = { "not_principals", "not_namespaces",
					      "not_source_ips" };
	char ip[INET6_ADDRSTRLEN];
	const char *val = NULL;
	int valen = 0, i;

	if (!v->n && !nv->n)
		return;
	if (f == F_PRINCIPAL && s->principal) {
		val = s->principal;
		valen = (int)s->principal_len;
	} else if (f == F_NAMESPACE && s->ns) {
		val = s->ns;
		valen = (int)s->ns_len;
	} else if (f == F_IP && s->af) {
		inet_ntop(s->af, s->addr, ip, sizeof(ip));
		val = ip;
		valen = (int)strlen(ip);
	}
	if (!val) {	/* only a not_ clause can have passed */
		sb_sep(b, first);
		sb_add(b, "no %s, so not in %s", f == F_IP ? "source address" :
		       f == F_PRINCIPAL ? "identity" : "source namespace", nfield[f]);
		return;
	}
	sb_sep(b, first);
	sb_add(b, "%s %.*s", what[f], valen, val);
	if (v->n) {
		i = strv_find(v, f, s);
		if (i < 0)
			sb_add(b, " (?)");
		else if (strlen(v->v[i]) == (size_t)valen && memcmp(v->v[i], val, (size_t)valen) == 0)
			sb_add(b, " %s", f == F_IP ? "listed" : "matched exactly");
		else
			sb_add(b, " %s %s", f == F_IP ? "in" : "matched", v->v[i]);
	}
	if (nv->n)
		sb_add(b, "%s not in %s", v->n ? " and" : "", nfield[f]);
}

/* Which clauses made rule ru match, e.g. "principal X matched P, port 80". */
static void explain_rule(char *out, size_t len, const struct reg_rule *ru, const struct src *s)
{
	struct sbuf b = { out, len, 0 };
	bool first = true;

	out[0] = '\0';
	explain_strv(&b, &first, &ru->principals, &ru->not_principals, F_PRINCIPAL, s);
	explain_strv(&b, &first, &ru->namespaces, &ru->not_namespaces, F_NAMESPACE, s);
	explain_strv(&b, &first, &ru->source_ips, &ru->not_source_ips, F_IP, s);
	if (ru->ports.n || ru->not_ports.n) {
		sb_sep(&b, &first);
		sb_add(&b, "destination port %u%s%s", s->port,
		       ru->ports.n ? " in destination_ports" : "",
		       !ru->not_ports.n ? "" : ru->ports.n ? " and not in not_destination_ports" :
		       " not in not_destination_ports");
	}
	if (first)
		sb_add(&b, "an empty rule matches every connection");
}

static void decide_rule(struct policy_decision *out, enum policy_verdict v,
			const struct reg_policy *po, int rule, const struct src *s)
{
	struct sbuf b = { out->why, sizeof(out->why), 0 };
	char detail[256];

	out->verdict = v;
	out->rule = rule;
	policy_name(out->policy, sizeof(out->policy), po);
	explain_rule(detail, sizeof(detail), &po->rules[rule], s);
	sb_add(&b, "%s by %s policy %s rule %d (%s)",
		 v == POLICY_DENY ? "denied" : "allowed", v == POLICY_DENY ? "DENY" : "ALLOW",
		 out->policy, rule, detail);
}

/* No ALLOW rule matched: name the ALLOW policies that apply (as many as
 * fit) so the operator knows which ones to read. */
static void decide_unmatched(struct policy_decision *out, const struct reg_workload *dst,
			     const struct reg_policy *first, const struct reg_policy *last,
			     size_t n_allow)
{
	char name[POLICY_NAME_MAX];
	struct sbuf b = { out->why, sizeof(out->why), 0 };
	const struct reg_policy *po;
	size_t listed = 0;

	out->verdict = POLICY_DENY;
	out->rule = -1;
	policy_name(out->policy, sizeof(out->policy), first);
	if (n_allow == 1) {
		if (first->n_rules == 0)
			sb_add(&b, "denied: ALLOW policy %s applies to %s and has no rules "
			       "(allow-nothing)", out->policy, dst->uid);
		else
			sb_add(&b, "denied: ALLOW policy %s applies to %s and none of its rules "
			       "matched", out->policy, dst->uid);
		return;
	}
	sb_add(&b, "denied: ALLOW policies ");
	for (po = first; po <= last; po++) {
		if (po->action != REG_ACTION_ALLOW || !policy_applies(po, dst))
			continue;
		policy_name(name, sizeof(name), po);
		/* keep room for the rest of the sentence */
		if (listed && b.len + strlen(name) + 80 + strlen(dst->uid) >= b.cap) {
			sb_add(&b, " and %zu more", n_allow - listed);
			break;
		}
		sb_add(&b, "%s%s", listed ? ", " : "", name);
		listed++;
	}
	sb_add(&b, " apply to %s and none of their rules matched", dst->uid);
}

/* ---- the decision --------------------------------------------------------- */

void policy_decide(const struct registry *reg, const struct reg_workload *dst,
		   const struct policy_conn *c, struct policy_decision *out)
{
	const struct reg_policy *allow_first = NULL, *allow_last = NULL, *allow_hit = NULL;
	int allow_rule = -1, r;
	size_t i, n_allow = 0;
	struct src s;

	src_init(&s, c);
	for (i = 0; reg && i < reg->n_policies; i++) {
		const struct reg_policy *po = &reg->policies[i];

		if (!policy_applies(po, dst))
			continue;
		if (po->action == REG_ACTION_DENY) {
			r = policy_rule_find(po, &s);
			if (r >= 0) {
				decide_rule(out, POLICY_DENY, po, r, &s);
				return;
			}
			continue;
		}
		n_allow++;
		if (!allow_first)
			allow_first = po;
		allow_last = po;
		/* Later ALLOW policies need no evaluation once one matched, but
		 * the scan goes on: a DENY anywhere still wins. */
		if (!allow_hit) {
			r = policy_rule_find(po, &s);
			if (r >= 0) {
				allow_hit = po;
				allow_rule = r;
			}
		}
	}
	if (allow_hit) {
		decide_rule(out, POLICY_ALLOW, allow_hit, allow_rule, &s);
		return;
	}
	if (!n_allow) {
		struct sbuf b = { out->why, sizeof(out->why), 0 };

		out->verdict = POLICY_ALLOW;
		out->policy[0] = '\0';
		out->rule = -1;
		sb_add(&b, "allowed: no ALLOW policy applies to %s", dst->uid);
		return;
	}
	decide_unmatched(out, dst, allow_first, allow_last, n_allow);
}
