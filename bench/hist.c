/* SPDX-License-Identifier: Apache-2.0 */
/* Log-linear latency histogram (see hist.h). Slot layout as HdrHistogram:
 * bucket 0 holds 0..255 at step 1; bucket b > 0 holds [128 << b, 256 << b)
 * at step 1 << b in its upper 128 sub-buckets (the lower half would repeat
 * bucket b-1), so the slots are contiguous and increasing in value. */
#include <string.h>

#include "hist.h"

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned hist_slot(uint64_t v)
{
	unsigned bucket, sub;

	if (v > HIST_MAX_VALUE)
		v = HIST_MAX_VALUE;
	/* Position of the highest set bit, counting from 1, at least 8. */
	bucket = 64 - (unsigned)__builtin_clzll(v | (HIST_SUB_COUNT - 1)) - HIST_SUB_BITS;
	sub = (unsigned)(v >> bucket);
	return ((bucket + 1) << (HIST_SUB_BITS - 1)) + sub - HIST_SUB_HALF;
}

uint64_t hist_slot_lowest(unsigned slot)
{
	int bucket = (int)(slot >> (HIST_SUB_BITS - 1)) - 1;
	uint64_t sub = (slot & (HIST_SUB_HALF - 1)) + HIST_SUB_HALF;

	if (bucket < 0) {
		sub -= HIST_SUB_HALF;
		bucket = 0;
	}
	return sub << bucket;
}

uint64_t hist_slot_highest(unsigned slot)
{
	int bucket = (int)(slot >> (HIST_SUB_BITS - 1)) - 1;

	if (bucket < 0)
		bucket = 0;
	return hist_slot_lowest(slot) + (UINT64_C(1) << bucket) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
	if (v > HIST_MAX_VALUE)
		h->clamped++;
	h->counts[hist_slot(v)]++;
	h->total++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned i;

	if (!src->total)
		return;
	for (i = 0; i < HIST_SLOTS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum += src->sum;
	dst->clamped += src->clamped;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0, v;
	unsigned i;

	if (!h->total)
		return 0;
	if (p > 100.0)
		p = 100.0;
	/* Rank of the sample, 1-based, rounded up: p50 of 1..10 is 5. */
	want = (uint64_t)(p / 100.0 * (double)h->total + 0.999999999);
	if (want < 1)
		want = 1;
	if (want > h->total)
		want = h->total;
	for (i = 0; i < HIST_SLOTS; i++) {
		seen += h->counts[i];
		if (seen >= want)
			break;
	}
	if (i == HIST_SLOTS)
		return h->max;
	v = hist_slot_highest(i);
	return v < h->max ? v : h->max;
}

double hist_mean(const struct hist *h)
{
	return h->total ? (double)h->sum / (double)h->total : 0.0;
}
