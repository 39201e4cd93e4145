/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded table of metric series: one entry per distinct tuple of label
 * values (a fixed list of label names per table), each with a few
 * counters. At most `max` entries: past that a new tuple is not counted
 * and series_dropped() says how often. Entries no connection holds and
 * untouched for idle_ms are dropped by series_expire. Label values are
 * copied and the "{k="v",...}" part of a sample is rendered (escaped) once,
 * at creation, so a scrape is copies and numbers. One loop thread. */
#ifndef WEFT_SERIES_H
#define WEFT_SERIES_H

#include <stddef.h>
#include <stdint.h>

#define SERIES_VALUES 6

struct series {
	struct series *hnext;		/* hash chain */
	struct series *next, *prev;	/* all entries, oldest first */
	uint64_t hash;
	uint64_t last_ms;
	unsigned refs;			/* series_hold: never expired while > 0 */
	uint64_t v[SERIES_VALUES];	/* the user's counters */
	const char *const *values;	/* nkeys copies */
	const char *labels;		/* {k1="v1",...} */
	size_t labels_len;
};

struct series_table;

struct series_table *series_table_new(const char *const *keys, size_t nkeys, size_t max,
				      uint64_t idle_ms);
void series_table_free(struct series_table *t);
/* The entry of values (nkeys of them; NULL reads as ""), made if new; NULL
 * when the table is full (counted) or out of memory. now_ms marks it used. */
struct series *series_get(struct series_table *t, const char *const *values, uint64_t now_ms);
void series_hold(struct series *s);
void series_put(struct series *s);
/* Drop entries untouched for idle_ms that nothing holds. */
void series_expire(struct series_table *t, uint64_t now_ms);
size_t series_count(const struct series_table *t);
uint64_t series_dropped(const struct series_table *t);
const struct series *series_first(const struct series_table *t);

#endif
