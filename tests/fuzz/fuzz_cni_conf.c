/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for weft-cni's input parsing: arbitrary bytes as the
 * network config (with prevResult) and, NUL-terminated, as CNI_ARGS.
 * Whatever parses must satisfy the parser's promises: a supported version,
 * an absolute socket path that fits sun_path, bounded addresses that are
 * canonical IPs, and a prevResult that is JSON again. ASan/UBSan and
 * LeakSanitizer catch the rest. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "../../cni/cniconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CNICONF_ERR_MAX], *s;
	struct cniconf_args a;
	struct cniconf *c;
	int errc = -1;

	c = cniconf_parse((const char *)data, size, &errc, err, sizeof(err));
	if (!c) {
		if (errc < CNICONF_EDECODE || errc > CNICONF_EVERSION || !err[0])
			abort();	/* every rejection is classified and says why */
	} else {
		unsigned char bin[16];

		if (errc != 0 || !cniconf_version_supported(c->cni_version) || !c->name ||
		    !c->type || !c->socket || c->socket[0] != '/' || strlen(c->socket) > 107 ||
		    c->n_ips > CNICONF_MAX_IPS || c->n_exclude_ns > CNICONF_MAX_EXCLUDE)
			abort();
		for (size_t i = 0; i < c->n_ips; i++)
			if (inet_pton(AF_INET, c->ips[i], bin) != 1 &&
			    inet_pton(AF_INET6, c->ips[i], bin) != 1)
				abort();
		if (c->prev_result) {
			struct json_object *o = json_tokener_parse(c->prev_result);

			if (!o || !json_object_is_type(o, json_type_object))
				abort();
			json_object_put(o);
		}
		for (size_t i = 0; i < c->n_exclude_ns; i++)
			(void)cniconf_excluded(c, c->exclude_ns[i]);
		cniconf_free(c);
	}

	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (cniconf_args_parse(s, &a, err, sizeof(err)) == 0) {
		if (strlen(a.pod_namespace) >= sizeof(a.pod_namespace) ||
		    strchr(a.pod_namespace, '/') || strchr(a.pod_name, '/'))
			abort();
	}
	free(s);
	return 0;
}
