/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for h2tun.c: raw client bytes (HTTP/2 preface onwards)
 * into a fresh HBONE server session whose app answers CONNECTs 200 and 503
 * in turn, echoes stream bytes back (taking only part of them at times,
 * and resuming later), half-closes on EOF and resets some streams. Output
 * goes to a sink that fills up. Then the session is freed with whatever is
 * still live. Must never crash, leak or hang; on_close must come once
 * for every stream on_connect named, and once no stream is left every
 * DATA byte must have gone back to the connection window (the .c is
 * included for that count). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "../../lib/h2tun.c"
#include "fuzzsink.h"
#include "h2tunfuzz.h"

static int fuzz_n_connect;

static void fuzz_on_connect(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req)
{
	(void)req->authority;
	(void)(req->forwarded && req->forwarded[0]);
	(void)(req->traceparent && req->traceparent[0]);
	h2tun_stream_set_udata(t, id, &fuzz_n_connect);
	h2tun_respond(t, id, fuzz_n_connect++ & 1 ? 503 : 200);
}

/* Echo what fits into the send queue; the rest waits. Every third call on
 * a stream with an odd id takes half, to exercise the held-bytes path. */
static size_t fuzz_on_data(struct h2tun *t, int32_t id, const uint8_t *p, size_t n)
{
	static unsigned calls;
	size_t want = n;
	ssize_t w;

	if ((id & 2) && ++calls % 3 == 0)
		want = n / 2;
	w = h2tun_write(t, id, p, want);
	if (w < 0)
		w = (ssize_t)want;	/* cannot send: drop, like a closed app */
	h2tun_consume(t, id, (size_t)w);
	if ((size_t)w < n)
		fuzz_pause(id);
	return (size_t)w;
}

static void fuzz_on_eof(struct h2tun *t, int32_t id)
{
	fuzz_eof(t, id);
}

static void fuzz_on_writable(struct h2tun *t, int32_t id)
{
	h2tun_resume_read(t, id);
}

static void fuzz_on_close(struct h2tun *t, int32_t id, enum h2tun_end how, uint32_t code)
{
	(void)how;
	(void)code;
	if (h2tun_stream_udata(t, id) != &fuzz_n_connect)
		__builtin_trap();	/* not a stream on_connect named */
	fuzz_closed(t, id);
}

static const struct h2tun_callbacks fuzz_cb = {
	.on_connect = fuzz_on_connect,
	.on_data = fuzz_on_data,
	.on_eof = fuzz_on_eof,
	.on_writable = fuzz_on_writable,
	.on_close = fuzz_on_close,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_sink k = { 0 };
	struct h2tun *t;
	size_t half = size & 1 ? size / 2 : size;	/* odd sizes: two feeds */

	fuzz_n_connect = fuzz_n_close = 0;
	memset(fuzz_paused, 0, sizeof(fuzz_paused));
	t = h2tun_new(H2TUN_SERVER, &fuzz_cb, fuzz_send, fuzz_space, &k, NULL);
	if (!t)
		return 0;
	fuzz_flush(t, &k, 1 << 16);
	if (h2tun_feed(t, data, half) == 0 && half < size) {
		fuzz_flush(t, &k, 100);		/* a sink that fills up */
		fuzz_resume_all(t);
		h2tun_feed(t, data + half, size - half);
	}
	fuzz_finish(t, &k);			/* live streams: on_close(TUNNEL) */
	if (fuzz_n_close != fuzz_n_connect)
		__builtin_trap();		/* on_close missing */
	return 0;
}
