/* SPDX-License-Identifier: Apache-2.0 */
/* Test PKI: a scratch directory, EC P-256 CAs and SPIFFE leaf certificates
 * made by the openssl CLI, TLS contexts from them, and the file and shell
 * helpers the tests around them need. Shared by the unit tests and the bench
 * tools, so that every certificate they use is made by an implementation
 * independent of ours. Names and subjects go into shell commands unquoted
 * or in single quotes: test constants only, never outside input. */
#ifndef TESTS_PKI_H
#define TESTS_PKI_H

#include <stddef.h>

#include <weft/tls.h>

/* A file read whole: p is NUL-terminated (n excludes the NUL), heap-owned. */
struct pki_pem {
	char *p;
	size_t n;
};

/* 1 when the openssl CLI can be run, else 0 (callers skip with 77). */
int pki_openssl_found(void);

/* Make a fresh directory /tmp/weft-<tag>-XXXXXX into dir (cap bytes).
 * Returns 0 or -errno. */
int pki_dir_make(char *dir, size_t cap, const char *tag);

/* The start of a test that needs the openssl CLI and a scratch directory
 * (made as by pki_dir_make). Returns 0 when both are there, else the exit
 * code main should return after the reason is printed: 77 (skip) without
 * the CLI, 1 when the directory cannot be made. */
int pki_test_begin(char *dir, size_t cap, const char *tag);

/* Remove dir and everything below it; an empty dir string or NULL is a
 * no-op, so it is safe on paths where pki_dir_make never ran. */
void pki_dir_remove(const char *dir);

/* Run the shell command made from fmt. Its stdout and stderr go into out
 * (NUL-terminated, truncated to cap) when out is given, and are discarded
 * otherwise. Returns the exit status, or -1 if it could not run or died. */
int pki_sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A CA in dir: key <name>.key (PKCS#8) and certificate <name>.pem with
 * critical CA:TRUE and keyCertSign,cRLSign. Self-signed (a root) when
 * issuer is NULL, else signed by <issuer>.pem/<issuer>.key (an
 * intermediate). subject NULL means /O=weft-test/CN=<name>. The openssl
 * output is printed to stderr on failure. Returns 0 or -1. */
int pki_ca_make(const char *dir, const char *name, const char *issuer, const char *subject,
		int days);

/* A leaf SVID in dir: <name>.key (PKCS#8) and <name>.pem signed by
 * <ca>.pem/<ca>.key, subject /O=weft-test, critical CA:FALSE and
 * digitalSignature. sans is an openssl subjectAltName value such as
 * "URI:spiffe://td/a" or "critical,URI:...,URI:..." (NULL: no SAN); eku an
 * extendedKeyUsage value (NULL: serverAuth,clientAuth). Returns 0 or -1. */
int pki_leaf_make(const char *dir, const char *name, const char *ca, const char *sans,
		  const char *eku, int days);

/* Read dir/name (dir NULL: name is the path) whole. Returns a
 * NUL-terminated heap buffer the caller frees and its length in *len, or
 * NULL. */
char *pki_file_read(const char *dir, const char *name, size_t *len);

/* pki_file_read into a struct pki_pem. Returns 0 or -1 (pem left empty). */
int pki_pem_load(struct pki_pem *pem, const char *dir, const char *name);

/* Write len bytes to dir/name (dir NULL: name is the path), replacing it.
 * Returns 0 or -1. */
int pki_file_write(const char *dir, const char *name, const void *data, size_t len);

/* A TLS context for trust domain cluster.local with ALPN h2 from test PEMs.
 * crt and key may be NULL (a client without identity); ciphers NULL means
 * the default suites; no_dev keeps AES-GCM in wolfSSL software. Returns the
 * context, or NULL after printing tls_ctx_new's reason. */
struct tls_ctx *pki_ctx_new(enum tls_role role, enum tls_peer_auth auth,
			    const struct pki_pem *crt, const struct pki_pem *key,
			    const struct pki_pem *bundle, int no_dev, const char *ciphers);

/* How often needle occurs in text (e.g. "URI:" in `openssl x509 -text`). */
int pki_count(const char *text, const char *needle);

#endif
