/* SPDX-License-Identifier: Apache-2.0 */
/* A copy of a cluster registry received over Registry/Watch (weftd's, and
 * weft-agent's of a remote agent's): applies the agent's Watch stream
 * (snapshot, then deltas), answers the data path's lookups (pod IP ->
 * workload, service VIP:port -> endpoint, node name -> address), and keeps
 * the last state on disk so weftd can restart while the agent is down. */
#ifndef WEFT_REGCACHE_H
#define WEFT_REGCACHE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <weft/registry.h>

struct regcache;

struct regcache *regcache_new(void);
void regcache_free(struct regcache *rc);

/* Apply one serialized weft.registry.v1.WatchResponse. A snapshot replaces
 * everything, whatever its version (a restarted agent counts from 1 again);
 * a delta upserts and removes by key and must carry a higher version. 0, or
 * -EINVAL (-ENOMEM) with err; the cache is unchanged then. A delta before
 * any snapshot is -EINVAL. */
int regcache_apply(struct regcache *rc, const uint8_t *msg, size_t len,
		   char *err, size_t errlen);
/* The same, but only a snapshot is taken ("not a snapshot" otherwise). */
int regcache_apply_snapshot(struct regcache *rc, const uint8_t *msg, size_t len,
			    char *err, size_t errlen);
/* 1 once a snapshot was applied (from the agent or from disk). */
int regcache_ready(const struct regcache *rc);
uint64_t regcache_version(const struct regcache *rc);
const char *regcache_trust_domain(const struct regcache *rc);	/* "" if unset */

/* The current state as a registry (valid until the next apply). */
const struct registry *regcache_registry(const struct regcache *rc);

/* Lookups; pointers valid until the next apply. addr is an IPv4/IPv6
 * address (sin_addr/sin6_addr; the port is ignored where not named). */
const struct reg_workload *regcache_workload_by_ip(const struct regcache *rc,
						   const struct sockaddr *addr);
const struct reg_workload *regcache_workload(const struct regcache *rc, const char *uid);
const struct reg_node *regcache_node(const struct regcache *rc, const char *name);
/* This network's service namespace/name, or NULL. */
const struct reg_service *regcache_service(const struct regcache *rc, const char *ns,
					   const char *name);
const struct reg_node *regcache_node_by_ip(const struct regcache *rc,
					   const struct sockaddr *addr);
/* Service with a VIP equal to addr and a port equal to addr's port, or
 * NULL: this network's services first, then the remote networks' (their
 * local VIPs). *target_port is the endpoint port to use. */
const struct reg_service *regcache_service_by_vip(const struct regcache *rc,
						  const struct sockaddr *addr,
						  uint16_t *target_port);
/* Next endpoint of svc, round-robin over its endpoint workloads that have
 * an IP and whose node is known; NULL when none. */
const struct reg_workload *regcache_service_pick(struct regcache *rc,
						 const struct reg_service *svc);
/* The endpoint the next pick would return, without taking it (explain). */
const struct reg_workload *regcache_service_peek(const struct regcache *rc,
						 const struct reg_service *svc);

/* The remote network whose service svc is, or NULL for one of this
 * network's. Its endpoints (from regcache_service_pick) are workloads of
 * that network: their node is looked up there, never here. */
const struct reg_remote *regcache_service_remote(const struct regcache *rc,
						 const struct reg_service *svc);
/* A node of remote network rm by name, and its gateway (a node with a
 * gateway_address), or NULL. */
const struct reg_node *regcache_remote_node(const struct reg_remote *rm, const char *name);
const struct reg_node *regcache_remote_gateway(const struct reg_remote *rm);

/* Persist the current state as a snapshot (atomic write, mode 0600;
 * -ENODATA before the first snapshot) / load one (0, or -errno with err). */
int regcache_save(const struct regcache *rc, const char *path);
int regcache_load(struct regcache *rc, const char *path, char *err, size_t errlen);
/* The same snapshot in memory (*buf malloc'd), for a caller that writes it
 * elsewhere; -ENODATA before the first snapshot. */
int regcache_snapshot(const struct regcache *rc, uint8_t **buf, size_t *len);
/* A copy of rc that shares nothing with it (another thread may own it):
 * empty when rc has no snapshot yet; NULL with err on failure. */
struct regcache *regcache_clone(const struct regcache *rc, char *err, size_t errlen);

#endif
