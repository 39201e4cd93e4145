/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's configuration file (flat YAML, see deploy/examples/weftd.yaml). */
#ifndef DAEMON_SETTINGS_H
#define DAEMON_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include <weft/cfgmap.h>

enum settings_mode {
	SETTINGS_MODE_NODE = 0,
	SETTINGS_MODE_GATEWAY,
	SETTINGS_MODE_SIDECAR,
};

enum settings_access_log {
	SETTINGS_ACCESS_LOG_TEXT = 0,
	SETTINGS_ACCESS_LOG_JSON,
};

enum settings_unknown {
	SETTINGS_UNKNOWN_PASSTHROUGH = 0,
	SETTINGS_UNKNOWN_DENY,
};

struct settings {
	char *node_name;		/* required */
	char *node_ip;			/* HBONE listener address; required, except in
					 * sidecar mode (then: the pod's IP); a
					 * gateway's: on the WAN */
	char *internal_ip;		/* mode gateway, required: its address in its
					 * own network (readiness and metrics) */
	char *trust_domain;		/* default cluster.local */
	char *agent_address;		/* required: "ip:port" */
	char *agent_server_name;	/* SNI, default weft-agent */
	char *agent_bundle;		/* required: the agent's root-cert.pem */
	char *token_file;		/* required: this node's bootstrap token */
	char *cni_socket;		/* default /run/weft/cni.sock */
	char *state_dir;		/* default /var/lib/weftd */
	int mode;			/* enum settings_mode */
	int unknown_destination;	/* enum settings_unknown */
	int same_node_fast_path;	/* default true */
	int access_log_format;		/* enum settings_access_log */
	uint32_t hbone_port;		/* 15008 */
	uint32_t outbound_port;		/* 15001 */
	uint32_t inbound_plain_port;	/* 15006 */
	uint32_t admin_port;		/* 15000, 127.0.0.1 only */
	uint32_t ready_port;		/* 15021 */
	uint32_t metrics_port;		/* 15020, all addresses of the node */
	uint32_t metrics_max_series;	/* 20000 istio_tcp series */
	uint32_t metrics_idle_s;	/* 3600: a series idle this long goes */
	uint32_t max_tunnels;		/* 256 */
	uint32_t max_streams_per_tunnel;/* 1000 */
	/* HBONE connections one peer identity may hold to this node (§5.1):
	 * 16; a network reached in Istio's unpooled form needs one per
	 * concurrent app connection of an identity */
	uint32_t max_connections_per_peer;
	uint32_t max_connections;	/* 65536 proxied connections */
	uint32_t max_connections_per_pod;/* 0: a quarter of max_connections or
					 * of the fd ceiling, the smaller */
	uint32_t cert_ttl_s;		/* requested SVID lifetime; 0 = agent default */
	uint32_t connect_timeout_ms;	/* 10000 */
	char *log_level;		/* info */
	struct cfgmap_strlist trust_domains;	/* peers accepted; default: trust_domain */
	struct cfgmap_strlist gateway_trust_domains;	/* mode gateway: whose workloads may
							 * use it; default every federated */
};

/* Defaults, then the file. 0, or -EINVAL with err. */
int settings_load(struct settings *s, const char *path, char *err, size_t errlen);
int settings_parse(struct settings *s, const char *buf, size_t len, const char *name,
		   char *err, size_t errlen);
/* The same with the mode forced (the command line's --mode wins over the
 * file's `mode:`); mode < 0 keeps the file's. */
int settings_load_mode(struct settings *s, const char *path, int mode, char *err,
		       size_t errlen);
/* "node", "gateway", "sidecar" -> enum settings_mode, or -EINVAL. */
int settings_mode_parse(const char *name);
const char *settings_mode_name(int mode);
void settings_release(struct settings *s);

#endif
