/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent configuration: a flat YAML mapping parsed with libyaml's
 * document API. Unknown keys are errors, so typos do not pass silently. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <weft/file.h>

#include "config.h"

#define CONFIG_FILE_MAX (1u << 20)

struct cfg_parse {
	yaml_document_t *doc;
	const char *name;
	const char *base_dir;
	char *err;
	size_t errlen;
	int ttl_default_set;
};

static int cfg_fail(struct cfg_parse *p, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cfg_fail(struct cfg_parse *p, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	int o;

	o = snprintf(p->err, p->errlen, "%s:%zu: ", p->name, n ? n->start_mark.line + 1 : 1);
	if (o < 0 || (size_t)o >= p->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + o, p->errlen - o, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int cfg_string(struct cfg_parse *p, const char *key, yaml_node_t *v, char **out)
{
	if (v->type != YAML_SCALAR_NODE)
		return cfg_fail(p, v, "%s: expected a string", key);
	free(*out);
	*out = strndup((const char *)v->data.scalar.value, v->data.scalar.length);
	return *out ? 0 : -ENOMEM;
}

/* A path relative to the config file's directory becomes absolute, so the
 * agent behaves the same whatever its working directory. */
static int cfg_path(struct cfg_parse *p, const char *key, yaml_node_t *v, char **out)
{
	int err = cfg_string(p, key, v, out);

	if (err || (*out)[0] == '/' || !p->base_dir)
		return err;
	char *abs;
	if (asprintf(&abs, "%s/%s", p->base_dir, *out) < 0)
		return -ENOMEM;
	free(*out);
	*out = abs;
	return 0;
}

/* Durations: plain seconds, or a number with s/m/h/d. */
static int cfg_duration(struct cfg_parse *p, const char *key, yaml_node_t *v, uint32_t *out)
{
	const char *s = (const char *)v->data.scalar.value;
	char *end;
	unsigned long long n, mul = 1;

	if (v->type != YAML_SCALAR_NODE || v->data.scalar.length == 0)
		return cfg_fail(p, v, "%s: expected a duration like 3600, 90m, 24h", key);
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return cfg_fail(p, v, "%s: \"%s\" is not a duration", key, s);
	switch (*end) {
	case 0: case 's': break;
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	default:
		return cfg_fail(p, v, "%s: unknown unit in \"%s\" (use s, m, h or d)", key, s);
	}
	if (*end && end[1])
		return cfg_fail(p, v, "%s: trailing characters in \"%s\"", key, s);
	if (n == 0 || n * mul > UINT32_MAX || n > UINT32_MAX)
		return cfg_fail(p, v, "%s: %s is out of range", key, s);
	*out = n * mul;
	return 0;
}

static int cfg_uint(struct cfg_parse *p, const char *key, yaml_node_t *v,
		    uint32_t min, uint32_t max, uint32_t *out)
{
	const char *s = (const char *)v->data.scalar.value;
	char *end;
	unsigned long n;

	if (v->type != YAML_SCALAR_NODE)
		return cfg_fail(p, v, "%s: expected an integer", key);
	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || n < min || n > max)
		return cfg_fail(p, v, "%s: expected an integer in %u..%u, got \"%s\"",
				key, min, max, s);
	*out = n;
	return 0;
}

static int cfg_dns_names(struct cfg_parse *p, struct agent_config *c, yaml_node_t *v)
{
	yaml_node_item_t *it;

	if (v->type != YAML_SEQUENCE_NODE)
		return cfg_fail(p, v, "dns_names: expected a list of host names");
	for (size_t i = 0; i < c->n_dns_names; i++)
		free(c->dns_names[i]);
	c->n_dns_names = 0;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *n = yaml_document_get_node(p->doc, *it);
		if (c->n_dns_names == CONFIG_DNS_MAX)
			return cfg_fail(p, n, "dns_names: at most %d names", CONFIG_DNS_MAX);
		char *name = NULL;
		int err = cfg_string(p, "dns_names", n, &name);
		if (err)
			return err;
		c->dns_names[c->n_dns_names++] = name;
		if (!name[0] || strlen(name) > 253 || strspn(name,
		    "abcdefghijklmnopqrstuvwxyz0123456789-.") != strlen(name))
			return cfg_fail(p, n, "dns_names: \"%s\" is not a lowercase DNS name", name);
	}
	return 0;
}

static int cfg_key(struct cfg_parse *p, struct agent_config *c, const char *k, yaml_node_t *v)
{
	if (!strcmp(k, "listen"))
		return cfg_string(p, k, v, &c->listen);
	if (!strcmp(k, "trust_domain"))
		return cfg_string(p, k, v, &c->trust_domain);
	if (!strcmp(k, "state_dir"))
		return cfg_path(p, k, v, &c->state_dir);
	if (!strcmp(k, "token_file"))
		return cfg_path(p, k, v, &c->token_file);
	if (!strcmp(k, "registry_file"))
		return cfg_path(p, k, v, &c->registry_file);
	if (!strcmp(k, "ca_cert_file"))
		return cfg_path(p, k, v, &c->ca_cert_file);
	if (!strcmp(k, "ca_key_file"))
		return cfg_path(p, k, v, &c->ca_key_file);
	if (!strcmp(k, "ca_chain_file"))
		return cfg_path(p, k, v, &c->ca_chain_file);
	if (!strcmp(k, "log_level"))
		return cfg_string(p, k, v, &c->log_level);
	if (!strcmp(k, "ttl_default")) {
		p->ttl_default_set = 1;
		return cfg_duration(p, k, v, &c->ttl_default_s);
	}
	if (!strcmp(k, "ttl_max"))
		return cfg_duration(p, k, v, &c->ttl_max_s);
	if (!strcmp(k, "dns_names"))
		return cfg_dns_names(p, c, v);
	if (!strcmp(k, "max_connections"))
		return cfg_uint(p, k, v, 1, 1000000, &c->max_connections);
	if (!strcmp(k, "handshake_timeout_ms"))
		return cfg_uint(p, k, v, 100, 600000, &c->handshake_timeout_ms);
	return cfg_fail(p, v, "unknown key \"%s\"", k);
}

static int cfg_defaults(struct agent_config *c)
{
	static const char *const dns[] = {
		"weft-agent", "weft-agent.weft-system.svc", "localhost",
	};

	c->ttl_default_s = 86400;
	c->ttl_max_s = 86400;
	c->max_connections = 4096;
	c->handshake_timeout_ms = 10000;
	c->listen = strdup("0.0.0.0:15012");
	c->trust_domain = strdup("cluster.local");
	c->state_dir = strdup("/var/lib/weft-agent");
	c->log_level = strdup("info");
	for (size_t i = 0; i < sizeof(dns) / sizeof(dns[0]); i++)
		c->dns_names[c->n_dns_names++] = strdup(dns[i]);
	for (size_t i = 0; i < c->n_dns_names; i++)
		if (!c->dns_names[i])
			return -ENOMEM;
	return c->listen && c->trust_domain && c->state_dir && c->log_level ? 0 : -ENOMEM;
}

static int cfg_check(struct cfg_parse *p, struct agent_config *c, yaml_node_t *root)
{
	if (!c->token_file)
		return cfg_fail(p, root, "token_file is required");
	if (!c->registry_file)
		return cfg_fail(p, root, "registry_file is required");
	/* An unset default follows a lower cap; two explicit values that
	 * contradict each other are an error. */
	if (!p->ttl_default_set && c->ttl_default_s > c->ttl_max_s)
		c->ttl_default_s = c->ttl_max_s;
	if (c->ttl_default_s > c->ttl_max_s)
		return cfg_fail(p, root, "ttl_default (%us) is above ttl_max (%us)",
				c->ttl_default_s, c->ttl_max_s);
	if (!!c->ca_cert_file != !!c->ca_key_file)
		return cfg_fail(p, root, "ca_cert_file and ca_key_file go together");
	if (strcmp(c->log_level, "error") && strcmp(c->log_level, "warn") &&
	    strcmp(c->log_level, "info") && strcmp(c->log_level, "debug"))
		return cfg_fail(p, root, "log_level must be error, warn, info or debug");
	if (!strchr(c->listen, ':'))
		return cfg_fail(p, root, "listen: expected host:port, got \"%s\"", c->listen);
	return 0;
}

struct agent_config *config_parse(const char *buf, size_t len, const char *name,
				  const char *base_dir, char *err, size_t errlen)
{
	struct cfg_parse p = { .name = name, .base_dir = base_dir, .err = err, .errlen = errlen };
	struct agent_config *c;
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	yaml_node_pair_t *pair;
	int rc = -EINVAL;

	c = calloc(1, sizeof(*c));
	if (!c || cfg_defaults(c)) {
		snprintf(err, errlen, "%s: out of memory", name);
		config_free(c);
		return NULL;
	}
	if (!yaml_parser_initialize(&parser))
		goto fail_config;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu: YAML syntax: %s", name,
			 parser.problem_mark.line + 1, parser.problem ? parser.problem : "error");
		goto fail_parser;
	}
	p.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (!root || root->type != YAML_MAPPING_NODE) {
		cfg_fail(&p, root, "expected a mapping of settings");
		goto fail_doc;
	}
	for (pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&doc, pair->value);
		if (k->type != YAML_SCALAR_NODE) {
			cfg_fail(&p, k, "keys must be strings");
			goto fail_doc;
		}
		if (cfg_key(&p, c, (const char *)k->data.scalar.value, v))
			goto fail_doc;
	}
	rc = cfg_check(&p, c, root);
fail_doc:
	yaml_document_delete(&doc);
fail_parser:
	yaml_parser_delete(&parser);
fail_config:
	if (rc) {
		config_free(c);
		return NULL;
	}
	return c;
}

struct agent_config *config_load(const char *path, char *err, size_t errlen)
{
	struct agent_config *c;
	char dir[PATH_MAX], *slash;
	size_t len;
	char *buf;
	int rc;

	rc = file_read(path, CONFIG_FILE_MAX, &buf, &len);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
		return NULL;
	}
	if (!realpath(path, dir))
		snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	c = config_parse(buf, len, path, slash ? dir : ".", err, errlen);
	free(buf);
	return c;
}

void config_free(struct agent_config *c)
{
	if (!c)
		return;
	free(c->listen);
	free(c->trust_domain);
	free(c->state_dir);
	free(c->token_file);
	free(c->registry_file);
	for (size_t i = 0; i < c->n_dns_names; i++)
		free(c->dns_names[i]);
	free(c->ca_cert_file);
	free(c->ca_key_file);
	free(c->ca_chain_file);
	free(c->log_level);
	free(c);
}
