/* SPDX-License-Identifier: Apache-2.0 */
/* federation_dir: one bundle per federated trust domain, PEM or a SPIFFE
 * bundle document (federation.h). */

#define FEDERATION_JSON_DEPTH 8		/* {keys: [{x5c: [..]}]} is 4 deep */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/file.h>
#include <weft/registry.h>
#include <weft/x509.h>

#include "federation.h"

static int td_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_bundle *)a)->trust_domain,
		      ((const struct reg_bundle *)b)->trust_domain);
}

/* Append one x5c entry (base64 DER) to *pem as a PEM block, if a CA. */
static int spiffe_root(const char *b64, size_t b64len, char **pem, size_t *len, char *why,
		       size_t whylen)
{
	uint8_t *der = malloc(b64len);
	size_t derlen = 0;
	char inner[64];
	int rc;

	if (!der) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (sodium_base642bin(der, b64len, b64, b64len, NULL, &derlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL)) {
		snprintf(why, whylen, "an x5c entry is not base64");
		free(der);
		return -EINVAL;
	}
	rc = x509_ca_append(pem, len, der, derlen, inner, sizeof(inner));
	if (rc)
		snprintf(why, whylen, rc == -ENOMEM ? "%s" : "an x5c certificate %s", inner);
	free(der);
	return rc;
}

int federation_spiffe_to_pem(const char *json, size_t len, char **pem, char *why,
			     size_t whylen)
{
	struct json_object *root = NULL, *keys, *key, *use, *x5c, *cert;
	struct json_tokener *tok;
	size_t pemlen = 0, n, roots = 0;
	int rc = -EINVAL;

	*pem = NULL;
	if (!len || len > REG_BUNDLE_PEM_MAX || memchr(json, '\0', len)) {
		snprintf(why, whylen, "not a SPIFFE bundle document (empty, a NUL, or over 64 KiB)");
		return -EINVAL;
	}
	tok = json_tokener_new_ex(FEDERATION_JSON_DEPTH);
	if (!tok) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (root) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && strchr(" \t\r\n", json[end]) && json[end])
			end++;
		if (end != len) {
			json_object_put(root);
			root = NULL;
		}
	}
	if (!root) {
		snprintf(why, whylen, "not JSON (or nested deeper than %d)", FEDERATION_JSON_DEPTH);
		goto out;
	}
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "keys", &keys) ||
	    !json_object_is_type(keys, json_type_array)) {
		snprintf(why, whylen, "no \"keys\" array (a SPIFFE bundle is a JWK Set)");
		goto out;
	}
	n = json_object_array_length(keys);
	for (size_t i = 0; i < n; i++) {
		key = json_object_array_get_idx(keys, i);
		if (!json_object_is_type(key, json_type_object) ||
		    !json_object_object_get_ex(key, "use", &use) ||
		    !json_object_is_type(use, json_type_string)) {
			snprintf(why, whylen, "key %zu has no \"use\"", i);
			goto out;
		}
		if (strcmp(json_object_get_string(use), "x509-svid"))
			continue;	/* jwt-svid keys verify JWTs, not us */
		if (!json_object_object_get_ex(key, "x5c", &x5c) ||
		    !json_object_is_type(x5c, json_type_array) ||
		    json_object_array_length(x5c) != 1 ||
		    !json_object_is_type((cert = json_object_array_get_idx(x5c, 0)),
					 json_type_string)) {
			snprintf(why, whylen, "x509-svid key %zu needs exactly one x5c "
				 "certificate", i);
			goto out;
		}
		if (++roots > REG_BUNDLE_ROOTS_MAX) {
			snprintf(why, whylen, "more than %d roots", REG_BUNDLE_ROOTS_MAX);
			goto out;
		}
		rc = spiffe_root(json_object_get_string(cert),
				 (size_t)json_object_get_string_len(cert), pem, &pemlen, why,
				 whylen);
		if (rc)
			goto out;
		rc = -EINVAL;
	}
	if (!roots) {
		snprintf(why, whylen, "no key of use x509-svid");
		goto out;
	}
	rc = 0;
out:
	if (rc) {
		free(*pem);
		*pem = NULL;
	}
	json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

/* A .pem file's text replaced by its CA certificates, encoded afresh:
 * nothing else of the file (a key, comments, a NUL) reaches the nodes. */
static int federation_pem(char **text, size_t len, char *why, size_t whylen)
{
	char *pem;
	size_t pemlen;
	int rc = x509_ca_bundle(*text, len, REG_BUNDLE_ROOTS_MAX, REG_BUNDLE_PEM_MAX, &pem,
				&pemlen, why, whylen);

	sodium_memzero(*text, len);	/* it may have held a key */
	free(*text);
	*text = rc ? NULL : pem;
	return rc;
}

/* A .json file's text replaced by its roots as PEM. */
static int federation_json(char **text, size_t len, char *why, size_t whylen)
{
	char *pem;
	int rc = federation_spiffe_to_pem(*text, len, &pem, why, whylen);

	free(*text);
	*text = rc ? NULL : pem;
	if (!rc && strlen(pem) > REG_BUNDLE_PEM_MAX) {
		snprintf(why, whylen, "its roots come to over 64 KiB of PEM");
		free(pem);
		*text = NULL;
		rc = -EINVAL;
	}
	return rc;
}

void federation_free(struct reg_bundle *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(b[i].trust_domain);
		free(b[i].pem);
	}
	free(b);
}

int federation_load(const char *dir, const char *own_td, struct reg_bundle **out, size_t *n,
		    char *err, size_t errlen)
{
	struct reg_bundle *b = NULL;
	struct dirent *e;
	size_t nb = 0;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!dir)
		return 0;
	d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "federation_dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	b = calloc(REG_BUNDLES_MAX, sizeof(*b));
	if (!b) {
		closedir(d);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (!rc && (e = readdir(d))) {
		size_t l = strlen(e->d_name), tl;
		char path[4096], why[160], *pem;
		size_t len;
		int json;

		json = l > 5 && !strcmp(e->d_name + l - 5, ".json");
		if (!json && (l < 5 || strcmp(e->d_name + l - 4, ".pem")))
			continue;
		tl = l - (json ? 5 : 4);
		rc = -EINVAL;
		if (tl > 255 || strspn(e->d_name, "abcdefghijklmnopqrstuvwxyz0123456789.-_") < tl) {
			snprintf(err, errlen, "federation_dir %s: %s: the name is not "
				 "<trust-domain>.pem or .json", dir, e->d_name);
		} else if (!strncmp(e->d_name, own_td, tl) && !own_td[tl]) {
			snprintf(err, errlen, "federation_dir %s: %s is this agent's own trust "
				 "domain", dir, e->d_name);
		} else if (nb == REG_BUNDLES_MAX) {
			snprintf(err, errlen, "federation_dir %s: more than %d bundles", dir,
				 REG_BUNDLES_MAX);
		} else if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
			   (rc = file_read(path, REG_BUNDLE_PEM_MAX, &pem, &len))) {
			snprintf(err, errlen, "%s: %s", path, rc == -EFBIG ?
				 "over 64 KiB" : strerror(rc < 0 ? -rc : ENAMETOOLONG));
			rc = rc ? rc : -ENAMETOOLONG;
		} else if (json && (rc = federation_json(&pem, len, why, sizeof(why)))) {
			snprintf(err, errlen, "%s: %s", path, why);
		} else if (!json && (rc = federation_pem(&pem, len, why, sizeof(why)))) {
			snprintf(err, errlen, "%s: %s", path, why);
		} else {
			b[nb].trust_domain = strndup(e->d_name, tl);
			b[nb].pem = pem;
			if (!b[nb++].trust_domain) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
			}
		}
	}
	closedir(d);
	if (rc) {
		federation_free(b, nb);
		return rc;
	}
	qsort(b, nb, sizeof(*b), td_cmp);
	for (size_t i = 1; i < nb; i++)
		if (!strcmp(b[i - 1].trust_domain, b[i].trust_domain)) {
			snprintf(err, errlen, "federation_dir %s: trust domain %s has two bundles "
				 "(.pem and .json)", dir, b[i].trust_domain);
			federation_free(b, nb);
			return -EINVAL;
		}
	*out = b;
	*n = nb;
	return 0;
}
