/* SPDX-License-Identifier: Apache-2.0 */
/* The failure ring (failures.h): fixed size, copied strings, one loop
 * thread. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "failures.h"
#include "jsonw.h"

struct failure {
	time_t at;
	char trace[33], direction[24], src[64], dst[96], src_id[256], dst_workload[128];
	char flag[32], error[384];
};

static struct failure ring[FAILURES_MAX];
static unsigned head, count;	/* next slot; entries kept */

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void failures_record(const struct access_entry *e)
{
	struct failure *f = &ring[head];

	f->at = time(NULL);
	copy(f->trace, sizeof(f->trace), e->trace);
	copy(f->direction, sizeof(f->direction), e->direction);
	copy(f->src, sizeof(f->src), e->src);
	copy(f->dst, sizeof(f->dst), e->dst);
	copy(f->src_id, sizeof(f->src_id), e->src_id);
	copy(f->dst_workload, sizeof(f->dst_workload), e->dst_workload);
	copy(f->flag, sizeof(f->flag), e->flag ? e->flag : "-");
	copy(f->error, sizeof(f->error), e->error);
	head = (head + 1) % FAILURES_MAX;
	if (count < FAILURES_MAX)
		count++;
}

/* The i-th newest kept failure (0: the newest). */
static const struct failure *nth(unsigned i)
{
	return &ring[(head + FAILURES_MAX - 1 - i) % FAILURES_MAX];
}

static int matches(const struct failure *f, const char *trace, const char *dst)
{
	if (trace)
		return !strcmp(f->trace, trace);
	if (dst)
		return !strcmp(f->dst, dst) || !strcmp(f->dst_workload, dst);
	return 1;
}

size_t failures_json(const char *trace, const char *dst, size_t max, char *buf, size_t len)
{
	struct jw w = { buf, len, 0 };
	size_t shown = 0;

	jw_put(&w, "[");
	for (unsigned i = 0; i < count && shown < max; i++) {
		const struct failure *f = nth(i);
		const char *fields[][2] = {
			{ "trace_id", f->trace }, { "direction", f->direction }, { "src", f->src },
			{ "dst", f->dst }, { "src_identity", f->src_id },
			{ "dst_workload", f->dst_workload }, { "response_flags", f->flag },
			{ "error", f->error },
		};

		if (!matches(f, trace, dst))
			continue;
		jw_put(&w, "%s{\"at\":%lld", shown ? "," : "", (long long)f->at);
		for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
			jw_put(&w, ",\"%s\":", fields[k][0]);
			jw_str(&w, fields[k][1]);
		}
		jw_put(&w, "}");
		shown++;
	}
	jw_put(&w, "]");
	return jw_end(&w);
}

int failures_last_toward(const char *dst, char *out, size_t len)
{
	for (unsigned i = 0; i < count; i++) {
		const struct failure *f = nth(i);
		long ago;

		if (strcmp(f->dst, dst))
			continue;
		ago = (long)(time(NULL) - f->at);
		snprintf(out, len, "the last connection toward it that failed, %ld s ago (%s, trace "
			 "%s): [%s] %s", ago, f->dst, f->trace[0] ? f->trace : "-", f->flag,
			 f->error[0] ? f->error : "no error text");
		return 1;
	}
	return 0;
}
