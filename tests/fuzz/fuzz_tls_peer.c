/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the peer-certificate checks of lib/tls.c: arbitrary
 * bytes as the DER leaf a peer presents, through tls_svid_check, the very
 * function the handshake's verify callback calls (chain verification runs
 * before it in wolfSSL and is not this target's subject). The first byte
 * picks the mode (verify or record only, with or without an expected ID);
 * the rest is the certificate. An accepted certificate must carry an ID
 * that is a SPIFFE ID of an allowed trust domain (and the expected one); a
 * refusal must say why and hand out no ID. ASan/UBSan and LeakSanitizer
 * catch the rest. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/spiffe.h>
#include <weft/tls.h>

#define FUZZ_EXPECT "spiffe://cluster.local/ns/default/sa/a"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_td_allowed(const char *const *tds, const char *td)
{
	for (; *tds; tds++)
		if (!strcmp(*tds, td))
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tds[] = { "cluster.local", "example.org", NULL };
	struct spiffe_id sid;
	const char *expect, *why;
	char err[TLS_ERR_MAX], *id;
	int verify, ret;

	if (size < 1)
		return 0;
	verify = !(data[0] & 1);
	expect = data[0] & 2 ? FUZZ_EXPECT : NULL;
	memset(err, 'x', sizeof(err));
	ret = tls_svid_check(data + 1, size - 1, verify, tds, expect, &id, err, sizeof(err));
	if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();			/* err not terminated */
	if (ret < 0) {
		if (id || (verify && ret == -EPROTO && !err[0]))
			abort();		/* a refusal hands out an ID, or says nothing */
		return 0;
	}
	if (ret != 0)
		abort();
	if (!verify) {
		free(id);			/* any one URI SAN, unchecked */
		return 0;
	}
	if (!id)
		abort();
	if (spiffe_id_parse(id, strlen(id), &sid, &why) < 0 || !fuzz_td_allowed(tds, sid.td))
		abort();			/* accepted a non-SPIFFE or foreign ID */
	if (expect && strcmp(id, expect))
		abort();			/* accepted another peer than expected */
	free(id);
	return 0;
}
