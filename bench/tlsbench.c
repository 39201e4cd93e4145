/* SPDX-License-Identifier: Apache-2.0 */
/* TLS record-crypto micro-benchmark: an in-memory client/server pair on the
 * weft TLS layer, 16 KB writes, encrypt and decrypt MB/s per core for each
 * TLS 1.3 suite (wolfSSL software, and AES-256-GCM through the libsodium
 * device), plus the CPU cost of a full mTLS handshake per side. Prints
 * Markdown, like DESIGN.md §11. Certificates are made at run time by the
 * openssl CLI in a temporary directory. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/aesgcm.h>
#include <weft/tls.h>

#define WRITE_SZ 16384
#define BATCH (1 << 20)		/* ciphertext made ahead for a decrypt run */
#define RUN_NS 400000000LL	/* timed work per cipher and direction */
#define HANDSHAKES 200

static char dir[] = "/tmp/weft-tlsbench-XXXXXX";

struct pem {
	char *p;
	size_t n;
};

static struct pem ca, s_crt, s_key, c_crt, c_key;
static const char *const tds[] = { "cluster.local", NULL };

static const char gen_script[] =
	"set -e; cd \"$1\"\n"
	"openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key\n"
	"openssl req -x509 -new -key ca.key -subj /O=weft-bench -days 2 -out ca.pem \\\n"
	"  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign\n"
	"leaf() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key\n"
	"  openssl req -new -key $1.key -subj /O=weft-bench -out $1.csr\n"
	"  printf '[v3]\\nbasicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
	"extendedKeyUsage=serverAuth,clientAuth\\nsubjectAltName=URI:%s\\n' \"$2\" > $1.ext\n"
	"  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \\\n"
	"    -extfile $1.ext -extensions v3 -out $1.pem; }\n"
	"leaf server spiffe://cluster.local/weft/node/node-2\n"
	"leaf client spiffe://cluster.local/ns/default/sa/client\n";

static int64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct pem pem_load(const char *name)
{
	struct pem r = { 0 };
	char path[256];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return r;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	r.p = calloc(1, (size_t)n + 1);
	if (r.p && fread(r.p, 1, (size_t)n, f) == (size_t)n)
		r.n = (size_t)n;
	fclose(f);
	return r;
}

static int certs_make(void)
{
	char cmd[1024];
	FILE *f;
	int ret;

	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/gen.sh", dir);
	f = fopen(cmd, "w");
	if (!f)
		return -1;
	fputs(gen_script, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "sh %s/gen.sh %s >/dev/null 2>&1", dir, dir);
	ret = system(cmd);
	ca = pem_load("ca.pem");
	s_crt = pem_load("server.pem");
	s_key = pem_load("server.key");
	c_crt = pem_load("client.pem");
	c_key = pem_load("client.key");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return ret == 0 && ca.n && s_crt.n && s_key.n && c_crt.n && c_key.n ? 0 : -1;
}

static struct tls_ctx *mkctx(enum tls_role role, const char *ciphers, int no_dev)
{
	struct tls_ctx_opts o = {
		.role = role,
		.peer_auth = TLS_PEER_REQUIRE,
		.chain_pem = role == TLS_SERVER ? s_crt.p : c_crt.p,
		.chain_len = role == TLS_SERVER ? s_crt.n : c_crt.n,
		.key_pem = role == TLS_SERVER ? s_key.p : c_key.p,
		.key_len = role == TLS_SERVER ? s_key.n : c_key.n,
		.bundle_pem = ca.p,
		.bundle_len = ca.n,
		.trust_domains = tds,
		.alpn = "h2",
		.ciphers = ciphers,
		.no_aesgcm_device = no_dev,
	};
	char err[TLS_ERR_MAX];
	struct tls_ctx *c = tls_ctx_new(&o, err, sizeof(err));

	if (!c)
		fprintf(stderr, "tlsbench: %s\n", err);
	return c;
}

/* Move all pending ciphertext from one side to the other. */
static int move(struct tls *from, struct tls *to)
{
	const uint8_t *p;
	size_t n;

	while ((n = tls_out_peek(from, &p)) > 0) {
		if (n > 16384)
			n = 16384;
		if (tls_feed(to, p, n) < 0)
			return -1;
		tls_out_consume(from, n);
	}
	return 0;
}

/* One handshake; adds each side's CPU time to *cns / *sns. */
static int handshake(struct tls_ctx *cc, struct tls_ctx *sc, struct tls **c, struct tls **s,
		     int64_t *cns, int64_t *sns)
{
	int rc = -EAGAIN, rs = -EAGAIN;
	int64_t t0;

	t0 = cpu_ns();
	*c = tls_new(cc, NULL);
	*cns += cpu_ns() - t0;
	t0 = cpu_ns();
	*s = tls_new(sc, NULL);
	*sns += cpu_ns() - t0;
	if (!*c || !*s)
		return -1;
	for (int i = 0; i < 10 && (rc == -EAGAIN || rs == -EAGAIN); i++) {
		if (rc == -EAGAIN) {
			t0 = cpu_ns();
			rc = tls_handshake(*c);
			*cns += cpu_ns() - t0;
		}
		move(*c, *s);
		if (rs == -EAGAIN) {
			t0 = cpu_ns();
			rs = tls_handshake(*s);
			*sns += cpu_ns() - t0;
		}
		move(*s, *c);
	}
	if (rc || rs) {
		fprintf(stderr, "tlsbench: handshake failed: %s / %s\n", tls_error(*c),
			tls_error(*s));
		return -1;
	}
	return 0;
}

/* Encrypt: 16 KB writes on the client, ciphertext thrown away. */
static double bench_encrypt(struct tls *c, const uint8_t *data)
{
	int64_t t0 = cpu_ns(), dt;
	uint64_t bytes = 0;
	const uint8_t *p;

	do {
		for (int i = 0; i < 64; i++) {
			if (tls_write(c, data, WRITE_SZ) != WRITE_SZ)
				return -1;
			tls_out_consume(c, tls_out_peek(c, &p));
			bytes += WRITE_SZ;
		}
		dt = cpu_ns() - t0;
	} while (dt < RUN_NS);
	return (double)bytes * 1e3 / (double)dt;
}

/* Decrypt: the client makes a batch of records (untimed), the server feeds
 * and reads them (timed), until enough time has been measured. */
static double bench_decrypt(struct tls *c, struct tls *s, const uint8_t *data)
{
	static uint8_t batch[BATCH + BATCH / 8], out[WRITE_SZ];
	int64_t timed = 0, t0;
	uint64_t bytes = 0;
	const uint8_t *p;

	while (timed < RUN_NS) {
		size_t blen = 0, off = 0, n;

		for (size_t w = 0; w < BATCH; w += WRITE_SZ) {
			if (tls_write(c, data, WRITE_SZ) != WRITE_SZ)
				return -1;
			n = tls_out_peek(c, &p);
			if (blen + n > sizeof(batch))
				return -1;
			memcpy(batch + blen, p, n);
			blen += n;
			tls_out_consume(c, n);
		}
		t0 = cpu_ns();
		while (off < blen) {
			ssize_t k;

			n = blen - off < 65536 ? blen - off : 65536;
			if (tls_feed(s, batch + off, n) < 0)
				return -1;
			off += n;
			while ((k = tls_read(s, out, sizeof(out))) > 0)
				bytes += (uint64_t)k;
			if (k != -EAGAIN)
				return -1;
		}
		timed += cpu_ns() - t0;
	}
	return (double)bytes * 1e3 / (double)timed;
}

struct row {
	const char *label;
	const char *ciphers;
	int no_dev;
};

int main(void)
{
	static const struct row rows[] = {
		{ "AES-128-GCM, wolfSSL software", "TLS13-AES128-GCM-SHA256", 1 },
		{ "AES-256-GCM, wolfSSL software", "TLS13-AES256-GCM-SHA384", 1 },
		{ "AES-256-GCM via callback → libsodium", "TLS13-AES256-GCM-SHA384", 0 },
		{ "ChaCha20-Poly1305, wolfSSL software", "TLS13-CHACHA20-POLY1305-SHA256", 1 },
	};
	static uint8_t data[WRITE_SZ];
	struct tls_ctx *cc, *sc;
	struct tls *c, *s;
	int64_t cns = 0, sns = 0;
	int ok = 1;

	if (certs_make() != 0) {
		fprintf(stderr, "tlsbench: cannot make certificates (is the openssl CLI installed?)\n");
		return 1;
	}
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);

	printf("TLS 1.3 record throughput, in memory, %d-byte writes, one core\n\n", WRITE_SZ);
	printf("| cipher | encrypt MB/s | decrypt MB/s |\n|---|---|---|\n");
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		uint64_t calls0 = aesgcm_encrypt_calls() + aesgcm_decrypt_calls();
		double enc, dec;

		cc = mkctx(TLS_CLIENT, rows[r].ciphers, rows[r].no_dev);
		sc = mkctx(TLS_SERVER, rows[r].ciphers, rows[r].no_dev);
		if (!cc || !sc || handshake(cc, sc, &c, &s, &cns, &sns) < 0)
			return 1;
		if (!rows[r].no_dev && aesgcm_device_id() == -2) {
			printf("| %s | n/a (no AES-NI) | n/a |\n", rows[r].label);
		} else {
			enc = bench_encrypt(c, data);
			/* The encrypt run threw records away: the server's
			 * sequence numbers no longer match, so decrypt on a
			 * fresh connection. */
			tls_free(c);
			tls_free(s);
			if (handshake(cc, sc, &c, &s, &cns, &sns) < 0)
				return 1;
			dec = bench_decrypt(c, s, data);
			if (enc < 0 || dec < 0) {
				fprintf(stderr, "tlsbench: %s: %s / %s\n", rows[r].label, tls_error(c),
					tls_error(s));
				ok = 0;
			}
			/* The device row must really have used the device, and
			 * the software rows must not have. */
			if ((aesgcm_encrypt_calls() + aesgcm_decrypt_calls() > calls0 + 16) ==
			    rows[r].no_dev) {
				fprintf(stderr, "tlsbench: %s: device use is not as labelled\n",
					rows[r].label);
				ok = 0;
			}
			printf("| %s | %.0f | %.0f |\n", rows[r].label, enc, dec);
		}
		fflush(stdout);
		tls_free(c);
		tls_free(s);
		tls_ctx_free(cc);
		tls_ctx_free(sc);
	}

	/* Full mTLS handshakes: ECDSA P-256 both ways, X25519, default suites. */
	cc = mkctx(TLS_CLIENT, NULL, 0);
	sc = mkctx(TLS_SERVER, NULL, 0);
	if (!cc || !sc)
		return 1;
	cns = sns = 0;
	for (int i = 0; i < HANDSHAKES; i++) {
		if (handshake(cc, sc, &c, &s, &cns, &sns) < 0)
			return 1;
		tls_free(c);
		tls_free(s);
	}
	tls_ctx_free(cc);
	tls_ctx_free(sc);
	printf("\nFull TLS 1.3 mTLS handshake (ECDSA P-256, X25519), CPU per side, mean of %d\n\n",
	       HANDSHAKES);
	printf("| side | CPU per handshake | handshakes/s/core |\n|---|---|---|\n");
	printf("| client | %.0f µs | %.0f |\n", (double)cns / HANDSHAKES / 1e3,
	       1e9 * HANDSHAKES / (double)cns);
	printf("| server | %.0f µs | %.0f |\n", (double)sns / HANDSHAKES / 1e3,
	       1e9 * HANDSHAKES / (double)sns);
	return ok ? 0 : 1;
}
