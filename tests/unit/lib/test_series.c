/* SPDX-License-Identifier: Apache-2.0 */
/* Metric series and the text format: a table capped at 100 entries takes
 * 5,000 distinct label tuples as 100 series and counts 4,900 drops; an
 * entry comes back for the same values, nothing held is expired, idle ones
 * are; label values with quotes, backslashes and newlines are escaped as
 * the exposition format says, HELP text too. */
#include <stdio.h>
#include <string.h>

#include <weft/promtext.h>
#include <weft/series.h>

#include "../check.h"

static void test_cap(void)
{
	static const char *const keys[] = { "source_workload", "destination_workload" };
	struct series_table *t = series_table_new(keys, 2, 100, 1000);
	struct series *first = NULL, *s;
	char name[32];
	size_t n = 0;

	CHECK(t != NULL);
	if (!t)
		return;
	for (int i = 0; i < 5000; i++) {
		const char *v[] = { name, "db" };

		snprintf(name, sizeof(name), "client-%d", i);
		s = series_get(t, v, 10);
		if (i == 0)
			first = s;
		if (s)
			s->v[0]++;
	}
	CHECK_EQ_INT(series_count(t), 100);
	CHECK_EQ_INT(series_dropped(t), 4900);
	for (const struct series *x = series_first(t); x; x = x->next)
		n++;
	CHECK_EQ_INT(n, 100);
	{
		const char *v[] = { "client-0", "db" };

		s = series_get(t, v, 20);
		CHECK(s == first && s && s->v[0] == 1);
		CHECK(s && !strcmp(s->labels,
				   "{source_workload=\"client-0\",destination_workload=\"db\"}"));
	}
	series_hold(first);
	series_expire(t, 2000);		/* idle 1 s: all but the held one go */
	CHECK_EQ_INT(series_count(t), 1);
	CHECK(series_first(t) == first);
	series_put(first);
	series_expire(t, 2000);
	CHECK_EQ_INT(series_count(t), 0);
	series_table_free(t);
}

static void test_escape(void)
{
	static const char *const keys[] = { "w" };
	const char *v[] = { "a\"b\\c\nd" };
	struct series_table *t = series_table_new(keys, 1, 4, 0);
	struct series *s = t ? series_get(t, v, 0) : NULL;
	struct promtext pt;

	CHECK(s && !strcmp(s->labels, "{w=\"a\\\"b\\\\c\\nd\"}"));
	series_table_free(t);
	promtext_init(&pt);
	promtext_family(&pt, "x_total", "counter", "say \"hi\"\\\nthere");
	promtext_sample_u64(&pt, "x_total", keys, v, 1, 7);
	CHECK(pt.p && !strcmp(pt.p, "# HELP x_total say \"hi\"\\\\\\nthere\n# TYPE x_total counter\n"
			      "x_total{w=\"a\\\"b\\\\c\\nd\"} 7\n"));
	promtext_release(&pt);
}

int main(void)
{
	test_cap();
	test_escape();
	return check_done("series");
}
