/* SPDX-License-Identifier: Apache-2.0 */
/* Live connections (live.h). */
#include "jsonw.h"
#include "live.h"

static struct live_conn *live_head;

void live_add(struct live_conn *c, uint64_t now_ms)
{
	c->start_ms = now_ms;
	c->next = live_head;
	if (live_head)
		live_head->pprev = &c->next;
	c->pprev = &live_head;
	live_head = c;
}

void live_del(struct live_conn *c)
{
	if (!c->pprev)
		return;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	c->next = NULL;
	c->pprev = NULL;
}

size_t live_json(uint64_t now_ms, size_t max, char *buf, size_t len)
{
	struct jw w = { buf, len, 0 };
	size_t shown = 0;

	jw_put(&w, "[");
	for (const struct live_conn *c = live_head; c && shown < max; c = c->next, shown++) {
		const char *f[][2] = {
			{ "direction", c->direction }, { "trace_id", c->trace }, { "src", c->src },
			{ "dst", c->dst }, { "src_identity", c->src_id },
			{ "dst_workload", c->dst_workload },
		};

		jw_put(&w, "%s{\"age_ms\":%llu", shown ? "," : "",
		       (unsigned long long)(now_ms - c->start_ms));
		for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
			jw_put(&w, ",\"%s\":", f[k][0]);
			jw_str(&w, f[k][1]);
		}
		jw_put(&w, "}");
	}
	jw_put(&w, "]");
	return jw_end(&w);
}
