/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded metric series (series.h). */
#include <stdlib.h>
#include <string.h>

#include <weft/promtext.h>
#include <weft/series.h>

#define SERIES_KEYS_MAX 24

struct series_table {
	const char *keys[SERIES_KEYS_MAX];
	size_t nkeys;
	size_t max, count;
	uint64_t idle_ms;
	uint64_t dropped;
	uint64_t seed;
	struct series *head, *tail;
	size_t mask;			/* buckets - 1 */
	struct series **buckets;
};

static uint64_t series_hash(const struct series_table *t, const char *const *values)
{
	uint64_t h = 0xcbf29ce484222325ull ^ t->seed;

	for (size_t i = 0; i < t->nkeys; i++) {
		for (const char *p = values[i] ? values[i] : ""; *p; p++)
			h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
		h = (h ^ 0xff) * 0x100000001b3ull;	/* the separator */
	}
	return h;
}

struct series_table *series_table_new(const char *const *keys, size_t nkeys, size_t max,
				      uint64_t idle_ms)
{
	struct series_table *t;
	size_t buckets = 64;

	if (!nkeys || nkeys > SERIES_KEYS_MAX || !max)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	while (buckets < max && buckets < (1u << 20))
		buckets *= 2;
	t->buckets = calloc(buckets, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	t->mask = buckets - 1;
	memcpy(t->keys, keys, nkeys * sizeof(*keys));
	t->nkeys = nkeys;
	t->max = max;
	t->idle_ms = idle_ms;
	t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
	return t;
}

static void series_unlink(struct series_table *t, struct series *s)
{
	struct series **pp = &t->buckets[s->hash & t->mask];

	while (*pp != s)
		pp = &(*pp)->hnext;
	*pp = s->hnext;
	if (s->prev)
		s->prev->next = s->next;
	else
		t->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		t->tail = s->prev;
	t->count--;
	free(s);
}

void series_table_free(struct series_table *t)
{
	if (!t)
		return;
	while (t->head)
		series_unlink(t, t->head);
	free(t->buckets);
	free(t);
}

static int series_same(const struct series_table *t, const struct series *s,
		       const char *const *values)
{
	for (size_t i = 0; i < t->nkeys; i++)
		if (strcmp(s->values[i], values[i] ? values[i] : ""))
			return 0;
	return 1;
}

/* One allocation: the entry, its value pointers, the values, the labels. */
static struct series *series_make(struct series_table *t, const char *const *values,
				  uint64_t hash)
{
	struct promtext pt;
	size_t vlen = 0, off;
	struct series *s;
	const char **vp;
	char *p;

	promtext_init(&pt);
	promtext_put(&pt, "{", 1);
	for (size_t i = 0; i < t->nkeys; i++) {
		const char *v = values[i] ? values[i] : "";

		vlen += strlen(v) + 1;
		promtext_put(&pt, i ? ",": "", i ? 1 : 0);
		promtext_put(&pt, t->keys[i], strlen(t->keys[i]));
		promtext_put(&pt, "=\"", 2);
		promtext_escape(&pt, v);
		promtext_put(&pt, "\"", 1);
	}
	promtext_put(&pt, "}", 1);
	if (pt.oom) {
		promtext_release(&pt);
		return NULL;
	}
	s = calloc(1, sizeof(*s) + t->nkeys * sizeof(char *) + vlen + pt.len + 1);
	if (!s) {
		promtext_release(&pt);
		return NULL;
	}
	vp = (const char **)(s + 1);
	p = (char *)(vp + t->nkeys);
	for (size_t i = 0, n; i < t->nkeys; i++) {
		const char *v = values[i] ? values[i] : "";

		n = strlen(v) + 1;
		memcpy(p, v, n);
		vp[i] = p;
		p += n;
	}
	off = pt.len;
	memcpy(p, pt.p, off + 1);
	promtext_release(&pt);
	s->values = vp;
	s->labels = p;
	s->labels_len = off;
	s->hash = hash;
	return s;
}

struct series *series_get(struct series_table *t, const char *const *values, uint64_t now_ms)
{
	uint64_t h = series_hash(t, values);
	struct series *s;

	for (s = t->buckets[h & t->mask]; s; s = s->hnext)
		if (s->hash == h && series_same(t, s, values))
			break;
	if (!s) {
		if (t->count >= t->max) {
			t->dropped++;
			return NULL;
		}
		s = series_make(t, values, h);
		if (!s) {
			t->dropped++;
			return NULL;
		}
		s->hnext = t->buckets[h & t->mask];
		t->buckets[h & t->mask] = s;
		s->prev = t->tail;
		if (t->tail)
			t->tail->next = s;
		else
			t->head = s;
		t->tail = s;
		t->count++;
	}
	s->last_ms = now_ms;
	return s;
}

void series_hold(struct series *s)
{
	s->refs++;
}

void series_put(struct series *s)
{
	s->refs--;
}

void series_expire(struct series_table *t, uint64_t now_ms)
{
	struct series *s = t->head, *next;

	if (!t->idle_ms)
		return;
	for (; s; s = next) {
		next = s->next;
		if (!s->refs && now_ms - s->last_ms >= t->idle_ms)
			series_unlink(t, s);
	}
}

size_t series_count(const struct series_table *t)
{
	return t->count;
}

uint64_t series_dropped(const struct series_table *t)
{
	return t->dropped;
}

const struct series *series_first(const struct series_table *t)
{
	return t->head;
}
