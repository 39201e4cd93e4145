/* SPDX-License-Identifier: Apache-2.0 */
/* weft-agent: the certificate authority and registry server of a weft
 * cluster. Starts from one YAML config file; `-t` checks it and exits. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <weft/file.h>
#include <weft/httpsrv.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/spiffe.h>
#include <weft/tls.h>
#include <weft/x509.h>

#include "agent.h"
#include "ca.h"
#include "config.h"
#include "federation.h"
#include "metrics.h"
#include <weft/registry.h>
#include "regwatch.h"
#include "remote.h"
#include "server.h"
#include "service.h"
#include "tokens.h"

#define AGENT_CERT_TTL_S (365u * 86400)
#define AGENT_DRAIN_MS 2000

static struct loop_timer drain_timer;

static void usage(FILE *f)
{
	fprintf(f, "usage: weft-agent [-t] -c CONFIG\n"
		   "  -c CONFIG  YAML configuration file\n"
		   "  -t         check the configuration, token and registry files, then exit\n");
}

/* The agent's own SVID, spiffe://<td>/weft/agent, plus the DNS names
 * clients dial, so gRPC clients that verify a host name and weftd, which
 * verifies the SPIFFE ID, both accept it; remote agents see it as this
 * agent's client certificate. The key never leaves memory. */
static int agent_identity_new(struct agent *a, char *err, size_t errlen)
{
	char id[SPIFFE_ID_MAX], **chain = NULL;
	size_t n = 0, len = 0;
	struct x509_key *k;
	uint8_t *pub = NULL;
	size_t publen;
	int rc = -ENOMEM;

	snprintf(id, sizeof(id), "spiffe://%s/weft/agent", a->cfg->trust_domain);
	k = x509_key_generate();
	if (!k || x509_key_public_der(k, &pub, &publen) ||
	    ca_sign(a->ca, pub, publen, id, (const char *const *)a->cfg->dns_names.v,
		    a->cfg->dns_names.n, AGENT_CERT_TTL_S, &chain, &n) ||
	    x509_key_to_pem(k, &a->id_key, &a->id_key_len)) {
		snprintf(err, errlen, "cannot make the agent's certificate");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		len += strlen(chain[i]);
	a->id_chain = malloc(len + 1);
	if (!a->id_chain) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	a->id_chain[0] = '\0';
	for (size_t i = 0; i < n; i++)
		strcat(a->id_chain, chain[i]);
	a->id_chain_len = len;
	rc = 0;
out:
	ca_chain_free(chain, n);
	free(pub);
	x509_key_free(k);
	return rc;
}

/* The serving context: clients of our trust domain (nodes, gateways) and,
 * each verified against its own bundle only, the agents of the federated
 * trust domains (registry export, agent/service.c). Made again when the
 * bundles change. */
static struct tls_ctx *agent_tls_new(struct agent *a, char *err, size_t errlen)
{
	const struct registry *r = regwatch_current(a->reg, NULL);
	const char *tds[REG_BUNDLES_MAX + 2] = { a->cfg->trust_domain };
	struct tls_bundle fed[REG_BUNDLES_MAX];
	struct tls_ctx_opts o = {
		.role = TLS_SERVER,
		.peer_auth = TLS_PEER_OPTIONAL,
		.trust_domains = tds,
		.federated = fed,
		.alpn = "h2",
		.chain_pem = a->id_chain,
		.chain_len = a->id_chain_len,
		.key_pem = a->id_key,
		.key_len = a->id_key_len,
	};
	size_t n = r->n_bundles < REG_BUNDLES_MAX ? r->n_bundles : REG_BUNDLES_MAX;

	for (size_t i = 0; i < n; i++) {
		tds[i + 1] = r->bundles[i].trust_domain;
		fed[i] = (struct tls_bundle){ .trust_domain = r->bundles[i].trust_domain,
					      .pem = r->bundles[i].pem,
					      .len = strlen(r->bundles[i].pem) };
	}
	o.n_federated = n;
	o.bundle_pem = ca_bundle_pem(a->ca, &o.bundle_len);
	return tls_ctx_new(&o, err, errlen);
}

/* After the bundles changed: new connections use the new roots. */
static void agent_tls_renew(struct agent *a)
{
	char err[TLS_ERR_MAX];
	struct tls_ctx *t = agent_tls_new(a, err, sizeof(err));

	if (!t) {
		log_error("serving context not renewed, keeping the last: %s", err);
		return;
	}
	tls_ctx_free(a->tls);	/* open connections hold their own reference */
	a->tls = t;
}

static struct agent *the_agent;

/* A new registry: to the watchers; and when this network's own resources
 * changed (a reload of the file, not a publication of bundles or remote
 * networks on the same registry), the remote imports again, so that their
 * VIPs keep clear of any local address. */
static void agent_registry_changed(void *arg, const struct registry *prev,
				   const struct registry *next, uint64_t version)
{
	struct agent *a = arg;

	service_registry_changed(a->service, prev, next, version);
	if (prev->services != next->services || prev->workloads != next->workloads ||
	    prev->nodes != next->nodes)
		remote_local_changed(a->remote);
}

static void on_drain_done(struct loop_timer *t)
{
	(void)t;
	loop_stop(the_agent->loop);
}

static void on_signal(struct loop *l, int signo)
{
	struct agent *a = the_agent;
	char err[512];

	if (signo == SIGHUP) {
		struct tokens *t = tokens_load(a->cfg->token_file, err, sizeof(err));
		struct reg_bundle *b;
		size_t n;

		if (!t) {
			log_error("SIGHUP: tokens not reloaded: %s", err);
		} else {
			tokens_free(a->tokens);
			a->tokens = t;
			log_info("SIGHUP: %zu node tokens loaded", tokens_count(t));
		}
		/* Either reloads the registry file too. */
		if (federation_load(a->cfg->federation_dir, a->cfg->trust_domain, &b, &n, err,
				    sizeof(err))) {
			log_error("SIGHUP: federated bundles not reloaded: %s", err);
			regwatch_reload(a->reg);
		} else {
			regwatch_set_bundles(a->reg, b, n);
		}
		agent_tls_renew(a);
		remote_bundles_changed(a->remote);
		return;
	}
	if (a->draining) {
		loop_stop(l);
		return;
	}
	log_info("%s: draining (stop accepting, end streams, exit within %d ms)",
		 strsignal(signo), AGENT_DRAIN_MS);
	a->draining = 1;
	server_drain(a->server);
	service_drain(a->service);
	drain_timer.cb = on_drain_done;
	loop_timer_arm(l, &drain_timer, AGENT_DRAIN_MS);
}

static int agent_check(const char *path)
{
	struct agent_config *cfg;
	struct tokens *t;
	struct registry *r;
	char err[1024], *buf;
	size_t len;
	int rc;

	cfg = config_load(path, err, sizeof(err));
	if (!cfg)
		goto fail;
	t = tokens_load(cfg->token_file, err, sizeof(err));
	if (!t)
		goto fail_cfg;
	tokens_free(t);
	rc = file_read(cfg->registry_file, 16u << 20, &buf, &len);
	if (rc) {
		snprintf(err, sizeof(err), "%s: %s", cfg->registry_file, strerror(-rc));
		goto fail_cfg;
	}
	r = registry_parse(buf, len, cfg->registry_file, err, sizeof(err));
	free(buf);
	if (!r)
		goto fail_cfg;
	if (federation_load(cfg->federation_dir, cfg->trust_domain, &r->bundles, &r->n_bundles,
			    err, sizeof(err))) {
		registry_free(r);
		goto fail_cfg;
	}
	for (size_t i = 0; i < cfg->remote_networks.n; i++) {
		const struct agent_remote *rm = (const struct agent_remote *)cfg->remote_networks.v + i;
		size_t j = 0;

		while (j < r->n_bundles && strcmp(r->bundles[j].trust_domain, rm->trust_domain))
			j++;
		if (j == r->n_bundles) {
			snprintf(err, sizeof(err), "remote network %s: trust domain %s is not "
				 "federated (no %s.pem in federation_dir)", rm->network,
				 rm->trust_domain, rm->trust_domain);
			registry_free(r);
			goto fail_cfg;
		}
	}
	printf("weft-agent: %s is valid (%zu nodes, %zu workloads, %zu services, %zu policies, "
	       "%zu federated trust domains, %zu remote networks)\n", path, r->n_nodes, r->n_workloads,
	       r->n_services, r->n_policies, r->n_bundles, cfg->remote_networks.n);
	registry_free(r);
	config_free(cfg);
	return 0;
fail_cfg:
	config_free(cfg);
fail:
	fprintf(stderr, "weft-agent: %s\n", err);
	return 1;
}

int main(int argc, char **argv)
{
	struct agent a = { 0 };
	const char *config = NULL;
	int check = 0, opt, rc = 1;
	char err[1024];
	sigset_t sigs;

	while ((opt = getopt(argc, argv, "c:th")) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 't': check = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}
	log_set_component("weft-agent");
	if (check)
		return agent_check(config);

	a.cfg = config_load(config, err, sizeof(err));
	if (!a.cfg)
		goto fail;
	log_level_set(a.cfg->log_level);
	listener_nofile_raise();
	a.tokens = tokens_load(a.cfg->token_file, err, sizeof(err));
	if (!a.tokens)
		goto fail;
	a.loop = loop_new(1024);
	if (!a.loop) {
		snprintf(err, sizeof(err), "cannot set up io_uring");
		goto fail;
	}
	/* Connections waiting for input (most of them, most of the time)
	 * hold no receive buffer of their own: 32 x 16 KiB shared. */
	rc = loop_pool_init(a.loop, 32, 16u << 10);
	if (rc)
		log_warn("no io_uring receive buffer pool (%s): each connection reads into "
			 "a buffer of its own", strerror(-rc));
	mkdir(a.cfg->state_dir, 0700);
	struct ca_opts co = {
		.state_dir = a.cfg->state_dir,
		.trust_domain = a.cfg->trust_domain,
		.cert_file = a.cfg->ca_cert_file,
		.key_file = a.cfg->ca_key_file,
		.chain_file = a.cfg->ca_chain_file,
	};
	a.ca = ca_open(&co, err, sizeof(err));
	if (!a.ca)
		goto fail;
	a.service = service_new(&a);
	if (!a.service) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	a.reg = regwatch_new(a.loop, a.cfg->registry_file, agent_registry_changed, &a, err,
			     sizeof(err));
	if (!a.reg)
		goto fail;
	{
		struct reg_bundle *b;
		size_t n;

		if (federation_load(a.cfg->federation_dir, a.cfg->trust_domain, &b, &n, err,
				    sizeof(err)))
			goto fail;
		if (regwatch_set_bundles(a.reg, b, n)) {
			snprintf(err, sizeof(err), "cannot attach the federated bundles");
			goto fail;
		}
		if (n)
			log_info("federates with %zu trust domain(s) from %s", n,
				 a.cfg->federation_dir);
	}
	if (agent_identity_new(&a, err, sizeof(err)))
		goto fail;
	a.tls = agent_tls_new(&a, err, sizeof(err));
	if (!a.tls)
		goto fail;
	a.remote = remote_new(&a, err, sizeof(err));
	if (!a.remote && err[0])
		goto fail;
	a.server = server_new(&a, err, sizeof(err));
	if (!a.server)
		goto fail;
	a.metrics = agent_metrics_listen(&a, err, sizeof(err));
	if (!a.metrics && err[0])
		goto fail;
	the_agent = &a;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (loop_signals(a.loop, &sigs, on_signal)) {
		snprintf(err, sizeof(err), "cannot set up signal handling");
		goto fail;
	}
	const struct registry *r = regwatch_current(a.reg, NULL);
	log_info("serving gRPC on %s: trust domain %s, %zu node tokens, registry %zu nodes / "
		 "%zu workloads, root bundle %s; metrics %s", server_addr(a.server),
		 a.cfg->trust_domain, tokens_count(a.tokens), r->n_nodes, r->n_workloads,
		 ca_bundle_path(a.ca), a.cfg->metrics_listen);
	rc = loop_run(a.loop) ? 1 : 0;
	log_info("stopped");
	goto out;
fail:
	log_error("%s", err);
out:
	httpsrv_free(a.metrics);
	server_free(a.server);
	remote_free(a.remote);
	regwatch_free(a.reg);
	service_free(a.service);
	tls_ctx_free(a.tls);
	if (a.id_key)
		x509_secret_free(a.id_key, a.id_key_len);
	free(a.id_chain);
	ca_free(a.ca);
	tokens_free(a.tokens);
	loop_free(a.loop);
	config_free(a.cfg);
	return rc;
}
