/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent configuration: defaults, the YAML file through cfgmap (flat
 * mapping, unknown keys are errors so typos do not pass silently), and the
 * checks that need more than one key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cfgmap.h>
#include <weft/sockaddr.h>

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
	else
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
