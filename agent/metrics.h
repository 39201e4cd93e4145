/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's Prometheus metrics on metrics_listen (default 0.0.0.0:15014,
 * /metrics): certificates issued and refused by reason, Watch streams, the
 * registry version, the CA's expiry and the process_* metrics. */
#ifndef AGENT_METRICS_H
#define AGENT_METRICS_H

#include <stddef.h>

struct agent;
struct httpsrv;
struct promtext;

/* Listen on a->cfg->metrics_listen ("off": no listener, NULL with err
 * empty). NULL with err on failure. */
struct httpsrv *agent_metrics_listen(struct agent *a, char *err, size_t errlen);
/* The whole exposition. */
void agent_metrics_render(const struct agent *a, struct promtext *t);

#endif
