/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent configuration: defaults, the YAML file through cfgmap (flat
 * mapping, unknown keys are errors so typos do not pass silently), and the
 * checks that need more than one key. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cfgmap.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>

#include "config.h"

#define CONFIG_FILE_MAX (1u << 20)
#define CONFIG_TTL_DEFAULT_S 86400

/* The names go into the agent's own serving certificate as DNS SANs. */
static const char *config_dns_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 253 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != n)
		return "is not a lowercase DNS name";
	return NULL;
}

/* A network name: it tags nodes and travels to every weftd. */
static const char *config_network_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-._") != n)
		return "is not a network name (lowercase letters, digits, '-', '.', '_'; "
		       "at most 63)";
	return NULL;
}

static const char *config_td_check(const char *td)
{
	return spiffe_td_valid(td) ? NULL : "is not a SPIFFE trust domain";
}

static const char *config_addr_check(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return sockaddr_parse(addr, &ss, &len) ? "is not a numeric host:port" : NULL;
}

/* "a.b.c.d/prefix", IPv4, prefix 12..30, no host bits: the local VIPs of
 * one remote network's services. */
static int config_cidr_parse(const char *s, uint32_t *base, uint8_t *prefix)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	struct in_addr a;
	unsigned long p;
	char *end;

	if (!slash || (size_t)(slash - s) >= sizeof(ip) || !slash[1] ||
	    strspn(slash + 1, "0123456789") != strlen(slash + 1) || strlen(slash + 1) > 2)
		return -EINVAL;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	p = strtoul(slash + 1, &end, 10);
	if (inet_pton(AF_INET, ip, &a) != 1 || p < 12 || p > 30)
		return -EINVAL;
	*base = ntohl(a.s_addr);
	*prefix = (uint8_t)p;
	return *base & ((1u << (32 - p)) - 1) ? -EINVAL : 0;
}

static const char *config_cidr_check(const char *s)
{
	uint32_t base;
	uint8_t prefix;

	return config_cidr_parse(s, &base, &prefix)
		? "is not an IPv4 range a.b.c.d/N with N from 12 to 30 and no host bits" : NULL;
}

/* CONFIG_FORM_*: pooled inner sessions (weft's), or one per connection
 * (Istio ambient's, for interop and comparison). */
static const char *const config_forms[] = { "pooled", "istio", NULL };

#define R(k, field, ...) \
	{ .key = k, .type = CFGMAP_STR, .off = offsetof(struct agent_remote, field), __VA_ARGS__ }
static const struct cfgmap_field remote_fields[] = {
	R("network", network, .check = config_network_check),
	R("trust_domain", trust_domain, .check = config_td_check),
	R("agent_address", agent_address, .check = config_addr_check),
	R("vip_cidr", vip_cidr, .check = config_cidr_check),
	R("server_name", server_name, .check = config_dns_check),
	{ .key = "form", .type = CFGMAP_ENUM, .off = offsetof(struct agent_remote, form),
	  .names = config_forms },
};
#undef R
#define N_REMOTE_FIELDS (sizeof(remote_fields) / sizeof(remote_fields[0]))

/* Paths are made absolute against the config file's folder, so the agent
 * behaves the same whatever its working directory. ttl_default is 0 until
 * set (its minimum is 1), so config_check can tell "unset" apart. */
#define F(k, t, field, ...) \
	{ .key = k, .type = t, .off = offsetof(struct agent_config, field), __VA_ARGS__ }
static const struct cfgmap_field config_fields[] = {
	F("listen", CFGMAP_STR, listen),
	F("metrics_listen", CFGMAP_STR, metrics_listen),
	F("trust_domain", CFGMAP_STR, trust_domain),
	F("state_dir", CFGMAP_PATH, state_dir),
	F("token_file", CFGMAP_PATH, token_file),
	F("registry_file", CFGMAP_PATH, registry_file),
	F("ca_cert_file", CFGMAP_PATH, ca_cert_file),
	F("ca_key_file", CFGMAP_PATH, ca_key_file),
	F("ca_chain_file", CFGMAP_PATH, ca_chain_file),
	F("federation_dir", CFGMAP_PATH, federation_dir),
	F("log_level", CFGMAP_STR, log_level),
	F("ttl_default", CFGMAP_DURATION, ttl_default_s, .min = 1, .max = UINT32_MAX),
	F("ttl_max", CFGMAP_DURATION, ttl_max_s, .min = 1, .max = UINT32_MAX),
	F("dns_names", CFGMAP_STRLIST, dns_names, .max = CONFIG_DNS_MAX,
	  .check = config_dns_check),
	F("max_connections", CFGMAP_UINT, max_connections, .min = 1, .max = 1000000),
	F("handshake_timeout_ms", CFGMAP_UINT, handshake_timeout_ms, .min = 100, .max = 600000),
	F("export_to", CFGMAP_STRLIST, export_to, .max = 16, .check = config_td_check),
	F("remote_networks", CFGMAP_TABLES, remote_networks, .max = CONFIG_REMOTES_MAX,
	  .sub = remote_fields, .n_sub = N_REMOTE_FIELDS, .sub_required = 0xf,
	  .elem_size = sizeof(struct agent_remote)),
};
#undef F
#define N_FIELDS (sizeof(config_fields) / sizeof(config_fields[0]))

static int config_defaults(struct agent_config *c)
{
	static const char *const dns[] = {
		"weft-agent", "weft-agent.weft-system.svc", "localhost",
	};
	const size_t n_dns = sizeof(dns) / sizeof(dns[0]);

	c->ttl_max_s = CONFIG_TTL_DEFAULT_S;
	c->max_connections = 4096;
	c->handshake_timeout_ms = 10000;
	c->listen = strdup("0.0.0.0:15012");
	c->metrics_listen = strdup("0.0.0.0:15014");
	c->trust_domain = strdup("cluster.local");
	c->state_dir = strdup("/var/lib/weft-agent");
	c->log_level = strdup("info");
	c->dns_names.v = calloc(n_dns, sizeof(*c->dns_names.v));
	if (!c->dns_names.v)
		return -ENOMEM;
	for (size_t i = 0; i < n_dns; i++) {
		c->dns_names.v[i] = strdup(dns[i]);
		if (!c->dns_names.v[i])
			return -ENOMEM;
		c->dns_names.n++;
	}
	return c->listen && c->metrics_listen && c->trust_domain && c->state_dir && c->log_level ? 0 : -ENOMEM;
}

/* The remote networks against each other and this agent: each one a
 * network, trust domain and VIP range of its own. */
static int config_check_remotes(struct agent_config *c, char *msg, size_t len)
{
	struct agent_remote *v = c->remote_networks.v;

	for (size_t i = 0; i < c->remote_networks.n; i++) {
		struct agent_remote *r = &v[i];

		config_cidr_parse(r->vip_cidr, &r->vip_base, &r->vip_prefix);
		if (!r->server_name && !(r->server_name = strdup("weft-agent"))) {
			snprintf(msg, len, "out of memory");
			return -ENOMEM;
		}
		if (!strcmp(r->trust_domain, c->trust_domain)) {
			snprintf(msg, len, "remote_networks: %s has this agent's own trust domain "
				 "%s (a remote network is another trust domain)", r->network,
				 r->trust_domain);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			uint8_t p = v[j].vip_prefix < r->vip_prefix ? v[j].vip_prefix
								    : r->vip_prefix;
			uint32_t mask = ~0u << (32 - p);
			const char *what = !strcmp(v[j].network, r->network) ? "network" :
					   !strcmp(v[j].trust_domain, r->trust_domain) ? "trust_domain" :
					   (v[j].vip_base & mask) == (r->vip_base & mask) ? "vip_cidr" :
					   NULL;

			if (what) {
				snprintf(msg, len, "remote_networks: %s and %s have the same or "
					 "overlapping %s", v[j].network, r->network, what);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static int config_check(struct agent_config *c, const char *name, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char msg[160];

	/* An unset default follows a lower cap; two explicit values that
	 * contradict each other are an error. */
	if (!c->ttl_default_s)
		c->ttl_default_s = c->ttl_max_s < CONFIG_TTL_DEFAULT_S ? c->ttl_max_s
								: CONFIG_TTL_DEFAULT_S;
	if (!c->token_file)
		snprintf(msg, sizeof(msg), "token_file is required");
	else if (!c->registry_file)
		snprintf(msg, sizeof(msg), "registry_file is required");
	else if (c->ttl_default_s > c->ttl_max_s)
		snprintf(msg, sizeof(msg), "ttl_default (%us) is above ttl_max (%us)",
			 c->ttl_default_s, c->ttl_max_s);
	else if (!!c->ca_cert_file != !!c->ca_key_file)
		snprintf(msg, sizeof(msg), "ca_cert_file and ca_key_file go together");
	else if (strcmp(c->log_level, "error") && strcmp(c->log_level, "warn") &&
		 strcmp(c->log_level, "info") && strcmp(c->log_level, "debug"))
		snprintf(msg, sizeof(msg), "log_level must be error, warn, info or debug");
	else if (!strchr(c->listen, ':'))
		snprintf(msg, sizeof(msg), "listen: expected host:port, got \"%.64s\"", c->listen);
	else if (strcmp(c->metrics_listen, "off") &&
		 sockaddr_parse(c->metrics_listen, &ss, &sslen))
		snprintf(msg, sizeof(msg), "metrics_listen: expected a numeric host:port or off, "
			 "got \"%.64s\"", c->metrics_listen);
	else if (!config_check_remotes(c, msg, sizeof(msg)))
		return 0;
	snprintf(err, errlen, "%s: %s", name, msg);
	return -EINVAL;
}

/* Defaults, then the file at path (when not NULL) or buf, then the checks. */
static struct agent_config *config_make(const char *path, const char *buf, size_t len,
					const char *name, const char *base_dir,
					char *err, size_t errlen)
{
	struct agent_config *c = calloc(1, sizeof(*c));
	int rc = c ? config_defaults(c) : -ENOMEM;

	if (rc)
		snprintf(err, errlen, "%s: out of memory", name);
	else if (path)
		rc = cfgmap_load(path, CONFIG_FILE_MAX, config_fields, N_FIELDS, c, err, errlen);
	else
		rc = cfgmap_parse(buf, len, name, base_dir, config_fields, N_FIELDS, c,
				  err, errlen);
	if (!rc)
		rc = config_check(c, name, err, errlen);
	if (rc) {
		config_free(c);
		return NULL;
	}
	return c;
}

struct agent_config *config_parse(const char *buf, size_t len, const char *name,
				  const char *base_dir, char *err, size_t errlen)
{
	return config_make(NULL, buf, len, name, base_dir, err, errlen);
}

struct agent_config *config_load(const char *path, char *err, size_t errlen)
{
	return config_make(path, NULL, 0, path, NULL, err, errlen);
}

void config_free(struct agent_config *c)
{
	if (!c)
		return;
	cfgmap_release(config_fields, N_FIELDS, c);
	free(c);
}
