/* SPDX-License-Identifier: Apache-2.0 */
/* What the two h2tun fuzzers (fuzz_h2tun: server role, fuzz_h2tun_client:
 * client role) share: the streams whose app took only part of the bytes
 * and waits to be resumed, and the end of a run (drain, ping, GOAWAY, the
 * window-credit check, free). Header-only, included after lib/h2tun.c
 * (the credit check reads its counters) and fuzzsink.h. */
#ifndef FUZZ_H2TUNFUZZ_H
#define FUZZ_H2TUNFUZZ_H

#define FUZZ_IDS	64		/* streams tracked for resume */

static int32_t fuzz_paused[FUZZ_IDS];
static int fuzz_n_close;		/* on_close calls this run */

static void fuzz_flush(struct h2tun *t, struct fuzz_sink *k, size_t budget)
{
	k->budget = budget;
	h2tun_flush(t);
}

/* Stream id took less than offered: resume it later. */
static void fuzz_pause(int32_t id)
{
	for (int i = 0; i < FUZZ_IDS; i++) {
		if (fuzz_paused[i] == 0 || fuzz_paused[i] == id) {
			fuzz_paused[i] = id;
			return;
		}
	}
}

/* Stream id is gone (on_close): never resume it. */
static void fuzz_unpause(int32_t id)
{
	for (int i = 0; i < FUZZ_IDS; i++)
		if (fuzz_paused[i] == id)
			fuzz_paused[i] = -1;	/* keep the slot, never matches */
}

/* The app's answer to the peer's EOF: half-close, or reset every fifth. */
static void fuzz_eof(struct h2tun *t, int32_t id)
{
	if (id % 5 == 0)
		h2tun_reset(t, id, 0x8 /* CANCEL */);
	else
		h2tun_shutdown(t, id);
}

/* on_close, once the caller has checked the stream was one it knew. */
static void fuzz_closed(struct h2tun *t, int32_t id)
{
	h2tun_stream_set_udata(t, id, NULL);	/* a second on_close would trap */
	fuzz_n_close++;
	fuzz_unpause(id);
}

static void fuzz_resume_all(struct h2tun *t)
{
	for (int i = 0; i < FUZZ_IDS; i++)
		if (fuzz_paused[i] > 0)
			h2tun_resume_read(t, fuzz_paused[i]);
}

/* The end of every run: drain what is pending into a sink with room,
 * ping, GOAWAY, then free t with whatever is still live (on_close(TUNNEL)
 * for each). Once no stream is left, every DATA byte must have gone back
 * to the connection window. */
static void fuzz_finish(struct h2tun *t, struct fuzz_sink *k)
{
	fuzz_flush(t, k, 1 << 16);
	fuzz_resume_all(t);
	fuzz_flush(t, k, 1 << 20);
	if (h2tun_ping(t) == 0)
		(void)h2tun_ping_outstanding(t);
	(void)h2tun_streams_available(t);
	h2tun_goaway(t);
	fuzz_flush(t, k, 1 << 20);
	(void)h2tun_done(t);
	if (h2tun_stream_count(t) == 0 && t->data_in != t->data_acked)
		__builtin_trap();		/* window credit lost */
	h2tun_free(t);
}

#endif
