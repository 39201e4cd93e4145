/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for grpc.c: raw client bytes (HTTP/2 preface onwards) into
 * a fresh server session whose methods answer at once, hold the call, or
 * stream; then the held calls are answered or abandoned, deadlines expire
 * and the session is freed. Each input runs twice: without an auth hook, and
 * with one that admits "authorization: Bearer f" into a byte quota (the
 * pre-authentication limits and the admission path). Must never crash,
 * leak, hang or leave the quota charged. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <weft/grpc.h>

#include "fuzzsink.h"

#define FUZZ_HELD_MAX	8

static struct grpc_call *fuzz_held[FUZZ_HELD_MAX];

static void fuzz_flush(struct grpc_session *s, struct fuzz_sink *k, size_t budget)
{
	k->budget = budget;
	grpc_session_flush(s);
}

static void fuzz_on_cancel(struct grpc_call *c, void *arg)
{
	(void)arg;
	for (int i = 0; i < FUZZ_HELD_MAX; i++)
		if (fuzz_held[i] == c)
			fuzz_held[i] = NULL;
}

static void fuzz_echo(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)arg;
	(void)grpc_call_header(c, "authorization");
	grpc_call_send(c, msg, len);
	grpc_call_finish(c, len & 1 ? GRPC_INVALID_ARGUMENT : GRPC_OK, "echo \xe2\x9c\x93%");
}

static void fuzz_hold(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)arg;
	for (int i = 0; i < FUZZ_HELD_MAX; i++) {
		if (!fuzz_held[i]) {
			fuzz_held[i] = c;
			grpc_call_on_cancel(c, fuzz_on_cancel, NULL);
			if (len)	/* streaming: one message now, more later */
				grpc_call_send(c, msg, len > 64 ? 64 : len);
			return;
		}
	}
	grpc_call_finish(c, GRPC_UNAVAILABLE, "busy");
}

static const struct grpc_method fuzz_methods[] = {
	{ "/f.S/Echo", fuzz_echo, NULL },
	{ "/f.S/Hold", fuzz_hold, NULL },
};

/* Small limits, so inputs reach them quickly. */
static const struct grpc_server fuzz_server = {
	.methods = fuzz_methods,
	.n_methods = 2,
	.max_msg = 4096,
	.max_streams = 4,
};

static struct grpc_quota fuzz_quota;

static enum grpc_status fuzz_auth(struct grpc_call *c, void *arg, struct grpc_auth *out)
{
	const char *a = grpc_call_header(c, "authorization");

	(void)arg;
	if (!a || strcmp(a, "Bearer f"))
		return GRPC_UNAUTHENTICATED;
	memcpy(out->who, "f", 2);
	out->quota = &fuzz_quota;
	return GRPC_OK;
}

static const struct grpc_server fuzz_server_auth = {
	.methods = fuzz_methods,
	.n_methods = 2,
	.max_msg = 4096,
	.max_streams = 4,
	.auth = fuzz_auth,
};

static void fuzz_one(const struct grpc_server *srv, const uint8_t *data, size_t size)
{
	struct fuzz_sink k = { 0 };
	struct grpc_session *s;
	uint64_t now = 1000;
	size_t half = size & 1 ? size / 2 : size;	/* odd sizes: two feeds */
	int i;

	memset(fuzz_held, 0, sizeof(fuzz_held));
	s = grpc_session_new(srv, fuzz_send, fuzz_space, &k, NULL);
	if (!s)
		return;
	fuzz_flush(s, &k, 1 << 16);
	if (grpc_session_feed(s, data, half, now) == 0 && half < size) {
		fuzz_flush(s, &k, 100);		/* a sink that fills up */
		now += 50;
		grpc_session_feed(s, data + half, size - half, now);
	}
	fuzz_flush(s, &k, 1 << 16);

	/* Answer half of the held calls, leave the rest to expire or free. */
	for (i = 0; i < FUZZ_HELD_MAX; i++) {
		struct grpc_call *c = fuzz_held[i];

		if (!c)
			continue;
		grpc_call_send(c, (const uint8_t *)"late", 4);
		(void)grpc_call_pending(c);
		if (i & 1) {
			fuzz_held[i] = NULL;
			grpc_call_finish(c, GRPC_OK, NULL);
		}
	}
	fuzz_flush(s, &k, 1 << 16);
	grpc_session_expire(s, now + 200);	/* covers grpc-timeout <= 200m */
	fuzz_flush(s, &k, 1 << 16);
	grpc_session_expire(s, now + GRPC_PREAUTH_MS);	/* unauthenticated: cut */
	fuzz_flush(s, &k, 1 << 16);
	grpc_session_drain(s);
	fuzz_flush(s, &k, 1 << 16);
	(void)grpc_session_done(s);
	grpc_session_free(s);			/* cancels what is still held */
	for (i = 0; i < FUZZ_HELD_MAX; i++)
		if (fuzz_held[i])
			__builtin_trap();	/* on_cancel did not run */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_one(&fuzz_server, data, size);
	fuzz_quota = (struct grpc_quota){ .bytes_max = 8192 };
	fuzz_one(&fuzz_server_auth, data, size);
	if (fuzz_quota.calls || fuzz_quota.bytes)
		__builtin_trap();	/* a freed call still charged */
	return 0;
}
