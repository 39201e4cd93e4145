/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's metrics without a cluster: connections counted per label tuple
 * (opened at start, closed, failed under their flag, bytes); a scrape in
 * 4 KiB pieces says exactly what a scrape in one go says (connections arriving
 * meanwhile, their tuples past the cap); 5,000 distinct source
 * workloads against a cap of 1,000 series keep 1,000 and count the rest as
 * dropped. */
#include <stdio.h>
#include <string.h>

#include "../check.h"
#include <weft/loop.h>
#include <weft/promtext.h>
#include <weft/registry.h>
#include <weft/regproto.h>

#include "../../../daemon/metrics.h"
#include <weft/regcache.h>
#include "../../weftd_fixture.h"

static struct weftd d;

static void conn(struct metrics *m, const char *src, const char *flag, uint64_t rq, uint64_t rs)
{
	struct metrics_labels l;
	struct metrics_conn mc = { 0 };

	metrics_labels_init(&l, 0, 1);
	l.v[ML_SRC_WORKLOAD] = src;
	l.v[ML_DST_WORKLOAD] = "db";
	metrics_conn_start(m, &mc, &l);
	metrics_conn_end(m, &mc, NULL, flag, rq, rs);
}

static const char *line_with(const char *text, const char *a, const char *b)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) + 1 : strlen(p);	/* with its newline */
		char line[2048];

		if (n >= sizeof(line))
			continue;
		memcpy(line, p, n);
		line[n] = 0;
		if (strstr(line, a) && strstr(line, b))
			return p;
	}
	return NULL;
}

int main(void)
{
	struct promtext whole, pieces;
	struct metrics_cursor cur;
	struct metrics *m;
	char name[32];
	int done = 0, rounds = 0;

	if (weftd_fixture_init(&d))
		return 1;
	d.loop = loop_new(8);
	d.cfg.metrics_max_series = 1000;
	d.cfg.metrics_idle_s = 3600;
	m = metrics_new(&d);
	CHECK(m != NULL);
	if (!m)
		return 1;
	conn(m, "web", NULL, 100, 2000);
	conn(m, "web", NULL, 50, 70);
	conn(m, "web", "DENY", 0, 0);
	promtext_init(&whole);
	metrics_render(m, &whole);
	CHECK(line_with(whole.p, "istio_tcp_connections_opened_total{reporter=\"source\","
			"source_workload=\"web\"", "response_flags=\"-\"") != NULL);
	CHECK(strstr(whole.p, "istio_tcp_received_bytes_total{reporter=\"source\","
			 "source_workload=\"web\"") != NULL);
	CHECK(line_with(whole.p, "istio_tcp_received_bytes_total{", "} 150\n") != NULL);
	CHECK(line_with(whole.p, "istio_tcp_sent_bytes_total{", "} 2070\n") != NULL);
	CHECK(line_with(whole.p, "istio_tcp_connections_opened_total{", "} 3\n") != NULL);
	CHECK(line_with(whole.p, "istio_tcp_connections_closed_total{", "response_flags=\"-\"") &&
	      line_with(whole.p, "istio_tcp_connections_failed_total{", "response_flags=\"DENY\""));
	CHECK(!line_with(whole.p, "istio_tcp_connections_failed_total{", "response_flags=\"-\""));
	promtext_release(&whole);

	/* 3,000 more sources: the cap keeps 1,000 series in all. */
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "client-%d", i);
		conn(m, name, NULL, 1, 1);
	}
	promtext_init(&whole);
	metrics_render(m, &whole);
	CHECK(strstr(whole.p, "weft_metrics_series 1000\n") != NULL);
	CHECK(strstr(whole.p, "weft_metrics_series_dropped_total 4002\n") != NULL);

	/* In pieces, with connections of known series in between: the same
	 * lines, only the counters of those series moved. */
	promtext_init(&pieces);
	metrics_render_start(m, &cur);
	while (!done) {
		done = metrics_render_next(m, &cur, &pieces, 4096);
		if (++rounds % 50 == 0) {
			snprintf(name, sizeof(name), "late-%d", rounds);
			conn(m, name, NULL, 1, 1);	/* past the cap: dropped */
		}
	}
	CHECK(rounds > 100);
	{
		/* The istio_tcp part, byte for byte (process_* after it moves). */
		const char *a = strstr(whole.p, "# HELP weft_build_info");
		const char *b = strstr(pieces.p, "# HELP weft_build_info");

		CHECK(a && b && a - whole.p == b - pieces.p &&
		      !memcmp(whole.p, pieces.p, (size_t)(a - whole.p)));
	}
	fprintf(stderr, "1,000 series: %zu bytes in %d pieces\n", pieces.len, rounds);
	promtext_release(&pieces);
	promtext_release(&whole);
	metrics_free(m);
	loop_free(d.loop);
	d.loop = NULL;
	weftd_fixture_deinit(&d);
	return check_done("metrics");
}
