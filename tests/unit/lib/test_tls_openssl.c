/* SPDX-License-Identifier: Apache-2.0 */
/* Interop of the TLS layer with an independent implementation, the openssl
 * CLI, over loopback: our client against `openssl s_server -rev` (mutual
 * auth, TLS_AES_256_GCM_SHA384 only, ALPN h2) and our server against
 * `openssl s_client` fed through pipes. Payloads must arrive intact. Child
 * processes are killed on every path, including a watchdog timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <weft/cryptodev.h>
#include <weft/tls.h>

#include "../check.h"
#include "../../pki.h"

#define ID_A "spiffe://cluster.local/ns/default/sa/a"
#define ID_B "spiffe://cluster.local/ns/default/sa/b"
#define SUITE "TLS_AES_256_GCM_SHA384"

static char dir[64];
static pid_t children[4];

static struct pki_pem ca, a_crt, a_key, b_crt, b_key;

static void children_kill(void)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static void cleanup(void)
{
	children_kill();
	pki_dir_remove(dir);
	dir[0] = '\0';
}

static void on_alarm(int sig)
{
	static const char msg[] = "test_tls_openssl: watchdog timeout\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
	_exit(1);
}

static void child_track(pid_t pid)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (children[i] == 0) {
			children[i] = pid;
			return;
		}
	}
}

/* Reap one child; returns its exit status or -1. */
static int child_wait(pid_t pid, int timeout_ms)
{
	int st;

	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
				if (children[i] == pid)
					children[i] = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(10000);
	}
	return -1;
}

/* One root signs a (our server, s_server's cert) and b (the client). */
static int certs_make(void)
{
	if (pki_ca_make(dir, "ca", NULL, "/O=weft-test/CN=root", 2) != 0 ||
	    pki_leaf_make(dir, "a", "ca", "URI:" ID_A, NULL, 1) != 0 ||
	    pki_leaf_make(dir, "b", "ca", "URI:" ID_B, NULL, 1) != 0)
		return -1;
	if (pki_pem_load(&ca, dir, "ca.pem") || pki_pem_load(&a_crt, dir, "a.pem") ||
	    pki_pem_load(&a_key, dir, "a.key") || pki_pem_load(&b_crt, dir, "b.pem") ||
	    pki_pem_load(&b_key, dir, "b.key"))
		return -1;
	return 0;
}

static pid_t spawn(char *const argv[], int in_fd, int out_fd, const char *errlog)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int e = open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDWR);

		dup2(in_fd >= 0 ? in_fd : nul, 0);
		dup2(out_fd >= 0 ? out_fd : e >= 0 ? e : nul, 1);
		dup2(e >= 0 ? e : nul, 2);
		for (int fd = 3; fd < 64; fd++)
			close(fd);
		execvp(argv[0], argv);
		_exit(127);
	}
	child_track(pid);
	return pid;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Move ciphertext between the socket and t: flush all pending output, then
 * wait up to wait_ms for input and feed it. Returns 0, or -1 on EOF/error. */
static int pump(int fd, struct tls *t, int wait_ms)
{
	const uint8_t *p;
	uint8_t buf[16384];
	size_t n;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t k;

	while ((n = tls_out_peek(t, &p)) > 0) {
		k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return -1;
		tls_out_consume(t, (size_t)k);
	}
	if (poll(&pfd, 1, wait_ms) <= 0)
		return 0;
	k = recv(fd, buf, sizeof(buf), 0);
	if (k <= 0)
		return -1;
	/* Callers read plaintext after every pump, so the bounded input
	 * always has room for one recv; running out would lose bytes. */
	if (tls_feed(t, buf, (size_t)k) != 0) {
		fprintf(stderr, "tls_feed: input buffer full, %zd bytes lost\n", k);
		return -1;
	}
	return 0;
}

static int drive_handshake(int fd, struct tls *t)
{
	int64_t deadline = now_ms() + 5000;
	int r;

	while ((r = tls_handshake(t)) == -EAGAIN && now_ms() < deadline)
		if (pump(fd, t, 100) < 0)
			break;
	/* Whatever the outcome, let the peer have our last flight or alert. */
	pump(fd, t, 0);
	if (r != 0)
		fprintf(stderr, "handshake: %d %s\n", r, tls_error(t));
	return r;
}

/* Read plaintext into buf (holding have bytes) until want bytes are there,
 * pumping the socket, for at most 5 s or until an error. Reads up to cap, so
 * a peer sending too much shows as a count above want. Returns the count. */
static size_t read_until(int fd, struct tls *t, char *buf, size_t have, size_t want, size_t cap)
{
	int64_t deadline = now_ms() + 5000;

	while (have < want && now_ms() < deadline) {
		ssize_t k = tls_read(t, buf + have, cap - have);

		if (k > 0) {
			have += (size_t)k;
			continue;
		}
		if (k != -EAGAIN) {
			fprintf(stderr, "tls_read: %zd %s\n", k, tls_error(t));
			break;
		}
		if (pump(fd, t, 100) < 0)
			break;
	}
	return have;
}

/* Handshake over fd, then check what was agreed: our only suite, h2 and
 * the peer's SPIFFE ID. Returns 0 when the handshake completed. */
static int handshake_check(int fd, struct tls *t, const char *peer)
{
	char id[256];

	CHECK_EQ_INT(drive_handshake(fd, t), 0);
	if (!tls_handshake_done(t))
		return -1;
	CHECK_EQ_STR(tls_cipher_name(t), SUITE);
	CHECK_EQ_STR(tls_alpn(t), "h2");
	CHECK_EQ_INT(tls_peer_id(t, id, sizeof(id)), 0);
	CHECK_EQ_STR(id, peer);
	return 0;
}

static uint16_t free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void fill_line(char *line, size_t n, unsigned seed)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		line[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
	}
}

/* Our client, openssl's server: s_server -rev answers each line reversed. */
static void test_client_vs_s_server(void)
{
	enum { LINES = 64, LEN = 2000 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char port_s[16], cert[256], key[256], cafile[256], log[256];
	char line[LEN + 1], *want = NULL, *got = NULL;
	size_t want_n = 0, got_n = 0;
	struct tls_ctx *ctx = pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca, 0, NULL);
	struct tls *t = NULL;
	int fd = -1, connected = 0;
	uint64_t e0 = cryptodev_gcm_encrypts();
	ssize_t k;
	pid_t pid;
	int64_t deadline;

	sa.sin_port = htons(free_port());
	snprintf(port_s, sizeof(port_s), "127.0.0.1:%u", ntohs(sa.sin_port));
	snprintf(cert, sizeof(cert), "%s/a.pem", dir);
	snprintf(key, sizeof(key), "%s/a.key", dir);
	snprintf(cafile, sizeof(cafile), "%s/ca.pem", dir);
	snprintf(log, sizeof(log), "%s/s_server.log", dir);
	char *argv[] = { "openssl", "s_server", "-tls1_3", "-accept", port_s, "-cert", cert,
			 "-key", key, "-CAfile", cafile, "-Verify", "1", "-verify_return_error",
			 "-ciphersuites", SUITE, "-alpn", "h2", "-rev", "-naccept", "1", NULL };
	pid = spawn(argv, -1, -1, log);
	CHECK(pid > 0 && ctx);
	if (pid <= 0 || !ctx)
		goto out;

	/* s_server needs a moment to listen. */
	deadline = now_ms() + 5000;
	while (!connected && now_ms() < deadline) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			connected = 1;
			break;
		}
		close(fd);
		fd = -1;
		usleep(20000);
	}
	CHECK(connected);
	if (!connected)
		goto out;
	t = tls_new(ctx, "localhost");
	CHECK(t && tls_expect_peer(t, ID_A) == 0);
	if (!t)
		goto out;
	if (handshake_check(fd, t, ID_A) != 0)
		goto out;

	want = malloc(LINES * (LEN + 1));
	got = malloc(LINES * (LEN + 1) + 1);
	if (!want || !got)
		goto out;
	for (unsigned i = 0; i < LINES; i++) {
		fill_line(line, LEN, i + 1);
		line[LEN] = '\n';
		CHECK_EQ_INT(tls_write(t, line, LEN + 1), LEN + 1);
		for (size_t j = 0; j < LEN; j++)
			want[want_n + j] = line[LEN - 1 - j];
		want[want_n + LEN] = '\n';
		want_n += LEN + 1;
		CHECK_EQ_INT(pump(fd, t, 0), 0);
		/* Take the replies as they come, as a real event loop would. */
		while ((k = tls_read(t, got + got_n, LINES * (LEN + 1) - got_n)) > 0)
			got_n += (size_t)k;
	}
	got_n = read_until(fd, t, got, got_n, want_n, want_n + 1);
	CHECK_EQ_INT(got_n, want_n);
	CHECK(got_n == want_n && memcmp(got, want, want_n) == 0);
	if (cryptodev_id() != -2)
		CHECK(cryptodev_gcm_encrypts() - e0 >= LINES / 8);
	tls_shutdown(t);
	pump(fd, t, 0);
out:
	if (fd >= 0)
		close(fd);
	if (pid > 0 && child_wait(pid, 2000) < 0)
		children_kill();
	tls_free(t);
	tls_ctx_free(ctx);
	free(want);
	free(got);
}

/* Our server, openssl's client: a payload in through s_client's stdin, a
 * reply out through its stdout. */
static void test_server_vs_s_client(void)
{
	enum { REQ = 100000, RESP = 150000 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t salen = sizeof(sa);
	char conn_s[32], cert[256], key[256], cafile[256], log[256];
	char *req = malloc(REQ), *resp = malloc(RESP), *got = malloc(RESP + 1), *rbuf = malloc(REQ);
	struct tls_ctx *ctx = pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca, 0, NULL);
	struct tls *t = NULL;
	int lfd = -1, fd = -1, in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 };
	size_t got_n = 0, rn = 0, off;
	pid_t pid = -1;
	int64_t deadline;
	struct pollfd pfd;

	CHECK(ctx && req && resp && got && rbuf);
	if (!ctx || !req || !resp || !got || !rbuf)
		goto out;
	fill_line(req, REQ, 7);
	fill_line(resp, RESP, 8);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0 || pipe(in_pipe) != 0 ||
	    pipe(out_pipe) != 0) {
		CHECK(!"socket setup");
		goto out;
	}
	snprintf(conn_s, sizeof(conn_s), "127.0.0.1:%u", ntohs(sa.sin_port));
	snprintf(cert, sizeof(cert), "%s/b.pem", dir);
	snprintf(key, sizeof(key), "%s/b.key", dir);
	snprintf(cafile, sizeof(cafile), "%s/ca.pem", dir);
	snprintf(log, sizeof(log), "%s/s_client.log", dir);
	char *argv[] = { "openssl", "s_client", "-connect", conn_s, "-tls1_3", "-cert", cert,
			 "-key", key, "-CAfile", cafile, "-verify_return_error", "-ciphersuites",
			 SUITE, "-alpn", "h2", "-quiet", NULL };
	pid = spawn(argv, in_pipe[0], out_pipe[1], log);
	close(in_pipe[0]);
	close(out_pipe[1]);
	in_pipe[0] = out_pipe[1] = -1;
	CHECK(pid > 0);
	if (pid <= 0)
		goto out;

	pfd = (struct pollfd){ .fd = lfd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1) {
		CHECK(!"s_client did not connect");
		goto out;
	}
	fd = accept(lfd, NULL, NULL);
	CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	t = tls_new(ctx, NULL);
	CHECK(t != NULL);
	if (!t)
		goto out;
	if (handshake_check(fd, t, ID_B) != 0)
		goto out;

	/* s_client copies its stdin to the connection. */
	for (off = 0; off < REQ;) {
		ssize_t k = write(in_pipe[1], req + off, REQ - off);

		if (k <= 0)
			break;
		off += (size_t)k;
	}
	close(in_pipe[1]);
	in_pipe[1] = -1;
	rn = read_until(fd, t, rbuf, rn, REQ, REQ);
	CHECK_EQ_INT(rn, REQ);
	CHECK(rn == REQ && memcmp(rbuf, req, REQ) == 0);

	/* The reply, then close_notify and EOF: s_client prints the reply
	 * and exits. */
	for (off = 0; off < RESP;) {
		ssize_t k = tls_write(t, resp + off, RESP - off);

		if (k < 0 && k != -EAGAIN)
			break;
		if (k > 0)
			off += (size_t)k;
		pump(fd, t, 0);
	}
	tls_shutdown(t);
	pump(fd, t, 0);
	shutdown(fd, SHUT_WR);
	deadline = now_ms() + 5000;
	while (got_n < RESP + 1 && now_ms() < deadline) {
		ssize_t k;

		pfd = (struct pollfd){ .fd = out_pipe[0], .events = POLLIN };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		k = read(out_pipe[0], got + got_n, RESP + 1 - got_n);
		if (k <= 0)
			break;
		got_n += (size_t)k;
	}
	CHECK_EQ_INT(got_n, RESP);
	CHECK(got_n == RESP && memcmp(got, resp, RESP) == 0);
out:
	if (fd >= 0)
		close(fd);
	if (lfd >= 0)
		close(lfd);
	for (int i = 0; i < 2; i++) {
		if (in_pipe[i] >= 0)
			close(in_pipe[i]);
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
	}
	if (pid > 0 && child_wait(pid, 2000) < 0)
		children_kill();
	tls_free(t);
	tls_ctx_free(ctx);
	free(req);
	free(resp);
	free(got);
	free(rbuf);
}

int main(void)
{
	int rc = pki_test_begin(dir, sizeof(dir), "tls-ossl");

	if (rc != 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	alarm(30);
	atexit(cleanup);
	if (certs_make() != 0) {
		fprintf(stderr, "cannot generate test certificates in %s\n", dir);
		return 1;
	}
	test_client_vs_s_server();
	test_server_vs_s_client();
	if (check_failures) {
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "cat %s/*.log >&2", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "(no openssl logs)\n");
	}
	return check_done("test_tls_openssl");
}
