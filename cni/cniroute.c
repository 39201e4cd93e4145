/* SPDX-License-Identifier: Apache-2.0 */
/* rtnetlink by hand for two messages each way: a fwmark rule and a local
 * default route in a private table, for IPv4 and IPv6. */
#include <errno.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnierr.h"
#include "cniroute.h"

struct cniroute_req {
	struct nlmsghdr nh;
	union {
		struct fib_rule_hdr rule;
		struct rtmsg rt;
		struct ifinfomsg link;
	};
	char attrs[128];
};

static void cniroute_attr_u32(struct cniroute_req *r, unsigned short type, uint32_t v)
{
	struct rtattr *a = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(sizeof(v));
	memcpy(RTA_DATA(a), &v, sizeof(v));
	r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Send one request and read its ACK; returns 0 or -errno from the kernel. */
static int cniroute_talk(int fd, struct cniroute_req *r)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	char buf[512];
	ssize_t n;

	r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return -errno;
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
	     h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR)
			return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
	}
	return -EPROTO;
}

static int cniroute_family(int fd, int family, int add)
{
	struct cniroute_req r;
	unsigned lo = if_nametoindex("lo");
	int err;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.rule));
	r.nh.nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
	r.nh.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r.rule.family = family;
	r.rule.action = FR_ACT_TO_TBL;
	r.rule.table = CNIROUTE_TABLE;
	cniroute_attr_u32(&r, FRA_FWMARK, CNIROUTE_MARK);
	cniroute_attr_u32(&r, FRA_FWMASK, CNIROUTE_MASK);
	cniroute_attr_u32(&r, FRA_PRIORITY, CNIROUTE_PRIO);
	cniroute_attr_u32(&r, FRA_TABLE, CNIROUTE_TABLE);
	err = cniroute_talk(fd, &r);
	if (err && err != (add ? -EEXIST : -ENOENT))
		return err;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.rt));
	r.nh.nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
	r.nh.nlmsg_flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
	r.rt.rtm_family = family;
	r.rt.rtm_table = CNIROUTE_TABLE;
	r.rt.rtm_protocol = RTPROT_BOOT;
	r.rt.rtm_scope = RT_SCOPE_HOST;
	r.rt.rtm_type = RTN_LOCAL;
	cniroute_attr_u32(&r, RTA_TABLE, CNIROUTE_TABLE);
	cniroute_attr_u32(&r, RTA_OIF, lo);
	err = cniroute_talk(fd, &r);
	if (err && err != (add ? -EEXIST : -ESRCH) && err != -ENOENT)
		return err;
	return 0;
}

/* The local route needs lo up. Container runtimes bring it up (the
 * loopback plugin), a bare `ip netns add` does not. */
static int cniroute_lo_up(int fd)
{
	struct cniroute_req r;

	memset(&r, 0, sizeof(r));
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(r.link));
	r.nh.nlmsg_type = RTM_NEWLINK;
	r.link.ifi_family = AF_UNSPEC;
	r.link.ifi_index = (int)if_nametoindex("lo");
	r.link.ifi_flags = IFF_UP;
	r.link.ifi_change = IFF_UP;
	return cniroute_talk(fd, &r);
}

static int cniroute_apply(int add, char *err, size_t errlen)
{
	int fd, ret;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0) {
		cnierr_set(err, errlen, "netlink: %s", strerror(errno));
		return -errno;
	}
	ret = add ? cniroute_lo_up(fd) : 0;
	if (!ret)
		ret = cniroute_family(fd, AF_INET, add);
	if (!ret) {
		/* A pod without IPv6 (disabled in the netns) still works. */
		int r6 = cniroute_family(fd, AF_INET6, add);
		if (r6 && r6 != -EAFNOSUPPORT && r6 != -EACCES)
			ret = r6;
	}
	close(fd);
	if (ret)
		cnierr_set(err, errlen, "%s the transparent-delivery route (fwmark 0x%x -> table %d): %s",
			   add ? "adding" : "removing", CNIROUTE_MARK, CNIROUTE_TABLE, strerror(-ret));
	return ret;
}

int cniroute_install(char *err, size_t errlen)
{
	return cniroute_apply(1, err, errlen);
}

int cniroute_remove(char *err, size_t errlen)
{
	return cniroute_apply(0, err, errlen);
}
