/* SPDX-License-Identifier: Apache-2.0 */
/* One YAML document (libyaml's document API) loaded under bounds and walked
 * with "file:line: what is wrong" errors: the shared core of the agent's
 * config and registry parsers. Pure: bytes in, nodes or one message out. */
#ifndef WEFT_YAMLDOC_H
#define WEFT_YAMLDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

/* User text quoted in an error is cut at YAMLDOC_QUOTE_MAX bytes; a quote
 * buffer needs YAMLDOC_QBUF bytes. */
#define YAMLDOC_QUOTE_MAX	64
#define YAMLDOC_QBUF		(YAMLDOC_QUOTE_MAX * 4 + 8)

/* Set name, kind, err, errlen, max_nodes and max_depth, zero the rest,
 * then yamldoc_load. */
struct yamldoc {
	const char *name;	/* file name for messages */
	const char *kind;	/* "registry file": "a registry file holds exactly one" */
	char *err;		/* first error, "name:line: message"; may be NULL */
	size_t errlen;
	size_t max_nodes;	/* nodes walked, each use of an alias counted again */
	int max_depth;		/* nesting of lists and mappings */
	/* private */
	int err_set;
	size_t visits;
	bool loaded;
	yaml_document_t doc;
};

/* Loads buf as exactly one document whose root is not null, enforcing
 * max_depth and max_nodes before libyaml builds anything. Returns 0 and
 * *root (owned by d), -EINVAL with the error set, or -ENOMEM. Release with
 * yamldoc_deinit whatever the result. */
int yamldoc_load(struct yamldoc *d, const char *buf, size_t len, yaml_node_t **root);
void yamldoc_deinit(struct yamldoc *d);

/* Formats the error once (the first wins: later ones are consequences).
 * yamldoc_fail takes the line from n (line 1 when n is NULL). Both return
 * -EINVAL so callers can "return yamldoc_fail(...)". */
int yamldoc_fail_at(struct yamldoc *d, unsigned long line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int yamldoc_fail(struct yamldoc *d, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* 1-based source line of a node. */
unsigned long yamldoc_line(const yaml_node_t *n);

/* Node idx (a key, value or item of parent), counted against max_nodes;
 * NULL with the error set. Every node a walk touches should come from
 * here, so an alias used many times costs what its copies would. */
yaml_node_t *yamldoc_get(struct yamldoc *d, int idx, const yaml_node_t *parent);

/* Splits a mapping of a known shape into vals[] by keys[]: catches unknown
 * keys (typos), repeated keys and missing required ones (bit i of required
 * for keys[i]; nkeys <= 32). Null values leave vals[i] NULL. what names the
 * mapping in messages. 0 or -EINVAL. */
int yamldoc_fields(struct yamldoc *d, const yaml_node_t *map, const char *what,
		   const char *const *keys, size_t nkeys, uint32_t required,
		   yaml_node_t **vals);

bool yamldoc_scalar_is(const yaml_node_t *n, const char *s);
/* YAML's null: an empty or ~/null plain scalar, read as "field absent". */
bool yamldoc_is_null(const yaml_node_t *n);
/* "a scalar", "a list", "a mapping": for "expected X, found Y". */
const char *yamldoc_kind(const yaml_node_t *n);
size_t yamldoc_seq_len(const yaml_node_t *n);

/* s as a short double-quoted string for a message: printable ASCII as is,
 * anything else as \xNN, cut at YAMLDOC_QUOTE_MAX. buf holds YAMLDOC_QBUF
 * bytes; returns buf. */
const char *yamldoc_quote(char *buf, const void *s, size_t len);
const char *yamldoc_quote_scalar(char *buf, const yaml_node_t *n);

#endif
