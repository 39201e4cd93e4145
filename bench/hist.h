/* SPDX-License-Identifier: Apache-2.0 */
/* A log-linear latency histogram in the manner of HdrHistogram: values in
 * nanoseconds from 1 ns to 2^36 ns (~68 s), 256 linear sub-buckets per power
 * of two, so any recorded value is known to better than 1/128 relative
 * (2+ significant digits). Fixed memory (~30 KB), no allocation, O(1)
 * record; pure code, no clock or I/O. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 8				/* 256 sub-buckets per bucket */
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_SUB_HALF (HIST_SUB_COUNT / 2)
#define HIST_MAX_BITS 36			/* values < 2^36 ns ≈ 68.7 s */
#define HIST_BUCKETS (HIST_MAX_BITS - HIST_SUB_BITS + 1)
#define HIST_SLOTS ((HIST_BUCKETS + 1) * HIST_SUB_HALF)
#define HIST_MAX_VALUE ((UINT64_C(1) << HIST_MAX_BITS) - 1)

struct hist {
	uint64_t total;
	uint64_t sum;		/* ns; overflows only past ~584 years of samples */
	uint64_t min;
	uint64_t max;		/* exact, before clamping */
	uint64_t clamped;	/* samples above HIST_MAX_VALUE, counted at it */
	uint64_t counts[HIST_SLOTS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v_ns);
/* dst += src. */
void hist_merge(struct hist *dst, const struct hist *src);

/* Slot of a value, and the lowest / highest value sharing that slot; for
 * every v: hist_slot_lowest(i) <= v <= hist_slot_highest(i), i = hist_slot(v). */
unsigned hist_slot(uint64_t v_ns);
uint64_t hist_slot_lowest(unsigned slot);
uint64_t hist_slot_highest(unsigned slot);

/* The value at percentile p (0..100]: the highest value equivalent to the
 * smallest recorded sample with at least p% of samples at or below it,
 * capped at the exact max. 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
double hist_mean(const struct hist *h);

#endif
