/* SPDX-License-Identifier: Apache-2.0 */
/* nghttp2 plumbing shared by the gRPC server, the gRPC client and HBONE
 * tunnels: what each of them would otherwise write again around
 * nghttp2_session (setup, feed, flush, done, GOAWAY), plus deadlines and
 * gRPC message reassembly. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <weft/grpc.h>
#include <weft/h2glue.h>

/* A DATA frame's payload is cut so that header and payload fill one TLS
 * record (16 KiB of plaintext) instead of a full record plus a 9-byte one:
 * half the records, tags and crypto calls in bulk transfers. */
static ssize_t h2glue_data_max(nghttp2_session *h2, uint8_t type, int32_t sid,
			       int32_t conn_window, int32_t stream_window,
			       uint32_t max_frame, void *ud)
{
	size_t fit = H2GLUE_DATA_FIT;

	(void)h2;
	(void)type;
	(void)sid;
	(void)conn_window;
	(void)stream_window;
	(void)ud;
	/* nghttp2 clamps this to the flow-control windows afterwards. */
	return (ssize_t)(max_frame < fit ? max_frame : fit);
}

int h2glue_session_new(nghttp2_session **h2, const struct h2glue_setup *setup, void *ud)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_session *session;
	nghttp2_option *opt;
	int rc;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		goto fail_cbs;
	if (setup->on_begin_headers)
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, setup->on_begin_headers);
	if (setup->on_header)
		nghttp2_session_callbacks_set_on_header_callback(cbs, setup->on_header);
	if (setup->on_frame_recv)
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, setup->on_frame_recv);
	if (setup->on_data_chunk_recv)
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
									  setup->on_data_chunk_recv);
	if (setup->on_frame_send)
		nghttp2_session_callbacks_set_on_frame_send_callback(cbs, setup->on_frame_send);
	if (setup->on_frame_not_send)
		nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs,
									 setup->on_frame_not_send);
	if (setup->on_stream_close)
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, setup->on_stream_close);
	nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, h2glue_data_max);
	if (nghttp2_option_new(&opt) != 0)
		goto fail_opt;
	/* None of our peers uses RFC 7540 priorities; keeping closed streams
	 * for the dependency tree would only cost memory per peer. */
	nghttp2_option_set_no_closed_streams(opt, 1);
	if (setup->flags & H2GLUE_MANUAL_WINDOW)
		nghttp2_option_set_no_auto_window_update(opt, 1);
	if (setup->flags & H2GLUE_NO_HTTP)
		nghttp2_option_set_no_http_messaging(opt, 1);
	if (setup->peer_max_streams)
		nghttp2_option_set_peer_max_concurrent_streams(opt, setup->peer_max_streams);
	if (setup->reset_burst)
		nghttp2_option_set_stream_reset_rate_limit(opt, setup->reset_burst,
							   setup->reset_rate);
	if (setup->flags & H2GLUE_SERVER)
		rc = nghttp2_session_server_new2(&session, cbs, ud, opt);
	else
		rc = nghttp2_session_client_new2(&session, cbs, ud, opt);
	if (rc != 0)
		goto fail_h2;
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);

	/* The connection window is not a SETTING: WINDOW_UPDATE on stream 0. */
	if (nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, setup->settings,
				    setup->n_settings) != 0 ||
	    nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0,
						  setup->conn_window) != 0)
		goto fail_settings;
	*h2 = session;
	return 0;

fail_settings:
	nghttp2_session_del(session);
	return -ENOMEM;
fail_h2:
	nghttp2_option_del(opt);
fail_opt:
	nghttp2_session_callbacks_del(cbs);
fail_cbs:
	return -ENOMEM;
}

int h2glue_feed(nghttp2_session *h2, const uint8_t *p, size_t n)
{
	if (nghttp2_session_mem_recv(h2, p, n) >= 0)
		return 0;
	/* Some errors (bad preface) leave no GOAWAY queued; add one. */
	nghttp2_session_terminate_session(h2, NGHTTP2_PROTOCOL_ERROR);
	return -EPROTO;
}

/* Frames smaller than a record are gathered so that one flush writes one
 * record where nghttp2 hands out several frames (HEADERS then DATA, DATA of
 * several streams, a WINDOW_UPDATE): mem_send's pointer is only good until
 * its next call, so they are copied; a frame of half a record or more goes
 * out as it is when nothing is gathered. */
int h2glue_flush(nghttp2_session *h2, const struct h2glue_sink *k, int *lib_err)
{
	uint8_t stage[H2GLUE_RECORD];
	size_t staged = 0;
	int rc = 0;

	if (lib_err)
		*lib_err = 0;
	while (k->space(k->io) > staged) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(h2, &p);

		if (n < 0) {
			if (lib_err)
				*lib_err = (int)n;
			return -EPROTO;
		}
		if (n == 0)
			break;
		if (staged + (size_t)n > sizeof(stage) && staged) {
			rc = k->send(k->io, stage, staged);
			staged = 0;
			if (rc < 0)
				return rc;
		}
		if ((size_t)n > sizeof(stage) || (!staged && (size_t)n >= sizeof(stage) / 2)) {
			rc = k->send(k->io, p, (size_t)n);
			if (rc < 0)
				return rc;
			continue;
		}
		memcpy(stage + staged, p, (size_t)n);
		staged += (size_t)n;
	}
	if (staged)
		rc = k->send(k->io, stage, staged);
	return rc < 0 ? rc : 0;
}

int h2glue_done(nghttp2_session *h2, bool fatal, bool proto_err, bool busy)
{
	if (fatal || (proto_err && !nghttp2_session_want_write(h2)))
		return 1;
	return !nghttp2_session_want_read(h2) && !nghttp2_session_want_write(h2) && !busy;
}

bool h2glue_goaway_failed(const nghttp2_frame *frame)
{
	return frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR;
}

void h2glue_goaway(nghttp2_session *h2)
{
	nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
			      NGHTTP2_NO_ERROR, NULL, 0);
}

bool h2glue_deadline_due(uint64_t deadline, uint64_t now_ms, uint64_t *next)
{
	if (!deadline)
		return false;
	if (deadline <= now_ms)
		return true;
	if (!*next || deadline < *next)
		*next = deadline;
	return false;
}

int h2glue_msg_prefix(struct h2glue_msg *m, const uint8_t **p, size_t *n)
{
	size_t take = sizeof(m->pfx) - m->pfx_len;

	if (take > *n)
		take = *n;
	memcpy(m->pfx + m->pfx_len, *p, take);
	m->pfx_len += take;
	*p += take;
	*n -= take;
	if (m->pfx_len < sizeof(m->pfx))
		return 0;
	return grpc_frame_parse(m->pfx, sizeof(m->pfx), &m->len) < 0 ? -EINVAL : 1;
}

int h2glue_msg_body(struct h2glue_msg *m, const uint8_t **p, size_t *n)
{
	size_t take = m->len - m->got;

	if (take > *n)
		take = *n;
	if (take == 0)
		return 0;
	/* Grow with what actually arrives, not with what was declared, so
	 * an idle stream does not pin len bytes. */
	if (m->got + take > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		uint8_t *b;

		while (cap < m->got + take)
			cap *= 2;
		if (cap > m->len)
			cap = m->len;
		b = realloc(m->buf, cap);
		if (!b)
			return -ENOMEM;
		m->buf = b;
		m->cap = cap;
	}
	memcpy(m->buf + m->got, *p, take);
	m->got += take;
	*p += take;
	*n -= take;
	return 0;
}

void h2glue_msg_reset(struct h2glue_msg *m)
{
	free(m->buf);
	memset(m, 0, sizeof(*m));
}
