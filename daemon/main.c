/* SPDX-License-Identifier: Apache-2.0 */
/* weftd: the node data plane. Gets its identities and the registry from
 * weft-agent, enrolls pods handed over by weft-cni, captures their TCP
 * traffic and carries it over HBONE tunnels. `-t` checks the config;
 * `--mode sidecar` runs it inside one pod's netns for that pod alone. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weft/chores.h>
#include <weft/cryptodev.h>
#include <weft/file.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/memtrim.h>
#include <weft/loop.h>
#include <weft/spiffe.h>
#include <weft/tls.h>

#include "admin.h"
#include <weft/agentc.h>
#include "authz.h"
#include "boundary.h"
#include "certs.h"
#include "cnisrv.h"
#include "inbound.h"
#include "metrics.h"
#include "outbound.h"
#include "persist.h"
#include "regapply.h"
#include "pods.h"
#include <weft/regcache.h>
#include "sidecar.h"
#include "tunnel.h"
#include "weftd.h"

#define WEFTD_DRAIN_MS 5000
#define WEFTD_SNAPSHOT_FILE "registry.pb"
/* Every 2 s: drop wolfSSL's ECC point cache if no handshake ran meanwhile
 * (tls_cache_trim: the node's idle size is otherwise ~5-12 MB more), the
 * receive pool's pages if no input came meanwhile (loop_pool_trim), and
 * give free heap above 1 MiB back to the kernel (glibc returns only the top
 * of the heap by itself, not what a burst of connections left below it). */
#define WEFTD_TRIM_MS 2000
#define WEFTD_TRIM_FREE (1u << 20)
/* 512 SQEs (the CQ is 4x): the loop submits early when they run out, and
 * a bigger ring is resident memory (~0.5 MB at 4096) for no gain. */
#define WEFTD_RING 512
/* Receive pool: 32 x 16 KiB shared by all connections (see loop_pool_init);
 * a connection waiting for input holds no buffer. */
#define WEFTD_POOL_BUFS 32
#define WEFTD_POOL_BUF (16u << 10)

static struct weftd the_weftd;
static struct loop_timer drain_timer;
static uint64_t drain_start_ms;
static struct loop_timer save_timer;
static unsigned save_inflight;	/* registry snapshots being written */
static struct loop_timer trim_timer;

int weftd_ready(const struct weftd *d)
{
	/* A sidecar has nothing to serve before its pod is enrolled. */
	if (d->cfg.mode == SETTINGS_MODE_SIDECAR && !d->inbound)
		return 0;
	return d->node_ident && ident_ready(d->node_ident) && regcache_ready(d->reg);
}


/* --- registry ----------------------------------------------------------------- */

static void on_snapshot(struct weftd *d, uint8_t *buf, size_t len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", d->cfg.state_dir, WEFTD_SNAPSHOT_FILE);
	if (buf)
		persist_write(d, path, buf, len, "the registry", &save_inflight);
	save_inflight--;
}

static void on_save_timer(struct loop_timer *t)
{
	struct weftd *d = &the_weftd;

	(void)t;
	/* One write at a time: a disk slower than the updates must not
	 * queue snapshots without bound; the newest goes next. The snapshot
	 * is serialized on the control thread, from its own copy. */
	if (save_inflight) {
		loop_timer_arm(d->loop, &save_timer, 1000);
		return;
	}
	save_inflight++;
	regapply_snapshot(d->regapply, on_snapshot);
}

/* The registry's federated bundles into the certificates' TLS contexts. */
static void weftd_federation_changed(struct weftd *d)
{
	const struct registry *r = regcache_registry(d->reg);
	int rc = certs_set_federation(d->certs, r->bundles, r->n_bundles);

	if (rc < 0) {
		log_error("federated trust domains not applied: out of memory");
	} else if (rc > 0) {
		char tds[512] = "";
		size_t o = 0;

		for (size_t i = 0; i < r->n_bundles && o < sizeof(tds); i++)
			o += (size_t)snprintf(tds + o, sizeof(tds) - o, "%s%s", i ? ", " : "",
					      r->bundles[i].trust_domain);
		log_info("federated trust domains: %s; TLS contexts rebuilt with their bundles",
			 r->n_bundles ? tds : "none");
		inbound_trust_changed(d->inbound);
	}
}

/* d->reg was replaced (regapply.c): what depends on it follows. */
static void weftd_registry_changed(struct weftd *d)
{
	weftd_federation_changed(d);
	pods_registry_changed(d->pods);
	outbound_identities_changed(d);
	authz_recheck(d);
	/* Coalesce bursts of deltas into one write. */
	if (!save_timer.idx)
		loop_timer_arm(d->loop, &save_timer, 1000);
}

/* Applied on the control thread, swapped in on the loop. */
static void on_watch(void *arg, const uint8_t *msg, size_t len)
{
	struct weftd *d = arg;

	regapply_msg(d->regapply, msg, len);
}

static void on_watch_state(void *arg, int up, const char *why)
{
	(void)arg;
	if (up)
		log_info("registry watch connected to weft-agent");
	else
		log_warn("registry watch down: %s (using the last registry)", why ? why : "?");
}

static void on_ident_change(void *arg, struct ident *id, int ready)
{
	struct weftd *d = arg;

	if (ready)
		outbound_identities_changed(d);
	if (id == d->node_ident && ready)
		log_info("node identity %s ready (until %ld)", ident_id(id),
			 (long)ident_not_after(id));
	else if (!ready)
		log_warn("identity %s has no valid certificate", ident_id(id));
	else
		log_debug("identity %s renewed", ident_id(id));
}

/* --- enrollment ---------------------------------------------------------------- */

static int on_cni_add(void *arg, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
		      char *err, size_t errlen)
{
	struct weftd *d = arg;

	if (d->cfg.mode == SETTINGS_MODE_SIDECAR)
		return sidecar_add(d, add, netns_fd, err, errlen);
	return pods_add(d->pods, add, netns_fd, err, errlen);
}

static int on_cni_del(void *arg, const char *uid, char *err, size_t errlen)
{
	return pods_del(((struct weftd *)arg)->pods, uid, err, errlen);
}

static const struct cnisrv_handler cni_handler = {
	.on_add = on_cni_add,
	.on_del = on_cni_del,
};

/* --- lifecycle ----------------------------------------------------------------- */

/* glibc gives freed heap memory back to the kernel only from the top of the
 * heap: after a burst (say 500 streams at once, ~20 KiB of buffers each)
 * RSS would stay at the burst's high-water mark for good. When more than a
 * few MiB sit free in the heap, hand them back. mallinfo2 walks the free
 * lists and malloc_trim madvises page by page: both on the chores thread.
 * (They take the arena's lock as they go, so a malloc of the loop's can
 * still wait on a trim's step; the loop itself never runs one.) */
static int trim_queued;
static int trim_files;		/* a quiet spell began: drop unused file pages too */

static void trim_run(struct chore *c)
{
	struct mallinfo2 mi = mallinfo2();

	(void)c;
	if (mi.fordblks > WEFTD_TRIM_FREE)
		malloc_trim(0);
	/* Library pages that start-up or the last burst of handshakes
	 * touched (libcrypto's initialisation alone: ~2 MB) leave RSS;
	 * what the data path runs faults back in from the page cache. */
	if (trim_files) {
		size_t kib = memtrim_clean_files();

		log_debug("%zu KiB of unused library pages dropped", kib);
	}
}

static void trim_done(struct chore *c)
{
	(void)c;
	trim_queued = 0;
}

static struct chore trim_chore = { .run = trim_run, .done = trim_done };

static void on_trim_timer(struct loop_timer *t)
{
	struct weftd *d = &the_weftd;
	int quiet;

	/* Record keys of closed sessions leave libcrypto's context cache. */
	cryptodev_forget_keys();
	/* The ECC cache is wolfSSL's per thread: it is dropped here. */
	quiet = tls_cache_trim();
	if (quiet)
		log_debug("no TLS handshake for %u ms: ECC point cache dropped", WEFTD_TRIM_MS);
	if (loop_pool_trim(d->loop))
		log_debug("no input for %u ms: receive pool pages given back", WEFTD_TRIM_MS);
	pods_trim(d->pods);
	if (!trim_queued) {
		trim_queued = 1;
		trim_files = quiet;
		chores_add(d->chores, &trim_chore, d->loop);
	}
	if (!d->draining)
		loop_timer_arm(d->loop, t, WEFTD_TRIM_MS);
}

static void on_drain_timer(struct loop_timer *t)
{
	struct weftd *d = &the_weftd;

	(void)t;
	if (d->live && loop_now_ms(d->loop) < drain_start_ms + WEFTD_DRAIN_MS) {
		loop_timer_arm(d->loop, &drain_timer, 200);
		return;
	}
	loop_stop(d->loop);
}

static void weftd_drain(struct weftd *d)
{
	if (d->draining) {
		loop_stop(d->loop);
		return;
	}
	d->draining = 1;
	log_info("draining: no new connections, GOAWAY on tunnels, %lu live connections get "
		 "up to %d ms", d->live, WEFTD_DRAIN_MS);
	inbound_drain(d->inbound);
	tunnels_drain(d->tunnels);
	drain_timer.cb = on_drain_timer;
	drain_start_ms = loop_now_ms(d->loop);
	loop_timer_arm(d->loop, &drain_timer, d->live ? 200 : 0);
}

static void on_signal(struct loop *l, int signo)
{
	(void)l;
	if (signo == SIGHUP)
		return;
	log_info("%s received", strsignal(signo));
	weftd_drain(&the_weftd);
}

static char *read_secret(const char *path, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	/* sodium memory: guarded, kept out of swap and core dumps, wiped by
	 * sodium_free. */
	int rc = file_read_secret(path, 4096, &buf, &len);

	if (rc) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return NULL;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = 0;
	if (!len) {
		snprintf(err, errlen, "%s is empty", path);
		sodium_free(buf);
		return NULL;
	}
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: weftd [-t] [--mode node|gateway|sidecar] -c CONFIG\n"
		   "  -c, --config CONFIG  YAML configuration file\n"
		   "  -t, --check          check the configuration and exit\n"
		   "  -m, --mode MODE      override the file's mode: node (default), gateway,\n"
		   "                       or sidecar (inside one pod's netns, for that pod)\n");
}

int main(int argc, char **argv)
{
	struct weftd *d = &the_weftd;
	const char *config = NULL, *tds[17] = { 0 }, *gw_tds[17] = { 0 };
	char err[1024], path[512], *token = NULL, *bundle = NULL;
	size_t bundle_len = 0;
	int check = 0, mode = -1, opt, rc = 1, gateway;
	sigset_t sigs;
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "c:tm:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 't': check = 1; break;
		case 'm':
			mode = settings_mode_parse(optarg);
			if (mode < 0) {
				fprintf(stderr, "weftd: --mode must be node, gateway or sidecar\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}
	log_set_component("weftd");
	if (settings_load_mode(&d->cfg, config, mode, err, sizeof(err))) {
		fprintf(stderr, "weftd: %s\n", err);
		return 1;
	}
	gateway = d->cfg.mode == SETTINGS_MODE_GATEWAY;
	if (check) {
		printf("weftd: %s is valid (%s %s at %s, agent %s)\n", config,
		       settings_mode_name(d->cfg.mode), d->cfg.node_name,
		       d->cfg.node_ip ? d->cfg.node_ip : "the pod's IP", d->cfg.agent_address);
		settings_release(&d->cfg);
		return 0;
	}
	if (sodium_init() < 0) {
		snprintf(err, sizeof(err), "libsodium failed to initialise");
		goto fail;
	}
	log_level_set(d->cfg.log_level);
	listener_nofile_raise();
	boundary_node_ip_set(d);
	token = read_secret(d->cfg.token_file, err, sizeof(err));
	if (!token)
		goto fail;
	if (file_read(d->cfg.agent_bundle, 1u << 20, &bundle, &bundle_len)) {
		snprintf(err, sizeof(err), "%s: cannot read the agent's root bundle",
			 d->cfg.agent_bundle);
		goto fail;
	}
	mkdir(d->cfg.state_dir, 0700);
	snprintf(d->node_id, sizeof(d->node_id), "spiffe://%s/weft/%s/%s", d->cfg.trust_domain,
		 gateway ? "gateway" : "node", d->cfg.node_name);
	for (size_t i = 0; i < d->cfg.trust_domains.n && i < 16; i++)
		tds[i] = d->cfg.trust_domains.v[i];
	for (size_t i = 0; i < d->cfg.gateway_trust_domains.n && i < 16; i++)
		gw_tds[i] = d->cfg.gateway_trust_domains.v[i];
	d->gateway = (struct gateway_self){ .node = d->cfg.node_name,
					    .trust_domain = d->cfg.trust_domain,
					    .allowed = gw_tds };

	d->loop = loop_new(WEFTD_RING);
	d->chores = chores_start();
	if (!d->loop || !d->chores) {
		snprintf(err, sizeof(err), "cannot start the event loop or the chores thread: %s",
			 strerror(errno));
		goto fail;
	}
	d->reg = regcache_new();
	d->metrics = metrics_new(d);
	d->pods = pods_new(d);
	if (!d->loop || !d->reg || !d->pods || !d->metrics) {
		snprintf(err, sizeof(err), "out of memory or no io_uring");
		goto fail;
	}
	rc = loop_pool_init(d->loop, WEFTD_POOL_BUFS, WEFTD_POOL_BUF);
	if (rc)
		log_warn("no io_uring receive buffer pool (%s): each connection reads into "
			 "a buffer of its own", strerror(-rc));
	snprintf(path, sizeof(path), "%s/%s", d->cfg.state_dir, WEFTD_SNAPSHOT_FILE);
	if (!regcache_load(d->reg, path, err, sizeof(err)))
		log_info("registry version %llu loaded from %s (until the agent answers)",
			 (unsigned long long)regcache_version(d->reg), path);
	d->regapply = regapply_start(d, weftd_registry_changed);
	if (!d->regapply) {
		snprintf(err, sizeof(err), "cannot start the control thread: %s", strerror(errno));
		goto fail;
	}
	save_timer.cb = on_save_timer;
	trim_timer.cb = on_trim_timer;
	loop_timer_arm(d->loop, &trim_timer, WEFTD_TRIM_MS);

	struct agentc_opts ao = {
		.addr = d->cfg.agent_address,
		.server_name = d->cfg.agent_server_name,
		.trust_domain = d->cfg.trust_domain,
		.bundle_pem = bundle,
		.bundle_len = bundle_len,
		.token = token,
		.node = d->cfg.node_name,
		.mark = WEFTD_MARK,
	};
	d->agent = agentc_new(d->loop, &ao, err, sizeof(err));
	/* agentc keeps its own copy in sodium memory; no second one stays. */
	sodium_free(token);
	token = NULL;
	if (!d->agent)
		goto fail;
	struct certs_opts co = {
		.trust_domain = d->cfg.trust_domain,
		.node = d->cfg.node_name,
		.gateway = gateway,
		.bundle_pem = bundle,
		.bundle_len = bundle_len,
		.trust_domains = tds,
		.ttl_s = d->cfg.cert_ttl_s,
	};
	d->certs = certs_new(d->loop, d->agent, &co, on_ident_change, d);
	if (!d->certs) {
		snprintf(err, sizeof(err), "cannot set up certificates");
		goto fail;
	}
	d->node_ident = certs_node(d->certs);
	weftd_federation_changed(d);	/* from the snapshot on disk */
	agentc_watch(d->agent, on_watch, on_watch_state, d);

	struct tunnel_limits tl = {
		.max_tunnels = d->cfg.max_tunnels,
		.max_streams = d->cfg.max_streams_per_tunnel,
		.max_pending = 4096,
		.connect_timeout_ms = d->cfg.connect_timeout_ms,
		.idle_ms = 5 * 60 * 1000,
		.ping_ms = 10 * 1000,
		.ping_timeout_ms = 20 * 1000,
	};
	d->tunnels = tunnels_new(d->loop, &tl);
	if (!d->tunnels) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	/* A sidecar without node_ip listens once its pod (and so its IP) is in. */
	if (d->cfg.node_ip) {
		d->inbound = inbound_new(d, err, sizeof(err));
		if (!d->inbound)
			goto fail;
	}
	d->admin = admin_new(d, weftd_drain, err, sizeof(err));
	if (!d->admin)
		goto fail;
	/* A gateway enrolls no pod: it holds no workload key. */
	if (!gateway) {
		pods_restore(d->pods);
		if (d->cfg.mode == SETTINGS_MODE_SIDECAR && pods_count(d->pods) &&
		    sidecar_listen(d, err, sizeof(err)))
			goto fail;
		d->cni = cnisrv_new(d->loop, d->cfg.cni_socket, &cni_handler, d, err,
				    sizeof(err));
		if (!d->cni)
			goto fail;
	}

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (loop_signals(d->loop, &sigs, on_signal)) {
		snprintf(err, sizeof(err), "cannot set up signal handling");
		goto fail;
	}
	if (gateway)
		log_info("gateway %s (%s): outer tunnels on %s:%u for %s, %s, agent %s",
			 d->cfg.node_name, d->node_id, d->cfg.node_ip, d->cfg.hbone_port,
			 gw_tds[0] ? "the trust domains of gateway_trust_domains"
				   : "every federated trust domain", admin_where(d->admin),
			 d->cfg.agent_address);
	else
		log_info("%s %s: HBONE on %s:%u, enrollment on %s, %s, agent %s",
			 d->cfg.mode == SETTINGS_MODE_SIDECAR ? "sidecar" : "node",
			 d->cfg.node_name,
			 d->cfg.node_ip ? d->cfg.node_ip : "(the pod's IP, once enrolled)",
			 d->cfg.hbone_port, d->cfg.cni_socket, admin_where(d->admin),
			 d->cfg.agent_address);
	log_buffered(1);
	rc = loop_run(d->loop) ? 1 : 0;
	log_buffered(0);
	log_info("stopped");
	goto out;
fail:
	log_error("%s", err);
out:
	cnisrv_free(d->cni);
	admin_free(d->admin);
	inbound_free(d->inbound);
	tunnels_free(d->tunnels);
	pods_free(d->pods);
	certs_free(d->certs);
	agentc_free(d->agent);
	regcache_free(d->reg);
	metrics_free(d->metrics);
	/* Before the loop goes: a finished chore posts to it. What is still
	 * queued (the last snapshot, unlinks) is written now. */
	regapply_stop(d->regapply);
	chores_stop(d->chores);
	loop_free(d->loop);
	sodium_free(token);	/* wipes; NULL is fine */
	free(bundle);
	settings_release(&d->cfg);
	return rc;
}
