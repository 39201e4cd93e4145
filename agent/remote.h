/* SPDX-License-Identifier: Apache-2.0 */
/* Remote networks (DESIGN §8.1): the agent imports each configured remote
 * agent's registry export over mTLS (its own SVID; the remote verified as
 * spiffe://<td>/weft/agent against that trust domain's federated bundle),
 * gives the remote services local VIPs and publishes the result with the
 * registry, so every weftd of this network sees them. The last import
 * stays in service (and on disk) while a remote agent is unreachable. */
#ifndef AGENT_REMOTE_H
#define AGENT_REMOTE_H

#include <stddef.h>
#include <stdint.h>

struct agent;
struct agent_remote;
struct registry;
struct reg_remote;
struct remote;

struct remote_stats {
	uint64_t updates;		/* messages applied, all networks */
	uint64_t refused;		/* messages refused (malformed, wrong trust domain) */
	uint64_t published;		/* remote sets published */
	unsigned up;			/* networks whose watch is open now */
};

/* Start importing every remote network of a->cfg (none: NULL, no error).
 * A remote whose trust domain has no federated bundle in the current
 * registry is an error. NULL with err on failure. */
struct remote *remote_new(struct agent *a, char *err, size_t errlen);
void remote_free(struct remote *r);
/* The federated bundles changed (SIGHUP): a remote whose bundle changed
 * reconnects with it; one no longer federated stops and its import is
 * withdrawn. */
void remote_bundles_changed(struct remote *r);
/* This network's own registry changed: import again (local addresses the
 * remote VIPs must avoid may have changed). NULL ok. */
void remote_local_changed(struct remote *r);
const struct remote_stats *remote_stats(const struct remote *r);

/* One remote network's import, pure: src is what its agent exported
 * (nodes, workloads, services); out gets copies tagged with cfg's network,
 * each service with one local VIP (vips_assign against local and prev, the
 * last import, which may be NULL); a service left without one (range full)
 * is left out and counted in *unplaced; a resource whose names are not
 * lowercase DNS names is left out and counted in *refused (a workload on a
 * node left out goes too). 0, or -ENOMEM with out empty. */
int remote_import(const struct agent_remote *cfg, const struct registry *src,
		  const struct registry *local, const struct registry *prev,
		  struct reg_remote *out, size_t *unplaced, size_t *refused);

#endif
