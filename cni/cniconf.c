/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of weft-cni's input: the network config (with prevResult) from
 * stdin and the CNI_ARGS string. Pure: bytes in, an owned struct or an
 * error message out; no I/O, no logging, no globals, so it is fuzzed as is. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cnierr.h"
#include "cniconf.h"

/* JSON nesting accepted: a prevResult is four levels deep; anything much
 * deeper is not a CNI config and only costs stack. */
#define CNICONF_MAX_DEPTH 16

static const char *const cniconf_versions[] = {
	"0.3.0", "0.3.1", "0.4.0", "1.0.0",
};

int cniconf_version_supported(const char *version)
{
	for (size_t i = 0; i < sizeof(cniconf_versions) / sizeof(cniconf_versions[0]); i++)
		if (version && strcmp(version, cniconf_versions[i]) == 0)
			return 1;
	return 0;
}

const char *cniconf_versions_json(void)
{
	return "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\"]";
}

void cniconf_free(struct cniconf *c)
{
	if (!c)
		return;
	free(c->cni_version);
	free(c->name);
	free(c->type);
	free(c->socket);
	free(c->log_file);
	for (size_t i = 0; i < c->n_exclude_ns; i++)
		free(c->exclude_ns[i]);
	free(c->exclude_ns);
	free(c->prev_result);
	for (size_t i = 0; i < c->n_ips; i++)
		free(c->ips[i]);
	free(c);
}

/* Copy the string member key of obj into *dst. Missing: 0 and *dst stays
 * NULL unless required. Wrong type: -EINVAL. */
static int cniconf_string(struct json_object *obj, const char *key, int required,
			  char **dst, char *err, size_t errlen)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		if (!required)
			return 0;
		cnierr_set(err, errlen, "network config lacks \"%s\"", key);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		cnierr_set(err, errlen, "\"%s\" must be a string", key);
		return -EINVAL;
	}
	*dst = strdup(json_object_get_string(v));
	if (!*dst) {
		cnierr_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* "10.244.1.5/24" -> "10.244.1.5" (the prefix length is checked, then
 * dropped: weftd wants the pod's address, not its subnet). */
static int cniconf_ip_add(struct cniconf *c, const char *cidr, char *err, size_t errlen)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *slash = strchr(cidr, '/');
	size_t alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
	int family, maxlen;

	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, cidr, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) == 1) {
		family = AF_INET;
		maxlen = 32;
	} else if (inet_pton(AF_INET6, addr, bin) == 1) {
		family = AF_INET6;
		maxlen = 128;
	} else {
		goto bad;
	}
	if (slash) {
		const char *p = slash + 1;
		int n = 0;

		if (!*p || strlen(p) > 3)
			goto bad;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				goto bad;
			n = n * 10 + (*p - '0');
		}
		if (n > maxlen)
			goto bad;
	}
	if (c->n_ips == CNICONF_MAX_IPS) {
		cnierr_set(err, errlen, "prevResult has more than %d addresses", CNICONF_MAX_IPS);
		return -EINVAL;
	}
	/* Canonical text, so weftd compares like with like ("::01" -> "::1"). */
	if (!inet_ntop(family, bin, addr, sizeof(addr)))
		goto bad;
	c->ips[c->n_ips] = strdup(addr);
	if (!c->ips[c->n_ips]) {
		cnierr_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->n_ips++;
	return 0;
bad:
	cnierr_set(err, errlen, "prevResult.ips[].address \"%.64s\" is not an IP address "
		   "with an optional prefix length", cidr);
	return -EINVAL;
}

static int cniconf_prev_result(struct cniconf *c, struct json_object *prev,
			       char *err, size_t errlen)
{
	struct json_object *ips, *v;
	const char *s;

	if (!json_object_is_type(prev, json_type_object)) {
		cnierr_set(err, errlen, "\"prevResult\" must be an object");
		return -EINVAL;
	}
	if (json_object_object_get_ex(prev, "ips", &ips) &&
	    !json_object_is_type(ips, json_type_null)) {
		size_t n;

		if (!json_object_is_type(ips, json_type_array)) {
			cnierr_set(err, errlen, "prevResult.ips must be an array");
			return -EINVAL;
		}
		n = json_object_array_length(ips);
		for (size_t i = 0; i < n; i++) {
			struct json_object *ip = json_object_array_get_idx(ips, i), *a;
			int ret;

			if (!json_object_is_type(ip, json_type_object) ||
			    !json_object_object_get_ex(ip, "address", &a) ||
			    !json_object_is_type(a, json_type_string)) {
				cnierr_set(err, errlen, "prevResult.ips[%zu] lacks a string \"address\"", i);
				return -EINVAL;
			}
			ret = cniconf_ip_add(c, json_object_get_string(a), err, errlen);
			if (ret < 0)
				return ret;
		}
	}
	/* The result must carry a cniVersion; runtimes put one in prevResult,
	 * but a hand-written config may not. */
	if (!json_object_object_get_ex(prev, "cniVersion", &v)) {
		v = json_object_new_string(c->cni_version);
		if (!v || json_object_object_add(prev, "cniVersion", v) < 0) {
			json_object_put(v);
			cnierr_set(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	s = json_object_to_json_string_ext(prev, JSON_C_TO_STRING_PLAIN |
					   JSON_C_TO_STRING_NOSLASHESCAPE);
	c->prev_result = s ? strdup(s) : NULL;
	if (!c->prev_result) {
		cnierr_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int cniconf_exclude(struct cniconf *c, struct json_object *list, char *err, size_t errlen)
{
	size_t n;

	if (!json_object_is_type(list, json_type_array)) {
		cnierr_set(err, errlen, "\"exclude_namespaces\" must be an array of strings");
		return -EINVAL;
	}
	n = json_object_array_length(list);
	if (n > CNICONF_MAX_EXCLUDE) {
		cnierr_set(err, errlen, "\"exclude_namespaces\" has more than %d entries",
			   CNICONF_MAX_EXCLUDE);
		return -EINVAL;
	}
	if (!n)
		return 0;
	c->exclude_ns = calloc(n, sizeof(*c->exclude_ns));
	if (!c->exclude_ns) {
		cnierr_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(list, i);

		if (!json_object_is_type(v, json_type_string)) {
			cnierr_set(err, errlen, "\"exclude_namespaces\"[%zu] must be a string", i);
			return -EINVAL;
		}
		c->exclude_ns[i] = strdup(json_object_get_string(v));
		if (!c->exclude_ns[i]) {
			cnierr_set(err, errlen, "out of memory");
			return -ENOMEM;
		}
		c->n_exclude_ns++;
	}
	return 0;
}

struct cniconf *cniconf_parse(const char *json, size_t len, int *errc,
			      char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root = NULL, *v;
	struct cniconf *c;
	int ret;

	*errc = CNICONF_EDECODE;
	if (len == 0 || memchr(json, '\0', len)) {
		cnierr_set(err, errlen, len ? "network config contains a NUL byte"
					    : "network config on stdin is empty");
		return NULL;
	}
	if (len > (size_t)INT32_MAX) {
		cnierr_set(err, errlen, "network config is too large");
		return NULL;
	}
	tok = json_tokener_new_ex(CNICONF_MAX_DEPTH);
	if (!tok) {
		cnierr_set(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (!root) {
		enum json_tokener_error je = json_tokener_get_error(tok);

		cnierr_set(err, errlen, "network config is not valid JSON: %s at offset %zu",
			   je == json_tokener_continue ? "unexpected end of input"
							: json_tokener_error_desc(je),
			   json_tokener_get_parse_end(tok));
		json_tokener_free(tok);
		return NULL;
	}
	/* Trailing bytes after the object: only whitespace may follow. */
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
		if (json[i] != ' ' && json[i] != '\t' && json[i] != '\n' && json[i] != '\r') {
			cnierr_set(err, errlen, "network config has trailing data at offset %zu", i);
			json_tokener_free(tok);
			json_object_put(root);
			return NULL;
		}
	}
	json_tokener_free(tok);
	if (!json_object_is_type(root, json_type_object)) {
		cnierr_set(err, errlen, "network config must be a JSON object");
		goto fail_root;
	}

	*errc = CNICONF_EINVALID;
	c = calloc(1, sizeof(*c));
	if (!c) {
		cnierr_set(err, errlen, "out of memory");
		goto fail_root;
	}
	if (cniconf_string(root, "cniVersion", 1, &c->cni_version, err, errlen) < 0 ||
	    cniconf_string(root, "name", 1, &c->name, err, errlen) < 0 ||
	    cniconf_string(root, "type", 1, &c->type, err, errlen) < 0 ||
	    cniconf_string(root, "socket", 0, &c->socket, err, errlen) < 0 ||
	    cniconf_string(root, "log_file", 0, &c->log_file, err, errlen) < 0)
		goto fail_conf;
	if (!cniconf_version_supported(c->cni_version)) {
		*errc = CNICONF_EVERSION;
		cnierr_set(err, errlen, "cniVersion \"%.32s\" is not supported (supported: %s)",
			   c->cni_version, cniconf_versions_json());
		goto fail_conf;
	}
	if (!c->socket) {
		c->socket = strdup(CNICONF_SOCKET_DEFAULT);
		if (!c->socket) {
			cnierr_set(err, errlen, "out of memory");
			goto fail_conf;
		}
	}
	/* sun_path holds 107 characters and a NUL. */
	if (c->socket[0] != '/' || strlen(c->socket) > 107) {
		cnierr_set(err, errlen, "\"socket\" must be an absolute path of at most 107 "
			   "characters");
		goto fail_conf;
	}
	if (c->log_file && c->log_file[0] == '\0') {
		free(c->log_file);
		c->log_file = NULL;
	}
	if (json_object_object_get_ex(root, "exclude_namespaces", &v) &&
	    !json_object_is_type(v, json_type_null) &&
	    cniconf_exclude(c, v, err, errlen) < 0)
		goto fail_conf;
	if (json_object_object_get_ex(root, "prevResult", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		ret = cniconf_prev_result(c, v, err, errlen);
		if (ret < 0)
			goto fail_conf;
	}
	json_object_put(root);
	*errc = 0;
	return c;

fail_conf:
	cniconf_free(c);
fail_root:
	json_object_put(root);
	return NULL;
}

int cniconf_excluded(const struct cniconf *c, const char *ns)
{
	for (size_t i = 0; i < c->n_exclude_ns; i++)
		if (strcmp(c->exclude_ns[i], ns) == 0)
			return 1;
	return 0;
}

/* Kubernetes names are DNS labels/subdomains and UIDs are UUIDs; anything
 * else (a '/', a quote, a control byte) would corrupt the "<ns>/<name>" uid
 * or the logs, so it is refused rather than escaped. */
static int cniconf_value_ok(const char *v, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char ch = v[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return 0;
	}
	return 1;
}

int cniconf_args_parse(const char *s, struct cniconf_args *a, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		size_t off;
		size_t size;
	} keys[] = {
		{ "K8S_POD_NAMESPACE", offsetof(struct cniconf_args, pod_namespace),
		  sizeof(a->pod_namespace) },
		{ "K8S_POD_NAME", offsetof(struct cniconf_args, pod_name), sizeof(a->pod_name) },
		{ "K8S_POD_UID", offsetof(struct cniconf_args, pod_uid), sizeof(a->pod_uid) },
	};

	memset(a, 0, sizeof(*a));
	while (s && *s) {
		const char *end = strchr(s, ';'), *eq;
		size_t plen;

		if (!end)
			end = s + strlen(s);
		plen = (size_t)(end - s);
		if (plen) {
			size_t klen, vlen;

			eq = memchr(s, '=', plen);
			if (!eq || eq == s) {
				cnierr_set(err, errlen, "CNI_ARGS: \"%.*s\" is not KEY=VALUE",
					   (int)(plen > 64 ? 64 : plen), s);
				return -EINVAL;
			}
			klen = (size_t)(eq - s);
			vlen = plen - klen - 1;
			for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
				char *dst = (char *)a + keys[i].off;

				if (strlen(keys[i].key) != klen || memcmp(keys[i].key, s, klen))
					continue;
				if (vlen >= keys[i].size || !cniconf_value_ok(eq + 1, vlen)) {
					cnierr_set(err, errlen, "CNI_ARGS: %s is too long or has "
						   "characters outside [A-Za-z0-9._-]", keys[i].key);
					return -EINVAL;
				}
				memcpy(dst, eq + 1, vlen);
				dst[vlen] = '\0';
			}
		}
		s = *end ? end + 1 : end;
	}
	return 0;
}
