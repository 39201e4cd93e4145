/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster registry: parse the YAML registry file into an owned struct
 * (I/O-free: bytes in, registry or "file:line: what is wrong" out), and
 * compute the delta between two registries. */
#ifndef WEFT_REGISTRY_H
#define WEFT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define REG_ERR_MAX 512

struct reg_label {
	char *key;
	char *value;
};

struct reg_node {
	char *name;
	char *address;		/* IPv4 or IPv6 literal, validated */
	uint16_t hbone_port;	/* default 15008 */
	char *cluster;		/* default "" */
	char *network;		/* default "" */
	char *gateway_address;	/* the network's gateway: its WAN address; else NULL */
};

enum reg_tunnel {
	REG_TUNNEL_NONE = 0,
	REG_TUNNEL_HBONE,
};

struct reg_workload {
	char *uid;		/* default "<namespace>/<name>" */
	char *name;
	char *namespace;
	char *service_account;	/* default "default" */
	char *node;		/* must name a node in the file */
	char **ips;		/* validated literals */
	size_t n_ips;
	enum reg_tunnel tunnel;	/* default HBONE */
	struct reg_label *labels;
	size_t n_labels;	/* sorted by key */
};

struct reg_port {
	uint16_t port;
	uint16_t target_port;	/* default = port */
};

struct reg_service {
	char *namespace;
	char *name;
	char **vips;
	size_t n_vips;
	struct reg_port *ports;
	size_t n_ports;
	struct reg_label *selector;
	size_t n_selector;
	char **endpoints;	/* uids of workloads in the namespace matching selector, sorted */
	size_t n_endpoints;
};

enum reg_scope {
	REG_SCOPE_GLOBAL = 0,
	REG_SCOPE_NAMESPACE,
	REG_SCOPE_WORKLOAD,
};

enum reg_action {
	REG_ACTION_ALLOW = 0,
	REG_ACTION_DENY,
};

struct reg_strv {
	char **v;
	size_t n;
};

struct reg_portv {
	uint16_t *v;
	size_t n;
};

struct reg_rule {
	struct reg_strv principals, not_principals;
	struct reg_strv namespaces, not_namespaces;
	struct reg_strv source_ips, not_source_ips;	/* CIDRs, validated */
	struct reg_portv ports, not_ports;
};

struct reg_policy {
	char *name;
	char *namespace;	/* NULL/"" for global */
	enum reg_scope scope;
	struct reg_label *selector;
	size_t n_selector;
	enum reg_action action;
	struct reg_rule *rules;
	size_t n_rules;
};

/* A federated trust domain's roots: not in the registry file, the agent
 * adds them from its federation_dir. */
struct reg_bundle {
	char *trust_domain;
	char *pem;
};
#define REG_BUNDLES_MAX 16
#define REG_BUNDLE_PEM_MAX (64u << 10)
#define REG_BUNDLE_ROOTS_MAX 32	/* CA certificates in one bundle */

/* A remote network's resources (DESIGN §8.1): not in the registry file,
 * the agent imports them from that network's agent (agent/remote.c). reg
 * holds only nodes, workloads and services, with their own names; its
 * services' vips are the local VIPs the importing agent gave them. */
struct registry;
struct reg_remote {
	char *network;
	char *trust_domain;
	struct registry *reg;
	int unpooled;		/* Istio's form: a new inner session per connection */
};
/* The remote networks, sorted by network, unique. Immutable once made and
 * shared: each registry holding it holds a reference. */
struct reg_remotes {
	unsigned refs;
	struct reg_remote *v;
	size_t n;
};
#define REG_REMOTES_MAX 8

struct registry {
	char *trust_domain;	/* optional; NULL when the file does not set it */
	struct reg_bundle *bundles;	/* sorted by trust domain */
	size_t n_bundles;
	struct reg_remotes *remotes;	/* NULL: none */
	struct reg_node *nodes;
	size_t n_nodes;
	struct reg_workload *workloads;
	size_t n_workloads;
	struct reg_service *services;
	size_t n_services;
	struct reg_policy *policies;
	size_t n_policies;
};

/* Parse a registry document. name is used in error messages. Returns an
 * owned registry, or NULL with err = "name:line: what is wrong". */
struct registry *registry_parse(const char *buf, size_t len, const char *name,
				char *err, size_t errlen);
void registry_free(struct registry *r);
/* Free a registry's bundles (and set none). */
void registry_bundles_free(struct registry *r);

/* A new, empty set of n remote networks (refs 1, entries zeroed), or NULL. */
struct reg_remotes *reg_remotes_new(size_t n);
struct reg_remotes *reg_remotes_ref(struct reg_remotes *rs);
/* Free one network's strings and registry (and zero it). */
void reg_remote_release(struct reg_remote *rm);
/* Drops a reference; the last frees the networks and their registries. */
void reg_remotes_unref(struct reg_remotes *rs);
/* The remote network named network, or NULL. */
const struct reg_remote *reg_remotes_find(const struct reg_remotes *rs, const char *network);

/* Deep copies of one resource into *dst (zeroed first). 0, or -ENOMEM with
 * *dst holding nothing. */
int reg_node_dup(struct reg_node *dst, const struct reg_node *src);
int reg_workload_dup(struct reg_workload *dst, const struct reg_workload *src);
/* vips: NULL keeps src's, else these n_vips replace them. */
int reg_service_dup(struct reg_service *dst, const struct reg_service *src,
		    char *const *vips, size_t n_vips);

/* Lookups (linear or indexed; NULL if absent). */
const struct reg_node *registry_node(const struct registry *r, const char *name);
const struct reg_workload *registry_workload(const struct registry *r, const char *uid);
/* 1 if some workload on node has namespace ns and service account sa. */
int registry_node_has_identity(const struct registry *r, const char *node,
			       const char *ns, const char *sa);

#endif
