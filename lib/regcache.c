/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's copy of the cluster registry. The state is a struct registry
 * whose arrays stay sorted by key (so registry_node/registry_workload work
 * on it too), plus indexes rebuilt after every apply: pod IP -> workload,
 * (VIP, port) -> service, and each service's pickable endpoints. An apply
 * prepares everything that can fail first and then commits with moves and
 * frees only, so a rejected message leaves the cache exactly as it was. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/file.h>
#include <weft/log.h>
#include <weft/registry.h>
#include <weft/regproto.h>
#include <weft/x509.h>

#include "registry.pb-c.h"
#include <weft/regcache.h>

/* Bound on one WatchResponse (and on the snapshot file): far above a large
 * cluster's registry, far below what would hurt the node. */
#define REGCACHE_MSG_MAX (64u << 20)
#define REGCACHE_HBONE_PORT 15008
#define REGCACHE_KINDS 4

/* One address of one workload, for the IP index. */
struct ip_entry {
	uint8_t len;		/* 4 or 16; IPv4-mapped IPv6 is stored as IPv4 */
	uint8_t addr[16];
	uint32_t w;		/* index into registry.workloads */
};

/* One (VIP, port) of one service. */
struct vip_entry {
	uint8_t len;
	uint8_t addr[16];
	uint16_t port;
	uint16_t target_port;
	uint32_t s;		/* index into registry.services */
};

/* Per service: the endpoints a pick may return, and the round-robin cursor. */
struct svc_rr {
	const struct reg_workload **ready;	/* points into index.pool */
	size_t n_ready;
	size_t cursor;
};

/* Everything derived from the registry; rebuilt as a whole. */
struct index {
	struct ip_entry *ips;
	size_t n_ips;
	struct ip_entry *node_ips;		/* w: index into registry.nodes */
	size_t n_node_ips;
	struct vip_entry *vips;
	size_t n_vips;
	struct svc_rr *rr;			/* parallel to registry.services */
	const struct reg_workload **pool;	/* every ready list, back to back */
};

struct regcache {
	struct registry *reg;	/* never NULL; empty until the first snapshot */
	struct index idx;
	struct index *ridx;	/* one per reg->remotes->v[i]; NULL without remotes */
	uint64_t version;
	bool ready;
};

/* ---- errors -------------------------------------------------------------- */

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Peer strings go into err, and err goes into the log: escape and cap. */
struct esc {
	char s[96];
};

static const char *esc(struct esc *e, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return log_escape(e->s, sizeof(e->s), s ? s : "", n > 64 ? 64 : n);
}

/* ---- addresses ----------------------------------------------------------- */

/* ::ffff:0:0/96. Checked with memcmp: addr may sit unaligned in an entry,
 * where IN6_IS_ADDR_V4MAPPED's 32-bit loads would not be allowed. */
static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Binary form of an IP literal into addr; returns 4, 16, or 0 if invalid. */
static int ip_parse(const char *s, uint8_t addr[16])
{
	if (!s)
		return 0;
	if (inet_pton(AF_INET, s, addr) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, addr) == 1) {
		if (!memcmp(addr, v4mapped_prefix, sizeof(v4mapped_prefix))) {
			memmove(addr, addr + 12, 4);
			return 4;
		}
		return 16;
	}
	return 0;
}

/* Binary address and port of a sockaddr; returns 4, 16, or 0 for another
 * family. A v4-mapped IPv6 address (dual-stack socket) counts as IPv4. */
static int sockaddr_parse(const struct sockaddr *sa, uint8_t addr[16], uint16_t *port)
{
	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(addr, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
		return 4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		*port = ntohs(sin6->sin6_port);
		if (!memcmp(sin6->sin6_addr.s6_addr, v4mapped_prefix, sizeof(v4mapped_prefix))) {
			memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
			return 4;
		}
		memcpy(addr, &sin6->sin6_addr, 16);
		return 16;
	}
	return 0;
}

/* "ip" or "ip/len" with len in range for the family. */
static bool cidr_valid(const char *s)
{
	char buf[INET6_ADDRSTRLEN + 8];
	uint8_t addr[16];
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t n = slash ? (size_t)(slash - s) : (s ? strlen(s) : 0);
	unsigned long plen = 0;
	int len;

	if (!s || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	/* no v4-mapped folding here: the prefix length refers to the literal */
	len = inet_pton(AF_INET, buf, addr) == 1 ? 32 : inet_pton(AF_INET6, buf, addr) == 1 ? 128 : 0;
	if (!len)
		return false;
	if (!slash)
		return true;
	if (slash[1] == '\0' || strlen(slash + 1) > 3)
		return false;
	for (const char *d = slash + 1; *d; d++) {
		if (*d < '0' || *d > '9')
			return false;
		plen = plen * 10 + (unsigned long)(*d - '0');
	}
	return plen <= (unsigned long)len;
}

/* ---- protobuf -> registry ------------------------------------------------ */

/* Conversions fill an element of a registry that registry_free can release
 * at any point: every array is calloc'd and its count set at once, so a
 * half-filled element holds only NULLs beyond what was copied. */

static int str_copy(const char *s, char **out)
{
	*out = strdup(s ? s : "");
	return *out ? 0 : -ENOMEM;
}

static int strv_copy(char *const *in, size_t n, char ***out, size_t *nout)
{
	size_t i;

	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	*nout = n;
	for (i = 0; i < n; i++)
		if (str_copy(in[i], &(*out)[i]))
			return -ENOMEM;
	return 0;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_label *)a)->key, ((const struct reg_label *)b)->key);
}

/* The three generated map-entry types differ only in name; key_off and
 * val_off locate their key and value. Labels end up sorted by key, as the
 * registry promises; a key given twice is -EINVAL. */
static int labels_copy(void *const *entries, size_t n, size_t key_off, size_t val_off,
		       struct reg_label **out, size_t *nout)
{
	size_t i;

	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	*nout = n;
	for (i = 0; i < n; i++) {
		const char *e = entries[i];

		if (str_copy(*(char *const *)(e + key_off), &(*out)[i].key) ||
		    str_copy(*(char *const *)(e + val_off), &(*out)[i].value))
			return -ENOMEM;
	}
	qsort(*out, n, sizeof(**out), label_cmp);
	for (i = 1; i < n; i++)
		if (!strcmp((*out)[i - 1].key, (*out)[i].key))
			return -EINVAL;
	return 0;
}

#define LABELS_COPY(T, m, field, out, nout)					\
	labels_copy((void *const *)(m)->field, (m)->n_##field, offsetof(T, key),	\
		    offsetof(T, value), out, nout)

static int strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int node_from_msg(const Weft__Registry__V1__Node *m, struct reg_node *n,
			 char *err, size_t errlen)
{
	struct esc e;
	uint8_t addr[16];

	if (!m->name || !m->name[0])
		return fail(-EINVAL, err, errlen, "node without a name");
	if (!ip_parse(m->address, addr))
		return fail(-EINVAL, err, errlen, "node %s: bad address", esc(&e, m->name));
	if (m->hbone_port > 65535)
		return fail(-EINVAL, err, errlen, "node %s: bad hbone_port", esc(&e, m->name));
	if (m->gateway_address && m->gateway_address[0] && !ip_parse(m->gateway_address, addr))
		return fail(-EINVAL, err, errlen, "node %s: bad gateway_address", esc(&e, m->name));
	n->hbone_port = m->hbone_port ? m->hbone_port : REGCACHE_HBONE_PORT;
	if (str_copy(m->name, &n->name) || str_copy(m->address, &n->address) ||
	    str_copy(m->cluster, &n->cluster) || str_copy(m->network, &n->network))
		return -ENOMEM;
	if (m->gateway_address && m->gateway_address[0] &&
	    str_copy(m->gateway_address, &n->gateway_address))
		return -ENOMEM;
	return 0;
}

static int workload_from_msg(const Weft__Registry__V1__Workload *m, struct reg_workload *w,
			     char *err, size_t errlen)
{
	struct esc e;
	uint8_t addr[16];
	size_t i;
	int rc;

	if (m->uid && m->uid[0]) {
		rc = str_copy(m->uid, &w->uid);
	} else if (m->namespace_ && m->namespace_[0] && m->name && m->name[0]) {
		/* the documented default key */
		rc = asprintf(&w->uid, "%s/%s", m->namespace_, m->name) < 0 ? -ENOMEM : 0;
		if (rc)
			w->uid = NULL;
	} else {
		return fail(-EINVAL, err, errlen, "workload without a uid");
	}
	if (rc)
		return rc;
	for (i = 0; i < m->n_ips; i++)
		if (!ip_parse(m->ips[i], addr))
			return fail(-EINVAL, err, errlen, "workload %s: bad ip", esc(&e, w->uid));
	if (str_copy(m->name, &w->name) || str_copy(m->namespace_, &w->namespace) ||
	    str_copy(m->service_account && m->service_account[0] ? m->service_account : "default",
		     &w->service_account) ||
	    str_copy(m->node, &w->node) || strv_copy(m->ips, m->n_ips, &w->ips, &w->n_ips))
		return -ENOMEM;
	w->tunnel = m->tunnel == WEFT__REGISTRY__V1__TUNNEL_PROTOCOL__TUNNEL_HBONE ? REG_TUNNEL_HBONE
										 : REG_TUNNEL_NONE;
	rc = LABELS_COPY(Weft__Registry__V1__Workload__LabelsEntry, m, labels, &w->labels,
			 &w->n_labels);
	if (rc == -EINVAL)
		return fail(rc, err, errlen, "workload %s: duplicate label", esc(&e, w->uid));
	return rc;
}

static int service_from_msg(const Weft__Registry__V1__Service *m, struct reg_service *s,
			    char *err, size_t errlen)
{
	struct esc e;
	uint8_t addr[16];
	size_t i;
	int rc;

	if (!m->name || !m->name[0] || !m->namespace_ || !m->namespace_[0])
		return fail(-EINVAL, err, errlen, "service without a namespace and name");
	for (i = 0; i < m->n_vips; i++)
		if (!ip_parse(m->vips[i], addr))
			return fail(-EINVAL, err, errlen, "service %s: bad vip", esc(&e, m->name));
	for (i = 0; i < m->n_ports; i++)
		if (m->ports[i]->port == 0 || m->ports[i]->port > 65535 ||
		    m->ports[i]->target_port > 65535)
			return fail(-EINVAL, err, errlen, "service %s: bad port", esc(&e, m->name));
	if (str_copy(m->namespace_, &s->namespace) || str_copy(m->name, &s->name) ||
	    strv_copy(m->vips, m->n_vips, &s->vips, &s->n_vips) ||
	    strv_copy(m->endpoints, m->n_endpoints, &s->endpoints, &s->n_endpoints))
		return -ENOMEM;
	if (s->n_endpoints)
		qsort(s->endpoints, s->n_endpoints, sizeof(*s->endpoints), strcmp_p);
	if (m->n_ports) {
		s->ports = calloc(m->n_ports, sizeof(*s->ports));
		if (!s->ports)
			return -ENOMEM;
		s->n_ports = m->n_ports;
		for (i = 0; i < m->n_ports; i++) {
			s->ports[i].port = m->ports[i]->port;
			s->ports[i].target_port = m->ports[i]->target_port ? m->ports[i]->target_port
									   : m->ports[i]->port;
		}
	}
	rc = LABELS_COPY(Weft__Registry__V1__Service__SelectorEntry, m, selector, &s->selector,
			 &s->n_selector);
	if (rc == -EINVAL)
		return fail(rc, err, errlen, "service %s: duplicate selector key", esc(&e, m->name));
	return rc;
}

/* Ports of a rule; 0 or past 65535 is -EINVAL. */
static int portv_copy(const uint32_t *in, size_t n, struct reg_portv *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (in[i] == 0 || in[i] > 65535)
			return -EINVAL;
	if (n == 0)
		return 0;
	out->v = calloc(n, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = n;
	for (i = 0; i < n; i++)
		out->v[i] = in[i];
	return 0;
}

static int rule_from_msg(const Weft__Registry__V1__PolicyRule *m, struct reg_rule *ru)
{
	size_t i;
	int rc;

	for (i = 0; i < m->n_source_ips; i++)
		if (!cidr_valid(m->source_ips[i]))
			return -EINVAL;
	for (i = 0; i < m->n_not_source_ips; i++)
		if (!cidr_valid(m->not_source_ips[i]))
			return -EINVAL;
	rc = portv_copy(m->destination_ports, m->n_destination_ports, &ru->ports);
	if (!rc)
		rc = portv_copy(m->not_destination_ports, m->n_not_destination_ports, &ru->not_ports);
	if (rc)
		return rc;
	if (strv_copy(m->principals, m->n_principals, &ru->principals.v, &ru->principals.n) ||
	    strv_copy(m->not_principals, m->n_not_principals, &ru->not_principals.v,
		      &ru->not_principals.n) ||
	    strv_copy(m->namespaces, m->n_namespaces, &ru->namespaces.v, &ru->namespaces.n) ||
	    strv_copy(m->not_namespaces, m->n_not_namespaces, &ru->not_namespaces.v,
		      &ru->not_namespaces.n) ||
	    strv_copy(m->source_ips, m->n_source_ips, &ru->source_ips.v, &ru->source_ips.n) ||
	    strv_copy(m->not_source_ips, m->n_not_source_ips, &ru->not_source_ips.v,
		      &ru->not_source_ips.n))
		return -ENOMEM;
	return 0;
}

static int policy_from_msg(const Weft__Registry__V1__Policy *m, struct reg_policy *po,
			   char *err, size_t errlen)
{
	struct esc e;
	size_t i;
	int rc;

	if (!m->name || !m->name[0])
		return fail(-EINVAL, err, errlen, "policy without a name");
	/* An unknown enum value from a newer agent must not be read as the
	 * default (ALLOW, GLOBAL): reject the policy instead. */
	switch (m->scope) {
	case WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_GLOBAL:
		po->scope = REG_SCOPE_GLOBAL;
		break;
	case WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_NAMESPACE:
		po->scope = REG_SCOPE_NAMESPACE;
		break;
	case WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_WORKLOAD_SELECTOR:
		po->scope = REG_SCOPE_WORKLOAD;
		break;
	default:
		return fail(-EINVAL, err, errlen, "policy %s: unknown scope", esc(&e, m->name));
	}
	switch (m->action) {
	case WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_ALLOW:
		po->action = REG_ACTION_ALLOW;
		break;
	case WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_DENY:
		po->action = REG_ACTION_DENY;
		break;
	default:
		return fail(-EINVAL, err, errlen, "policy %s: unknown action", esc(&e, m->name));
	}
	if (po->scope != REG_SCOPE_GLOBAL && (!m->namespace_ || !m->namespace_[0]))
		return fail(-EINVAL, err, errlen, "policy %s: no namespace", esc(&e, m->name));
	if (str_copy(m->name, &po->name) || str_copy(m->namespace_, &po->namespace))
		return -ENOMEM;
	rc = LABELS_COPY(Weft__Registry__V1__Policy__SelectorEntry, m, selector, &po->selector,
			 &po->n_selector);
	if (rc == -EINVAL)
		return fail(rc, err, errlen, "policy %s: duplicate selector key", esc(&e, m->name));
	if (rc)
		return rc;
	if (m->n_rules) {
		po->rules = calloc(m->n_rules, sizeof(*po->rules));
		if (!po->rules)
			return -ENOMEM;
		po->n_rules = m->n_rules;
		for (i = 0; i < m->n_rules; i++) {
			rc = rule_from_msg(m->rules[i], &po->rules[i]);
			if (rc == -EINVAL)
				return fail(rc, err, errlen, "policy %s: rule %zu: bad CIDR or port",
					    esc(&e, m->name), i);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- kinds: one generic sorted array per resource kind ------------------- */

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_node *)a)->name, ((const struct reg_node *)b)->name);
}

static int workload_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_workload *)a)->uid, ((const struct reg_workload *)b)->uid);
}

static int ns_name_cmp(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
	int d = strcmp(ns1, ns2);

	return d ? d : strcmp(n1, n2);
}

static int service_cmp(const void *a, const void *b)
{
	const struct reg_service *x = a, *y = b;

	return ns_name_cmp(x->namespace, x->name, y->namespace, y->name);
}

static int policy_cmp(const void *a, const void *b)
{
	const struct reg_policy *x = a, *y = b;

	return ns_name_cmp(x->namespace, x->name, y->namespace, y->name);
}

struct kind {
	const char *what;
	size_t size;		/* of one element */
	size_t arr_off;		/* of the array pointer in struct registry */
	size_t n_off;		/* of the count */
	int (*cmp)(const void *a, const void *b);	/* key order */
};

/* Indexed by ResourceKind - 1. */
static const struct kind kinds[REGCACHE_KINDS] = {
	{ "node", sizeof(struct reg_node), offsetof(struct registry, nodes),
	  offsetof(struct registry, n_nodes), node_cmp },
	{ "workload", sizeof(struct reg_workload), offsetof(struct registry, workloads),
	  offsetof(struct registry, n_workloads), workload_cmp },
	{ "service", sizeof(struct reg_service), offsetof(struct registry, services),
	  offsetof(struct registry, n_services), service_cmp },
	{ "policy", sizeof(struct reg_policy), offsetof(struct registry, policies),
	  offsetof(struct registry, n_policies), policy_cmp },
};

static void **kind_arr(struct registry *r, const struct kind *k)
{
	return (void **)((char *)r + k->arr_off);
}

static size_t *kind_n(struct registry *r, const struct kind *k)
{
	return (size_t *)((char *)r + k->n_off);
}

static void *kind_elem(struct registry *r, const struct kind *k, size_t i)
{
	return (char *)*kind_arr(r, k) + i * k->size;
}

/* Frees r's four arrays and r, not what the elements point to: used when
 * the elements were moved elsewhere. */
static void registry_shallow_free(struct registry *r)
{
	if (!r)
		return;
	free(r->nodes);
	free(r->workloads);
	free(r->services);
	free(r->policies);
	free(r);
}

/* A registry with room for n[k] elements of each kind (counts 0). */
static struct registry *registry_alloc(const size_t n[REGCACHE_KINDS])
{
	struct registry *r = calloc(1, sizeof(*r));
	size_t k;

	if (!r)
		return NULL;
	for (k = 0; k < REGCACHE_KINDS; k++) {
		if (!n[k])
			continue;
		*kind_arr(r, &kinds[k]) = calloc(n[k], kinds[k].size);
		if (!*kind_arr(r, &kinds[k])) {
			registry_shallow_free(r);
			return NULL;
		}
	}
	return r;
}

struct dedupe_ctx {
	const struct kind *k;
	struct registry *r;
};

static int dedupe_cmp(const void *a, const void *b, void *arg)
{
	const struct dedupe_ctx *c = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int d = c->k->cmp(kind_elem(c->r, c->k, i), kind_elem(c->r, c->k, j));

	return d ? d : (i > j) - (i < j);
}

/* Sorts r's elements of kind k by key; of equal keys the last one in the
 * message wins (upsert semantics) and the others move to dups. */
static int kind_sort_dedupe(struct registry *r, const struct kind *k, struct registry *dups)
{
	struct dedupe_ctx c = { k, r };
	size_t n = *kind_n(r, k), i, out = 0;
	size_t *idx;
	char *sorted;

	if (n < 2)
		return 0;
	idx = malloc(n * sizeof(*idx));
	sorted = malloc(n * k->size);
	if (!idx || !sorted) {
		free(idx);
		free(sorted);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), dedupe_cmp, &c);
	for (i = 0; i < n; i++) {
		void *e = kind_elem(r, k, idx[i]);

		if (i + 1 < n && !k->cmp(e, kind_elem(r, k, idx[i + 1])))
			memcpy(kind_elem(dups, k, (*kind_n(dups, k))++), e, k->size);
		else
			memcpy(sorted + out++ * k->size, e, k->size);
	}
	free(idx);
	free(*kind_arr(r, k));
	*kind_arr(r, k) = sorted;
	*kind_n(r, k) = out;
	return 0;
}

/* ---- indexes ------------------------------------------------------------- */

/* Key order (address, then port for VIPs), used by lookups once entries
 * are unique; the _entry_ variants break ties by resource index so the
 * sort, and with it which resource wins a shared address, is stable. */
static int ip_key_cmp(const void *a, const void *b)
{
	const struct ip_entry *x = a, *y = b;
	int d = (int)x->len - (int)y->len;

	return d ? d : memcmp(x->addr, y->addr, x->len);
}

static int ip_entry_cmp(const void *a, const void *b)
{
	const struct ip_entry *x = a, *y = b;
	int d = ip_key_cmp(a, b);

	return d ? d : (x->w > y->w) - (x->w < y->w);
}

static int vip_key_cmp(const void *a, const void *b)
{
	const struct vip_entry *x = a, *y = b;
	int d = (int)x->len - (int)y->len;

	if (!d)
		d = memcmp(x->addr, y->addr, x->len);
	return d ? d : (int)x->port - (int)y->port;
}

static int vip_entry_cmp(const void *a, const void *b)
{
	const struct vip_entry *x = a, *y = b;
	int d = vip_key_cmp(a, b);

	return d ? d : (x->s > y->s) - (x->s < y->s);
}

/* Keeps the first of each run of equal keys (the lowest index, that is the
 * smallest uid or service key: deterministic when two resources claim one
 * address). Returns the new count. */
static size_t ip_entries_unique(struct ip_entry *v, size_t n)
{
	size_t i, out = 0;

	for (i = 0; i < n; i++)
		if (!out || ip_key_cmp(&v[out - 1], &v[i]))
			v[out++] = v[i];
	return out;
}

static size_t vip_entries_unique(struct vip_entry *v, size_t n)
{
	size_t i, out = 0;

	for (i = 0; i < n; i++)
		if (!out || vip_key_cmp(&v[out - 1], &v[i]))
			v[out++] = v[i];
	return out;
}

static void index_deinit(struct index *x)
{
	free(x->ips);
	free(x->node_ips);
	free(x->vips);
	free(x->rr);
	free(x->pool);
	memset(x, 0, sizeof(*x));
}

static const struct reg_workload *workload_find(const struct registry *r, const char *uid)
{
	struct reg_workload key = { .uid = (char *)uid };

	if (!r->n_workloads || !uid)
		return NULL;
	return bsearch(&key, r->workloads, r->n_workloads, sizeof(*r->workloads), workload_cmp);
}

static const struct reg_node *node_find(const struct registry *r, const char *name)
{
	struct reg_node key = { .name = (char *)name };

	if (!r->n_nodes || !name)
		return NULL;
	return bsearch(&key, r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp);
}

/* Builds x for r. Round-robin cursors carry over from prev (services of
 * prev_reg) for a service whose key and endpoint list did not change. */
static int index_build(struct index *x, const struct registry *r,
		       const struct registry *prev_reg, const struct index *prev)
{
	size_t i, j, p, n_ips = 0, n_vips = 0, n_pool = 0;

	memset(x, 0, sizeof(*x));
	for (i = 0; i < r->n_workloads; i++)
		n_ips += r->workloads[i].n_ips;
	for (i = 0; i < r->n_services; i++) {
		n_vips += r->services[i].n_vips * r->services[i].n_ports;
		n_pool += r->services[i].n_endpoints;
	}
	if ((n_ips && !(x->ips = malloc(n_ips * sizeof(*x->ips)))) ||
	    (r->n_nodes && !(x->node_ips = malloc(r->n_nodes * sizeof(*x->node_ips)))) ||
	    (n_vips && !(x->vips = malloc(n_vips * sizeof(*x->vips)))) ||
	    (r->n_services && !(x->rr = calloc(r->n_services, sizeof(*x->rr)))) ||
	    (n_pool && !(x->pool = malloc(n_pool * sizeof(*x->pool))))) {
		index_deinit(x);
		return -ENOMEM;
	}

	for (i = 0; i < r->n_workloads; i++) {
		for (j = 0; j < r->workloads[i].n_ips; j++) {
			struct ip_entry *e = &x->ips[x->n_ips];

			memset(e, 0, sizeof(*e));
			e->len = ip_parse(r->workloads[i].ips[j], e->addr);
			e->w = i;
			if (e->len)	/* validated on the way in; belt and braces */
				x->n_ips++;
		}
	}
	if (x->n_ips) {
		qsort(x->ips, x->n_ips, sizeof(*x->ips), ip_entry_cmp);
		x->n_ips = ip_entries_unique(x->ips, x->n_ips);
	}
	for (i = 0; i < r->n_nodes; i++) {
		struct ip_entry *e = &x->node_ips[x->n_node_ips];

		memset(e, 0, sizeof(*e));
		e->len = ip_parse(r->nodes[i].address, e->addr);
		e->w = i;
		if (e->len)
			x->n_node_ips++;
	}
	if (x->n_node_ips) {
		qsort(x->node_ips, x->n_node_ips, sizeof(*x->node_ips), ip_entry_cmp);
		x->n_node_ips = ip_entries_unique(x->node_ips, x->n_node_ips);
	}

	for (i = 0; i < r->n_services; i++) {
		const struct reg_service *s = &r->services[i];

		for (j = 0; j < s->n_vips; j++) {
			uint8_t addr[16] = { 0 };
			int len = ip_parse(s->vips[j], addr);

			for (p = 0; len && p < s->n_ports; p++) {
				struct vip_entry *e = &x->vips[x->n_vips++];

				memset(e, 0, sizeof(*e));
				e->len = len;
				memcpy(e->addr, addr, sizeof(addr));
				e->port = s->ports[p].port;
				e->target_port = s->ports[p].target_port;
				e->s = i;
			}
		}
	}
	if (x->n_vips) {
		qsort(x->vips, x->n_vips, sizeof(*x->vips), vip_entry_cmp);
		x->n_vips = vip_entries_unique(x->vips, x->n_vips);
	}

	for (i = 0, p = 0; i < r->n_services; i++) {
		const struct reg_service *s = &r->services[i];
		const struct reg_service *old = NULL;
		struct svc_rr *rr = &x->rr[i];

		rr->ready = x->pool ? x->pool + p : NULL;
		for (j = 0; j < s->n_endpoints; j++) {
			const struct reg_workload *w = workload_find(r, s->endpoints[j]);

			if (w && w->n_ips && node_find(r, w->node))
				x->pool[p + rr->n_ready++] = w;
		}
		p += rr->n_ready;
		if (prev_reg && prev_reg->n_services)
			old = bsearch(s, prev_reg->services, prev_reg->n_services,
				      sizeof(*s), service_cmp);
		if (old && old->n_endpoints == s->n_endpoints) {
			for (j = 0; j < s->n_endpoints; j++)
				if (strcmp(old->endpoints[j], s->endpoints[j]))
					break;
			if (j == s->n_endpoints)
				rr->cursor = prev->rr[old - prev_reg->services].cursor;
		}
	}
	return 0;
}

static void remote_indexes_free(struct index *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		index_deinit(&v[i]);
	free(v);
}

/* An index per remote network of rs (none: *out NULL), round-robin
 * cursors carried over from the same network in prev / prev_idx. */
static int remote_indexes_build(struct index **out, const struct reg_remotes *rs,
				const struct reg_remotes *prev, const struct index *prev_idx)
{
	struct index *v;

	*out = NULL;
	if (!rs || !rs->n)
		return 0;
	v = calloc(rs->n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < rs->n; i++) {
		const struct reg_remote *old = reg_remotes_find(prev, rs->v[i].network);
		const struct index *oi = old && prev_idx ? &prev_idx[old - prev->v] : NULL;

		if (index_build(&v[i], rs->v[i].reg, oi ? old->reg : NULL, oi)) {
			remote_indexes_free(v, i);
			return -ENOMEM;
		}
	}
	*out = v;
	return 0;
}

/* ---- apply --------------------------------------------------------------- */

struct regcache *regcache_new(void)
{
	struct regcache *rc = calloc(1, sizeof(*rc));

	if (!rc)
		return NULL;
	rc->reg = calloc(1, sizeof(*rc->reg));
	if (!rc->reg) {
		free(rc);
		return NULL;
	}
	return rc;
}

void regcache_free(struct regcache *rc)
{
	if (!rc)
		return;
	index_deinit(&rc->idx);
	remote_indexes_free(rc->ridx, rc->reg->remotes ? rc->reg->remotes->n : 0);
	registry_free(rc->reg);
	free(rc);
}

/* Converts every upsert of m into up (sized for them). */
static int upserts_convert(const Weft__Registry__V1__WatchResponse *m, struct registry *up,
			   char *err, size_t errlen)
{
	size_t i;
	int rc;

	for (i = 0; i < m->n_upserts; i++) {
		const Weft__Registry__V1__Resource *res = m->upserts[i];

		switch (res->kind_case) {
		case WEFT__REGISTRY__V1__RESOURCE__KIND_NODE:
			rc = node_from_msg(res->node, &up->nodes[up->n_nodes++], err, errlen);
			break;
		case WEFT__REGISTRY__V1__RESOURCE__KIND_WORKLOAD:
			rc = workload_from_msg(res->workload, &up->workloads[up->n_workloads++],
					       err, errlen);
			break;
		case WEFT__REGISTRY__V1__RESOURCE__KIND_SERVICE:
			rc = service_from_msg(res->service, &up->services[up->n_services++],
					      err, errlen);
			break;
		case WEFT__REGISTRY__V1__RESOURCE__KIND_POLICY:
			rc = policy_from_msg(res->policy, &up->policies[up->n_policies++],
					     err, errlen);
			break;
		default:
			rc = fail(-EINVAL, err, errlen, "upsert %zu: no resource", i);
			break;
		}
		if (rc == -ENOMEM)
			return fail(rc, err, errlen, "out of memory");
		if (rc)
			return rc;
	}
	return 0;
}

/* Removal keys as probe elements of their kind, sorted, so one comparison
 * function serves both. Probe strings point into m; "ns/name" keys are
 * split in place (m is ours and dies with the apply). */
static int removals_probes(Weft__Registry__V1__WatchResponse *m, struct registry *probes,
			   char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < m->n_removals; i++) {
		Weft__Registry__V1__Removal *rm = m->removals[i];
		char *key = rm->key ? rm->key : "", *slash;
		struct esc e;

		switch (rm->kind) {
		case WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_NODE:
			probes->nodes[probes->n_nodes++].name = key;
			break;
		case WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD:
			probes->workloads[probes->n_workloads++].uid = key;
			break;
		case WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_SERVICE:
		case WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_POLICY:
			slash = strchr(key, '/');
			if (!slash)
				return fail(-EINVAL, err, errlen, "removal: bad key %s", esc(&e, key));
			*slash = '\0';
			if (rm->kind == WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_SERVICE) {
				probes->services[probes->n_services].namespace = key;
				probes->services[probes->n_services++].name = slash + 1;
			} else {
				probes->policies[probes->n_policies].namespace = key;
				probes->policies[probes->n_policies++].name = slash + 1;
			}
			break;
		default:
			return fail(-EINVAL, err, errlen, "removal %zu: unknown kind %d", i,
				    (int)rm->kind);
		}
	}
	for (i = 0; i < REGCACHE_KINDS; i++)
		if (*kind_n(probes, &kinds[i]) > 1)
			qsort(*kind_arr(probes, &kinds[i]), *kind_n(probes, &kinds[i]),
			      kinds[i].size, kinds[i].cmp);
	return 0;
}

/* Merge walk of kind k: next gets old's elements that are neither removed
 * nor replaced, plus every upsert, in key order; the old elements left
 * behind go to grave. Only moves element structs; cannot fail. */
static void kind_merge(const struct kind *k, struct registry *old, struct registry *up,
		       struct registry *probes, struct registry *next, struct registry *grave)
{
	size_t no = *kind_n(old, k), nu = *kind_n(up, k), np = *kind_n(probes, k);
	size_t i = 0, j = 0, *out = kind_n(next, k);

	while (i < no || j < nu) {
		void *o = i < no ? kind_elem(old, k, i) : NULL;
		void *u = j < nu ? kind_elem(up, k, j) : NULL;
		int d = !o ? 1 : !u ? -1 : k->cmp(o, u);

		if (d > 0) {
			memcpy(kind_elem(next, k, (*out)++), u, k->size);
			j++;
			continue;
		}
		if (d == 0) {
			memcpy(kind_elem(next, k, (*out)++), u, k->size);
			j++;
		} else if (!np || !bsearch(o, *kind_arr(probes, k), np, k->size, k->cmp)) {
			memcpy(kind_elem(next, k, (*out)++), o, k->size);
			i++;
			continue;
		}
		memcpy(kind_elem(grave, k, (*kind_n(grave, k))++), o, k->size);
		i++;
	}
}

/* A snapshot replaces everything and is taken whatever its version: the
 * agent numbers versions from 1 each time it starts, and the snapshot that
 * opens a new stream is the truth. Deltas must move strictly forward. */
/* The federated bundles of a response, checked: at most REG_BUNDLES_MAX,
 * each a trust domain (lowercase letters, digits, '.', '-', '_') once, in
 * order, and PEM certificates of bounded size. Into bt's bundles. */
static bool td_ok(const char *td)
{
	size_t tl = td ? strlen(td) : 0;

	return tl && tl <= 255 && strspn(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == tl;
}

static int bundles_decode(const Weft__Registry__V1__WatchResponse *m, struct registry *bt,
			  char *err, size_t errlen)
{
	if (m->n_federated > REG_BUNDLES_MAX)
		return fail(-EINVAL, err, errlen, "%zu federated bundles (at most %d)",
			    m->n_federated, REG_BUNDLES_MAX);
	if (!m->n_federated)
		return 0;
	bt->bundles = calloc(m->n_federated, sizeof(*bt->bundles));
	if (!bt->bundles)
		return fail(-ENOMEM, err, errlen, "out of memory");
	for (size_t i = 0; i < m->n_federated; i++) {
		const Weft__Registry__V1__TrustBundle *b = m->federated[i];
		const char *td = b->trust_domain ? b->trust_domain : "";
		size_t pl = b->pem ? strlen(b->pem) : 0;
		char why[128];
		int rc;

		if (!td_ok(td))
			return fail(-EINVAL, err, errlen, "federated bundle %zu: bad trust domain", i);
		if (i && strcmp(bt->bundles[i - 1].trust_domain, td) >= 0)
			return fail(-EINVAL, err, errlen, "federated bundles not sorted or repeated "
				    "(%s)", td);
		bt->bundles[i].trust_domain = strdup(td);
		bt->n_bundles = i + 1;
		if (!bt->bundles[i].trust_domain)
			return fail(-ENOMEM, err, errlen, "out of memory");
		if (pl > REG_BUNDLE_PEM_MAX)
			return fail(-EINVAL, err, errlen, "federated bundle of %s: over %u bytes",
				    td, REG_BUNDLE_PEM_MAX);
		rc = x509_ca_bundle(b->pem ? b->pem : "", pl, REG_BUNDLE_ROOTS_MAX,
				    REG_BUNDLE_PEM_MAX, &bt->bundles[i].pem, &pl, why, sizeof(why));
		if (rc)
			return fail(rc, err, errlen, "federated bundle of %s: %s", td, why);
	}
	return 0;
}

/* Printable ASCII without spaces, 1..max bytes. */
static bool token_ok(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

/* One remote network of a response into rm: its nodes, workloads and
 * services (no policies travel), each checked as an upsert is, unique by
 * key, every node of this network, every workload on one of its nodes. */
static int remote_decode(const Weft__Registry__V1__RemoteNetwork *m, struct reg_remote *rm,
			 char *err, size_t errlen)
{
	size_t n[REGCACHE_KINDS] = { m->n_nodes, m->n_workloads, m->n_services, 0 };
	struct registry *r;
	struct esc e;
	size_t i;
	int rc = 0;

	rm->unpooled = m->unpooled;
	if (!(rm->network = strdup(m->network)) || !(rm->trust_domain = strdup(m->trust_domain)) ||
	    !(rm->reg = r = registry_alloc(n)))
		return fail(-ENOMEM, err, errlen, "out of memory");
	for (i = 0; !rc && i < m->n_nodes; i++)
		rc = node_from_msg(m->nodes[i], &r->nodes[r->n_nodes++], err, errlen);
	for (i = 0; !rc && i < m->n_workloads; i++)
		rc = workload_from_msg(m->workloads[i], &r->workloads[r->n_workloads++], err, errlen);
	for (i = 0; !rc && i < m->n_services; i++)
		rc = service_from_msg(m->services[i], &r->services[r->n_services++], err, errlen);
	if (rc == -ENOMEM)
		return fail(rc, err, errlen, "out of memory");
	if (rc)
		return rc;
	for (size_t k = 0; k < 3; k++) {
		size_t cnt = *kind_n(r, &kinds[k]);

		if (cnt < 2)
			continue;
		qsort(*kind_arr(r, &kinds[k]), cnt, kinds[k].size, kinds[k].cmp);
		for (i = 1; i < cnt; i++)
			if (!kinds[k].cmp(kind_elem(r, &kinds[k], i - 1), kind_elem(r, &kinds[k], i)))
				return fail(-EINVAL, err, errlen, "%s: %s listed twice", rm->network,
					    kinds[k].what);
	}
	for (i = 0; i < r->n_nodes; i++)
		if (strcmp(r->nodes[i].network, rm->network))
			return fail(-EINVAL, err, errlen, "%s: node %s is of network %s",
				    rm->network, esc(&e, r->nodes[i].name), r->nodes[i].network);
	for (i = 0; i < r->n_workloads; i++)
		if (!node_find(r, r->workloads[i].node))
			return fail(-EINVAL, err, errlen, "%s: workload %s is on no node of it",
				    rm->network, esc(&e, r->workloads[i].uid));
	return 0;
}

/* The remote networks of a response (at most REG_REMOTES_MAX, each named
 * once, in order, with a valid trust domain) into *out; NULL for none. */
static int remotes_decode(const Weft__Registry__V1__WatchResponse *m, struct reg_remotes **out,
			  char *err, size_t errlen)
{
	struct reg_remotes *rs;
	int rc;

	*out = NULL;
	if (m->n_remotes > REG_REMOTES_MAX)
		return fail(-EINVAL, err, errlen, "%zu remote networks (at most %d)", m->n_remotes,
			    REG_REMOTES_MAX);
	if (!m->n_remotes)
		return 0;
	for (size_t i = 0; i < m->n_remotes; i++) {
		const Weft__Registry__V1__RemoteNetwork *x = m->remotes[i];

		if (!token_ok(x->network, 253))
			return fail(-EINVAL, err, errlen, "remote network %zu: bad name", i);
		if (i && strcmp(m->remotes[i - 1]->network, x->network) >= 0)
			return fail(-EINVAL, err, errlen, "remote networks not sorted or repeated");
		if (!td_ok(x->trust_domain))
			return fail(-EINVAL, err, errlen, "remote network %s: bad trust domain",
				    x->network);
	}
	rs = reg_remotes_new(m->n_remotes);
	if (!rs)
		return fail(-ENOMEM, err, errlen, "out of memory");
	for (size_t i = 0; i < m->n_remotes; i++) {
		rc = remote_decode(m->remotes[i], &rs->v[i], err, errlen);
		if (rc) {
			reg_remotes_unref(rs);
			return rc;
		}
	}
	*out = rs;
	return 0;
}

static int apply_msg(struct regcache *rc, const uint8_t *msg, size_t len, bool need_snapshot,
		     char *err, size_t errlen)
{
	Weft__Registry__V1__WatchResponse *m;
	struct registry *up = NULL, *probes = NULL, *next = NULL, *grave = NULL, *dups = NULL;
	struct registry empty = { 0 }, *old, bt = { 0 };
	struct reg_remotes *remotes = NULL;
	bool new_remotes = false;
	size_t n_up[REGCACHE_KINDS] = { 0 }, n_rm[REGCACHE_KINDS] = { 0 };
	size_t n_next[REGCACHE_KINDS], n_old[REGCACHE_KINDS];
	struct index idx, *ridx = NULL;
	char *td = NULL;
	size_t i, k;
	int ret;

	if (len > REGCACHE_MSG_MAX)
		return fail(-EINVAL, err, errlen, "message of %zu bytes exceeds %u", len,
			    REGCACHE_MSG_MAX);
	m = weft__registry__v1__watch_response__unpack(NULL, len, msg);
	if (!m)
		return fail(-EINVAL, err, errlen, "not a WatchResponse");
	if (need_snapshot && !m->snapshot) {
		ret = fail(-EINVAL, err, errlen, "not a snapshot");
		goto fail_msg;
	}
	if (!m->snapshot && !rc->ready) {
		ret = fail(-EINVAL, err, errlen, "delta (version %llu) before any snapshot",
			   (unsigned long long)m->version);
		goto fail_msg;
	}
	if (!m->snapshot && m->version <= rc->version) {
		ret = fail(-EINVAL, err, errlen, "delta version %llu does not follow %llu",
			   (unsigned long long)m->version, (unsigned long long)rc->version);
		goto fail_msg;
	}
	if (m->snapshot && m->n_removals) {
		ret = fail(-EINVAL, err, errlen, "snapshot with removals");
		goto fail_msg;
	}
	ret = bundles_decode(m, &bt, err, errlen);
	if (ret)
		goto fail_msg;
	if (m->snapshot || m->remotes_changed) {
		ret = remotes_decode(m, &remotes, err, errlen);
		if (ret)
			goto fail_msg;
		new_remotes = true;
	} else if (m->n_remotes) {
		ret = fail(-EINVAL, err, errlen, "remote networks in a delta without remotes_changed");
		goto fail_msg;
	}

	for (i = 0; i < m->n_upserts; i++) {
		int kc = m->upserts[i]->kind_case;

		if (kc >= 1 && kc <= REGCACHE_KINDS)
			n_up[kc - 1]++;
	}
	for (i = 0; i < m->n_removals; i++) {
		int kd = m->removals[i]->kind;

		if (kd >= 1 && kd <= REGCACHE_KINDS)
			n_rm[kd - 1]++;
	}
	ret = -ENOMEM;
	up = registry_alloc(n_up);
	dups = registry_alloc(n_up);
	probes = registry_alloc(n_rm);
	if (!up || !dups || !probes) {
		fail(ret, err, errlen, "out of memory");
		goto fail_up;
	}
	ret = upserts_convert(m, up, err, errlen);
	if (ret)
		goto fail_up;
	ret = removals_probes(m, probes, err, errlen);
	if (ret)
		goto fail_up;
	for (k = 0; k < REGCACHE_KINDS; k++) {
		ret = kind_sort_dedupe(up, &kinds[k], dups);
		if (ret) {
			fail(ret, err, errlen, "out of memory");
			goto fail_up;
		}
	}
	/* duplicates are owned by dups alone now */
	registry_free(dups);
	dups = NULL;

	old = m->snapshot ? &empty : rc->reg;
	for (k = 0; k < REGCACHE_KINDS; k++) {
		n_old[k] = *kind_n(rc->reg, &kinds[k]);
		n_next[k] = *kind_n(old, &kinds[k]) + *kind_n(up, &kinds[k]);
	}
	ret = -ENOMEM;
	next = registry_alloc(n_next);
	grave = registry_alloc(n_old);
	if (!next || !grave ||
	    (m->trust_domain && m->trust_domain[0] && !(td = strdup(m->trust_domain)))) {
		fail(ret, err, errlen, "out of memory");
		goto fail_next;
	}
	for (k = 0; k < REGCACHE_KINDS; k++)
		kind_merge(&kinds[k], old, up, probes, next, grave);
	if (m->snapshot) {
		/* everything old goes */
		for (k = 0; k < REGCACHE_KINDS; k++) {
			if (!n_old[k])
				continue;
			memcpy(*kind_arr(grave, &kinds[k]), *kind_arr(rc->reg, &kinds[k]),
			       n_old[k] * kinds[k].size);
			*kind_n(grave, &kinds[k]) = n_old[k];
		}
	}
	next->trust_domain = td;
	next->bundles = bt.bundles;
	next->n_bundles = bt.n_bundles;
	next->remotes = new_remotes ? remotes : rc->reg->remotes;
	ret = index_build(&idx, next, rc->reg, &rc->idx);
	if (ret) {
		fail(ret, err, errlen, "out of memory");
		goto fail_next;
	}
	if (new_remotes &&
	    (ret = remote_indexes_build(&ridx, remotes, rc->reg->remotes, rc->ridx))) {
		index_deinit(&idx);
		fail(ret, err, errlen, "out of memory");
		goto fail_next;
	}

	/* commit: nothing below can fail */
	grave->trust_domain = rc->reg->trust_domain;
	grave->bundles = rc->reg->bundles;
	grave->n_bundles = rc->reg->n_bundles;
	if (new_remotes) {
		remote_indexes_free(rc->ridx, rc->reg->remotes ? rc->reg->remotes->n : 0);
		rc->ridx = ridx;
		grave->remotes = rc->reg->remotes;
	}
	registry_shallow_free(rc->reg);
	registry_free(grave);
	registry_shallow_free(up);
	registry_shallow_free(probes);
	rc->reg = next;
	index_deinit(&rc->idx);
	rc->idx = idx;
	rc->version = m->version;
	rc->ready = true;
	weft__registry__v1__watch_response__free_unpacked(m, NULL);
	return 0;

fail_next:
	free(td);
	if (next)
		next->remotes = NULL;
	registry_shallow_free(grave);
	registry_shallow_free(next);
fail_up:
	registry_free(dups);
	registry_shallow_free(probes);
	registry_free(up);
fail_msg:
	registry_bundles_free(&bt);
	reg_remotes_unref(remotes);
	weft__registry__v1__watch_response__free_unpacked(m, NULL);
	return ret;
}

int regcache_apply(struct regcache *rc, const uint8_t *msg, size_t len,
		   char *err, size_t errlen)
{
	return apply_msg(rc, msg, len, false, err, errlen);
}

int regcache_apply_snapshot(struct regcache *rc, const uint8_t *msg, size_t len,
			    char *err, size_t errlen)
{
	return apply_msg(rc, msg, len, true, err, errlen);
}

int regcache_ready(const struct regcache *rc)
{
	return rc->ready;
}

uint64_t regcache_version(const struct regcache *rc)
{
	return rc->version;
}

const char *regcache_trust_domain(const struct regcache *rc)
{
	return rc->reg->trust_domain ? rc->reg->trust_domain : "";
}

const struct registry *regcache_registry(const struct regcache *rc)
{
	return rc->reg;
}

/* ---- lookups ------------------------------------------------------------- */

/* addr's entry in a sorted IP index, or NULL. */
static const struct ip_entry *ip_index_find(const struct ip_entry *v, size_t n,
					    const struct sockaddr *addr)
{
	struct ip_entry key = { 0 };
	uint16_t port;

	key.len = sockaddr_parse(addr, key.addr, &port);
	if (!key.len || !n)
		return NULL;
	return bsearch(&key, v, n, sizeof(key), ip_key_cmp);
}

const struct reg_workload *regcache_workload_by_ip(const struct regcache *rc,
						   const struct sockaddr *addr)
{
	const struct ip_entry *e = ip_index_find(rc->idx.ips, rc->idx.n_ips, addr);

	return e ? &rc->reg->workloads[e->w] : NULL;
}

const struct reg_node *regcache_node_by_ip(const struct regcache *rc,
					   const struct sockaddr *addr)
{
	const struct ip_entry *e = ip_index_find(rc->idx.node_ips, rc->idx.n_node_ips, addr);

	return e ? &rc->reg->nodes[e->w] : NULL;
}

const struct reg_workload *regcache_workload(const struct regcache *rc, const char *uid)
{
	return workload_find(rc->reg, uid);
}

const struct reg_node *regcache_node(const struct regcache *rc, const char *name)
{
	return node_find(rc->reg, name);
}

const struct reg_service *regcache_service(const struct regcache *rc, const char *ns,
					   const char *name)
{
	struct reg_service key = { .namespace = (char *)ns, .name = (char *)name };

	if (!rc->reg->n_services || !ns || !name)
		return NULL;
	return bsearch(&key, rc->reg->services, rc->reg->n_services, sizeof(key), service_cmp);
}

static const struct vip_entry *vip_find(const struct index *x, const struct vip_entry *key)
{
	return x->n_vips ? bsearch(key, x->vips, x->n_vips, sizeof(*key), vip_key_cmp) : NULL;
}

/* This network's VIPs first: a remote VIP equal to a local VIP, pod or
 * node address is never reached (the importing agent gives remote services
 * other addresses; this holds whatever it did). */
const struct reg_service *regcache_service_by_vip(const struct regcache *rc,
						  const struct sockaddr *addr,
						  uint16_t *target_port)
{
	const struct reg_remotes *rs = rc->reg->remotes;
	const struct registry *r = rc->reg;
	struct vip_entry key = { 0 };
	const struct vip_entry *e;

	key.len = sockaddr_parse(addr, key.addr, &key.port);
	if (!key.len)
		return NULL;
	e = vip_find(&rc->idx, &key);
	/* Nor a remote VIP on one of our pods' or nodes' addresses. */
	if (!e && rs && (ip_index_find(rc->idx.ips, rc->idx.n_ips, addr) ||
			 ip_index_find(rc->idx.node_ips, rc->idx.n_node_ips, addr)))
		return NULL;
	for (size_t i = 0; !e && rs && i < rs->n; i++)
		if ((e = vip_find(&rc->ridx[i], &key)))
			r = rs->v[i].reg;
	if (!e)
		return NULL;
	if (target_port)
		*target_port = e->target_port;
	return &r->services[e->s];
}

/* The index and remote network (NULL: this one) whose registry holds svc. */
static const struct index *service_index(const struct regcache *rc, const struct reg_service *svc,
					 const struct reg_remote **remote, const struct registry **reg)
{
	const struct reg_remotes *rs = rc->reg->remotes;

	*remote = NULL;
	*reg = rc->reg;
	if (!svc)
		return NULL;
	if (svc >= rc->reg->services && svc < rc->reg->services + rc->reg->n_services)
		return &rc->idx;
	for (size_t i = 0; rs && i < rs->n; i++) {
		const struct registry *r = rs->v[i].reg;

		if (svc >= r->services && svc < r->services + r->n_services) {
			*remote = &rs->v[i];
			*reg = r;
			return &rc->ridx[i];
		}
	}
	return NULL;	/* not ours, or from before the last apply */
}

/* svc's round-robin state, or NULL when svc is not of the current registry. */
static struct svc_rr *service_rr(const struct regcache *rc, const struct reg_service *svc)
{
	const struct reg_remote *rm;
	const struct registry *r;
	const struct index *x = service_index(rc, svc, &rm, &r);

	return x ? &x->rr[svc - r->services] : NULL;
}

const struct reg_remote *regcache_service_remote(const struct regcache *rc,
						 const struct reg_service *svc)
{
	const struct reg_remote *rm;
	const struct registry *r;

	service_index(rc, svc, &rm, &r);
	return rm;
}

const struct reg_node *regcache_remote_node(const struct reg_remote *rm, const char *name)
{
	return rm ? node_find(rm->reg, name) : NULL;
}

const struct reg_node *regcache_remote_gateway(const struct reg_remote *rm)
{
	for (size_t i = 0; rm && i < rm->reg->n_nodes; i++)
		if (rm->reg->nodes[i].gateway_address)
			return &rm->reg->nodes[i];
	return NULL;
}

const struct reg_workload *regcache_service_pick(struct regcache *rc,
						 const struct reg_service *svc)
{
	struct svc_rr *rr = service_rr(rc, svc);

	if (!rr || !rr->n_ready)
		return NULL;
	rr->cursor %= rr->n_ready;
	return rr->ready[rr->cursor++];
}

const struct reg_workload *regcache_service_peek(const struct regcache *rc,
						 const struct reg_service *svc)
{
	const struct svc_rr *rr = service_rr(rc, svc);

	return rr && rr->n_ready ? rr->ready[rr->cursor % rr->n_ready] : NULL;
}

/* ---- persistence ------------------------------------------------------- */

int regcache_snapshot(const struct regcache *rc, uint8_t **buf, size_t *len)
{
	/* an empty cache must not overwrite the last good snapshot */
	if (!rc->ready)
		return -ENODATA;
	return regproto_snapshot(rc->reg, rc->version, buf, len);
}

struct regcache *regcache_clone(const struct regcache *rc, char *err, size_t errlen)
{
	struct regcache *c = regcache_new();
	uint8_t *buf;
	size_t len;
	int ret;

	if (!c || !rc->ready)
		return c;
	/* Through the wire form: the same validation and indexes as any
	 * snapshot, and nothing shared with rc. */
	ret = regcache_snapshot(rc, &buf, &len);
	if (!ret) {
		ret = apply_msg(c, buf, len, true, err, errlen);
		free(buf);
	} else {
		fail(ret, err, errlen, "out of memory");
	}
	if (ret) {
		regcache_free(c);
		return NULL;
	}
	return c;
}

int regcache_save(const struct regcache *rc, const char *path)
{
	uint8_t *buf;
	size_t len;
	int ret;

	ret = regcache_snapshot(rc, &buf, &len);
	if (ret)
		return ret;
	ret = file_write_atomic(path, buf, len, 0600);
	free(buf);
	return ret;
}

int regcache_load(struct regcache *rc, const char *path, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int ret;

	ret = file_read(path, REGCACHE_MSG_MAX, &buf, &len);
	if (ret)
		return fail(ret, err, errlen, "%s: %s", path, strerror(-ret));
	ret = apply_msg(rc, (const uint8_t *)buf, len, true, err, errlen);
	free(buf);
	return ret;
}
