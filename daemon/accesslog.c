/* SPDX-License-Identifier: Apache-2.0 */
/* The access log (accesslog.h). A clean connection is an info line, one
 * with a flag or an error a warning. */
#include <stdio.h>
#include <string.h>

#include <weft/log.h>

#include "accesslog.h"
#include "failures.h"
#include "weftd.h"

/* s as a JSON string body: quotes, backslashes and control bytes escaped. */
static const char *access_json(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; s && *s && o + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return out;
}

void access_log(const struct weftd *d, const struct access_entry *e)
{
	int level = e->flag || e->error ? LOG_WARN : LOG_INFO;

	if (e->flag || e->error)
		failures_record(e);
	if (level < LOG_WARN && log_level < LOG_INFO)
		return;
	if (d->cfg.access_log_format == SETTINGS_ACCESS_LOG_JSON) {
		char err[512], a[6][300];

		log_msg(level, "{\"msg\":\"connection complete\",\"trace_id\":\"%s\","
			"\"direction\":\"%s\",\"src\":\"%s\",\"dst\":\"%s\",\"src_identity\":\"%s\","
			"\"dst_workload\":\"%s\",\"bytes_sent\":%llu,\"bytes_received\":%llu,"
			"\"duration_ms\":%llu,\"response_flags\":\"%s\",\"error\":\"%s\"}",
			access_json(a[0], sizeof(a[0]), e->trace ? e->trace : ""),
			access_json(a[1], sizeof(a[1]), e->direction),
			access_json(a[2], sizeof(a[2]), e->src),
			access_json(a[3], sizeof(a[3]), e->dst),
			access_json(a[4], sizeof(a[4]), e->src_id),
			access_json(a[5], sizeof(a[5]), e->dst_workload),
			(unsigned long long)e->sent, (unsigned long long)e->received,
			(unsigned long long)e->ms, e->flag ? e->flag : "-",
			access_json(err, sizeof(err), e->error));
		return;
	}
	log_msg(level,
		"connection complete direction=%s src=%s dst=%s src_identity=%s "
		"dst_workload=%s bytes_sent=%llu bytes_received=%llu duration_ms=%llu "
		"response_flags=%s trace_id=%s%s%s%s", e->direction, e->src, e->dst,
		e->src_id && e->src_id[0] ? e->src_id : "-",
		e->dst_workload && e->dst_workload[0] ? e->dst_workload : "-",
		(unsigned long long)e->sent, (unsigned long long)e->received,
		(unsigned long long)e->ms, e->flag ? e->flag : "-",
		e->trace && e->trace[0] ? e->trace : "-", e->error ? " error=\"" : "",
		e->error ? e->error : "", e->error ? "\"" : "");
}
