/* SPDX-License-Identifier: Apache-2.0 */
/* The pods enrolled on this node: their network namespace, the outbound
 * (15001) and inbound-plaintext (15006) listeners weftd keeps inside it,
 * and their workload identity. Enrollment is persisted so weftd picks its
 * pods up again after a restart. */
#ifndef DAEMON_PODS_H
#define DAEMON_PODS_H

#include <stddef.h>
#include <sys/socket.h>

#include <weft/listener.h>
#include <weft/loop.h>

#include "cni.pb-c.h"

#define POD_IPS_MAX 4

struct weftd;
struct ident;
struct podsock;
struct pods;

struct pod {
	struct pod *next;
	struct pods *pods;
	char uid[256];
	char name[64];
	char ns[64];
	char sa[64];			/* "" until known (CNI or registry) */
	char netns_path[256];
	int netns_fd;
	int transparent;		/* deliver from the client's address */
	struct sockaddr_storage ips[POD_IPS_MAX];
	size_t n_ips;
	char ip_str[64];		/* first IP, for logs */
	int out_fd, in_fd;		/* listening sockets inside the pod netns */
	struct listener out_ls, in_ls;	/* accepting on them; they own the sockets */
	unsigned nops;			/* listeners not closed yet */
	int gone;			/* deleted; freed when nops and conns are 0 */
	struct ident *ident;		/* workload SVID, once sa is known */
	unsigned long conns;		/* proxied connections now */
	unsigned long refused;		/* reset over max_connections_per_pod */
	struct podsock *socks;		/* delivery sockets made ahead (podsock.h) */
};

struct pods *pods_new(struct weftd *d);
void pods_free(struct pods *p);

/* Enroll (or re-enroll) a pod: listeners up before this returns 0. */
int pods_add(struct pods *p, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
	     char *err, size_t errlen);
int pods_del(struct pods *p, const char *uid, char *err, size_t errlen);
/* Re-enroll the pods saved in state_dir/pods (after a restart). */
void pods_restore(struct pods *p);
/* The registry changed: pick up service accounts that were unknown. */
void pods_registry_changed(struct pods *p);

/* A socket for delivering into pod (made in its netns, marked), bound to
 * the client's address src (port 0) when the pod supports transparent
 * delivery, so the app sees who really connected. fd or -errno. */
int pods_deliver_socket(struct pod *pod, const struct sockaddr_storage *src, int family);
/* A proxied connection of pod ended (frees a deleted pod's memory last). */
void pods_conn_done(struct pod *pod);
/* A plain TCP socket in the pod's netns (marked, non-blocking): from its
 * reserve, without entering the netns. fd or -errno. */
int pods_socket(struct pod *pod, int family);
/* From the trim timer: shrink reserves that went unused. */
void pods_trim(struct pods *p);
/* Sockets made ahead and not taken yet, all pods together (an fd each). */
unsigned long pods_sockets_ready(const struct pods *p);
/* After counting a new connection in pod->conns: 1 (why filled in, the
 * refusal counted) when the pod now holds more than its share,
 * max_connections_per_pod (default: a quarter of what weftd may hold). */
int pods_over_share(struct pod *pod, char *why, size_t len);

struct pod *pods_by_ip(const struct pods *p, const struct sockaddr *addr);
struct pod *pods_by_uid(const struct pods *p, const char *uid);
unsigned pods_count(const struct pods *p);
/* 1 when one of the addresses an AddWorkload carries ("ip" or "ip/len")
 * is addr, the way pods_add reads them. */
int pods_add_has_ip(const Weft__Cni__V1__AddWorkload *add, const struct sockaddr *addr);
/* The checks pods_add makes on an AddWorkload (peer input) before it looks
 * at any state or socket: a uid that fits, a valid namespace, and at least
 * one usable address, the first POD_IPS_MAX parsed into ips. Pure (fuzzed
 * by tests/fuzz/fuzz_cnisrv_add.c). Returns the count (> 0), or -EINVAL
 * with the reason in err. */
int pods_add_parse(const Weft__Cni__V1__AddWorkload *add, struct sockaddr_storage *ips,
		   char *err, size_t errlen);
/* Some enrolled pod (the only one of a sidecar), or NULL. */
struct pod *pods_first(const struct pods *p);
/* JSON array of the enrolled pods. */
size_t pods_json(const struct pods *p, char *buf, size_t len);

#endif
