/* SPDX-License-Identifier: Apache-2.0 */
/* weft-cni's input, parsed without I/O: the network configuration JSON on
 * stdin (cniVersion, name, type, prevResult and weft's own keys) and the
 * CNI_ARGS environment string (K8S_POD_NAMESPACE, K8S_POD_NAME, ...). */
#ifndef CNI_CNICONF_H
#define CNI_CNICONF_H

#include <stddef.h>

#define CNICONF_SOCKET_DEFAULT "/run/weft/cni.sock"
#define CNICONF_MAX_IPS 16		/* addresses taken from prevResult */
#define CNICONF_MAX_EXCLUDE 64		/* exclude_namespaces entries */
#define CNICONF_ERR_MAX 256

/* Error classes, chosen so main can map them onto CNI error codes. */
enum cniconf_error {
	CNICONF_EDECODE = 1,		/* not JSON, or not an object: CNI code 6 */
	CNICONF_EINVALID,		/* a key is missing or of the wrong type: code 7 */
	CNICONF_EVERSION,		/* unsupported cniVersion: code 1 */
};

struct cniconf {
	char *cni_version;		/* e.g. "1.0.0" */
	char *name;			/* the network name */
	char *type;			/* "weft-cni" */
	char *socket;			/* enrollment socket, CNICONF_SOCKET_DEFAULT if absent */
	char *log_file;			/* NULL: log to stderr */
	char **exclude_ns;		/* namespaces passed through untouched */
	size_t n_exclude_ns;
	/* prevResult re-serialized (compact JSON, with cniVersion set); NULL
	 * when the config has none. Printed unchanged as ADD's result. */
	char *prev_result;
	/* Addresses of the pod from prevResult.ips[].address without their
	 * prefix length ("10.244.1.5"), validated with inet_pton. */
	char *ips[CNICONF_MAX_IPS];
	size_t n_ips;
};

/* The CNI_ARGS values weft uses; empty strings when absent. Sizes follow
 * Kubernetes' limits (namespace: DNS label, name: DNS subdomain). */
struct cniconf_args {
	char pod_namespace[64];
	char pod_name[254];
	char pod_uid[64];
};

/* Parse len bytes of config JSON. Returns an owned struct (cniconf_free) or
 * NULL with *errc set to an enum cniconf_error and err saying why. Accepts
 * the prevResult shapes of CNI 0.3.x/0.4.0 (ips[].version) and 1.0.0. */
struct cniconf *cniconf_parse(const char *json, size_t len, int *errc,
			      char *err, size_t errlen);
void cniconf_free(struct cniconf *c);

/* 1 when version is one this plugin speaks. */
int cniconf_version_supported(const char *version);
/* The supported versions as a JSON array, e.g. ["0.3.0",...,"1.0.0"]. */
const char *cniconf_versions_json(void);

/* 1 when ns is listed in exclude_namespaces. */
int cniconf_excluded(const struct cniconf *c, const char *ns);

/* Parse CNI_ARGS ("K=V;K=V"; NULL or "" is fine). Unknown keys are
 * ignored; a malformed pair or an oversized or unsafe value of a key we use
 * is an error. Returns 0 or -EINVAL with err set. */
int cniconf_args_parse(const char *s, struct cniconf_args *a, char *err, size_t errlen);

#endif
