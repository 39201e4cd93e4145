/* SPDX-License-Identifier: Apache-2.0 */
/* TLS record-crypto micro-benchmark: an in-memory client/server pair on the
 * weft TLS layer, 16 KB writes, encrypt and decrypt MB/s per core for each
 * TLS 1.3 suite (wolfSSL software, and AES-256-GCM through the device with
 * each engine, libcrypto and libsodium), the engines alone at 16 KB and 1 KB
 * records, plus the CPU cost of a full mTLS handshake per side. Prints
 * Markdown, like DESIGN.md §11. Certificates are made at run time by the
 * openssl CLI in a temporary directory. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/cryptodev.h>
#include <weft/gcm.h>
#include <weft/pk.h>
#include <weft/tls.h>

#include "../tests/pki.h"

#define WRITE_SZ 16384
#define BATCH (1 << 20)		/* ciphertext made ahead for a decrypt run */
#define RUN_NS 400000000LL	/* timed work per cipher and direction */
#define HANDSHAKES 200

/* Identities per side for the "new peer" handshakes: more than wolfSSL's
 * fixed-point ECC cache holds (15 points), so its verifies run cold. */
#define PEERS 24

static struct pki_pem ca, s_crt[PEERS], s_key[PEERS], c_crt[PEERS], c_key[PEERS];

static int64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A root and PEERS SVIDs per side, read into memory; the directory is gone
 * after. */
/* Leaf name (SAN id) signed by "ca", its certificate and key read in. */
static int leaf_load(const char *dir, const char *name, const char *id, struct pki_pem *crt,
		     struct pki_pem *key)
{
	char file[48];

	if (pki_leaf_make(dir, name, "ca", id, NULL, 1) != 0)
		return -1;
	snprintf(file, sizeof(file), "%s.pem", name);
	if (pki_pem_load(crt, dir, file))
		return -1;
	snprintf(file, sizeof(file), "%s.key", name);
	return pki_pem_load(key, dir, file) ? -1 : 0;
}

static int certs_make(void)
{
	char dir[64], name[32], id[96];
	int ret;

	if (pki_dir_make(dir, sizeof(dir), "tlsbench") != 0)
		return -1;
	ret = pki_ca_make(dir, "ca", NULL, "/O=weft-bench", 2);
	if (ret == 0 && pki_pem_load(&ca, dir, "ca.pem"))
		ret = -1;
	for (int i = 0; ret == 0 && i < PEERS; i++) {
		snprintf(name, sizeof(name), "server%d", i);
		snprintf(id, sizeof(id), "URI:spiffe://cluster.local/weft/node/node-%d", i);
		ret = leaf_load(dir, name, id, &s_crt[i], &s_key[i]);
		snprintf(name, sizeof(name), "client%d", i);
		snprintf(id, sizeof(id), "URI:spiffe://cluster.local/ns/default/sa/client-%d", i);
		if (ret == 0)
			ret = leaf_load(dir, name, id, &c_crt[i], &c_key[i]);
	}
	pki_dir_remove(dir);
	return ret;
}

static struct tls_ctx *mkctx_peer(enum tls_role role, const char *ciphers, int no_dev, int i)
{
	int srv = role == TLS_SERVER;

	return pki_ctx_new(role, TLS_PEER_REQUIRE, srv ? &s_crt[i] : &c_crt[i],
			   srv ? &s_key[i] : &c_key[i], &ca, no_dev, ciphers);
}

static struct tls_ctx *mkctx(enum tls_role role, const char *ciphers, int no_dev)
{
	return mkctx_peer(role, ciphers, no_dev, 0);
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

/* Mean CPU per side of HANDSHAKES full mTLS handshakes (ECDSA P-256 both
 * ways, X25519, default suites): always the same two identities (wolfSSL's
 * ECC cache warm), or a new pair each time out of PEERS per side. */
static int bench_handshakes(int new_peers, double *c_us, double *s_us)
{
	static struct tls_ctx *cc[PEERS], *sc[PEERS];
	int64_t cns = 0, sns = 0;
	struct tls *c, *s;

	/* Made once: a context's set-up (its key checked against its
	 * certificate) is not part of a handshake. */
	for (int i = 0; i < PEERS; i++) {
		if (!cc[i])
			cc[i] = mkctx_peer(TLS_CLIENT, NULL, 0, i);
		if (!sc[i])
			sc[i] = mkctx_peer(TLS_SERVER, NULL, 0, i);
		if (!cc[i] || !sc[i])
			return -1;
	}
	for (int i = 0; i < HANDSHAKES; i++) {
		int a = new_peers ? i % PEERS : 0, b = new_peers ? (i * 7 + 3) % PEERS : 0;

		if (handshake(cc[a], sc[b], &c, &s, &cns, &sns) < 0)
			return -1;
		tls_free(c);
		tls_free(s);
	}
	*c_us = (double)cns / HANDSHAKES / 1e3;
	*s_us = (double)sns / HANDSHAKES / 1e3;
	return 0;
}

struct row {
	const char *label;
	const char *ciphers;
	const char *engine;	/* NULL: wolfSSL software, no device */
};

/* One engine alone, the same key for every record (as on a tunnel): seal or
 * open MB/s at one record size. */
static double bench_engine(const struct gcm_engine *e, int seal, size_t len)
{
	static uint8_t buf[WRITE_SZ];
	uint8_t key[GCM_KEY_LEN], nonce[GCM_NONCE_LEN] = { 0 }, tag[GCM_TAG_LEN], aad[5] = { 0 };
	int64_t t0, dt;
	uint64_t bytes = 0;

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 29 + 1);
	if (e->probe() != 0 || e->seal(buf, tag, buf, len, aad, sizeof(aad), nonce, key) != GCM_OK)
		return -1;
	t0 = cpu_ns();
	do {
		for (int i = 0; i < 256; i++) {
			/* Opening the same sealed buffer again and again: the
			 * first open decrypts it, later ones fail the tag
			 * after the same work, so open is timed on a record
			 * sealed in place and re-sealed after each open. */
			if (seal) {
				nonce[0]++;
				if (e->seal(buf, tag, buf, len, aad, sizeof(aad), nonce, key) != GCM_OK)
					return -1;
			} else if (e->open(buf, buf, len, tag, aad, sizeof(aad), nonce, key) != GCM_OK ||
				   e->seal(buf, tag, buf, len, aad, sizeof(aad), nonce, key) != GCM_OK) {
				return -1;
			}
			bytes += len;
		}
		dt = cpu_ns() - t0;
	} while (dt < RUN_NS / 4);
	return (double)bytes * 1e3 / (double)dt;
}

int main(int argc, char **argv)
{
	static const struct row rows[] = {
		{ "AES-128-GCM, wolfSSL software", "TLS13-AES128-GCM-SHA256", NULL },
		{ "AES-256-GCM, wolfSSL software", "TLS13-AES256-GCM-SHA384", NULL },
		{ "AES-256-GCM via callback → libsodium", "TLS13-AES256-GCM-SHA384", "libsodium" },
		{ "AES-256-GCM via callback → libcrypto", "TLS13-AES256-GCM-SHA384", "libcrypto" },
		{ "ChaCha20-Poly1305, wolfSSL software", "TLS13-CHACHA20-POLY1305-SHA256", NULL },
	};
	static const struct gcm_engine *const engines[] = { &gcm_libsodium, &gcm_libcrypto };
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

	/* "tlsbench handshakes": only the handshake table (for a profiler). */
	if (argc > 1 && strcmp(argv[1], "handshakes") == 0) {
		tls_ctx_free(mkctx(TLS_CLIENT, NULL, 0));	/* TLS and the device up */
		goto handshakes;
	}
	printf("TLS 1.3 record throughput, in memory, %d-byte writes, one core\n\n", WRITE_SZ);
	printf("| cipher | encrypt MB/s | decrypt MB/s |\n|---|---|---|\n");
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		uint64_t calls0 = cryptodev_gcm_encrypts() + cryptodev_gcm_decrypts();
		int no_dev = !rows[r].engine;
		double enc, dec;

		cc = mkctx(TLS_CLIENT, rows[r].ciphers, no_dev);
		sc = mkctx(TLS_SERVER, rows[r].ciphers, no_dev);
		if (!cc || !sc || handshake(cc, sc, &c, &s, &cns, &sns) < 0)
			return 1;
		if (!no_dev && cryptodev_gcm_select(rows[r].engine) != 0) {
			printf("| %s | n/a (engine unavailable) | n/a |\n", rows[r].label);
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
			if ((cryptodev_gcm_encrypts() + cryptodev_gcm_decrypts() > calls0 + 16) ==
			    no_dev) {
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

	printf("\nAES-256-GCM engines alone, one key, MB/s per core\n\n");
	printf("| engine | seal 16 KB | open 16 KB | seal 1 KB | open 1 KB |\n"
	       "|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
		const struct gcm_engine *e = engines[i];

		if (e->probe() != 0) {
			printf("| %s | n/a | n/a | n/a | n/a |\n", e->name);
			continue;
		}
		/* Open re-seals after each record: subtract the seal time. */
		double s16 = bench_engine(e, 1, WRITE_SZ), o16 = bench_engine(e, 0, WRITE_SZ);
		double s1 = bench_engine(e, 1, 1024), o1 = bench_engine(e, 0, 1024);

		if (s16 <= 0 || o16 <= 0 || s1 <= 0 || o1 <= 0) {
			fprintf(stderr, "tlsbench: engine %s failed\n", e->name);
			ok = 0;
			continue;
		}
		printf("| %s | %.0f | %.0f | %.0f | %.0f |\n", e->name, s16,
		       1 / (1 / o16 - 1 / s16), s1, 1 / (1 / o1 - 1 / s1));
	}
	/* The handshakes below use the preferred engine again. */
	if (cryptodev_gcm_select("libcrypto") != 0)
		cryptodev_gcm_select("libsodium");

handshakes:
	printf("\nFull TLS 1.3 mTLS handshake (ECDSA P-256, X25519), CPU per side, mean of %d\n\n",
	       HANDSHAKES);
	printf("| signatures | peers | client µs | server µs | handshakes/s/core (server) |\n"
	       "|---|---|---|---|---|\n");
	for (int pk = 0; pk < 2; pk++) {
		for (int np = 0; np < 2; np++) {
			double cu, su;
			uint64_t n0 = pk_calls();

			if (cryptodev_pk_enable(!pk) != 0) {
				printf("| %s | n/a |  |  |  |\n", pk ? "wolfSSL" : "libcrypto");
				break;
			}
			if (bench_handshakes(np, &cu, &su) < 0)
				return 1;
			/* 2 signs and 4 verifies per handshake with the device. */
			if ((pk_calls() - n0 >= 6 * HANDSHAKES) != !pk) {
				fprintf(stderr, "tlsbench: signatures not where labelled\n");
				ok = 0;
			}
			printf("| %s | %s | %.0f | %.0f | %.0f |\n",
			       pk ? "wolfSSL software" : "libcrypto (device)",
			       np ? "a new pair each time, of 24 per side" : "the same pair",
			       cu, su, 1e6 / su);
		}
	}
	cryptodev_pk_enable(1);
	return ok ? 0 : 1;
}
