/* SPDX-License-Identifier: Apache-2.0 */
/* struct registry -> weft.registry.v1.WatchResponse: a full snapshot, or
 * the delta between two registries. Messages point into the registry's
 * own strings (packing only reads them); everything else comes from a
 * per-call arena released in one go. Output is deterministic: resources go
 * out by kind (nodes, workloads, services, policies), each kind sorted by
 * key, and map entries sorted by key. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "registry.pb-c.h"
#include <weft/registry.h>
#include <weft/regproto.h>

/* ---- arena ------------------------------------------------------------- */

struct arena {
	void **v;
	size_t n, cap;
	bool failed;	/* any allocation failed: the result must be dropped */
};

/* Zeroed memory owned by a; NULL for size 0 (not a failure) or when out of
 * memory (a->failed set). */
static void *arena_alloc(struct arena *a, size_t size)
{
	void *p;

	if (size == 0 || a->failed)
		return NULL;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void **v = realloc(a->v, cap * sizeof(*v));

		if (!v) {
			a->failed = true;
			return NULL;
		}
		a->v = v;
		a->cap = cap;
	}
	p = calloc(1, size);
	if (!p) {
		a->failed = true;
		return NULL;
	}
	a->v[a->n++] = p;
	return p;
}

static void arena_release(struct arena *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

/* Registry strings are never NULL after parsing, but "" keeps a hand-built
 * registry from crashing the packer. */
static char *s_(const char *s)
{
	return (char *)(s ? s : "");
}

/* ---- resource messages ----------------------------------------------------- */

/* The three map entry types have one shape but distinct descriptors. Sets
 * *out and *nout (left alone for no labels); false when out of memory. */
#define DEFINE_ENTRIES(fn, T, INIT)						\
static bool fn(struct arena *a, const struct reg_label *l, size_t n,		\
	       T ***out, size_t *nout)						\
{										\
	T **v, *e;								\
	size_t i;								\
										\
	if (n == 0)								\
		return true;							\
	v = arena_alloc(a, n * sizeof(*v));					\
	e = arena_alloc(a, n * sizeof(*e));					\
	if (!v || !e)								\
		return false;							\
	for (i = 0; i < n; i++) {						\
		T init = INIT;							\
										\
		e[i] = init;							\
		e[i].key = s_(l[i].key);					\
		e[i].value = s_(l[i].value);					\
		v[i] = &e[i];							\
	}									\
	*out = v;								\
	*nout = n;								\
	return true;								\
}

DEFINE_ENTRIES(workload_labels, Weft__Registry__V1__Workload__LabelsEntry,
	       WEFT__REGISTRY__V1__WORKLOAD__LABELS_ENTRY__INIT)
DEFINE_ENTRIES(service_selector, Weft__Registry__V1__Service__SelectorEntry,
	       WEFT__REGISTRY__V1__SERVICE__SELECTOR_ENTRY__INIT)
DEFINE_ENTRIES(policy_selector, Weft__Registry__V1__Policy__SelectorEntry,
	       WEFT__REGISTRY__V1__POLICY__SELECTOR_ENTRY__INIT)

/* n initialised messages of type desc behind the array of pointers that a
 * repeated message field holds (returned); NULL when out of memory. */
static void *message_array(struct arena *a, const ProtobufCMessageDescriptor *desc, size_t n)
{
	void **v = arena_alloc(a, n * sizeof(*v));
	char *m = arena_alloc(a, n * desc->sizeof_message);
	size_t i;

	if (!v || !m)
		return NULL;
	for (i = 0; i < n; i++) {
		v[i] = m + i * desc->sizeof_message;
		protobuf_c_message_init(desc, v[i]);
	}
	return v;
}

static bool node_fill(struct arena *a, const struct registry *r, size_t i, void *msg)
{
	const struct reg_node *n = &r->nodes[i];
	Weft__Registry__V1__Node *m = msg;

	(void)a;
	m->name = s_(n->name);
	m->address = s_(n->address);
	m->hbone_port = n->hbone_port;
	m->cluster = s_(n->cluster);
	m->network = s_(n->network);
	m->gateway_address = s_(n->gateway_address);
	return true;
}

static bool workload_fill(struct arena *a, const struct registry *r, size_t i, void *msg)
{
	const struct reg_workload *w = &r->workloads[i];
	Weft__Registry__V1__Workload *m = msg;

	m->uid = s_(w->uid);
	m->name = s_(w->name);
	m->namespace_ = s_(w->namespace);
	m->service_account = s_(w->service_account);
	m->node = s_(w->node);
	m->n_ips = w->n_ips;
	m->ips = w->ips;
	m->tunnel = w->tunnel == REG_TUNNEL_HBONE ? WEFT__REGISTRY__V1__TUNNEL_PROTOCOL__TUNNEL_HBONE
						  : WEFT__REGISTRY__V1__TUNNEL_PROTOCOL__TUNNEL_NONE;
	return workload_labels(a, w->labels, w->n_labels, &m->labels, &m->n_labels);
}

static bool service_fill(struct arena *a, const struct registry *r, size_t i, void *msg)
{
	const struct reg_service *s = &r->services[i];
	Weft__Registry__V1__Service *m = msg;
	size_t k;

	m->namespace_ = s_(s->namespace);
	m->name = s_(s->name);
	m->n_vips = s->n_vips;
	m->vips = s->vips;
	m->n_endpoints = s->n_endpoints;
	m->endpoints = s->endpoints;
	if (s->n_ports) {
		m->ports = message_array(a, &weft__registry__v1__service_port__descriptor,
					 s->n_ports);
		if (!m->ports)
			return false;
		for (k = 0; k < s->n_ports; k++) {
			m->ports[k]->port = s->ports[k].port;
			m->ports[k]->target_port = s->ports[k].target_port;
		}
		m->n_ports = s->n_ports;
	}
	return service_selector(a, s->selector, s->n_selector, &m->selector, &m->n_selector);
}

/* uint16 ports widened for the repeated uint32 field. Returns false when
 * out of memory. */
static bool ports_widen(struct arena *a, const struct reg_portv *pv, uint32_t **out, size_t *n)
{
	size_t i;

	if (pv->n == 0)
		return true;
	*out = arena_alloc(a, pv->n * sizeof(**out));
	if (!*out)
		return false;
	for (i = 0; i < pv->n; i++)
		(*out)[i] = pv->v[i];
	*n = pv->n;
	return true;
}

static bool policy_fill(struct arena *a, const struct registry *r, size_t i, void *msg)
{
	const struct reg_policy *po = &r->policies[i];
	Weft__Registry__V1__Policy *m = msg;
	size_t k;

	m->name = s_(po->name);
	m->namespace_ = s_(po->namespace);
	switch (po->scope) {
	case REG_SCOPE_NAMESPACE:
		m->scope = WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_NAMESPACE;
		break;
	case REG_SCOPE_WORKLOAD:
		m->scope = WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_WORKLOAD_SELECTOR;
		break;
	default:
		m->scope = WEFT__REGISTRY__V1__POLICY_SCOPE__SCOPE_GLOBAL;
		break;
	}
	m->action = po->action == REG_ACTION_DENY ? WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_DENY
						  : WEFT__REGISTRY__V1__POLICY_ACTION__ACTION_ALLOW;
	if (!policy_selector(a, po->selector, po->n_selector, &m->selector, &m->n_selector))
		return false;
	if (po->n_rules) {
		m->rules = message_array(a, &weft__registry__v1__policy_rule__descriptor,
					 po->n_rules);
		if (!m->rules)
			return false;
		for (k = 0; k < po->n_rules; k++) {
			const struct reg_rule *ru = &po->rules[k];
			Weft__Registry__V1__PolicyRule *pr = m->rules[k];

			pr->n_principals = ru->principals.n;
			pr->principals = ru->principals.v;
			pr->n_not_principals = ru->not_principals.n;
			pr->not_principals = ru->not_principals.v;
			pr->n_namespaces = ru->namespaces.n;
			pr->namespaces = ru->namespaces.v;
			pr->n_not_namespaces = ru->not_namespaces.n;
			pr->not_namespaces = ru->not_namespaces.v;
			pr->n_source_ips = ru->source_ips.n;
			pr->source_ips = ru->source_ips.v;
			pr->n_not_source_ips = ru->not_source_ips.n;
			pr->not_source_ips = ru->not_source_ips.v;
			if (!ports_widen(a, &ru->ports, &pr->destination_ports,
					 &pr->n_destination_ports) ||
			    !ports_widen(a, &ru->not_ports, &pr->not_destination_ports,
					 &pr->n_not_destination_ports))
				return false;
		}
		m->n_rules = po->n_rules;
	}
	return true;
}

/* ---- kinds: count, key order, build -------------------------------------- */

static int ns_name_cmp(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
	int d = strcmp(s_(ns1), s_(ns2));

	return d ? d : strcmp(s_(n1), s_(n2));
}

static int node_key_cmp(const struct registry *x, size_t i, const struct registry *y, size_t j)
{
	return strcmp(s_(x->nodes[i].name), s_(y->nodes[j].name));
}

static int workload_key_cmp(const struct registry *x, size_t i, const struct registry *y, size_t j)
{
	return strcmp(s_(x->workloads[i].uid), s_(y->workloads[j].uid));
}

static int service_key_cmp(const struct registry *x, size_t i, const struct registry *y, size_t j)
{
	return ns_name_cmp(x->services[i].namespace, x->services[i].name,
			   y->services[j].namespace, y->services[j].name);
}

static int policy_key_cmp(const struct registry *x, size_t i, const struct registry *y, size_t j)
{
	return ns_name_cmp(x->policies[i].namespace, x->policies[i].name,
			   y->policies[j].namespace, y->policies[j].name);
}

static size_t node_count(const struct registry *r) { return r->n_nodes; }
static size_t workload_count(const struct registry *r) { return r->n_workloads; }
static size_t service_count(const struct registry *r) { return r->n_services; }
static size_t policy_count(const struct registry *r) { return r->n_policies; }

/* Weft__Registry__V1__Removal key: node name, workload uid, "<namespace>/<name>" otherwise. */
static char *key_join(struct arena *a, const char *ns, const char *name)
{
	size_t l1 = strlen(s_(ns)), l2 = strlen(s_(name));
	char *k = arena_alloc(a, l1 + l2 + 2);

	if (!k)
		return NULL;
	memcpy(k, s_(ns), l1);
	k[l1] = '/';
	memcpy(k + l1 + 1, s_(name), l2 + 1);
	return k;
}

static char *node_key(struct arena *a, const struct registry *r, size_t i)
{
	(void)a;
	return s_(r->nodes[i].name);
}

static char *workload_key(struct arena *a, const struct registry *r, size_t i)
{
	(void)a;
	return s_(r->workloads[i].uid);
}

static char *service_key(struct arena *a, const struct registry *r, size_t i)
{
	return key_join(a, r->services[i].namespace, r->services[i].name);
}

static char *policy_key(struct arena *a, const struct registry *r, size_t i)
{
	return key_join(a, r->policies[i].namespace, r->policies[i].name);
}

struct kind {
	Weft__Registry__V1__ResourceKind kind;
	Weft__Registry__V1__Resource__KindCase kind_case;
	const ProtobufCMessageDescriptor *desc;		/* of the resource message */
	size_t (*count)(const struct registry *r);
	int (*cmp)(const struct registry *x, size_t i, const struct registry *y, size_t j);
	/* Sets the fields of msg from resource i; false when out of memory. */
	bool (*fill)(struct arena *a, const struct registry *r, size_t i, void *msg);
	char *(*key)(struct arena *a, const struct registry *r, size_t i);
};

/* Upserts go out in this order so a consumer applying them one by one
 * never sees a workload before its node. */
static const struct kind kinds[] = {
	{ WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_NODE, WEFT__REGISTRY__V1__RESOURCE__KIND_NODE,
	  &weft__registry__v1__node__descriptor, node_count, node_key_cmp, node_fill, node_key },
	{ WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_WORKLOAD, WEFT__REGISTRY__V1__RESOURCE__KIND_WORKLOAD,
	  &weft__registry__v1__workload__descriptor, workload_count, workload_key_cmp, workload_fill, workload_key },
	{ WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_SERVICE, WEFT__REGISTRY__V1__RESOURCE__KIND_SERVICE,
	  &weft__registry__v1__service__descriptor, service_count, service_key_cmp, service_fill, service_key },
	{ WEFT__REGISTRY__V1__RESOURCE_KIND__KIND_POLICY, WEFT__REGISTRY__V1__RESOURCE__KIND_POLICY,
	  &weft__registry__v1__policy__descriptor, policy_count, policy_key_cmp, policy_fill, policy_key },
};

/* Resource i of r, of kind k; NULL when out of memory. */
static Weft__Registry__V1__Resource *resource_build(struct arena *a, const struct kind *k,
						    const struct registry *r, size_t i)
{
	Weft__Registry__V1__Resource *res = arena_alloc(a, sizeof(*res));
	void *m = arena_alloc(a, k->desc->sizeof_message);

	if (!res || !m)
		return NULL;
	weft__registry__v1__resource__init(res);
	protobuf_c_message_init(k->desc, m);
	res->kind_case = k->kind_case;
	switch (k->kind_case) {
	case WEFT__REGISTRY__V1__RESOURCE__KIND_NODE:
		res->node = m;
		break;
	case WEFT__REGISTRY__V1__RESOURCE__KIND_WORKLOAD:
		res->workload = m;
		break;
	case WEFT__REGISTRY__V1__RESOURCE__KIND_SERVICE:
		res->service = m;
		break;
	default:
		res->policy = m;
		break;
	}
	return k->fill(a, r, i, m) ? res : NULL;
}

struct order_ctx {
	const struct kind *k;
	const struct registry *r;
};

static int order_cmp(const void *a, const void *b, void *arg)
{
	const struct order_ctx *c = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int d = c->k->cmp(c->r, i, c->r, j);

	return d ? d : (i > j) - (i < j);
}

/* Indices of r's resources of kind k sorted by key. The parser already
 * sorts, but the wire order must not depend on that. */
static size_t *kind_order(struct arena *a, const struct kind *k, const struct registry *r)
{
	struct order_ctx c = { k, r };
	size_t n = k->count(r), i, *idx;

	idx = arena_alloc(a, n * sizeof(*idx));
	if (!idx)
		return NULL;
	for (i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), order_cmp, &c);
	return idx;
}

static size_t total(const struct registry *r)
{
	return r->n_nodes + r->n_workloads + r->n_services + r->n_policies;
}

/* Packs resp into a malloc'd buffer. */
static int response_pack(const Weft__Registry__V1__WatchResponse *resp, uint8_t **out, size_t *len)
{
	size_t n = weft__registry__v1__watch_response__get_packed_size(resp);
	uint8_t *buf = malloc(n ? n : 1);

	if (!buf)
		return -ENOMEM;
	*len = weft__registry__v1__watch_response__pack(resp, buf);
	*out = buf;
	return 0;
}

/* resp->federated from r's bundles (pointers into r). */
static void bundles_put(struct arena *a, const struct registry *r,
			Weft__Registry__V1__WatchResponse *resp)
{
	Weft__Registry__V1__TrustBundle *b;

	if (!r->n_bundles)
		return;
	resp->federated = arena_alloc(a, r->n_bundles * sizeof(*resp->federated));
	b = arena_alloc(a, r->n_bundles * sizeof(*b));
	if (!resp->federated || !b)
		return;
	for (size_t i = 0; i < r->n_bundles; i++) {
		weft__registry__v1__trust_bundle__init(&b[i]);
		b[i].trust_domain = s_(r->bundles[i].trust_domain);
		b[i].pem = s_(r->bundles[i].pem);
		resp->federated[i] = &b[i];
	}
	resp->n_federated = r->n_bundles;
}

static bool bundles_differ(const struct registry *a, const struct registry *b)
{
	if (a->n_bundles != b->n_bundles)
		return true;
	for (size_t i = 0; i < a->n_bundles; i++)
		if (strcmp(a->bundles[i].trust_domain, b->bundles[i].trust_domain) ||
		    strcmp(a->bundles[i].pem, b->bundles[i].pem))
			return true;
	return false;
}

/* Every resource of kind k in r as messages, in key order (*n of them);
 * NULL for none or when out of memory (a->failed). */
static void **kind_messages(struct arena *a, const struct kind *k, const struct registry *r,
			    size_t *n)
{
	size_t cnt = k->count(r), *idx = kind_order(a, k, r), i;
	void **v;

	*n = 0;
	if (!cnt)
		return NULL;
	v = message_array(a, k->desc, cnt);
	if (!v || !idx) {
		a->failed = true;
		return NULL;
	}
	for (i = 0; i < cnt; i++) {
		if (!k->fill(a, r, idx[i], v[i])) {
			a->failed = true;
			return NULL;
		}
	}
	*n = cnt;
	return v;
}

/* resp->remotes from r's remote networks (pointers into r). */
static void remotes_put(struct arena *a, const struct registry *r,
			Weft__Registry__V1__WatchResponse *resp)
{
	const struct reg_remotes *rs = r->remotes;
	Weft__Registry__V1__RemoteNetwork *m;

	if (!rs || !rs->n)
		return;
	resp->remotes = arena_alloc(a, rs->n * sizeof(*resp->remotes));
	m = arena_alloc(a, rs->n * sizeof(*m));
	if (!resp->remotes || !m)
		return;
	for (size_t i = 0; i < rs->n; i++) {
		const struct registry *x = rs->v[i].reg;

		weft__registry__v1__remote_network__init(&m[i]);
		m[i].network = s_(rs->v[i].network);
		m[i].trust_domain = s_(rs->v[i].trust_domain);
		m[i].unpooled = rs->v[i].unpooled;
		m[i].nodes = (Weft__Registry__V1__Node **)kind_messages(a, &kinds[0], x,
									 &m[i].n_nodes);
		m[i].workloads = (Weft__Registry__V1__Workload **)kind_messages(a, &kinds[1], x,
										 &m[i].n_workloads);
		m[i].services = (Weft__Registry__V1__Service **)kind_messages(a, &kinds[2], x,
									       &m[i].n_services);
		resp->remotes[i] = &m[i];
	}
	resp->n_remotes = rs->n;
}

/* The remote networks of r, encoded (a response holding only them); NULL
 * with *len 0 for none. false when out of memory. */
static bool remotes_bytes(const struct registry *r, uint8_t **out, size_t *len)
{
	Weft__Registry__V1__WatchResponse resp = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	struct arena a = { 0 };
	bool ok;

	*out = NULL;
	*len = 0;
	remotes_put(&a, r, &resp);
	ok = !a.failed && (!resp.n_remotes || !response_pack(&resp, out, len));
	arena_release(&a);
	return ok;
}

/* Sets *differ when prev and next do not carry the same remote networks.
 * false when out of memory. */
static bool remotes_differ(const struct registry *prev, const struct registry *next,
			   bool *differ)
{
	uint8_t *x, *y;
	size_t lx, ly;

	*differ = false;
	if (prev->remotes == next->remotes)
		return true;
	if (!remotes_bytes(prev, &x, &lx))
		return false;
	if (!remotes_bytes(next, &y, &ly)) {
		free(x);
		return false;
	}
	*differ = lx != ly || (lx && memcmp(x, y, lx));
	free(x);
	free(y);
	return true;
}

int regproto_snapshot(const struct registry *r, uint64_t version,
		      uint8_t **out, size_t *len)
{
	Weft__Registry__V1__WatchResponse resp = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	struct arena a = { 0 };
	size_t ki, i, n;
	int rc;

	*out = NULL;
	*len = 0;
	resp.version = version;
	resp.snapshot = 1;
	resp.trust_domain = s_(r->trust_domain);
	bundles_put(&a, r, &resp);
	remotes_put(&a, r, &resp);
	resp.upserts = arena_alloc(&a, total(r) * sizeof(*resp.upserts));
	for (ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]) && !a.failed; ki++) {
		const struct kind *k = &kinds[ki];
		size_t *idx = kind_order(&a, k, r);

		n = k->count(r);
		for (i = 0; i < n && !a.failed; i++) {
			Weft__Registry__V1__Resource *res = resource_build(&a, k, r, idx[i]);

			if (res)
				resp.upserts[resp.n_upserts++] = res;
		}
	}
	rc = a.failed ? -ENOMEM : response_pack(&resp, out, len);
	arena_release(&a);
	return rc;
}

/* Sets *differs when the two resources' encodings differ. Encoding is
 * deterministic (fixed field order, map entries sorted by key), so equal
 * bytes mean equal resources. Returns false when out of memory. */
static bool resource_differs(const Weft__Registry__V1__Resource *x,
			     const Weft__Registry__V1__Resource *y, bool *differs)
{
	size_t lx = weft__registry__v1__resource__get_packed_size(x);
	size_t ly = weft__registry__v1__resource__get_packed_size(y);
	uint8_t *bx, *by;

	if (lx != ly) {
		*differs = true;
		return true;
	}
	bx = malloc(lx ? lx : 1);
	by = malloc(ly ? ly : 1);
	if (!bx || !by) {
		free(bx);
		free(by);
		return false;
	}
	weft__registry__v1__resource__pack(x, bx);
	weft__registry__v1__resource__pack(y, by);
	*differs = memcmp(bx, by, lx) != 0;
	free(bx);
	free(by);
	return true;
}

static Weft__Registry__V1__Removal *removal_new(struct arena *a, const struct kind *k,
						 const struct registry *r, size_t i)
{
	Weft__Registry__V1__Removal *rm = arena_alloc(a, sizeof(*rm));

	if (!rm)
		return NULL;
	weft__registry__v1__removal__init(rm);
	rm->kind = k->kind;
	rm->key = k->key(a, r, i);
	return rm->key ? rm : NULL;
}

/* Merge walk over one kind, both sides in key order. */
static void kind_delta(struct arena *a, const struct kind *k, const struct registry *prev,
		       const struct registry *next, Weft__Registry__V1__WatchResponse *resp)
{
	size_t np = k->count(prev), nn = k->count(next), i = 0, j = 0;
	size_t *ip = kind_order(a, k, prev), *in = kind_order(a, k, next);

	while (!a->failed && (i < np || j < nn)) {
		int d = i == np ? 1 : j == nn ? -1 : k->cmp(prev, ip[i], next, in[j]);

		if (d < 0) {
			Weft__Registry__V1__Removal *rm = removal_new(a, k, prev, ip[i++]);

			if (rm)
				resp->removals[resp->n_removals++] = rm;
		} else if (d > 0) {
			Weft__Registry__V1__Resource *res = resource_build(a, k, next, in[j++]);

			if (res)
				resp->upserts[resp->n_upserts++] = res;
		} else {
			Weft__Registry__V1__Resource *x = resource_build(a, k, prev, ip[i++]);
			Weft__Registry__V1__Resource *y = resource_build(a, k, next, in[j++]);
			bool differs = false;

			if (!x || !y)
				break;
			if (!resource_differs(x, y, &differs)) {
				a->failed = true;
				break;
			}
			if (differs)
				resp->upserts[resp->n_upserts++] = y;
		}
	}
}

int regproto_delta(const struct registry *prev, const struct registry *next,
		   uint64_t version, uint8_t **out, size_t *len)
{
	Weft__Registry__V1__WatchResponse resp = WEFT__REGISTRY__V1__WATCH_RESPONSE__INIT;
	struct arena a = { 0 };
	bool td_changed, remotes_changed;
	size_t ki;
	int rc = 0;

	*out = NULL;
	*len = 0;
	resp.version = version;
	resp.snapshot = 0;
	/* Always the full value, so a consumer can simply take it. */
	resp.trust_domain = s_(next->trust_domain);
	td_changed = strcmp(s_(prev->trust_domain), s_(next->trust_domain)) != 0 ||
		     bundles_differ(prev, next);
	bundles_put(&a, next, &resp);
	if (!remotes_differ(prev, next, &remotes_changed))
		a.failed = true;
	if (remotes_changed && !a.failed) {
		resp.remotes_changed = 1;
		remotes_put(&a, next, &resp);
	}
	resp.upserts = arena_alloc(&a, total(next) * sizeof(*resp.upserts));
	resp.removals = arena_alloc(&a, total(prev) * sizeof(*resp.removals));
	for (ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]) && !a.failed; ki++)
		kind_delta(&a, &kinds[ki], prev, next, &resp);
	if (a.failed)
		rc = -ENOMEM;
	else if (resp.n_upserts || resp.n_removals || td_changed || remotes_changed)
		rc = response_pack(&resp, out, len);
	arena_release(&a);
	return rc;
}
