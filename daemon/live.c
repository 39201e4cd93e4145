/* SPDX-License-Identifier: Apache-2.0 */
/* Live connections (live.h). */
#include <stdio.h>

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

static void live_str(char *buf, size_t len, size_t *o, const char *key, const char *s)
{
	int n = snprintf(buf + *o, *o < len ? len - *o : 0, ",\"%s\":\"", key);

	*o += n > 0 ? (size_t)n : 0;
	for (s = s ? s : ""; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		n = ch == '"' || ch == '\\' ? snprintf(buf + *o, *o < len ? len - *o : 0, "\\%c", ch) :
		    ch < 0x20 ? snprintf(buf + *o, *o < len ? len - *o : 0, "\\u%04x", ch) :
		    snprintf(buf + *o, *o < len ? len - *o : 0, "%c", ch);
		*o += n > 0 ? (size_t)n : 0;
	}
	n = snprintf(buf + *o, *o < len ? len - *o : 0, "\"");
	*o += n > 0 ? (size_t)n : 0;
}

size_t live_json(uint64_t now_ms, size_t max, char *buf, size_t len)
{
	size_t o = 0, shown = 0;
	int n;

	n = snprintf(buf, len, "[");
	o += n > 0 ? (size_t)n : 0;
	for (const struct live_conn *c = live_head; c && shown < max; c = c->next, shown++) {
		n = snprintf(buf + o, o < len ? len - o : 0, "%s{\"age_ms\":%llu", shown ? "," : "",
			     (unsigned long long)(now_ms - c->start_ms));
		o += n > 0 ? (size_t)n : 0;
		live_str(buf, len, &o, "direction", c->direction);
		live_str(buf, len, &o, "trace_id", c->trace);
		live_str(buf, len, &o, "src", c->src);
		live_str(buf, len, &o, "dst", c->dst);
		live_str(buf, len, &o, "src_identity", c->src_id);
		live_str(buf, len, &o, "dst_workload", c->dst_workload);
		n = snprintf(buf + o, o < len ? len - o : 0, "}");
		o += n > 0 ? (size_t)n : 0;
	}
	n = snprintf(buf + o, o < len ? len - o : 0, "]");
	o += n > 0 ? (size_t)n : 0;
	return o < len ? o : len;
}
