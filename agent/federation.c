/* SPDX-License-Identifier: Apache-2.0 */
/* federation_dir: one PEM bundle per federated trust domain (federation.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/file.h>
#include <weft/registry.h>
#include <weft/x509.h>

#include "federation.h"

static int td_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_bundle *)a)->trust_domain,
		      ((const struct reg_bundle *)b)->trust_domain);
}

/* Every block of pem is a CA certificate, and there is at least one. */
static int federation_check_pem(const char *pem, size_t len, char *why, size_t whylen)
{
	struct x509_summary *sum = malloc(sizeof(*sum));
	size_t pos = 0, derlen;
	uint8_t *der;
	int n = 0, rc;

	if (!sum) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	while ((rc = x509_pem_next(pem, len, &pos, &der, &derlen)) == 0) {
		rc = x509_cert_summary(der, derlen, sum);
		free(der);
		if (rc < 0 || !sum->is_ca) {
			snprintf(why, whylen, "certificate %d %s", n + 1,
				 rc < 0 ? "does not parse" : "is not a CA");
			free(sum);
			return -EINVAL;
		}
		n++;
	}
	free(sum);
	if (rc != -ENOENT || !n) {
		snprintf(why, whylen, "%s", n ? "a PEM block does not parse"
					       : "no CERTIFICATE in it");
		return -EINVAL;
	}
	return 0;
}

void federation_free(struct reg_bundle *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(b[i].trust_domain);
		free(b[i].pem);
	}
	free(b);
}

int federation_load(const char *dir, const char *own_td, struct reg_bundle **out, size_t *n,
		    char *err, size_t errlen)
{
	struct reg_bundle *b = NULL;
	struct dirent *e;
	size_t nb = 0;
	DIR *d;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (!dir)
		return 0;
	d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "federation_dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	b = calloc(REG_BUNDLES_MAX, sizeof(*b));
	if (!b) {
		closedir(d);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (!rc && (e = readdir(d))) {
		size_t l = strlen(e->d_name), tl;
		char path[4096], why[160], *pem;
		size_t len;

		if (l < 5 || strcmp(e->d_name + l - 4, ".pem"))
			continue;
		tl = l - 4;
		rc = -EINVAL;
		if (tl > 255 || strspn(e->d_name, "abcdefghijklmnopqrstuvwxyz0123456789.-_") < tl) {
			snprintf(err, errlen, "federation_dir %s: %s: the name is not "
				 "<trust-domain>.pem", dir, e->d_name);
		} else if (!strncmp(e->d_name, own_td, tl) && !own_td[tl]) {
			snprintf(err, errlen, "federation_dir %s: %s is this agent's own trust "
				 "domain", dir, e->d_name);
		} else if (nb == REG_BUNDLES_MAX) {
			snprintf(err, errlen, "federation_dir %s: more than %d bundles", dir,
				 REG_BUNDLES_MAX);
		} else if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
			   (rc = file_read(path, REG_BUNDLE_PEM_MAX, &pem, &len))) {
			snprintf(err, errlen, "%s: %s", path, rc == -EFBIG ?
				 "over 64 KiB" : strerror(rc < 0 ? -rc : ENAMETOOLONG));
			rc = rc ? rc : -ENAMETOOLONG;
		} else if ((rc = federation_check_pem(pem, len, why, sizeof(why)))) {
			snprintf(err, errlen, "%s: %s", path, why);
			free(pem);
		} else {
			b[nb].trust_domain = strndup(e->d_name, tl);
			b[nb].pem = pem;
			if (!b[nb++].trust_domain) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
			}
		}
	}
	closedir(d);
	if (rc) {
		federation_free(b, nb);
		return rc;
	}
	qsort(b, nb, sizeof(*b), td_cmp);
	*out = b;
	*n = nb;
	return 0;
}
