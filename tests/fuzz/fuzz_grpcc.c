/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for grpcc.c: raw server bytes (server preface onwards)
 * fed, in pieces, into a client session with a unary call (with a deadline)
 * and a server-streaming call in flight; callbacks start and cancel calls
 * the way agentc does; then deadlines expire and the session is freed.
 * Must never crash, leak or hang. The first input byte picks the piece
 * size and a few behaviours; the rest is what the "server" sent. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <weft/grpc.h>
#include <weft/grpcc.h>

#include "fuzzsink.h"

struct fuzz_state {
	struct grpcc_session *s;
	struct grpcc_call *watch;
	unsigned flags;
	unsigned restarts;
	unsigned done;
	uint8_t sum;
};

#define FUZZ_CANCEL_IN_MSG	(1u << 4)	/* cancel the stream from on_message */
#define FUZZ_RESTART		(1u << 5)	/* start a new call from on_done */
#define FUZZ_CANCEL_AT_END	(1u << 6)	/* cancel what is left before expire */
#define FUZZ_PING		(1u << 7)	/* a keepalive PING after each piece */

static void fuzz_on_message(struct grpcc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	struct fuzz_state *st = arg;

	/* Touch every byte so the sanitizers see a bad length. */
	for (size_t i = 0; i < len; i++)
		st->sum += msg[i];
	if ((st->flags & FUZZ_CANCEL_IN_MSG) && c == st->watch)
		grpcc_call_cancel(c);
}

static void fuzz_on_done(struct grpcc_call *c, enum grpc_status status, const char *msg,
			 void *arg);

static struct grpcc_call *fuzz_start(struct fuzz_state *st, const char *path, uint32_t tmo)
{
	static const char *const hdrs[] = { "authorization", "Bearer fuzz", NULL };
	static const uint8_t req[] = { 0x0a, 0x05, 'n', 'o', 'd', 'e', '1' };

	return grpcc_call_start(st->s, path, hdrs, req, sizeof(req), tmo, 0,
				fuzz_on_message, fuzz_on_done, st);
}

static void fuzz_on_done(struct grpcc_call *c, enum grpc_status status, const char *msg,
			 void *arg)
{
	struct fuzz_state *st = arg;

	(void)status;
	st->done++;
	st->sum += (uint8_t)strlen(msg);
	if (c == st->watch)
		st->watch = NULL;
	/* Like agentc's Watch: try again on the same session, a few times. */
	if ((st->flags & FUZZ_RESTART) && st->restarts < 3) {
		st->restarts++;
		fuzz_start(st, "/weft.registry.v1.Registry/Watch", 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_sink sink = { 0 };
	struct fuzz_state st = { 0 };
	size_t piece, off;

	if (size < 1)
		return 0;
	st.flags = data[0];
	piece = 1 + (size_t)(data[0] & 15) * 97;	/* 1 .. 1456 bytes */
	data++;
	size--;

	sink.budget = 1 << 20;
	st.s = grpcc_session_new(fuzz_send, fuzz_space, &sink, "weft-agent");
	if (!st.s)
		return 0;
	fuzz_start(&st, "/istio.v1.auth.IstioCertificateService/CreateCertificate", 1000);
	st.watch = fuzz_start(&st, "/weft.registry.v1.Registry/Watch", 0);
	grpcc_session_flush(st.s);

	for (off = 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;

		if (grpcc_session_feed(st.s, data + off, n, 0) < 0)
			break;
		if (st.flags & FUZZ_PING)
			grpcc_session_ping(st.s);
		/* Alternate a full sink and a nearly full one. */
		sink.budget = (off / piece) & 1 ? 64 : 1 << 20;
		grpcc_session_flush(st.s);
		if (grpcc_session_done(st.s))
			break;
	}
	if ((st.flags & FUZZ_CANCEL_AT_END) && st.watch)
		grpcc_call_cancel(st.watch);
	grpcc_session_expire(st.s, 999);
	grpcc_session_expire(st.s, 1000);
	sink.budget = 1 << 20;
	grpcc_session_flush(st.s);
	grpcc_session_free(st.s);
	return 0;
}
