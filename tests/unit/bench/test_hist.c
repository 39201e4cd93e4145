/* SPDX-License-Identifier: Apache-2.0 */
/* The load generator's latency histogram: every value maps to a slot whose
 * bounds contain it, slots are contiguous, and percentiles of known
 * distributions agree with exact sorted-sample percentiles to within 1%. */
#include <stdint.h>
#include <stdlib.h>

#include "../check.h"
#include "../../../bench/hist.c"

#define N 200000

static uint64_t samples[N];
static struct hist h;	/* static: ~30 KB */

/* xorshift64*: deterministic, so a failure is reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double rng_unit(void)	/* (0, 1) */
{
	return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

/* ln and exp without libm (the unit-test link line has no -lm): range
 * reduction to [0.5, 1) or [-ln2/2, ln2/2] and a short series; ~1e-12
 * relative, ample for making test distributions. */
static double t_log(double x)
{
	static const double ln2 = 0.69314718055994530942;
	double t, t2, term, sum = 0;
	int e = 0, k;

	while (x < 0.5) {
		x *= 2;
		e--;
	}
	while (x >= 1.0) {
		x /= 2;
		e++;
	}
	t = (x - 1) / (x + 1);
	t2 = t * t;
	term = t;
	for (k = 1; k < 60; k += 2) {
		sum += term / k;
		term *= t2;
	}
	return 2 * sum + e * ln2;
}

static double t_exp(double x)
{
	static const double ln2 = 0.69314718055994530942;
	double r, term = 1, sum = 1, scale = 1;
	int n = 0, k;

	while (x - n * ln2 > ln2 / 2)
		n++;
	while (x - n * ln2 < -ln2 / 2)
		n--;
	r = x - n * ln2;
	for (k = 1; k < 25; k++) {
		term *= r / k;
		sum += term;
	}
	for (; n > 0; n--)
		scale *= 2;
	for (; n < 0; n++)
		scale /= 2;
	return sum * scale;
}

static double t_fabs(double x)
{
	return x < 0 ? -x : x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_slots(void)
{
	unsigned i, prev = 0, bad = 0;
	uint64_t v;

	/* Slots tile the range without gaps or overlaps. */
	CHECK_EQ_INT(hist_slot_lowest(0), 0);
	for (i = 1; i < HIST_SLOTS; i++)
		if (hist_slot_lowest(i) != hist_slot_highest(i - 1) + 1)
			bad++;
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(hist_slot(HIST_MAX_VALUE), HIST_SLOTS - 1);
	CHECK_EQ_INT(hist_slot_highest(HIST_SLOTS - 1), HIST_MAX_VALUE);

	/* Round trip: v lies within its slot, slot width <= v/128, and the
	 * slot index never decreases as v grows. */
	bad = 0;
	for (v = 0; v < 5000000; v += 1 + v / 300) {
		i = hist_slot(v);
		if (hist_slot_lowest(i) > v || hist_slot_highest(i) < v)
			bad++;
		if (v >= 256 && (double)(hist_slot_highest(i) - hist_slot_lowest(i) + 1) >
				(double)v / 128.0)
			bad++;
		if (i < prev)
			bad++;
		prev = i;
	}
	for (i = 0; i < 100000; i++) {
		v = rng_next() & HIST_MAX_VALUE;
		if (hist_slot_lowest(hist_slot(v)) > v || hist_slot_highest(hist_slot(v)) < v)
			bad++;
	}
	CHECK_EQ_INT(bad, 0);
	/* Below 256 ns every value has its own slot. */
	for (v = 0; v < 256; v++)
		if (hist_slot_lowest(hist_slot(v)) != v || hist_slot_highest(hist_slot(v)) != v)
			bad++;
	CHECK_EQ_INT(bad, 0);
}

/* Compare hist percentiles with the exact ones of the sorted samples. */
static void check_dist(const char *name)
{
	static const double ps[] = { 1, 10, 50, 75, 90, 99, 99.9, 99.99, 100 };
	uint64_t exact, got, sum = 0;
	double err, worst = 0;
	unsigned i;
	size_t rank;

	hist_init(&h);
	for (i = 0; i < N; i++) {
		hist_record(&h, samples[i]);
		sum += samples[i];
	}
	qsort(samples, N, sizeof(samples[0]), cmp_u64);
	CHECK_EQ_INT(h.total, N);
	CHECK_EQ_INT(h.min, samples[0]);
	CHECK_EQ_INT(h.max, samples[N - 1]);
	CHECK(t_fabs(hist_mean(&h) - (double)sum / N) < 1e-6 * ((double)sum / N));
	for (i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		/* 1-based rank, rounded up. */
		rank = (size_t)(ps[i] / 100.0 * N + 0.999999);
		exact = samples[rank ? rank - 1 : 0];
		got = hist_percentile(&h, ps[i]);
		err = t_fabs((double)got - (double)exact) / (double)exact;
		if (err > worst)
			worst = err;
		if (err > 0.01)
			fprintf(stderr, "%s p%g: exact %llu hist %llu (%.3f%%)\n", name, ps[i],
				(unsigned long long)exact, (unsigned long long)got, err * 100);
		CHECK(err <= 0.01);
		/* Reported value is never below the exact one (upper bound). */
		CHECK(got >= exact);
	}
	printf("%-12s worst relative error %.4f%%\n", name, worst * 100);
}

static void test_distributions(void)
{
	unsigned i;

	/* Uniform 20 us .. 2 ms. */
	for (i = 0; i < N; i++)
		samples[i] = 20000 + rng_next() % 1980000;
	check_dist("uniform");

	/* Exponential, mean 50 us, offset 10 us: a typical latency tail. */
	for (i = 0; i < N; i++)
		samples[i] = 10000 + (uint64_t)(-t_log(rng_unit()) * 50000.0);
	check_dist("exponential");

	/* Log-normal spanning 1 us .. seconds (normal from Irwin-Hall). */
	for (i = 0; i < N; i++) {
		double z = -6;
		unsigned k;

		for (k = 0; k < 12; k++)
			z += rng_unit();
		samples[i] = 1000 + (uint64_t)t_exp(11.0 + 2.0 * z);
	}
	check_dist("lognormal");

	/* Bimodal: 90% near 30 us, 10% near 5 ms. */
	for (i = 0; i < N; i++)
		samples[i] = (rng_next() % 10 ? 30000 : 5000000) + rng_next() % 1000;
	check_dist("bimodal");
}

static void test_edges(void)
{
	static struct hist a, b;
	unsigned i;

	hist_init(&a);
	CHECK_EQ_INT(hist_percentile(&a, 50), 0);
	CHECK(hist_mean(&a) == 0.0);

	/* Values past the range are counted at the top, max stays exact. */
	hist_record(&a, UINT64_C(100) * 1000000000);
	CHECK_EQ_INT(a.clamped, 1);
	CHECK_EQ_INT(a.max, UINT64_C(100) * 1000000000);
	CHECK_EQ_INT(hist_percentile(&a, 50), HIST_MAX_VALUE);

	/* Merge equals recording everything in one histogram. */
	hist_init(&a);
	hist_init(&b);
	hist_init(&h);
	for (i = 0; i < 10000; i++) {
		uint64_t v = 1000 + rng_next() % 1000000;

		hist_record(i & 1 ? &a : &b, v);
		hist_record(&h, v);
	}
	hist_merge(&a, &b);
	CHECK_EQ_INT(a.total, h.total);
	CHECK_EQ_INT(a.sum, h.sum);
	CHECK_EQ_INT(a.min, h.min);
	CHECK_EQ_INT(a.max, h.max);
	CHECK(memcmp(a.counts, h.counts, sizeof(a.counts)) == 0);
	CHECK_EQ_INT(hist_percentile(&a, 99), hist_percentile(&h, 99));

	/* Small exact case: 1..100 us, p50 = 50 us, p99 = 99 us within 1%. */
	hist_init(&a);
	for (i = 1; i <= 100; i++)
		hist_record(&a, (uint64_t)i * 1000);
	CHECK(hist_percentile(&a, 50) >= 50000 && hist_percentile(&a, 50) <= 50500);
	CHECK(hist_percentile(&a, 99) >= 99000 && hist_percentile(&a, 99) <= 99990);
	CHECK_EQ_INT(hist_percentile(&a, 100), 100000);
}

int main(void)
{
	test_slots();
	test_distributions();
	test_edges();
	return check_done("test_hist");
}
