/* SPDX-License-Identifier: Apache-2.0 */
/* Registry views for the admin API (regjson.h). The registry validated its
 * names, but every string is escaped all the same. */
#include <string.h>

#include "jsonw.h"
#include "regjson.h"

static void jw_strv(struct jw *w, char *const *v, size_t n)
{
	jw_put(w, "[");
	for (size_t i = 0; i < n; i++) {
		jw_put(w, i ? "," : "");
		jw_str(w, v[i]);
	}
	jw_put(w, "]");
}

static void jw_labels(struct jw *w, const struct reg_label *l, size_t n)
{
	jw_put(w, "{");
	for (size_t i = 0; i < n; i++) {
		jw_put(w, i ? "," : "");
		jw_str(w, l[i].key);
		jw_put(w, ":");
		jw_str(w, l[i].value);
	}
	jw_put(w, "}");
}


static void jw_service(struct jw *w, const struct reg_service *s, const char *network)
{
	jw_put(w, "{\"name\":");
	jw_str(w, s->name);
	jw_put(w, ",\"namespace\":");
	jw_str(w, s->namespace);
	jw_put(w, ",\"network\":");
	jw_str(w, network);
	jw_put(w, ",\"vips\":");
	jw_strv(w, s->vips, s->n_vips);
	jw_put(w, ",\"ports\":[");
	for (size_t p = 0; p < s->n_ports; p++)
		jw_put(w, "%s{\"port\":%u,\"target_port\":%u}", p ? "," : "",
		       s->ports[p].port, s->ports[p].target_port);
	jw_put(w, "],\"selector\":");
	jw_labels(w, s->selector, s->n_selector);
	jw_put(w, ",\"endpoints\":");
	jw_strv(w, s->endpoints, s->n_endpoints);
	jw_put(w, "}");
}

/* This network's services (network ""), then each remote network's, with
 * the local VIPs its agent gave them. */
size_t regjson_services(const struct registry *r, char *buf, size_t len)
{
	struct jw w = { buf, len, 0 };
	const char *sep = "";

	jw_put(&w, "[");
	for (size_t i = 0; r && i < r->n_services; i++, sep = ",") {
		jw_put(&w, "%s", sep);
		jw_service(&w, &r->services[i], "");
	}
	for (size_t k = 0; r && r->remotes && k < r->remotes->n; k++) {
		const struct reg_remote *rm = &r->remotes->v[k];

		for (size_t i = 0; i < rm->reg->n_services; i++, sep = ",") {
			jw_put(&w, "%s", sep);
			jw_service(&w, &rm->reg->services[i], rm->network);
		}
	}
	jw_put(&w, "]");
	return jw_end(&w);
}

size_t regjson_policies(const struct registry *r, char *buf, size_t len)
{
	static const char *const scopes[] = { "global", "namespace", "workload" };
	struct jw w = { buf, len, 0 };

	jw_put(&w, "[");
	for (size_t i = 0; r && i < r->n_policies; i++) {
		const struct reg_policy *p = &r->policies[i];

		jw_put(&w, "%s{\"name\":", i ? "," : "");
		jw_str(&w, p->name);
		jw_put(&w, ",\"namespace\":");
		jw_str(&w, p->namespace ? p->namespace : "");
		jw_put(&w, ",\"scope\":\"%s\",\"action\":\"%s\",\"selector\":",
		       p->scope <= REG_SCOPE_WORKLOAD ? scopes[p->scope] : "?",
		       p->action == REG_ACTION_DENY ? "DENY" : "ALLOW");
		jw_labels(&w, p->selector, p->n_selector);
		jw_put(&w, ",\"rules\":%zu}", p->n_rules);
	}
	jw_put(&w, "]");
	return jw_end(&w);
}
