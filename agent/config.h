/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent's configuration file (YAML): parsed I/O-free into an owned
 * struct, with "file:line: what is wrong" errors. */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <weft/cfgmap.h>

#define CONFIG_ERR_MAX 512
#define CONFIG_DNS_MAX 16
#define CONFIG_REMOTES_MAX 8		/* = REG_REMOTES_MAX */

/* A remote network whose registry the agent imports (DESIGN §8.1): its
 * agent, reached over mTLS with the agent's own SVID, verified as
 * spiffe://<trust_domain>/weft/agent against that trust domain's
 * federated bundle. */
struct agent_remote {
	char *network;			/* its nodes' network name, e.g. "east" */
	char *trust_domain;		/* must be federated (federation_dir) */
	char *agent_address;		/* numeric "ip:port" */
	char *server_name;		/* SNI; default "weft-agent" */
	char *vip_cidr;			/* IPv4 range its services' local VIPs come from */
	uint32_t vip_base;		/* vip_cidr parsed: first address (host order) */
	uint8_t vip_prefix;		/* 12..30 */
	int form;			/* CONFIG_FORM_*: how this network's weftds reach it */
};
enum { CONFIG_FORM_POOLED = 0, CONFIG_FORM_ISTIO };

struct agent_config {
	char *listen;			/* "host:port", default "0.0.0.0:15012" */
	char *metrics_listen;		/* "host:port" or "off", default "0.0.0.0:15014" */
	char *trust_domain;		/* default "cluster.local" */
	char *state_dir;		/* default "/var/lib/weft-agent" */
	char *token_file;		/* required */
	char *registry_file;		/* required */
	uint32_t ttl_default_s;		/* default 86400 */
	uint32_t ttl_max_s;		/* default 86400; requests above are capped */
	/* At most CONFIG_DNS_MAX; default weft-agent, weft-agent.weft-system.svc,
	 * localhost */
	struct cfgmap_strlist dns_names;
	char *ca_cert_file;		/* optional: given root or intermediate */
	char *ca_key_file;
	char *ca_chain_file;
	char *federation_dir;		/* optional: <trust-domain>.pem per federated domain */
	/* struct agent_remote, at most CONFIG_REMOTES_MAX, unique networks,
	 * trust domains and non-overlapping vip_cidrs */
	struct cfgmap_tables remote_networks;
	/* Federated trust domains whose agents may watch this agent's
	 * registry export; empty: every federated one */
	struct cfgmap_strlist export_to;
	char *log_level;		/* default "info" */
	uint32_t max_connections;	/* default 4096 */
	uint32_t handshake_timeout_ms;	/* default 10000 */
};

/* Parse a config document; relative paths are resolved against base_dir
 * (the config file's directory). NULL with err on failure. */
struct agent_config *config_parse(const char *buf, size_t len, const char *name,
				  const char *base_dir, char *err, size_t errlen);
/* Read and parse a file. */
struct agent_config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct agent_config *c);

#endif
