/* SPDX-License-Identifier: Apache-2.0 */
/* SPIFFE IDs (spiffe://trust-domain/path): parsing and validation per the
 * SPIFFE-ID spec, and weft's two shapes of path: workloads
 * (/ns/<ns>/sa/<sa>) and nodes (/weft/node/<name>). Pure functions. */
#ifndef WEFT_SPIFFE_H
#define WEFT_SPIFFE_H

#include <stddef.h>

#define SPIFFE_ID_MAX 2048	/* bytes, per spec */
#define SPIFFE_TD_MAX 255

struct spiffe_id {
	char td[SPIFFE_TD_MAX + 1];	/* trust domain, lowercase */
	char path[SPIFFE_ID_MAX];	/* "" or "/seg/seg" */
};

/* Parse and validate. Returns 0, or -EINVAL with *why (static string) set
 * to the rule broken ("scheme must be spiffe", "empty path segment", ...). */
int spiffe_id_parse(const char *s, size_t len, struct spiffe_id *out, const char **why);
int spiffe_td_valid(const char *td);
/* Workload ID -> namespace and service account; -EINVAL if not that shape. */
int spiffe_id_workload(const struct spiffe_id *id, char *ns, size_t nslen,
		       char *sa, size_t salen);
/* Node ID -> node name; -EINVAL if not that shape. */
int spiffe_id_node(const struct spiffe_id *id, char *node, size_t len);
/* Gateway ID (spiffe://td/weft/gateway/<name>) -> name; -EINVAL if not. */
int spiffe_id_gateway(const struct spiffe_id *id, char *name, size_t len);
/* Format; return the length, or -ENOSPC. Inputs must be valid segments. */
int spiffe_workload_format(char *out, size_t len, const char *td, const char *ns, const char *sa);
int spiffe_node_format(char *out, size_t len, const char *td, const char *node);
int spiffe_gateway_format(char *out, size_t len, const char *td, const char *name);
/* 1 if s is a valid path segment (non-empty, [A-Za-z0-9._-], not . or ..). */
int spiffe_segment_valid(const char *s);

#endif
