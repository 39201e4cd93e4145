/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's metrics (metrics.h). The exposition is a few dozen lines,
 * rendered whole per scrape into one buffer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/httpsrv.h>
#include <weft/promtext.h>
#include <weft/sockaddr.h>
#include <weft/version.h>

#include "agent.h"
#include "ca.h"
#include "config.h"
#include "metrics.h"
#include "regwatch.h"
#include "server.h"
#include "service.h"

/* Prometheus servers and curious operators: a few at once is plenty. */
#define METRICS_CONNS 64
#define METRICS_CONNS_PER_ADDR 16

static const char *const reason_names[SERVICE_REFUSALS] = {
	[SERVICE_REFUSED_UNAUTHENTICATED] = "unauthenticated",
	[SERVICE_REFUSED_QUOTA] = "quota",
	[SERVICE_REFUSED_MALFORMED] = "malformed",
	[SERVICE_REFUSED_BAD_CSR] = "bad_csr",
	[SERVICE_REFUSED_NOT_AUTHORIZED] = "not_authorized",
	[SERVICE_REFUSED_CSR_MISMATCH] = "csr_mismatch",
	[SERVICE_REFUSED_UNAVAILABLE] = "unavailable",
};

/* Every reason, also at 0, so a rate() over it exists before the first. */
static void metrics_refusals(struct promtext *t, const char *name, const char *help,
			     const uint64_t *counts)
{
	static const char *const k[] = { "reason" };

	promtext_family(t, name, "counter", help);
	for (int r = 0; r < SERVICE_REFUSALS; r++) {
		const char *v[] = { reason_names[r] };

		promtext_sample_u64(t, name, k, v, 1, counts[r]);
	}
}

void agent_metrics_render(const struct agent *a, struct promtext *t)
{
	static const char *const bk[] = { "version", "trust_domain" };
	const char *bv[] = { WEFT_VERSION, a->cfg->trust_domain };
	const struct service_stats *st = service_stats(a->service);
	uint64_t version = 0;

	regwatch_current(a->reg, &version);
	promtext_family(t, "weft_agent_build_info", "gauge",
			"weft-agent's version and trust domain.");
	promtext_sample_u64(t, "weft_agent_build_info", bk, bv, 2, 1);
	promtext_one(t, "weft_agent_certificates_issued_total", "counter",
		     "Certificates signed (CreateCertificate answered).",
		     (double)st->certs_issued);
	metrics_refusals(t, "weft_agent_certificates_refused_total",
			 "CreateCertificate calls refused, by reason.", st->refused[SERVICE_CERT]);
	promtext_one(t, "weft_agent_watch_streams", "gauge",
		     "Registry Watch streams open now.", st->watches);
	promtext_one(t, "weft_agent_watches_opened_total", "counter",
		     "Registry Watch streams opened (snapshot sent).", (double)st->watches_opened);
	metrics_refusals(t, "weft_agent_watches_refused_total",
			 "Registry Watch calls refused, by reason.", st->refused[SERVICE_WATCH]);
	promtext_one(t, "weft_agent_watches_dropped_total", "counter",
		     "Watch streams ended because the node did not read its updates.",
		     (double)st->watches_dropped);
	promtext_one(t, "weft_agent_registry_updates_sent_total", "counter",
		     "Registry deltas sent, summed over the Watch streams.",
		     (double)st->updates_sent);
	promtext_one(t, "weft_agent_registry_version", "gauge",
		     "Version of the registry the agent serves.", (double)version);
	promtext_one(t, "weft_agent_registry_reload_failures_total", "counter",
		     "Registry file edits refused (did not parse); the last good one is served.",
		     (double)regwatch_failures(a->reg));
	promtext_one(t, "weft_agent_connections", "gauge", "Client connections open now.",
		     a->server ? server_conn_count(a->server) : 0);
	promtext_one(t, "weft_agent_ca_certificate_expiry_timestamp_seconds", "gauge",
		     "When the CA's signing certificate expires (unix time).",
		     (double)ca_not_after(a->ca));
	promtext_process(t);
}

static void metrics_handle(struct httpsrv_req *q, const char *method, const char *path,
			   void *udata)
{
	static const char nf[] = "not found\n", oom[] = "out of memory\n";
	struct agent *a = udata;
	struct promtext t;

	if (strcmp(method, "GET") || (strcmp(path, "/metrics") &&
				      strcmp(path, "/stats/prometheus"))) {
		httpsrv_reply(q, 404, "text/plain", nf, sizeof(nf) - 1);
		return;
	}
	promtext_init(&t);
	agent_metrics_render(a, &t);
	if (t.oom)
		httpsrv_reply(q, 503, "text/plain", oom, sizeof(oom) - 1);
	else
		httpsrv_reply(q, 200, PROMTEXT_CONTENT_TYPE, t.p, t.len);
	promtext_release(&t);
}

struct httpsrv *agent_metrics_listen(struct agent *a, char *err, size_t errlen)
{
	struct httpsrv_opts o = {
		.conns = METRICS_CONNS,
		.conns_per_addr = METRICS_CONNS_PER_ADDR,
		.use_reserve = 1,
		.handle = metrics_handle,
		.udata = a,
	};
	struct sockaddr_storage ss;
	struct httpsrv *s;
	char name[96];
	socklen_t len;
	int rc;

	err[0] = 0;
	if (!strcmp(a->cfg->metrics_listen, "off"))
		return NULL;
	snprintf(name, sizeof(name), "metrics %s", a->cfg->metrics_listen);
	o.name = name;
	rc = sockaddr_parse(a->cfg->metrics_listen, &ss, &len);
	s = rc ? NULL : httpsrv_tcp(a->loop, (struct sockaddr *)&ss, len, &o, &rc);
	if (!s)
		snprintf(err, errlen, "metrics_listen %s: %s", a->cfg->metrics_listen,
			 strerror(-rc));
	return s;
}
