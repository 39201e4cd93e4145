/* SPDX-License-Identifier: Apache-2.0 */
/* Test PKI made by the openssl CLI (see pki.h). Certificates come from an
 * implementation independent of weft's own X.509 code on purpose: a test
 * that signs with the code under test proves little. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pki.h"

#define PKI_CMD_MAX 4096
#define PKI_LOG_MAX 4096

int pki_openssl_found(void)
{
	return pki_sh(NULL, 0, "openssl version") == 0;
}

int pki_dir_make(char *dir, size_t cap, const char *tag)
{
	int n = snprintf(dir, cap, "/tmp/weft-%s-XXXXXX", tag);

	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	if (!mkdtemp(dir)) {
		int err = errno;

		dir[0] = '\0';
		return -err;
	}
	return 0;
}

int pki_test_begin(char *dir, size_t cap, const char *tag)
{
	int rc;

	if (!pki_openssl_found()) {
		printf("skip: no openssl CLI\n");
		return 77;
	}
	rc = pki_dir_make(dir, cap, tag);
	if (rc != 0) {
		fprintf(stderr, "cannot make a scratch directory: %s\n", strerror(-rc));
		return 1;
	}
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "pki: cannot remove %s: %s\n", path, strerror(errno));
	return 0;	/* remove what can be removed */
}

void pki_dir_remove(const char *dir)
{
	if (!dir || !dir[0])
		return;
	/* Depth first, not following links: children go before their dir. */
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int sh_run(char *out, size_t cap, const char *fmt, va_list ap)
{
	char body[PKI_CMD_MAX], cmd[PKI_CMD_MAX + 16], sink[4096];
	FILE *p;
	int n, st;

	n = vsnprintf(body, sizeof(body), fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(body)) {
		fprintf(stderr, "pki: command too long\n");
		return -1;
	}
	/* A newline before the brace, so that a command ending in ';' or '&'
	 * still parses; the group sends every step's stderr along. */
	snprintf(cmd, sizeof(cmd), "{ %s\n} 2>&1", body);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && cap) {
		size_t got = fread(out, 1, cap - 1, p);

		out[got] = '\0';
	}
	/* Drain the rest so the command never dies of SIGPIPE. */
	while (fread(sink, 1, sizeof(sink), p) > 0)
		;
	st = pclose(p);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int pki_sh(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sh_run(out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

/* Run one openssl step of making a certificate; its output goes to stderr
 * on failure, since nothing else would say why the test setup broke. */
static int sh_logged(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh_logged(const char *fmt, ...)
{
	char log[PKI_LOG_MAX];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sh_run(log, sizeof(log), fmt, ap);
	va_end(ap);
	if (rc != 0) {
		fprintf(stderr, "pki: openssl failed (%d):\n%s", rc, log);
		return -1;
	}
	return 0;
}

/* name.key and a CSR name.csr for subject; then name.pem is issued by ca
 * with the extensions in ext (one per line). */
static int cert_issue(const char *dir, const char *name, const char *ca, const char *subject,
		      const char *ext, int days)
{
	char extname[64];

	snprintf(extname, sizeof(extname), "%s.ext", name);
	if (pki_file_write(dir, extname, ext, strlen(ext)) != 0)
		return -1;
	return sh_logged("cd '%s' && "
			 "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
			 "-out %s.key && "
			 "openssl req -new -key %s.key -subj '%s' -out %s.csr && "
			 "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
			 "-days %d -extfile %s -extensions v3 -out %s.pem",
			 dir, name, name, subject, name, name, ca, ca, days, extname, name);
}

int pki_ca_make(const char *dir, const char *name, const char *issuer, const char *subject,
		int days)
{
	static const char ext[] =
		"[v3]\n"
		"basicConstraints=critical,CA:TRUE\n"
		"keyUsage=critical,keyCertSign,cRLSign\n"
		"subjectKeyIdentifier=hash\n"
		"authorityKeyIdentifier=keyid\n";
	char subj[256];

	if (subject)
		snprintf(subj, sizeof(subj), "%s", subject);
	else
		snprintf(subj, sizeof(subj), "/O=weft-test/CN=%s", name);
	if (issuer)
		return cert_issue(dir, name, issuer, subj, ext, days);
	return sh_logged("cd '%s' && "
			 "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
			 "-out %s.key && "
			 "openssl req -x509 -new -key %s.key -subj '%s' -days %d "
			 "-addext basicConstraints=critical,CA:TRUE "
			 "-addext keyUsage=critical,keyCertSign,cRLSign -out %s.pem",
			 dir, name, name, subj, days, name);
}

int pki_leaf_make(const char *dir, const char *name, const char *ca, const char *sans,
		  const char *eku, int days)
{
	char ext[2048];
	int n;

	n = snprintf(ext, sizeof(ext),
		     "[v3]\n"
		     "basicConstraints=critical,CA:FALSE\n"
		     "keyUsage=critical,digitalSignature\n"
		     "extendedKeyUsage=%s\n"
		     "%s%s%s",
		     eku ? eku : "serverAuth,clientAuth",
		     sans ? "subjectAltName=" : "", sans ? sans : "", sans ? "\n" : "");
	if (n < 0 || (size_t)n >= sizeof(ext))
		return -1;
	return cert_issue(dir, name, ca, "/O=weft-test", ext, days);
}

static void path_join(char *path, size_t cap, const char *dir, const char *name)
{
	if (dir)
		snprintf(path, cap, "%s/%s", dir, name);
	else
		snprintf(path, cap, "%s", name);
}

char *pki_file_read(const char *dir, const char *name, size_t *len)
{
	char path[1024];
	char *buf = NULL;
	FILE *f;
	long n;

	path_join(path, sizeof(path), dir, name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

int pki_pem_load(struct pki_pem *pem, const char *dir, const char *name)
{
	pem->n = 0;
	pem->p = pki_file_read(dir, name, &pem->n);
	return pem->p ? 0 : -1;
}

int pki_file_write(const char *dir, const char *name, const void *data, size_t len)
{
	char path[1024];
	FILE *f;
	size_t n;

	path_join(path, sizeof(path), dir, name);
	f = fopen(path, "wb");
	if (!f)
		return -1;
	n = fwrite(data, 1, len, f);
	if (fclose(f) != 0 || n != len)
		return -1;
	return 0;
}

struct tls_ctx *pki_ctx_new(enum tls_role role, enum tls_peer_auth auth,
			    const struct pki_pem *crt, const struct pki_pem *key,
			    const struct pki_pem *bundle, int no_dev, const char *ciphers)
{
	static const char *const tds[] = { "cluster.local", NULL };
	struct tls_ctx_opts o = {
		.role = role,
		.peer_auth = auth,
		.chain_pem = crt ? crt->p : NULL,
		.chain_len = crt ? crt->n : 0,
		.key_pem = key ? key->p : NULL,
		.key_len = key ? key->n : 0,
		.bundle_pem = bundle ? bundle->p : NULL,
		.bundle_len = bundle ? bundle->n : 0,
		.trust_domains = tds,
		.alpn = "h2",
		.ciphers = ciphers,
		.no_crypto_device = no_dev,
	};
	char err[TLS_ERR_MAX];
	struct tls_ctx *c = tls_ctx_new(&o, err, sizeof(err));

	if (!c)
		fprintf(stderr, "tls_ctx_new: %s\n", err);
	return c;
}

int pki_count(const char *text, const char *needle)
{
	size_t step = strlen(needle);
	int n = 0;

	for (const char *p = text; step && (p = strstr(p, needle)); p += step)
		n++;
	return n;
}
