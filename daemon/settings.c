/* SPDX-License-Identifier: Apache-2.0 */
/* weftd settings: defaults, the YAML file through cfgmap, and the checks
 * that need more than one key. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/spiffe.h>

#include "settings.h"

#define SETTINGS_FILE_MAX (1u << 20)

static const char *const mode_names[] = { "node", "gateway", "sidecar", NULL };
static const char *const unknown_names[] = { "passthrough", "deny", NULL };
static const char *const access_log_names[] = { "text", "json", NULL };

#define F(k, t, field) { .key = k, .type = t, .off = offsetof(struct settings, field) }
#define U(k, field, lo, hi) \
	{ .key = k, .type = CFGMAP_UINT, .off = offsetof(struct settings, field), .min = lo, .max = hi }
#define E(k, field, nm) \
	{ .key = k, .type = CFGMAP_ENUM, .off = offsetof(struct settings, field), .names = nm }
static const struct cfgmap_field settings_fields[] = {
	F("node_name", CFGMAP_STR, node_name),
	F("node_ip", CFGMAP_STR, node_ip),
	F("internal_ip", CFGMAP_STR, internal_ip),
	F("trust_domain", CFGMAP_STR, trust_domain),
	F("trust_domains", CFGMAP_STRLIST, trust_domains),
	F("gateway_trust_domains", CFGMAP_STRLIST, gateway_trust_domains),
	F("agent_address", CFGMAP_STR, agent_address),
	F("agent_server_name", CFGMAP_STR, agent_server_name),
	F("agent_bundle", CFGMAP_PATH, agent_bundle),
	F("token_file", CFGMAP_PATH, token_file),
	F("cni_socket", CFGMAP_PATH, cni_socket),
	F("state_dir", CFGMAP_PATH, state_dir),
	E("mode", mode, mode_names),
	E("unknown_destination", unknown_destination, unknown_names),
	F("same_node_fast_path", CFGMAP_BOOL, same_node_fast_path),
	E("access_log_format", access_log_format, access_log_names),
	U("hbone_port", hbone_port, 1, 65535),
	U("outbound_port", outbound_port, 1, 65535),
	U("inbound_plain_port", inbound_plain_port, 1, 65535),
	U("admin_port", admin_port, 1, 65535),
	U("ready_port", ready_port, 1, 65535),
	U("metrics_port", metrics_port, 1, 65535),
	U("metrics_max_series", metrics_max_series, 1, 10000000),
	F("metrics_idle", CFGMAP_DURATION, metrics_idle_s),
	U("max_tunnels", max_tunnels, 1, 100000),
	U("max_streams_per_tunnel", max_streams_per_tunnel, 1, 1000),
	U("max_connections_per_peer", max_connections_per_peer, 1, 65536),
	U("max_connections", max_connections, 1, 10000000),
	U("max_connections_per_pod", max_connections_per_pod, 0, 10000000),
	F("cert_ttl", CFGMAP_DURATION, cert_ttl_s),
	F("connect_timeout", CFGMAP_MS, connect_timeout_ms),
	F("log_level", CFGMAP_STR, log_level),
};
#undef F
#undef U
#undef E
#define N_FIELDS (sizeof(settings_fields) / sizeof(settings_fields[0]))

static int settings_defaults(struct settings *s)
{
	memset(s, 0, sizeof(*s));
	s->trust_domain = strdup("cluster.local");
	s->agent_server_name = strdup("weft-agent");
	s->cni_socket = strdup("/run/weft/cni.sock");
	s->state_dir = strdup("/var/lib/weftd");
	s->log_level = strdup("info");
	s->same_node_fast_path = 1;
	s->hbone_port = 15008;
	s->outbound_port = 15001;
	s->inbound_plain_port = 15006;
	s->admin_port = 15000;
	s->ready_port = 15021;
	s->metrics_port = 15020;
	s->metrics_max_series = 20000;
	s->metrics_idle_s = 3600;
	s->max_tunnels = 256;
	s->max_streams_per_tunnel = 1000;
	s->max_connections_per_peer = 16;
	s->max_connections = 65536;
	s->connect_timeout_ms = 10000;
	if (!s->trust_domain || !s->agent_server_name || !s->cni_socket || !s->state_dir ||
	    !s->log_level)
		return -ENOMEM;
	return 0;
}

int settings_mode_parse(const char *name)
{
	for (int i = 0; mode_names[i]; i++)
		if (!strcmp(name, mode_names[i]))
			return i;
	return -EINVAL;
}

const char *settings_mode_name(int mode)
{
	if (mode < 0 || mode > SETTINGS_MODE_SIDECAR)
		return "?";
	return mode_names[mode];
}

static int settings_check(struct settings *s, const char *name, char *err, size_t errlen)
{
	static const char *const required[] = {
		"node_name", "node_ip", "agent_address", "agent_bundle", "token_file",
	};
	char *const vals[] = { s->node_name, s->node_ip, s->agent_address, s->agent_bundle,
			       s->token_file };
	unsigned char ip[16];

	if (s->mode != SETTINGS_MODE_GATEWAY && (s->gateway_trust_domains.n || s->internal_ip)) {
		snprintf(err, errlen, "%s: %s is for mode gateway", name,
			 s->internal_ip ? "internal_ip" : "gateway_trust_domains");
		return -EINVAL;
	}
	if (s->mode == SETTINGS_MODE_GATEWAY && (!s->internal_ip ||
	    (inet_pton(AF_INET, s->internal_ip, ip) != 1 &&
	     inet_pton(AF_INET6, s->internal_ip, ip) != 1))) {
		snprintf(err, errlen, "%s: mode gateway needs internal_ip, its address in its "
			 "own network (readiness and metrics listen there, not on the WAN)", name);
		return -EINVAL;
	}
	for (size_t i = 0; i < s->gateway_trust_domains.n; i++)
		if (!spiffe_td_valid(s->gateway_trust_domains.v[i])) {
			snprintf(err, errlen, "%s: gateway_trust_domains: \"%s\" is not a trust "
				 "domain", name, s->gateway_trust_domains.v[i]);
			return -EINVAL;
		}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		/* A sidecar starts before its pod has an address (the CNI
		 * allocates it): it learns node_ip from the pod's enrollment. */
		if (vals[i] == s->node_ip && s->mode == SETTINGS_MODE_SIDECAR)
			continue;
		if (!vals[i]) {
			snprintf(err, errlen, "%s: %s is required", name, required[i]);
			return -EINVAL;
		}
	}
	if (!spiffe_segment_valid(s->node_name)) {
		snprintf(err, errlen, "%s: node_name \"%s\" cannot be part of a SPIFFE ID",
			 name, s->node_name);
		return -EINVAL;
	}
	if (s->node_ip && inet_pton(AF_INET, s->node_ip, ip) != 1 &&
	    inet_pton(AF_INET6, s->node_ip, ip) != 1) {
		snprintf(err, errlen, "%s: node_ip \"%s\" is not an IP address", name, s->node_ip);
		return -EINVAL;
	}
	if (!spiffe_td_valid(s->trust_domain)) {
		snprintf(err, errlen, "%s: trust_domain \"%s\" is not valid", name, s->trust_domain);
		return -EINVAL;
	}
	if (!strchr(s->agent_address, ':')) {
		snprintf(err, errlen, "%s: agent_address must be ip:port", name);
		return -EINVAL;
	}
	if (!s->trust_domains.n) {
		s->trust_domains.v = calloc(1, sizeof(char *));
		if (!s->trust_domains.v || !(s->trust_domains.v[0] = strdup(s->trust_domain)))
			return -ENOMEM;
		s->trust_domains.n = 1;
	}
	return 0;
}

int settings_parse(struct settings *s, const char *buf, size_t len, const char *name,
		   char *err, size_t errlen)
{
	int rc = settings_defaults(s);

	if (!rc)
		rc = cfgmap_parse(buf, len, name, NULL, settings_fields, N_FIELDS, s, err, errlen);
	if (!rc)
		rc = settings_check(s, name, err, errlen);
	return rc;
}

int settings_load_mode(struct settings *s, const char *path, int mode, char *err,
		       size_t errlen)
{
	int rc = settings_defaults(s);

	if (!rc)
		rc = cfgmap_load(path, SETTINGS_FILE_MAX, settings_fields, N_FIELDS, s, err, errlen);
	if (!rc && mode >= 0)
		s->mode = mode;
	if (!rc)
		rc = settings_check(s, path, err, errlen);
	return rc;
}

int settings_load(struct settings *s, const char *path, char *err, size_t errlen)
{
	return settings_load_mode(s, path, -1, err, errlen);
}

void settings_release(struct settings *s)
{
	cfgmap_release(settings_fields, N_FIELDS, s);
}
