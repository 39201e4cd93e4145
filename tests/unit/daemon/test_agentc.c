/* SPDX-License-Identifier: Apache-2.0 */
/* agentc.c + certs.c against the real build/weft-agent, started here as a
 * child process on a free loopback port: node SVID with the bootstrap
 * token, workload SVIDs over mTLS (ImpersonatedIdentity), the
 * Registry/Watch snapshot, the Watch coming back after the agent is killed
 * and restarted, renewal at half-life with a new serial, and expiry while
 * the agent is down. The child is killed on every exit path. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <weft/grpc.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/x509.h>

#include "registry.pb-c.h"

#include <weft/agentc.h>
#include "../../../daemon/certs.h"

#include "../check.h"

#define TD		"cluster.local"
#define NODE		"node1"
#define TOKEN		"node1-bootstrap-token-0123456789abcdef"
#define WL_CLIENT	"spiffe://cluster.local/ns/default/sa/client"
#define WL_ECHO		"spiffe://cluster.local/ns/default/sa/echo"	/* on node2 */
#define NODE_ID		"spiffe://cluster.local/weft/node/node1"
#define TTL_S		6

static const char registry_yaml[] =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - name: node1\n"
	"    address: 10.10.0.1\n"
	"  - name: node2\n"
	"    address: 10.10.0.2\n"
	"workloads:\n"
	"  - name: client-1\n"
	"    namespace: default\n"
	"    service_account: client\n"
	"    node: node1\n"
	"    ips: [10.20.1.2]\n"
	"  - name: echo-1\n"
	"    namespace: default\n"
	"    service_account: echo\n"
	"    node: node2\n"
	"    ips: [10.20.2.2]\n";

/* --- the child agent ---------------------------------------------------------------- */

static volatile pid_t agent_pid = -1;
static char dir[PATH_MAX];
static char agent_bin[PATH_MAX];
static int agent_port;

/* Async-signal-safe: kill and reap what we started. */
static void agent_kill(void)
{
	pid_t pid = agent_pid;

	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		agent_pid = -1;
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	agent_kill();
	if (dir[0] && !getenv("WEFT_KEEP_TEST_DIR"))
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void on_fatal_signal(int sig)
{
	static const char msg[] = "test_agentc: killed by a signal or the watchdog\n";

	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	if (sig == SIGALRM)
		_exit(1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int write_file(const char *name, const char *data, mode_t mode)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fputs(data, f);
	fclose(f);
	return chmod(path, mode) ? -errno : 0;
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int port_open(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(agent_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Start the agent and wait (outside the loop) until it listens. */
static int agent_start(void)
{
	char cfg[PATH_MAX + 64], log[PATH_MAX + 64];
	uint64_t deadline = mono_ms() + 10000;
	pid_t pid;

	snprintf(cfg, sizeof(cfg), "%s/agent.yaml", dir);
	snprintf(log, sizeof(log), "%s/agent.log", dir);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(agent_bin, agent_bin, "-c", cfg, (char *)NULL);
		_exit(127);
	}
	agent_pid = pid;
	while (mono_ms() < deadline) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			agent_pid = -1;
			fprintf(stderr, "weft-agent exited early (status %d), see %s\n", status, log);
			return -ECHILD;
		}
		if (port_open())
			return 0;
		usleep(20000);
	}
	return -ETIMEDOUT;
}

static void agent_log_tail(void)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "tail -n 30 %s/agent.log >&2", dir);
	if (system(cmd) < 0)
		perror("system");
}

/* --- the loop, driven until a condition holds ----------------------------------------- */

static struct loop *L;
static int (*wait_pred)(void);
static uint64_t wait_deadline;
static struct loop_timer poll_timer;

static void on_poll(struct loop_timer *t)
{
	if (wait_pred() || mono_ms() >= wait_deadline) {
		loop_stop(L);
		return;
	}
	loop_timer_arm(L, t, 10);
}

/* Run the loop until pred() or timeout_ms; returns pred(). */
static int run_until(int (*pred)(void), uint64_t timeout_ms)
{
	wait_pred = pred;
	wait_deadline = mono_ms() + timeout_ms;
	poll_timer.cb = on_poll;
	loop_timer_arm(L, &poll_timer, 0);
	loop_run(L);
	loop_timer_disarm(L, &poll_timer);
	return pred();
}

/* --- what the callbacks saw ------------------------------------------------------------- */

struct ident_seen {
	int ready_events;		/* on_change with ready = 1 */
	int unready_events;		/* on_change with ready = 0 */
	int last_ready;
	char serial[64];		/* at the last ready event */
	char prev_serial[64];
	uint64_t first_ready_ms, renewed_ms;
};

static struct ident *node_ident, *wl_ident;
static struct ident_seen node_seen, wl_seen;

static int watch_msgs, watch_snapshots, last_upserts;
static int state_up_events, state_down_events, state_up;

static void serial_of(const struct ident *id, char *out, size_t len)
{
	char d[1024];
	const char *p, *e;

	out[0] = '\0';
	if (ident_describe(id, d, sizeof(d)) < 0 || !(p = strstr(d, "serial=")))
		return;
	p += 7;
	e = strchr(p, ' ');
	snprintf(out, len, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
}

static void on_change(void *arg, struct ident *id, int ready)
{
	struct ident_seen *s = id == node_ident ? &node_seen : id == wl_ident ? &wl_seen : NULL;
	char serial[64];

	(void)arg;
	if (!s)
		return;
	s->last_ready = ready;
	CHECK_EQ_INT(ident_ready(id), ready);
	if (!ready) {
		s->unready_events++;
		CHECK(ident_client_ctx(id) == NULL);
		return;
	}
	serial_of(id, serial, sizeof(serial));
	if (strcmp(serial, s->serial)) {
		if (s->serial[0]) {
			snprintf(s->prev_serial, sizeof(s->prev_serial), "%s", s->serial);
			if (!s->renewed_ms)
				s->renewed_ms = mono_ms();
		} else {
			s->first_ready_ms = mono_ms();
		}
		snprintf(s->serial, sizeof(s->serial), "%s", serial);
		s->ready_events++;
	}
}

static void on_watch(void *arg, const uint8_t *msg, size_t len)
{
	Weft__Registry__V1__WatchResponse *r;

	(void)arg;
	watch_msgs++;
	r = weft__registry__v1__watch_response__unpack(NULL, len, msg);
	CHECK(r != NULL);
	if (!r)
		return;
	if (r->snapshot)
		watch_snapshots++;
	last_upserts = (int)r->n_upserts;
	weft__registry__v1__watch_response__free_unpacked(r, NULL);
}

static void on_state(void *arg, int up, const char *why)
{
	(void)arg;
	state_up = up;
	if (up)
		state_up_events++;
	else
		state_down_events++;
	fprintf(stderr, "  watch state: %s (%s)\n", up ? "up" : "down", why);
}

struct cert_result {
	bool done;
	enum grpc_status st;
	char msg[512];
	char *chain;			/* joined PEM */
	size_t n;
};

static void on_cert(void *arg, enum grpc_status st, const char *msg, char *const *chain,
		    size_t n)
{
	struct cert_result *r = arg;
	size_t total = 1;

	r->done = true;
	r->st = st;
	r->n = n;
	snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
	for (size_t i = 0; i < n; i++)
		total += strlen(chain[i]);
	r->chain = calloc(1, total);
	for (size_t i = 0; i < n; i++)
		strcat(r->chain, chain[i]);
}

/* --- predicates ----------------------------------------------------------------------------- */

static struct cert_result *pending_cert;

static int p_node_ready(void) { return node_seen.ready_events >= 1; }
static int p_wl_ready(void) { return wl_seen.ready_events >= 1; }
static int p_cert_done(void) { return pending_cert->done; }
static int p_snapshot(void) { return watch_snapshots >= 1 && state_up; }
static int p_wl_renewed(void) { return wl_seen.renewed_ms != 0; }
static int p_down(void) { return !state_up; }
static int p_up_again(void) { return state_up && state_up_events >= 2; }
static int p_wl_expired(void) { return wl_seen.unready_events >= 1; }
static int p_never(void) { return 0; }

/* A certificate with a key made here, through agentc directly. */
static struct cert_result create_cert(struct agentc *ac, struct x509_key *key, const char *uri,
				      const char *imp)
{
	struct cert_result r = { 0 };
	char *csr;
	size_t csr_len;

	CHECK_EQ_INT(x509_csr_make(key, uri, &csr, &csr_len), 0);
	CHECK_EQ_INT(agentc_create_cert(ac, csr, imp, 60, on_cert, &r), 0);
	free(csr);
	CHECK(!r.done);		/* never from inside the call */
	pending_cert = &r;
	CHECK(run_until(p_cert_done, 5000));
	return r;
}

static void check_leaf(const char *chain, const char *uri)
{
	struct x509_summary sum;
	uint8_t *der = NULL;
	size_t pos = 0, len;

	CHECK(chain != NULL);
	if (!chain)
		return;
	CHECK_EQ_INT(x509_pem_next(chain, strlen(chain), &pos, &der, &len), 0);
	CHECK_EQ_INT(x509_cert_summary(der, len, &sum), 0);
	CHECK_EQ_STR(sum.uri, uri);
	CHECK_EQ_INT(sum.n_uri, 1);
	CHECK_EQ_INT(sum.n_dns, 0);
	CHECK_EQ_INT(sum.is_ca, 0);
	CHECK_EQ_STR(sum.key_type, "ECDSA P-256");
	free(der);
}

int main(void)
{
	char path[PATH_MAX + 64], exe[PATH_MAX], err[512], *bundle = NULL, *p;
	struct agentc_opts ao = { 0 };
	struct certs_opts co = { 0 };
	struct agentc *ac = NULL, *ac2 = NULL;
	struct certs *cs = NULL;
	struct x509_key *k1 = NULL, *k2 = NULL;
	struct cert_result r;
	ssize_t n;
	long blen;
	FILE *f;

	log_set_component("test_agentc");
	/* The agent binary sits three levels up from build/tests/unit/daemon. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return 77;
	exe[n] = '\0';
	for (int i = 0; i < 4 && (p = strrchr(exe, '/')); i++)
		*p = '\0';
	snprintf(agent_bin, sizeof(agent_bin), "%.*s/weft-agent", (int)sizeof(agent_bin) - 16, exe);
	if (getenv("WEFT_AGENT_BIN"))	/* another build of the agent */
		snprintf(agent_bin, sizeof(agent_bin), "%s", getenv("WEFT_AGENT_BIN"));
	if (access(agent_bin, X_OK)) {
		printf("skip: %s not built\n", agent_bin);
		return 77;
	}

	snprintf(dir, sizeof(dir), "/tmp/weft-agentc-test-XXXXXX");
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGSEGV, on_fatal_signal);
	signal(SIGABRT, on_fatal_signal);
	signal(SIGALRM, on_fatal_signal);
	signal(SIGPIPE, SIG_IGN);
	alarm(60);	/* watchdog: never hang CI, never leave the agent behind */

	agent_port = free_port();
	CHECK(agent_port > 0);
	snprintf(path, sizeof(path),
		 "listen: 127.0.0.1:%d\nmetrics_listen: off\ntrust_domain: " TD
		 "\nstate_dir: state\n"
		 "token_file: tokens\nregistry_file: registry.yaml\nttl_max: 1h\n"
		 "handshake_timeout_ms: 1000\nlog_level: debug\n", agent_port);
	if (write_file("agent.yaml", path, 0600) || write_file("registry.yaml", registry_yaml, 0600) ||
	    write_file("tokens", "# test\n" NODE " " TOKEN "\n", 0600)) {
		perror("write config");
		return 1;
	}
	if (agent_start()) {
		agent_log_tail();
		CHECK(!"weft-agent started");
		return check_done("test_agentc");
	}
	snprintf(path, sizeof(path), "%s/state/root-cert.pem", dir);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (!f)
		return check_done("test_agentc");
	fseek(f, 0, SEEK_END);
	blen = ftell(f);
	rewind(f);
	bundle = calloc(1, (size_t)blen + 1);
	CHECK(fread(bundle, 1, (size_t)blen, f) == (size_t)blen);
	fclose(f);

	L = loop_new(256);
	CHECK(L != NULL);
	snprintf(path, sizeof(path), "127.0.0.1:%d", agent_port);
	ao.addr = path;
	ao.server_name = "weft-agent";
	ao.trust_domain = TD;
	ao.bundle_pem = bundle;
	ao.bundle_len = (size_t)blen;
	ao.token = TOKEN;
	ao.node = NODE;
	ac = agentc_new(L, &ao, err, sizeof(err));
	CHECK(ac != NULL);
	if (!ac) {
		fprintf(stderr, "agentc_new: %s\n", err);
		return check_done("test_agentc");
	}

	/* 1. Watch from the start (token), node SVID with the token. */
	agentc_watch(ac, on_watch, on_state, NULL);
	co.trust_domain = TD;
	co.node = NODE;
	co.bundle_pem = bundle;
	co.bundle_len = (size_t)blen;
	co.ttl_s = TTL_S;
	cs = certs_new(L, ac, &co, on_change, NULL);
	CHECK(cs != NULL);
	node_ident = certs_node(cs);
	CHECK(node_ident != NULL);
	CHECK_EQ_STR(ident_id(node_ident), NODE_ID);
	CHECK(!ident_ready(node_ident));
	CHECK(run_until(p_node_ready, 5000));
	CHECK(ident_client_ctx(node_ident) != NULL);
	CHECK(ident_server_ctx(node_ident) != NULL);
	CHECK(ident_not_after(node_ident) > time(NULL));
	CHECK(ident_not_after(node_ident) <= time(NULL) + TTL_S + 1);
	CHECK(run_until(p_snapshot, 5000));
	CHECK(last_upserts > 0);
	CHECK_EQ_INT(state_up_events, 1);

	/* 2. Workload SVID through certs (ImpersonatedIdentity over mTLS). */
	wl_ident = certs_get(cs, WL_CLIENT);
	CHECK(wl_ident != NULL);
	CHECK(certs_get(cs, "spiffe://cluster.local/weft/node/node1") == NULL);
	CHECK(certs_get(cs, "not a spiffe id") == NULL);
	CHECK(run_until(p_wl_ready, 5000));
	CHECK(ident_client_ctx(wl_ident) != NULL);
	CHECK(ident_server_ctx(wl_ident) == NULL);
	/* A second certs_get shares it. */
	CHECK(certs_get(cs, WL_CLIENT) == wl_ident);
	certs_put(wl_ident);

	/* Directly through agentc: the leaf is a workload SVID. */
	k1 = x509_key_generate();
	r = create_cert(ac, k1, WL_CLIENT, WL_CLIENT);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK(r.n >= 2);
	check_leaf(r.chain, WL_CLIENT);
	free(r.chain);
	/* Node authorization: node1 may not have node2's workload identity. */
	r = create_cert(ac, k1, WL_ECHO, WL_ECHO);
	CHECK_EQ_INT(r.st, GRPC_PERMISSION_DENIED);
	CHECK(strstr(r.msg, "node1") != NULL);
	free(r.chain);

	/* mTLS alone: a client without a token is refused until it has a
	 * node identity, then served. */
	ao.token = NULL;
	ac2 = agentc_new(L, &ao, err, sizeof(err));
	CHECK(ac2 != NULL);
	r = create_cert(ac2, k1, WL_CLIENT, WL_CLIENT);
	CHECK_EQ_INT(r.st, GRPC_UNAUTHENTICATED);
	free(r.chain);
	k2 = x509_key_generate();
	r = create_cert(ac, k2, NODE_ID, NULL);
	CHECK_EQ_INT(r.st, GRPC_OK);
	check_leaf(r.chain, NODE_ID);
	if (r.chain) {
		char *kp;
		size_t kl;

		CHECK_EQ_INT(x509_key_to_pem(k2, &kp, &kl), 0);
		CHECK_EQ_INT(agentc_set_identity(ac2, r.chain, strlen(r.chain), kp, kl), 0);
		x509_secret_free(kp, kl);
		/* A key that does not match the chain is refused. */
		CHECK_EQ_INT(x509_key_to_pem(k1, &kp, &kl), 0);
		CHECK(agentc_set_identity(ac2, r.chain, strlen(r.chain), kp, kl) < 0);
		x509_secret_free(kp, kl);
	}
	free(r.chain);
	r = create_cert(ac2, k1, WL_CLIENT, WL_CLIENT);
	CHECK_EQ_INT(r.st, GRPC_OK);
	check_leaf(r.chain, WL_CLIENT);
	free(r.chain);
	agentc_free(ac2);
	ac2 = NULL;

	/* 3. Renewal at half-life: a new serial within ~4 s of the first. */
	CHECK(run_until(p_wl_renewed, 6000));
	CHECK(wl_seen.renewed_ms - wl_seen.first_ready_ms <= 4500);
	CHECK(strcmp(wl_seen.serial, wl_seen.prev_serial) != 0);
	CHECK(ident_ready(wl_ident));
	CHECK_EQ_INT(wl_seen.unready_events, 0);
	fprintf(stderr, "  renewed after %llu ms: %s -> %s\n",
		(unsigned long long)(wl_seen.renewed_ms - wl_seen.first_ready_ms),
		wl_seen.prev_serial, wl_seen.serial);

	/* 4. The agent dies: the Watch goes down, and comes back after a
	 * restart within the next backoff step, with a fresh snapshot. */
	int snaps = watch_snapshots;

	agent_kill();
	CHECK(run_until(p_down, 3000));
	CHECK(state_down_events >= 1);
	CHECK_EQ_INT(agent_start(), 0);
	uint64_t t0 = mono_ms();

	/* The Watch retries with exponential backoff (0.5 s, 1, 2, 4 ...):
	 * after a few seconds down the next attempt may be 4-8 s away. */
	CHECK(run_until(p_up_again, 12000));
	CHECK(mono_ms() - t0 <= 12000);
	CHECK(watch_snapshots > snaps);
	CHECK(ident_ready(node_ident));

	/* 5. The agent dies for good: certificates stay in use until they
	 * expire, then ready drops to 0. */
	agent_kill();
	CHECK(ident_ready(wl_ident));
	CHECK(run_until(p_wl_expired, (TTL_S + 2) * 1000));
	CHECK(!ident_ready(wl_ident));
	CHECK(ident_client_ctx(wl_ident) == NULL);
	{
		char d[1024];

		CHECK(ident_describe(wl_ident, d, sizeof(d)) > 0);
		CHECK(strstr(d, "expired") != NULL);
		fprintf(stderr, "  %s\n", d);
	}

	if (check_failures)
		agent_log_tail();
	certs_put(wl_ident);
	certs_free(cs);
	agentc_free(ac);
	/* Let closing connections finish before the loop goes. */
	run_until(p_never, 50);
	loop_free(L);
	x509_key_free(k1);
	x509_key_free(k2);
	free(bundle);
	return check_done("test_agentc");
}
