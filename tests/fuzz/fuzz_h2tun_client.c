/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for h2tun.c in its client role (weftd's tunnel to a
 * peer node, daemon/tunnel.c): a fresh HBONE client session opens a few
 * CONNECT streams, then the fuzzer's bytes arrive as the server's side
 * (preface onwards). The first byte shapes the run: bits 0-1 the number of
 * streams opened at start (1-4), bit 2 a canned server preface (SETTINGS
 * and its ACK) before the bytes, bit 3 two feeds with a sink that fills up
 * in between, bit 4 more CONNECTs after the first feed. The callbacks play
 * the tunnel client: on 200 the stream sends bytes (and on odd runs
 * half-closes), received bytes are consumed (at times only half, resumed
 * later), EOF half-closes or resets. Must never crash, leak or hang; every
 * callback must name a stream this client opened, on_response come at most
 * once per stream and on_data only after a 200, on_close exactly once per
 * opened stream, and once no stream is left every DATA byte must have gone
 * back to the connection window (the .c is included for that count). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "../../lib/h2tun.c"
#include "fuzzsink.h"
#include "h2tunfuzz.h"

/* Stream udata: where a stream is in its life, as this client sees it. */
static char fuzz_pending, fuzz_open, fuzz_refused;
static int fuzz_n_open, fuzz_halfclose;

static const uint8_t fuzz_preface[] = {
	0, 0, 0, 4, 0, 0, 0, 0, 0,		/* SETTINGS */
	0, 0, 0, 4, 1, 0, 0, 0, 0,		/* SETTINGS ACK */
};

static void fuzz_mine(struct h2tun *t, int32_t id)
{
	void *u = h2tun_stream_udata(t, id);

	if (u != &fuzz_pending && u != &fuzz_open && u != &fuzz_refused)
		__builtin_trap();		/* not a stream this client opened */
}

static void fuzz_connect(struct h2tun *t, int n)
{
	static const char *const dst[] = { "10.244.2.2:8080", "10.244.2.3:80",
					   "[fd00:244:2::2]:443", "10.96.0.1:80" };

	for (int i = 0; i < n; i++) {
		struct h2tun_connect_req req = {
			.authority = dst[i & 3],
			.forwarded = i & 1 ? "for=\"10.244.1.2:40000\"" : NULL,
			.traceparent = i & 2 ?
				"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : NULL,
		};

		if (h2tun_connect(t, &req, &fuzz_pending) > 0)
			fuzz_n_open++;
	}
}

static void fuzz_on_response(struct h2tun *t, int32_t id, int status)
{
	static const uint8_t hello[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	if (h2tun_stream_udata(t, id) != &fuzz_pending)
		__builtin_trap();		/* a second answer, or not ours */
	if (status < 200 || status > 599)
		__builtin_trap();		/* interim or invalid as final */
	if (status != 200) {
		h2tun_stream_set_udata(t, id, &fuzz_refused);
		return;
	}
	h2tun_stream_set_udata(t, id, &fuzz_open);
	(void)h2tun_write(t, id, hello, sizeof(hello) - 1);
	if (fuzz_halfclose)
		h2tun_shutdown(t, id);
}

/* Take what arrives, except every third call on streams 3, 7, ...: half. */
static size_t fuzz_on_data(struct h2tun *t, int32_t id, const uint8_t *p, size_t n)
{
	static unsigned calls;
	size_t want = n;

	(void)p;
	if (h2tun_stream_udata(t, id) != &fuzz_open)
		__builtin_trap();		/* data without a 200 */
	if ((id & 2) && ++calls % 3 == 0)
		want = n / 2;
	h2tun_consume(t, id, want);
	if (want < n)
		fuzz_pause(id);
	return want;
}

static void fuzz_on_eof(struct h2tun *t, int32_t id)
{
	fuzz_mine(t, id);
	fuzz_eof(t, id);
}

static void fuzz_on_writable(struct h2tun *t, int32_t id)
{
	fuzz_mine(t, id);
}

static void fuzz_on_close(struct h2tun *t, int32_t id, enum h2tun_end how, uint32_t code)
{
	(void)how;
	(void)code;
	fuzz_mine(t, id);
	fuzz_closed(t, id);
}

static void fuzz_on_goaway(struct h2tun *t)
{
	struct h2tun_connect_req req = { .authority = "10.244.2.2:8080" };

	if (h2tun_connect(t, &req, &fuzz_pending) > 0)
		__builtin_trap();		/* a stream after GOAWAY */
}

static const struct h2tun_callbacks fuzz_cb = {
	.on_response = fuzz_on_response,
	.on_data = fuzz_on_data,
	.on_eof = fuzz_on_eof,
	.on_writable = fuzz_on_writable,
	.on_close = fuzz_on_close,
	.on_goaway = fuzz_on_goaway,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_sink k = { 0 };
	struct h2tun *t;
	uint8_t mode;
	size_t half;
	int rc = 0;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	half = mode & 8 ? size / 2 : size;
	fuzz_n_open = fuzz_n_close = 0;
	fuzz_halfclose = mode & 32;
	memset(fuzz_paused, 0, sizeof(fuzz_paused));
	t = h2tun_new(H2TUN_CLIENT, &fuzz_cb, fuzz_send, fuzz_space, &k, NULL);
	if (!t)
		return 0;
	fuzz_connect(t, 1 + (mode & 3));
	fuzz_flush(t, &k, 1 << 16);
	if (mode & 4)
		rc = h2tun_feed(t, fuzz_preface, sizeof(fuzz_preface));
	if (rc == 0)
		rc = h2tun_feed(t, data, half);
	if (rc == 0 && half < size) {
		fuzz_flush(t, &k, 100);		/* a sink that fills up */
		fuzz_resume_all(t);
		if (mode & 16)
			fuzz_connect(t, 2);
		rc = h2tun_feed(t, data + half, size - half);
	}
	fuzz_finish(t, &k);			/* live streams: on_close(TUNNEL) */
	if (fuzz_n_close != fuzz_n_open)
		__builtin_trap();		/* on_close missing */
	return 0;
}
