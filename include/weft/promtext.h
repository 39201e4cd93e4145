/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition format 0.0.4: a growing output buffer, label
 * values escaped as the format wants (backslash, double quote, newline),
 * family headers, and the standard process_* metrics. One buffer per scrape,
 * grown by doubling: a scrape costs a handful of allocations, not one per
 * series. */
#ifndef WEFT_PROMTEXT_H
#define WEFT_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

struct promtext {
	char *p;
	size_t len, cap;
	int oom;			/* an allocation failed: the output is cut */
};

#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

void promtext_init(struct promtext *t);
void promtext_release(struct promtext *t);
/* Append bytes / formatted text. */
void promtext_put(struct promtext *t, const char *s, size_t n);
void promtext_printf(struct promtext *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "# HELP name help\n# TYPE name type\n" (help escaped as the format says). */
void promtext_family(struct promtext *t, const char *name, const char *type, const char *help);
/* A label value as it goes between the quotes. */
void promtext_escape(struct promtext *t, const char *v);
/* name{k1="v1",...} value\n; labels may be 0. */
void promtext_sample(struct promtext *t, const char *name, const char *const *keys,
		     const char *const *values, size_t n, double value);
void promtext_sample_u64(struct promtext *t, const char *name, const char *const *keys,
			 const char *const *values, size_t n, uint64_t value);
/* A family of one unlabelled sample. */
void promtext_one(struct promtext *t, const char *name, const char *type, const char *help,
		  double v);
/* process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds (from /proc/self). */
void promtext_process(struct promtext *t);

#endif
