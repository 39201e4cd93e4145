/* SPDX-License-Identifier: Apache-2.0 */
/* The TLS layer end to end in memory: a client and a server built from
 * certificates made at test time by the openssl CLI, ciphertext moved by
 * hand between them. Covers the SPIFFE checks and their error sentences,
 * cipher and ALPN choice, the AES-256-GCM device, bulk transfer, tampering,
 * close_notify and interop with plain wolfSSL software crypto. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/cryptodev.h>
#include <weft/tls.h>

#include "../check.h"
#include "../../pki.h"

#define TD "cluster.local"
#define ID_A "spiffe://cluster.local/ns/default/sa/a"
#define ID_B "spiffe://cluster.local/ns/default/sa/b"
#define ID_EAST "spiffe://east.local/ns/default/sa/b"

static char dir[64];

/* Certificates: root CA 1 signs a (server), b (client), evil (wrong trust
 * domain), two (two URI SANs) and intermediate inter, which signs c (whose
 * key is also kept as SEC1, and whose chain includes inter); root CA 2
 * signs other (same ID as b). */
static struct pki_pem ca1, ca2, a_crt, a_key, b_crt, b_key, evil_crt, evil_key, two_crt, two_key,
	other_crt, other_key, c_chain, c_sec1, east_crt, east_key, forged_crt, forged_key,
	east_rooted, other_ca1root, other_aleaf, forged_ca2root, east_junk, eleaf_crt, eleaf_key,
	eleaf_chain;

static int certs_make(void)
{
	static const struct {
		const char *name, *ca, *sans;
	} leaves[] = {
		{ "a", "ca1", "URI:" ID_A },
		{ "b", "ca1", "URI:" ID_B },
		{ "evil", "ca1", "URI:spiffe://evil.example/ns/default/sa/b" },
		{ "two", "ca1", "URI:" ID_B ",URI:spiffe://cluster.local/ns/default/sa/c" },
		{ "other", "ca2", "URI:" ID_B },
		{ "c", "inter", "URI:" ID_B },
		/* Federation: ca2 is the root of east.local. */
		{ "east", "ca2", "URI:" ID_EAST },
		{ "forged", "ca1", "URI:" ID_EAST },	/* our CA, their domain */
		{ "eleaf", "einter", "URI:" ID_EAST },	/* theirs, through their intermediate */
	};
	static const struct {
		struct pki_pem *pem;
		const char *file;
	} files[] = {
		{ &ca1, "ca1.pem" }, { &ca2, "ca2.pem" }, { &a_crt, "a.pem" }, { &a_key, "a.key" },
		{ &b_crt, "b.pem" }, { &b_key, "b.key" }, { &evil_crt, "evil.pem" },
		{ &evil_key, "evil.key" }, { &two_crt, "two.pem" }, { &two_key, "two.key" },
		{ &other_crt, "other.pem" }, { &other_key, "other.key" }, { &c_chain, "c.chain" },
		{ &c_sec1, "c.sec1" }, { &east_crt, "east.pem" }, { &east_key, "east.key" },
		{ &forged_crt, "forged.pem" }, { &forged_key, "forged.key" },
		{ &east_rooted, "east.rooted" }, { &other_ca1root, "other.ca1root" },
		{ &other_aleaf, "other.aleaf" }, { &forged_ca2root, "forged.ca2root" },
		{ &east_junk, "east.junk" }, { &eleaf_crt, "eleaf.pem" }, { &eleaf_key, "eleaf.key" },
		{ &eleaf_chain, "eleaf.chain" },
	};

	if (pki_ca_make(dir, "ca1", NULL, NULL, 2) != 0 ||
	    pki_ca_make(dir, "ca2", NULL, NULL, 2) != 0 ||
	    pki_ca_make(dir, "inter", "ca1", NULL, 1) != 0 ||
	    pki_ca_make(dir, "junk", NULL, NULL, 1) != 0 ||
	    pki_ca_make(dir, "einter", "ca2", NULL, 1) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
		if (pki_leaf_make(dir, leaves[i].name, leaves[i].ca, leaves[i].sans, NULL, 1) != 0)
			return -1;
	if (pki_sh(NULL, 0, "cd %s && openssl ec -in c.key -out c.sec1 && "
		   "cat c.pem inter.pem >c.chain && cat east.pem ca2.pem >east.rooted && "
		   "cat other.pem ca1.pem >other.ca1root && cat other.pem a.pem >other.aleaf && "
		   "cat forged.pem ca2.pem >forged.ca2root && cat east.pem junk.pem >east.junk && "
		   "cat eleaf.pem einter.pem >eleaf.chain", dir) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (pki_pem_load(files[i].pem, dir, files[i].file) != 0 || !files[i].pem->n)
			return -1;
	return 0;
}

static const char *const tds[] = { TD, NULL };

/* Move pending ciphertext from one side to the other, as far as the
 * receiver's bounded input takes it. Returns bytes moved. */
static size_t move(struct tls *from, struct tls *to)
{
	const uint8_t *p;
	size_t n, moved = 0;

	while ((n = tls_out_peek(from, &p)) > 0) {
		if (n > 16384)
			n = 16384;
		if (tls_feed(to, p, n) < 0)
			break;
		tls_out_consume(from, n);
		moved += n;
	}
	return moved;
}

/* Run both handshakes until each side finished or failed. */
static void handshake(struct tls *c, struct tls *s, int *rc, int *rs)
{
	*rc = *rs = -EAGAIN;
	for (int i = 0; i < 20; i++) {
		if (*rc == -EAGAIN)
			*rc = tls_handshake(c);
		move(c, s);
		if (*rs == -EAGAIN)
			*rs = tls_handshake(s);
		move(s, c);
		if (*rc != -EAGAIN && *rs != -EAGAIN)
			break;
	}
}

/* Send n bytes from w to r through the bounded buffers; returns 0 when r
 * got exactly the same bytes. */
static int transfer(struct tls *w, struct tls *r, const uint8_t *data, size_t n)
{
	uint8_t *got = malloc(n), buf[20000];
	size_t sent = 0, recvd = 0;
	int ok = -1, idle = 0;

	while (got && recvd < n && idle < 100) {
		ssize_t k;
		size_t progress = 0;

		if (sent < n) {
			k = tls_write(w, data + sent, n - sent);
			if (k < 0 && k != -EAGAIN) {
				fprintf(stderr, "tls_write: %zd %s\n", k, tls_error(w));
				break;
			}
			if (k > 0) {
				sent += (size_t)k;
				progress += (size_t)k;
			}
		}
		progress += move(w, r);
		while ((k = tls_read(r, buf, sizeof(buf))) > 0) {
			if (recvd + (size_t)k > n)
				break;
			memcpy(got + recvd, buf, (size_t)k);
			recvd += (size_t)k;
			progress += (size_t)k;
		}
		if (k < 0 && k != -EAGAIN) {
			fprintf(stderr, "tls_read: %zd %s\n", k, tls_error(r));
			break;
		}
		idle = progress ? 0 : idle + 1;
	}
	if (got && recvd == n && memcmp(got, data, n) == 0)
		ok = 0;
	free(got);
	return ok;
}

struct pair {
	struct tls_ctx *cc, *sc;
	struct tls *c, *s;
	int rc, rs;
};

static void pair_free(struct pair *p)
{
	tls_free(p->c);
	tls_free(p->s);
	tls_ctx_free(p->cc);
	tls_ctx_free(p->sc);
	memset(p, 0, sizeof(*p));
}

static int pair_open(struct pair *p, struct tls_ctx *cc, struct tls_ctx *sc, const char *expect)
{
	memset(p, 0, sizeof(*p));
	p->cc = cc;
	p->sc = sc;
	if (!cc || !sc)
		return -1;
	p->c = tls_new(cc, "weft-node-2");
	p->s = tls_new(sc, NULL);
	if (!p->c || !p->s)
		return -1;
	if (expect && tls_expect_peer(p->c, expect) != 0)
		return -1;
	handshake(p->c, p->s, &p->rc, &p->rs);
	return 0;
}

/* After the server refused the client, the client learns it from the alert
 * on its first read. */
static void check_client_sees_alert(struct pair *p)
{
	uint8_t buf[64];

	move(p->s, p->c);
	CHECK_EQ_INT(tls_read(p->c, buf, sizeof(buf)), -EPROTO);
	CHECK(strstr(tls_error(p->c), "TLS alert from peer") != NULL);
	fprintf(stderr, "  client: %s\n", tls_error(p->c));
}

static uint8_t *random_bytes(size_t n)
{
	uint8_t *p = malloc(n);
	uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();

	for (size_t i = 0; p && i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	return p;
}

static void test_ok_and_bulk(void)
{
	struct pair p;
	char id[256];
	uint64_t e0, d0;
	size_t n = 1 << 20;
	uint8_t *data = random_bytes(n), buf[16];

	e0 = cryptodev_gcm_encrypts();
	d0 = cryptodev_gcm_decrypts();
	CHECK_EQ_INT(pair_open(&p,
			       pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0, NULL),
			       pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL),
			       ID_A),
		     0);
	CHECK_EQ_INT(p.rc, 0);
	CHECK_EQ_INT(p.rs, 0);
	if (p.rc || p.rs)
		fprintf(stderr, "client: %s / server: %s\n", p.c ? tls_error(p.c) : "",
			p.s ? tls_error(p.s) : "");
	CHECK(tls_handshake_done(p.c) && tls_handshake_done(p.s));
	CHECK_EQ_STR(tls_cipher_name(p.c), "TLS_AES_256_GCM_SHA384");
	CHECK_EQ_STR(tls_cipher_name(p.s), "TLS_AES_256_GCM_SHA384");
	CHECK_EQ_STR(tls_alpn(p.c), "h2");
	CHECK_EQ_STR(tls_alpn(p.s), "h2");
	CHECK_EQ_INT(tls_peer_id(p.c, id, sizeof(id)), 0);
	CHECK_EQ_STR(id, ID_A);
	CHECK_EQ_INT(tls_peer_id(p.s, id, sizeof(id)), 0);
	CHECK_EQ_STR(id, ID_B);
	CHECK_EQ_INT(tls_peer_id(p.s, id, 5), -ENOSPC);
	/* Encrypted handshake messages already went through the device. */
	if (cryptodev_id() != -2) {
		CHECK(cryptodev_gcm_encrypts() > e0);
		CHECK(cryptodev_gcm_decrypts() > d0);
	}

	e0 = cryptodev_gcm_encrypts();
	CHECK_EQ_INT(transfer(p.c, p.s, data, n), 0);
	CHECK_EQ_INT(transfer(p.s, p.c, data, n), 0);
	/* 2 MiB in 16 KiB records: at least 128 records each way. */
	if (cryptodev_id() != -2)
		CHECK(cryptodev_gcm_encrypts() - e0 >= 128);

	/* Orderly close: close_notify reads as 0. */
	tls_shutdown(p.c);
	move(p.c, p.s);
	CHECK_EQ_INT(tls_read(p.s, buf, sizeof(buf)), 0);
	pair_free(&p);
	free(data);
}

static void test_tamper(void)
{
	struct pair p;
	const uint8_t *o;
	uint8_t copy[2000], buf[2000];
	size_t n;

	CHECK_EQ_INT(pair_open(&p,
			       pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0, NULL),
			       pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL),
			       NULL),
		     0);
	CHECK(p.rc == 0 && p.rs == 0);
	memset(buf, 'x', 1000);
	CHECK_EQ_INT(tls_write(p.c, buf, 1000), 1000);
	n = tls_out_peek(p.c, &o);
	CHECK(n > 1000 && n <= sizeof(copy));
	if (n > sizeof(copy))
		n = sizeof(copy);
	memcpy(copy, o, n);
	copy[500] ^= 0x01;
	tls_out_consume(p.c, n);
	CHECK_EQ_INT(tls_feed(p.s, copy, n), 0);
	CHECK_EQ_INT(tls_read(p.s, buf, sizeof(buf)), -EPROTO);
	CHECK(strstr(tls_error(p.s), "bad record MAC") != NULL);
	fprintf(stderr, "  tamper: %s\n", tls_error(p.s));
	/* Dead for good; and the client hears bad_record_mac. */
	CHECK_EQ_INT(tls_read(p.s, buf, sizeof(buf)), -EPROTO);
	CHECK_EQ_INT(tls_write(p.s, buf, 10), -EPROTO);
	move(p.s, p.c);
	CHECK_EQ_INT(tls_read(p.c, buf, sizeof(buf)), -EPROTO);
	CHECK(strstr(tls_error(p.c), "TLS alert from peer") != NULL);
	fprintf(stderr, "  client: %s\n", tls_error(p.c));
	pair_free(&p);
}

/* The server refuses the client: check the sentence on the server side. */
static void expect_server_refuses(const struct pki_pem *crt, const struct pki_pem *key,
				  enum tls_peer_auth auth, const char *want)
{
	struct pair p;

	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, crt, key, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, auth, &a_crt, &a_key, &ca1, 0, NULL), NULL);
	CHECK(p.c && p.s);
	if (!p.c || !p.s) {
		pair_free(&p);
		return;
	}
	CHECK_EQ_INT(p.rs, -EPROTO);
	CHECK(!tls_handshake_done(p.s));
	CHECK(strstr(tls_error(p.s), want) != NULL);
	fprintf(stderr, "  server: %s\n", tls_error(p.s));
	if (p.rc == 0)
		check_client_sees_alert(&p);
	else
		CHECK(strstr(tls_error(p.c), "TLS alert from peer") != NULL);
	pair_free(&p);
}

static void test_refusals(void)
{
	struct pair p;
	char id[256];

	expect_server_refuses(&other_crt, &other_key, TLS_PEER_REQUIRE,
			      "peer certificate chain does not verify against the trust bundle");
	expect_server_refuses(&evil_crt, &evil_key, TLS_PEER_REQUIRE,
			      "peer SPIFFE ID spiffe://evil.example/ns/default/sa/b not in an "
			      "allowed trust domain");
	expect_server_refuses(&two_crt, &two_key, TLS_PEER_REQUIRE, "2 URI SANs");
	expect_server_refuses(NULL, NULL, TLS_PEER_REQUIRE, "peer presented no certificate");
	/* A client without identity hears certificate_required. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, NULL, NULL, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL), NULL);
	if (p.c && p.rc == 0) {
		move(p.s, p.c);
		CHECK_EQ_INT(tls_read(p.c, (uint8_t[8]){ 0 }, 8), -EPROTO);
	}
	if (p.c)
		CHECK_EQ_STR(tls_error(p.c), "TLS alert from peer: certificate_required");
	pair_free(&p);
	/* OPTIONAL still checks a certificate that is sent. */
	expect_server_refuses(&evil_crt, &evil_key, TLS_PEER_OPTIONAL,
			      "not in an allowed trust domain");

	/* Client-side refusal: the server is not who the registry says. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL),
		  "spiffe://cluster.local/ns/default/sa/zzz");
	CHECK_EQ_INT(p.rc, -EPROTO);
	CHECK_EQ_INT(p.rs, -EPROTO);
	if (p.c && p.s) {
		CHECK_EQ_STR(tls_error(p.c),
			     "peer is " ID_A ", expected spiffe://cluster.local/ns/default/sa/zzz");
		CHECK(strstr(tls_error(p.s), "TLS alert from peer") != NULL);
		fprintf(stderr, "  client: %s\n  server: %s\n", tls_error(p.c), tls_error(p.s));
		CHECK_EQ_INT(tls_peer_id(p.c, id, sizeof(id)), -ENOENT);
	}
	pair_free(&p);

	/* An expected ID ending in '/' takes any one more segment, and only one. */
	{
		static const char *const pre[] = { "spiffe://cluster.local/ns/default/sa/",
						   "spiffe://cluster.local/ns/default/",
						   "spiffe://cluster.local/ns/other/sa/" };
		static const int ok[] = { 0, -EPROTO, -EPROTO };

		for (size_t i = 0; i < 3; i++) {
			pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key,
						  &ca1, 0, NULL),
				  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1,
					      0, NULL), pre[i]);
			CHECK_EQ_INT(p.rc, ok[i]);
			if (ok[i] && p.c)
				CHECK(strstr(tls_error(p.c), "<name>") != NULL);
			pair_free(&p);
		}
	}

	/* A server certificate from another CA. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &other_crt, &other_key, &ca1, 0, NULL),
		  NULL);
	CHECK_EQ_INT(p.rc, -EPROTO);
	if (p.c)
		CHECK(strstr(tls_error(p.c), "does not verify against the trust bundle") != NULL);
	pair_free(&p);
}

static void test_optional(void)
{
	struct pair p;
	char id[256];
	uint8_t *data = random_bytes(100000);

	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, NULL, NULL, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_OPTIONAL, &a_crt, &a_key, &ca1, 0, NULL), ID_A);
	CHECK_EQ_INT(p.rc, 0);
	CHECK_EQ_INT(p.rs, 0);
	if (p.c && p.s) {
		CHECK_EQ_INT(tls_peer_id(p.s, id, sizeof(id)), -ENOENT);
		CHECK_EQ_INT(tls_peer_id(p.c, id, sizeof(id)), 0);
		CHECK_EQ_INT(transfer(p.c, p.s, data, 100000), 0);
	}
	pair_free(&p);

	/* A client chain through an intermediate, key in SEC1 form: the
	 * SPIFFE checks apply to the leaf only. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &c_chain, &c_sec1, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL), ID_A);
	CHECK(p.rc == 0 && p.rs == 0);
	if (p.s) {
		if (p.rs)
			fprintf(stderr, "intermediate: %s\n", tls_error(p.s));
		CHECK_EQ_INT(tls_peer_id(p.s, id, sizeof(id)), 0);
		CHECK_EQ_STR(id, ID_B);
	}
	pair_free(&p);

	/* OPTIONAL with a good client certificate still reports its ID. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_OPTIONAL, &a_crt, &a_key, &ca1, 0, NULL), ID_A);
	CHECK(p.rc == 0 && p.rs == 0);
	if (p.s) {
		CHECK_EQ_INT(tls_peer_id(p.s, id, sizeof(id)), 0);
		CHECK_EQ_STR(id, ID_B);
	}
	pair_free(&p);
	free(data);
}

/* One side through libsodium, the other plain wolfSSL software: the bytes
 * on the wire must be the same AES-256-GCM, or nothing would decrypt. */
static void test_interop_software(void)
{
	struct pair p;
	size_t n = 1 << 20;
	uint8_t *data = random_bytes(n);
	uint64_t e0, d0;

	for (int dev_on_client = 0; dev_on_client < 2; dev_on_client++) {
		pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1,
					  !dev_on_client, NULL),
			  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1,
				      dev_on_client, NULL),
			  ID_A);
		CHECK(p.rc == 0 && p.rs == 0);
		if (p.rc || p.rs) {
			pair_free(&p);
			continue;
		}
		CHECK_EQ_STR(tls_cipher_name(p.c), "TLS_AES_256_GCM_SHA384");
		e0 = cryptodev_gcm_encrypts();
		d0 = cryptodev_gcm_decrypts();
		CHECK_EQ_INT(transfer(p.c, p.s, data, n), 0);
		/* Exactly one side's records went through the device. */
		if (cryptodev_id() != -2) {
			if (dev_on_client) {
				CHECK(cryptodev_gcm_encrypts() - e0 >= 64);
				CHECK(cryptodev_gcm_decrypts() - d0 < 8);
			} else {
				CHECK(cryptodev_gcm_decrypts() - d0 >= 64);
				CHECK(cryptodev_gcm_encrypts() - e0 < 8);
			}
		}
		CHECK_EQ_INT(transfer(p.s, p.c, data, n), 0);
		pair_free(&p);
	}

	/* Neither side on the device: the counters do not move. */
	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 1, NULL),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 1, NULL), ID_A);
	e0 = cryptodev_gcm_encrypts();
	d0 = cryptodev_gcm_decrypts();
	CHECK(p.rc == 0 && p.rs == 0);
	if (p.c && p.s)
		CHECK_EQ_INT(transfer(p.c, p.s, data, 65536), 0);
	CHECK_EQ_INT(cryptodev_gcm_encrypts(), e0);
	CHECK_EQ_INT(cryptodev_gcm_decrypts(), d0);
	pair_free(&p);
	free(data);
}

/* Server order wins, and the other suites work. */
static void test_ciphers(void)
{
	struct pair p;
	uint8_t *data = random_bytes(50000);

	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0,
				  "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:"
				  "TLS13-AES256-GCM-SHA384"),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL), ID_A);
	CHECK(p.rc == 0 && p.rs == 0);
	if (p.c)
		CHECK_EQ_STR(tls_cipher_name(p.c), "TLS_AES_256_GCM_SHA384");
	pair_free(&p);

	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0,
				  "TLS13-CHACHA20-POLY1305-SHA256"),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0, NULL), ID_A);
	CHECK(p.rc == 0 && p.rs == 0);
	if (p.c && p.s) {
		CHECK_EQ_STR(tls_cipher_name(p.s), "TLS_CHACHA20_POLY1305_SHA256");
		CHECK_EQ_INT(transfer(p.s, p.c, data, 50000), 0);
	}
	pair_free(&p);

	pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &b_crt, &b_key, &ca1, 0,
				  "TLS13-AES128-GCM-SHA256"),
		  pki_ctx_new(TLS_SERVER, TLS_PEER_REQUIRE, &a_crt, &a_key, &ca1, 0,
			      "TLS13-AES256-GCM-SHA384"),
		  ID_A);
	CHECK_EQ_INT(p.rs, -EPROTO);
	if (p.s)
		fprintf(stderr, "  no common suite: %s\n", tls_error(p.s));
	pair_free(&p);
	free(data);
}

static void test_bounds_and_config(void)
{
	struct tls_ctx_opts o = {
		.role = TLS_SERVER,
		.peer_auth = TLS_PEER_REQUIRE,
		.chain_pem = a_crt.p,
		.chain_len = a_crt.n,
		.key_pem = b_key.p,
		.key_len = b_key.n,
		.bundle_pem = ca1.p,
		.bundle_len = ca1.n,
		.trust_domains = tds,
	};
	char err[TLS_ERR_MAX];
	struct tls_ctx *c;
	struct tls *t;
	static uint8_t junk[128 * 1024];

	CHECK(tls_ctx_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "private key does not match") != NULL);
	o.key_pem = a_key.p;
	o.key_len = a_key.n;
	o.trust_domains = NULL;
	CHECK(tls_ctx_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "trust domain") != NULL);
	o.trust_domains = tds;
	o.ciphers = "NOPE";
	CHECK(tls_ctx_new(&o, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cipher") != NULL);
	o.ciphers = NULL;

	c = tls_ctx_new(&o, err, sizeof(err));
	CHECK(c != NULL);
	t = c ? tls_new(c, NULL) : NULL;
	CHECK(t != NULL);
	if (t) {
		CHECK_EQ_INT(tls_feed(t, junk, 64 * 1024), 0);
		CHECK_EQ_INT(tls_feed(t, junk, 32 * 1024), -ENOBUFS);
		CHECK_EQ_INT(tls_handshake(t), -EPROTO);
		CHECK(tls_error(t)[0] != '\0');
		fprintf(stderr, "  junk: %s\n", tls_error(t));
	}
	tls_free(t);
	tls_ctx_free(c);
	tls_free(NULL);
	tls_ctx_free(NULL);
}

/* A context of cluster.local that federates with east.local (ca2). */
static struct tls_ctx *fed_ctx(enum tls_role role, const struct pki_pem *crt,
			       const struct pki_pem *key)
{
	static const char *const both[] = { TD, "east.local", NULL };
	const struct tls_bundle east = { "east.local", ca2.p, ca2.n };
	struct tls_ctx_opts o = {
		.role = role, .peer_auth = TLS_PEER_REQUIRE,
		.chain_pem = crt->p, .chain_len = crt->n, .key_pem = key->p, .key_len = key->n,
		.bundle_pem = ca1.p, .bundle_len = ca1.n, .trust_domains = both, .alpn = "h2",
		.federated = &east, .n_federated = 1,
	};
	char err[TLS_ERR_MAX];
	struct tls_ctx *c = tls_ctx_new(&o, err, sizeof(err));

	if (!c)
		fprintf(stderr, "tls_ctx_new (federated): %s\n", err);
	return c;
}

/* Federated trust domains (DESIGN §8.1): each peer chains to its own
 * domain's bundle; neither CA vouches for the other's domain. */
static void test_federation(void)
{
	static const struct {
		const struct pki_pem *crt, *key;
		const char *want;		/* NULL: accepted */
	} clients[] = {
		{ &b_crt, &b_key, NULL },		/* ours, by our CA */
		{ &c_chain, &c_sec1, NULL },		/* ours, through an intermediate */
		{ &east_crt, &east_key, NULL },		/* theirs, by their CA */
		{ &east_rooted, &east_key, NULL },	/* the same, the root sent along */
		{ &other_crt, &other_key, "does not chain to the bundle of trust domain "
		  "cluster.local (ours; a federated CA may not vouch for it)" },
		{ &forged_crt, &forged_key, "does not chain to the bundle of trust domain "
		  "east.local" },
		/* The forger appends a certificate of the victim's domain: a
		 * root, a leaf; none makes the forgery chain to it. */
		{ &other_ca1root, &other_key, "does not chain to the bundle of trust domain "
		  "cluster.local (ours; a federated CA may not vouch for it)" },
		{ &other_aleaf, &other_key, "does not chain to the bundle of trust domain "
		  "cluster.local (ours; a federated CA may not vouch for it)" },
		{ &forged_ca2root, &forged_key, "does not chain to the bundle of trust domain "
		  "east.local" },
		{ &east_junk, &east_key, NULL },	/* a stray CA sent along is ignored */
		{ &eleaf_chain, &eleaf_key, NULL },	/* their intermediate */
	};
	char id[256];

	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		struct pair p;

		pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, clients[i].crt,
					  clients[i].key, &ca1, 0, NULL),
			  fed_ctx(TLS_SERVER, &a_crt, &a_key), NULL);
		CHECK(p.c && p.s);
		if (!p.c || !p.s) {
			pair_free(&p);
			continue;
		}
		if (!clients[i].want) {
			CHECK_EQ_INT(p.rs, 0);
			CHECK_EQ_INT(tls_peer_id(p.s, id, sizeof(id)), 0);
			fprintf(stderr, "  federated server accepts %s\n", id);
		} else {
			CHECK_EQ_INT(p.rs, -EPROTO);
			CHECK(strstr(tls_error(p.s), clients[i].want) != NULL);
			fprintf(stderr, "  federated server: %s\n", tls_error(p.s));
		}
		pair_free(&p);
	}
	/* The client side: a server of east.local, and one our CA forged. */
	for (int forged = 0; forged < 2; forged++) {
		static const char *const east_td[] = { "east.local", NULL };
		struct tls_ctx_opts o = {
			.role = TLS_SERVER, .peer_auth = TLS_PEER_REQUIRE,
			.chain_pem = forged ? forged_crt.p : east_crt.p,
			.chain_len = forged ? forged_crt.n : east_crt.n,
			.key_pem = forged ? forged_key.p : east_key.p,
			.key_len = forged ? forged_key.n : east_key.n,
			.bundle_pem = ca2.p, .bundle_len = ca2.n, .trust_domains = east_td,
			.alpn = "h2",
		};
		char err[TLS_ERR_MAX];
		struct pair p;

		pair_open(&p, fed_ctx(TLS_CLIENT, &b_crt, &b_key), tls_ctx_new(&o, err, sizeof(err)),
			  ID_EAST);
		CHECK(p.c && p.s);
		if (p.c && p.s) {
			CHECK_EQ_INT(p.rc, forged ? -EPROTO : 0);
			if (forged)
				CHECK(strstr(tls_error(p.c), "trust domain east.local") != NULL);
		}
		pair_free(&p);
	}
	/* wolfSSL keeps the intermediates peers send in the context's store;
	 * on a shared context, a leaf sent without its intermediate is still
	 * refused after another peer sent that intermediate along. */
	{
		static const struct {
			const struct pki_pem *crt;
			int ok;
		} seq[] = { { &eleaf_crt, 0 }, { &eleaf_chain, 1 }, { &eleaf_crt, 0 } };
		struct tls_ctx *shared = fed_ctx(TLS_SERVER, &a_crt, &a_key);

		CHECK(shared != NULL);
		for (size_t i = 0; shared && i < sizeof(seq) / sizeof(seq[0]); i++) {
			struct pair p;

			pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, seq[i].crt,
						  &eleaf_key, &ca1, 0, NULL),
				  tls_ctx_ref(shared), NULL);
			CHECK(p.c && p.s);
			if (p.c && p.s) {
				CHECK_EQ_INT(p.rs, seq[i].ok ? 0 : -EPROTO);
				fprintf(stderr, "  shared context, %s: %s\n",
					seq[i].crt == &eleaf_crt ? "leaf alone" : "with intermediate",
					seq[i].ok ? "accepted" : tls_error(p.s));
			}
			pair_free(&p);
		}
		tls_ctx_free(shared);
	}
	/* Why: one merged bundle (ca1 + ca2) lets our CA vouch for east.local. */
	{
		static const char *const both[] = { TD, "east.local", NULL };
		char *merged = malloc(ca1.n + ca2.n + 1);
		struct tls_ctx_opts o = {
			.role = TLS_SERVER, .peer_auth = TLS_PEER_REQUIRE, .chain_pem = a_crt.p,
			.chain_len = a_crt.n, .key_pem = a_key.p, .key_len = a_key.n,
			.bundle_pem = merged, .bundle_len = ca1.n + ca2.n, .trust_domains = both,
			.alpn = "h2",
		};
		char err[TLS_ERR_MAX];
		struct pair p;

		CHECK(merged != NULL);
		if (merged) {
			memcpy(merged, ca1.p, ca1.n);
			memcpy(merged + ca1.n, ca2.p, ca2.n + 1);
			pair_open(&p, pki_ctx_new(TLS_CLIENT, TLS_PEER_REQUIRE, &forged_crt,
						  &forged_key, &ca1, 0, NULL),
				  tls_ctx_new(&o, err, sizeof(err)), NULL);
			CHECK(p.c && p.s && p.rs == 0);
			fprintf(stderr, "  merged bundle (no federation) accepts the forged %s\n",
				ID_EAST);
			pair_free(&p);
			free(merged);
		}
	}
	/* Bad federation options. */
	{
		const struct tls_bundle twice[2] = { { "east.local", ca2.p, ca2.n },
						     { "east.local", ca2.p, ca2.n } };
		const struct tls_bundle junk = { "east.local", "not a pem", 9 };
		static const char *const t1[] = { TD, NULL };
		struct tls_ctx_opts o = {
			.role = TLS_CLIENT, .peer_auth = TLS_PEER_REQUIRE, .bundle_pem = ca1.p,
			.bundle_len = ca1.n, .trust_domains = t1, .federated = twice,
			.n_federated = 2,
		};
		char err[TLS_ERR_MAX];

		CHECK(tls_ctx_new(&o, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "two federated bundles") != NULL);
		o.federated = &junk;
		o.n_federated = 1;
		CHECK(tls_ctx_new(&o, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "cannot load the bundle of trust domain east.local") != NULL);
	}
}

int main(void)
{
	int rc = pki_test_begin(dir, sizeof(dir), "tls-test");

	if (rc != 0)
		return rc;
	if (certs_make() != 0) {
		fprintf(stderr, "cannot generate test certificates in %s\n", dir);
		pki_dir_remove(dir);
		return 1;
	}
	test_ok_and_bulk();
	test_tamper();
	test_refusals();
	test_optional();
	test_interop_software();
	test_ciphers();
	test_bounds_and_config();
	test_federation();
	pki_dir_remove(dir);
	return check_done("test_tls");
}
