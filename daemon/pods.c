/* SPDX-License-Identifier: Apache-2.0 */
/* Enrolled pods. weftd enters a pod's network namespace only to create its
 * two listeners (outbound capture 15001, inbound plaintext capture 15006)
 * and, later, the sockets that deliver into it; the listeners then live in
 * the pod's namespace while weftd stays in the node's. */
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weft/file.h>
#include <weft/log.h>
#include <weft/netns.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>

#include "certs.h"
#include "inbound.h"
#include "outbound.h"
#include "persist.h"
#include "pods.h"
#include "podsock.h"
#include <weft/regcache.h>
#include "weftd.h"

#define PODS_FILE_MAX (64u << 10)

struct pods {
	struct weftd *d;
	struct pod *list;
	unsigned n;
};


struct pods *pods_new(struct weftd *d)
{
	struct pods *p = calloc(1, sizeof(*p));

	if (p)
		p->d = d;
	return p;
}

static int pods_parse_ip(const char *s, struct sockaddr_storage *ss)
{
	char buf[64];
	socklen_t sl;
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);

	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = 0;
	return sockaddr_from_ip(buf, 0, ss, &sl);
}

struct pod *pods_by_ip(const struct pods *p, const struct sockaddr *addr)
{
	for (struct pod *pod = p->list; pod; pod = pod->next)
		if (!pod->gone && sockaddr_ip_in(pod->ips, pod->n_ips, addr))
			return pod;
	return NULL;
}

int pods_add_has_ip(const Weft__Cni__V1__AddWorkload *add, const struct sockaddr *addr)
{
	struct sockaddr_storage ss;

	for (size_t i = 0; i < add->n_ips; i++)
		if (add->ips[i] && !pods_parse_ip(add->ips[i], &ss) &&
		    sockaddr_same_ip((const struct sockaddr *)&ss, addr))
			return 1;
	return 0;
}

int pods_add_parse(const Weft__Cni__V1__AddWorkload *add, struct sockaddr_storage *ips,
		   char *err, size_t errlen)
{
	char uid[128];
	size_t n = 0;

	if (!add->uid || !add->uid[0] || strlen(add->uid) >= sizeof(((struct pod *)0)->uid) ||
	    !add->namespace_ || !spiffe_segment_valid(add->namespace_)) {
		snprintf(err, errlen, "AddWorkload needs a uid and a valid namespace");
		return -EINVAL;
	}
	for (size_t i = 0; i < add->n_ips && n < POD_IPS_MAX; i++)
		if (add->ips[i] && !pods_parse_ip(add->ips[i], &ips[n]))
			n++;
	if (!n) {
		log_escape(uid, sizeof(uid), add->uid, strlen(add->uid));
		snprintf(err, errlen, "AddWorkload for %s carries no usable IP", uid);
		return -EINVAL;
	}
	return (int)n;
}

struct pod *pods_by_uid(const struct pods *p, const char *uid)
{
	for (struct pod *pod = p->list; pod; pod = pod->next)
		if (!pod->gone && !strcmp(pod->uid, uid))
			return pod;
	return NULL;
}

unsigned pods_count(const struct pods *p)
{
	return p->n;
}

struct pod *pods_first(const struct pods *p)
{
	for (struct pod *pod = p->list; pod; pod = pod->next)
		if (!pod->gone)
			return pod;
	return NULL;
}

/* The identity follows the service account; the registry knows it when
 * the CNI did not say. */
static void pods_resolve_identity(struct pods *p, struct pod *pod)
{
	struct weftd *d = p->d;
	char id[SPIFFE_ID_MAX];

	if (!pod->sa[0]) {
		const struct reg_workload *w = regcache_workload(d->reg, pod->uid);
		if (!w)
			return;
		snprintf(pod->sa, sizeof(pod->sa), "%s", w->service_account);
	}
	if (pod->ident)
		return;
	if (spiffe_workload_format(id, sizeof(id), d->cfg.trust_domain, pod->ns, pod->sa) < 0) {
		log_warn("pod %s: namespace/service account %s/%s cannot form a SPIFFE ID",
			 pod->uid, pod->ns, pod->sa);
		return;
	}
	pod->ident = certs_get(d->certs, id);
	log_info("pod %s (%s) enrolled as %s", pod->uid, pod->ip_str, id);
}

void pods_registry_changed(struct pods *p)
{
	for (struct pod *pod = p->list; pod; pod = pod->next)
		if (!pod->gone && !pod->ident)
			pods_resolve_identity(p, pod);
}

/* A listener inside the pod's netns on 0.0.0.0:port (IPv4 pods). */
static int pods_listen(struct pod *pod, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, fd, err;

	fd = netns_socket(pod->netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, WEFTD_MARK);
	if (fd < 0)
		return fd;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void pods_on_accept(struct listener *ls, int fd);
static void pods_on_listener_closed(struct listener *ls);

/* Accept on fd, one of the pod's listening sockets, which ls owns from now
 * on (pods_del closes it through ls). 0: listener_start cannot fail, it
 * retries by itself when the ring is short of SQEs. */
static int pods_arm(struct pod *pod, struct listener *ls, int fd)
{
	char name[96];

	snprintf(name, sizeof(name), "pod %.48s %s capture", pod->uid,
		 ls == &pod->out_ls ? "outbound" : "inbound");
	listener_start(ls, pod->pods->d->loop, fd, name, pods_on_accept, pods_on_listener_closed,
		       pod);
	pod->nops++;
	return 0;
}

static void pods_release(struct pod *pod)
{
	if (pod->nops || pod->conns)
		return;
	if (pod->ident)
		certs_put(pod->ident);
	if (pod->netns_fd >= 0)
		close(pod->netns_fd);
	free(pod);
}

int pods_deliver_socket(struct pod *pod, const struct sockaddr_storage *src, int family)
{
	struct sockaddr_storage b;
	int fd, one = 1;

	fd = pods_socket(pod, family);
	if (fd < 0 || !pod->transparent || !src || src->ss_family != family)
		return fd;
	/* Never pretend to be the pod itself, its loopback or a link-local,
	 * multicast or unspecified peer (§5.1): the kernel picks the pod's
	 * address for such a socket, as for a pod without transparency. */
	if (sockaddr_special((const struct sockaddr *)src) ||
	    sockaddr_ip_in(pod->ips, pod->n_ips, (const struct sockaddr *)src))
		return fd;
	b = *src;
	if (family == AF_INET)
		((struct sockaddr_in *)&b)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&b)->sin6_port = 0;
	if (setsockopt(fd, family == AF_INET ? SOL_IP : SOL_IPV6,
		       family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&b, family == AF_INET ? sizeof(struct sockaddr_in)
							     : sizeof(struct sockaddr_in6))) {
		/* Deliver anyway, from the pod's own address. */
		log_debug("pod %s: transparent bind failed (%m); delivering untransparently",
			  pod->uid);
		close(fd);
		fd = pods_socket(pod, family);
	}
	return fd;
}

int pods_socket(struct pod *pod, int family)
{
	return podsock_take(pod->socks, pod->pods->d, pod->netns_fd, family);
}

unsigned long pods_sockets_ready(const struct pods *p)
{
	unsigned long n = 0;

	for (const struct pod *pod = p->list; pod; pod = pod->next)
		n += podsock_ready(pod->socks);
	return n;
}

void pods_trim(struct pods *p)
{
	for (struct pod *pod = p->list; pod; pod = pod->next)
		podsock_trim(pod->socks);
}

void pods_conn_done(struct pod *pod)
{
	pod->conns--;
	if (pod->gone)
		pods_release(pod);
}

/* How many proxied connections one pod may hold: max_connections_per_pod,
 * or by default a quarter of what weftd may hold in all. */
static unsigned long pods_conn_cap(const struct weftd *d)
{
	unsigned long all = listener_fd_ceiling();

	if (d->cfg.max_connections_per_pod)
		return d->cfg.max_connections_per_pod;
	if (all > d->cfg.max_connections)
		all = d->cfg.max_connections;
	return all / 4 > 16 ? all / 4 : 16;
}

int pods_over_share(struct pod *pod, char *why, size_t len)
{
	unsigned long cap = pods_conn_cap(pod->pods->d);

	if (pod->conns <= cap)
		return 0;
	pod->refused++;
	snprintf(why, len, "max_connections_per_pod reached (pod %s/%s holds %lu)", pod->ns,
		 pod->name, cap);
	return 1;
}

/* A connection accepted on one of the pod's listeners (out_ls: 15001);
 * the listener pauses by itself when weftd runs out of fds. */
static void pods_on_accept(struct listener *ls, int fd)
{
	struct pod *pod = listener_udata(ls);

	if (pod->gone) {
		close(fd);
		return;
	}
	if (ls == &pod->out_ls)
		outbound_accept(pod->pods->d, pod, fd);
	else
		inbound_plain_accept(pod->pods->d, pod, fd);
}

/* One of a deleted pod's listeners has completed its last operation. */
static void pods_on_listener_closed(struct listener *ls)
{
	struct pod *pod = listener_udata(ls);

	pod->nops--;
	pods_release(pod);
}

static void pods_state_path(const struct pods *p, const char *uid, char *out, size_t len)
{
	size_t o = snprintf(out, len, "%s/pods/", p->d->cfg.state_dir);

	/* uid has a '/': hex-encode it into a safe file name. */
	for (const char *s = uid; *s && o + 3 < len; s++)
		o += snprintf(out + o, len - o, "%02x", (unsigned char)*s);
	snprintf(out + o, len > o ? len - o : 0, ".pb");
}

/* The enrollment record, written by the chores thread: the CNI plugin's
 * Ack does not wait for the disk (a crash in the few ms between them loses
 * the record, as a failed write always did: logged, not refused). */
static void pods_save(const struct pods *p, const Weft__Cni__V1__AddWorkload *add)
{
	char path[512], dir[300], what[96];
	size_t len = weft__cni__v1__add_workload__get_packed_size(add);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		return;
	weft__cni__v1__add_workload__pack(add, buf);
	snprintf(dir, sizeof(dir), "%s/pods", p->d->cfg.state_dir);
	mkdir(p->d->cfg.state_dir, 0700);
	mkdir(dir, 0700);
	pods_state_path(p, add->uid, path, sizeof(path));
	memcpy(what, "pod ", 5);
	log_escape(what + 4, sizeof(what) - 24, add->uid, strlen(add->uid));
	snprintf(what + strlen(what), sizeof(what) - strlen(what), "'s enrollment");
	persist_write(p->d, path, buf, len, what, NULL);
}

static void pods_ip_ntop(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const void *a = ss->ss_family == AF_INET
		? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
		: (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

	if (!inet_ntop(ss->ss_family, a, out, len))
		snprintf(out, len, "?");
}

/* One enrollment per address (§5.1): pods_by_ip answers with the newest
 * pod, so a second pod claiming an enrolled pod's IP would silently take
 * its inbound traffic. -EADDRINUSE with the IP and the holder in err when
 * one of ips (as pods_add_parse read them) belongs to an enrolled pod with
 * another uid than uid_new; the same uid
 * is a re-enrollment and passes. */
static int pods_add_check_ips(const struct pods *p, const char *uid_new,
			      const struct sockaddr_storage *ips, size_t n, char *err,
			      size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct pod *holder = pods_by_ip(p, (const struct sockaddr *)&ips[i]);
		char ip[INET6_ADDRSTRLEN], uid[128];

		if (!holder || !strcmp(holder->uid, uid_new))
			continue;
		pods_ip_ntop(&ips[i], ip, sizeof(ip));
		log_escape(uid, sizeof(uid), holder->uid, strlen(holder->uid));
		snprintf(err, errlen, "IP %s is already enrolled by pod %s", ip, uid);
		return -EADDRINUSE;
	}
	return 0;
}

/* Re-enrollment into the netns the pod already has (a CNI ADD retried
 * after a timeout): the listeners in there stay, since new ones could not
 * bind until the ring lets go of the old ones; the rest is taken from add,
 * whose n (> 0) addresses pods_add_parse has read into ips.
 * 1 when the netns differs (the caller starts afresh), 0 when done (the
 * pod owns netns_fd), -errno with err when refused (netns_fd untouched). */
static int pods_add_refresh(struct pods *p, struct pod *pod, const Weft__Cni__V1__AddWorkload *add,
			    const struct sockaddr_storage *ips, size_t n, int netns_fd,
			    char *err, size_t errlen)
{
	const char *sa = add->service_account ? add->service_account : "";
	struct stat a, b;

	if (fstat(pod->netns_fd, &a) < 0 || fstat(netns_fd, &b) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return 1;
	/* Its identity is in use by its connections; pods do not change
	 * service account, so a request that does is not a retry. */
	if (strcmp(pod->ns, add->namespace_) || (sa[0] && pod->sa[0] && strcmp(pod->sa, sa))) {
		snprintf(err, errlen, "pod %s is enrolled as %s/%s; changing that needs a "
			 "DelWorkload first", pod->uid, pod->ns, pod->sa);
		return -EEXIST;
	}
	memcpy(pod->ips, ips, n * sizeof(ips[0]));
	pod->n_ips = n;
	pods_ip_ntop(&pod->ips[0], pod->ip_str, sizeof(pod->ip_str));
	close(pod->netns_fd);
	pod->netns_fd = netns_fd;
	podsock_netns(pod->socks, netns_fd);
	pod->transparent = add->transparent;
	snprintf(pod->name, sizeof(pod->name), "%s", add->name ? add->name : "");
	if (sa[0])
		snprintf(pod->sa, sizeof(pod->sa), "%s", sa);
	snprintf(pod->netns_path, sizeof(pod->netns_path), "%s",
		 add->netns_path ? add->netns_path : "");
	pods_save(p, add);
	pods_resolve_identity(p, pod);
	log_info("pod %s (%s) re-enrolled in the same netns", pod->uid, pod->ip_str);
	return 0;
}

/* Bit 0: the pod has an IPv4 address, bit 1: an IPv6 one. */
static unsigned pods_families(const struct pod *pod)
{
	unsigned f = 0;

	for (size_t i = 0; i < pod->n_ips; i++)
		f |= pod->ips[i].ss_family == AF_INET6 ? 2u : 1u;
	return f;
}

int pods_add(struct pods *p, const Weft__Cni__V1__AddWorkload *add, int netns_fd,
	     char *err, size_t errlen)
{
	struct weftd *d = p->d;
	struct sockaddr_storage ips[POD_IPS_MAX];
	struct pod *pod, *old;
	int rc, n_ips;

	n_ips = pods_add_parse(add, ips, err, errlen);
	if (n_ips < 0) {
		close(netns_fd);
		return n_ips;
	}
	/* Before the re-enrollment below drops the old record: a refused
	 * request leaves the node as it was. */
	rc = pods_add_check_ips(p, add->uid, ips, (size_t)n_ips, err, errlen);
	if (rc) {
		close(netns_fd);
		return rc;
	}
	old = pods_by_uid(p, add->uid);
	if (old) {
		char e[64];

		rc = pods_add_refresh(p, old, add, ips, (size_t)n_ips, netns_fd, err, errlen);
		if (rc <= 0) {
			if (rc < 0)
				close(netns_fd);
			return rc;
		}
		/* Another netns (the sandbox was recreated): start afresh. */
		pods_del(p, add->uid, e, sizeof(e));
	}
	pod = calloc(1, sizeof(*pod));
	if (!pod) {
		snprintf(err, errlen, "out of memory");
		close(netns_fd);
		return -ENOMEM;
	}
	pod->pods = p;
	pod->netns_fd = netns_fd;
	pod->transparent = add->transparent;
	pod->out_fd = pod->in_fd = -1;
	snprintf(pod->uid, sizeof(pod->uid), "%s", add->uid);
	snprintf(pod->name, sizeof(pod->name), "%s", add->name ? add->name : "");
	snprintf(pod->ns, sizeof(pod->ns), "%s", add->namespace_);
	snprintf(pod->sa, sizeof(pod->sa), "%s", add->service_account ? add->service_account : "");
	snprintf(pod->netns_path, sizeof(pod->netns_path), "%s",
		 add->netns_path ? add->netns_path : "");
	memcpy(pod->ips, ips, (size_t)n_ips * sizeof(ips[0]));
	pod->n_ips = (size_t)n_ips;
	pods_ip_ntop(&pod->ips[0], pod->ip_str, sizeof(pod->ip_str));
	pod->out_fd = pods_listen(pod, d->cfg.outbound_port);
	if (pod->out_fd < 0) {
		rc = pod->out_fd;
		snprintf(err, errlen, "cannot listen on :%u in the pod's netns: %s",
			 d->cfg.outbound_port, strerror(-rc));
		goto fail;
	}
	pod->in_fd = pods_listen(pod, d->cfg.inbound_plain_port);
	if (pod->in_fd < 0) {
		rc = pod->in_fd;
		snprintf(err, errlen, "cannot listen on :%u in the pod's netns: %s",
			 d->cfg.inbound_plain_port, strerror(-rc));
		goto fail;
	}
	rc = pods_arm(pod, &pod->out_ls, pod->out_fd);
	if (!rc)
		rc = pods_arm(pod, &pod->in_ls, pod->in_fd);
	if (rc) {
		snprintf(err, errlen, "cannot queue accept: %s", strerror(-rc));
		pod->gone = 1;	/* the armed accept completes and frees it */
		close(pod->out_fd);
		close(pod->in_fd);
		pods_release(pod);
		return rc;
	}
	pod->next = p->list;
	p->list = pod;
	p->n++;
	pod->socks = podsock_new(d, pod->netns_fd, pods_families(pod));
	pods_save(p, add);
	pods_resolve_identity(p, pod);
	if (!pod->ident)
		log_info("pod %s (%s) enrolled; service account not known yet", pod->uid,
			 pod->ip_str);
	return 0;
fail:
	if (pod->out_fd >= 0)
		close(pod->out_fd);
	if (pod->in_fd >= 0)
		close(pod->in_fd);
	close(pod->netns_fd);
	free(pod);
	return rc;
}

int pods_del(struct pods *p, const char *uid, char *err, size_t errlen)
{
	struct pod **pp, *pod;
	char path[512];

	(void)err;
	(void)errlen;
	for (pp = &p->list; *pp; pp = &(*pp)->next)
		if (!(*pp)->gone && !strcmp((*pp)->uid, uid))
			break;
	pods_state_path(p, uid, path, sizeof(path));
	persist_unlink(p->d, path);
	pod = *pp;
	if (!pod)
		return 0;	/* DEL is idempotent */
	*pp = pod->next;
	p->n--;
	pod->gone = 1;
	podsock_close(pod->socks);
	pod->socks = NULL;
	log_info("pod %s (%s) removed", pod->uid, pod->ip_str);
	/* Once both listeners have closed they release the pod. */
	listener_close(&pod->out_ls);
	listener_close(&pod->in_ls);
	pod->out_fd = pod->in_fd = -1;
	pods_release(pod);
	return 0;
}

void pods_restore(struct pods *p)
{
	char dir[300], path[600], err[256];
	struct dirent *de;
	DIR *dh;

	snprintf(dir, sizeof(dir), "%s/pods", p->d->cfg.state_dir);
	dh = opendir(dir);
	if (!dh)
		return;
	while ((de = readdir(dh))) {
		Weft__Cni__V1__AddWorkload *add;
		size_t len;
		char *buf;
		int fd;

		size_t nl = strlen(de->d_name);

		/* Only "<hex uid>.pb": a "<...>.pb.tmp.<hex>" is a write in
		 * progress (the chores thread saves the pods re-enrolled
		 * here meanwhile) or one a crash cut short. */
		if (de->d_name[0] == '.' || nl < 4 || strcmp(de->d_name + nl - 3, ".pb") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (file_read(path, PODS_FILE_MAX, &buf, &len))
			continue;
		add = weft__cni__v1__add_workload__unpack(NULL, len, (uint8_t *)buf);
		free(buf);
		if (!add) {
			log_warn("pods: %s is not an enrollment record; removed", path);
			unlink(path);
			continue;
		}
		fd = add->netns_path && add->netns_path[0] ? netns_open(add->netns_path) : -ENOENT;
		if (fd < 0) {
			log_info("pod %s: netns %s is gone; dropping it", add->uid,
				 add->netns_path ? add->netns_path : "?");
			unlink(path);
		} else if (pods_add(p, add, fd, err, sizeof(err))) {
			log_warn("pod %s: cannot re-enroll: %s", add->uid, err);
		} else {
			log_info("pod %s re-enrolled from %s", add->uid, path);
		}
		weft__cni__v1__add_workload__free_unpacked(add, NULL);
	}
	closedir(dh);
}

size_t pods_json(const struct pods *p, char *buf, size_t len)
{
	size_t o = 0;
	int n;

	n = snprintf(buf, len, "[");
	o += n > 0 ? (size_t)n : 0;
	for (struct pod *pod = p->list; pod; pod = pod->next) {
		n = snprintf(buf + o, o < len ? len - o : 0,
			     "%s{\"uid\":\"%s\",\"namespace\":\"%s\",\"service_account\":\"%s\","
			     "\"ip\":\"%s\",\"identity\":\"%s\",\"connections\":%lu,"
			     "\"connections_max\":%lu,\"refused\":%lu,\"accept_paused\":%lu}",
			     pod == p->list ? "" : ",", pod->uid, pod->ns, pod->sa, pod->ip_str,
			     pod->ident ? ident_id(pod->ident) : "", pod->conns,
			     pods_conn_cap(p->d), pod->refused + pod->out_ls.refused +
			     pod->in_ls.refused, pod->out_ls.paused + pod->in_ls.paused);
		o += n > 0 ? (size_t)n : 0;
	}
	n = snprintf(buf + o, o < len ? len - o : 0, "]");
	o += n > 0 ? (size_t)n : 0;
	return o < len ? o : len;
}

void pods_free(struct pods *p)
{
	if (!p)
		return;
	while (p->list) {
		struct pod *pod = p->list;
		p->list = pod->next;
		listener_deinit(&pod->out_ls);
		listener_deinit(&pod->in_ls);
		if (pod->ident)
			certs_put(pod->ident);
		podsock_close(pod->socks);
		close(pod->netns_fd);
		free(pod);
	}
	free(p);
}
