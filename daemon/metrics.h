/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's Prometheus metrics (DESIGN §7): Istio's istio_tcp_* per
 * (reporter, source, destination, flags) from a bounded series table,
 * weft's own weft_* and the process_* ones, rendered for 15020. */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stdint.h>

#include <weft/promtext.h>
#include <weft/registry.h>

struct weftd;
struct pod;
struct series;
struct metrics;

enum metrics_label {
	ML_REPORTER = 0,
	ML_SRC_WORKLOAD, ML_SRC_NAMESPACE, ML_SRC_PRINCIPAL, ML_SRC_APP, ML_SRC_CLUSTER,
	ML_DST_WORKLOAD, ML_DST_NAMESPACE, ML_DST_PRINCIPAL, ML_DST_APP,
	ML_DST_SERVICE, ML_DST_SERVICE_NAMESPACE, ML_DST_SERVICE_NAME, ML_DST_CLUSTER,
	ML_PROTOCOL, ML_FLAGS, ML_SECURITY,
	ML_COUNT
};

/* One connection's label values (pointers: valid until metrics_conn_*
 * returns, which copies them) and the buffers the helpers fill. */
struct metrics_labels {
	const char *v[ML_COUNT];
	char src_principal[256], dst_principal[256], dst_service[320];
};

/* One proxied connection's series, held from its start to its end. */
struct metrics_conn {
	struct series *s;
};

struct metrics *metrics_new(struct weftd *d);
void metrics_free(struct metrics *m);

/* Everything "unknown", reporter and security set; then fill the sides. */
void metrics_labels_init(struct metrics_labels *l, int destination_reporter, int mtls);
/* A side from the registry's workload (NULL: left unknown) and, when the
 * workload is not known, the principal the TLS peer proved. */
void metrics_labels_source(struct metrics_labels *l, const struct weftd *d,
			   const struct reg_workload *w, const char *principal);
void metrics_labels_destination(struct metrics_labels *l, const struct weftd *d,
				const struct reg_workload *w, const char *principal);
void metrics_labels_service(struct metrics_labels *l, const struct weftd *d,
			    const struct reg_service *svc);

/* The connection is on its way (its destination known): opened. */
void metrics_conn_start(struct metrics *m, struct metrics_conn *mc, struct metrics_labels *l);
/* It ended: closed (failed too when flag is set), with the bytes the
 * client app sent (request) and got (response). Started now with l when
 * it never was (refused before its destination was known). */
void metrics_conn_end(struct metrics *m, struct metrics_conn *mc, struct metrics_labels *l,
		      const char *flag, uint64_t request_bytes, uint64_t response_bytes);

/* A connection denied by policy (ns/name, rule index; "" and -1 when no
 * ALLOW policy matched). */
void metrics_policy_denied(struct metrics *m, const char *policy, int rule);

/* The exposition (text format 0.0.4), rendered a piece at a time so a
 * scrape of many series neither stalls the loop nor needs a buffer the
 * size of the whole answer: start, then next until it returns 1. The
 * cursor holds the series it rests on (never expired under it). */
struct metrics_cursor {
	int family;			/* the istio_tcp family being written; 5: the rest */
	struct series *at;		/* next series to write, held; NULL: family start */
	int started;
};
void metrics_render_start(struct metrics *m, struct metrics_cursor *c);
/* Appends about budget bytes (whole lines) to t; 1 when the exposition is
 * complete (the cursor holds nothing then). */
int metrics_render_next(struct metrics *m, struct metrics_cursor *c, struct promtext *t,
			size_t budget);
/* A scrape that ends early lets go of its cursor. */
void metrics_render_stop(struct metrics_cursor *c);
/* The whole exposition at once (tests, small outputs). */
void metrics_render(struct metrics *m, struct promtext *t);

#endif
