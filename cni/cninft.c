/* SPDX-License-Identifier: Apache-2.0 */
/* Capture rules in a pod netns through libnftables. The nft context (and so
 * its netlink socket) is created after setns() and freed before going back:
 * a netlink socket talks to the namespace it was created in. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "cnierr.h"
#include "cninft.h"
#include "cniroute.h"

#define CNINFT_STR2(x) #x
#define CNINFT_STR(x) CNINFT_STR2(x)

/* Outbound: every TCP connection the pod makes, except to loopback and
 * except weftd's own sockets in the pod (mark 0x539), goes to weftd's
 * :15001. Inbound: TCP arriving from the network goes to :15006, except
 * what weftd delivers (made inside the pod, so it never passes prerouting
 * on a non-lo interface; the mark check is belt and braces) and 15008, as
 * Istio's in-pod rules spare the HBONE port. The "table; delete table"
 * prefix makes the transaction replace an existing table atomically, so
 * ADD is idempotent. */
static const char cninft_rules[] =
	"table inet weft {\n"
	"\tchain output {\n"
	"\t\ttype nat hook output priority -100; policy accept;\n"
	"\t\tmeta l4proto != tcp return\n"
	"\t\tmeta mark " CNINFT_STR(CNINFT_MARK) " return\n"
	"\t\tip daddr 127.0.0.0/8 return\n"
	"\t\tip6 daddr ::1 return\n"
	"\t\tmeta l4proto tcp redirect to :" CNINFT_STR(CNINFT_PORT_OUT) "\n"
	"\t}\n"
	"\tchain prerouting {\n"
	"\t\ttype nat hook prerouting priority -100; policy accept;\n"
	"\t\tmeta l4proto != tcp return\n"
	"\t\tiifname \"lo\" return\n"
	"\t\tmeta mark " CNINFT_STR(CNINFT_MARK) " return\n"
	"\t\ttcp dport 15008 return\n"
	"\t\tmeta l4proto tcp redirect to :" CNINFT_STR(CNINFT_PORT_IN) "\n"
	"\t}\n"
	/* Transparent delivery: weftd's sockets (mark 0x539) mark their
	 * connection; the app's packets on such a connection get fwmark
	 * 0x111, which policy routing (cniroute.c) sends back to weftd's
	 * socket. A route-type chain makes the kernel re-route after the
	 * mark changes. */
	"\tchain transparent {\n"
	"\t\ttype route hook output priority mangle; policy accept;\n"
	"\t\tmeta mark " CNINFT_STR(CNINFT_MARK) " ct mark set 0x111 return\n"
	"\t\tct mark 0x111 meta mark set 0x111\n"
	"\t}\n"
	"}\n";

const char *cninft_ruleset(void)
{
	return cninft_rules;
}

/* nft's error text is several lines (message, the command, a caret); keep
 * the first, which says what went wrong. */
static void cninft_err_nft(char *err, size_t errlen, const char *what, const char *nfterr)
{
	size_t n = nfterr ? strcspn(nfterr, "\n") : 0;

	cnierr_set(err, errlen, "nftables: %s: %.*s", what, (int)(n > 200 ? 200 : n),
		   n ? nfterr : "failed");
}

enum cninft_op {
	CNINFT_INSTALL = 1,
	CNINFT_REMOVE,
	CNINFT_CHECK,
};

/* Run op with the nft context in the current (pod) namespace. */
static int cninft_run(enum cninft_op op, char *err, size_t errlen)
{
	char buf[sizeof(cninft_rules) + 64];
	struct nft_ctx *nft;
	const char *out;
	int ret = 0;

	nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft) {
		cnierr_set(err, errlen, "nftables: cannot create a context");
		return -ENOMEM;
	}
	if (nft_ctx_buffer_error(nft) < 0 || nft_ctx_buffer_output(nft) < 0) {
		cnierr_set(err, errlen, "nftables: cannot buffer output");
		ret = -ENOMEM;
		goto out;
	}
	switch (op) {
	case CNINFT_INSTALL:
		snprintf(buf, sizeof(buf), "table inet weft\ndelete table inet weft\n%s",
			 cninft_rules);
		if (nft_run_cmd_from_buffer(nft, buf) != 0) {
			cninft_err_nft(err, errlen, "installing table inet weft",
				       nft_ctx_get_error_buffer(nft));
			ret = -EIO;
			break;
		}
		ret = cniroute_install(err, errlen);
		break;
	case CNINFT_REMOVE:
		/* nft 1.0.6 has no "destroy": creating first makes the delete
		 * succeed whether or not the table was there. */
		if (nft_run_cmd_from_buffer(nft, "table inet weft\ndelete table inet weft\n") != 0) {
			cninft_err_nft(err, errlen, "removing table inet weft",
				       nft_ctx_get_error_buffer(nft));
			ret = -EIO;
			break;
		}
		ret = cniroute_remove(err, errlen);
		break;
	case CNINFT_CHECK:
		if (nft_run_cmd_from_buffer(nft, "list table inet weft") != 0) {
			cnierr_set(err, errlen, "the capture rules (table inet weft) are missing");
			ret = -ENODATA;
			break;
		}
		out = nft_ctx_get_output_buffer(nft);
		if (!out || !strstr(out, "redirect to :" CNINFT_STR(CNINFT_PORT_OUT)) ||
		    !strstr(out, "redirect to :" CNINFT_STR(CNINFT_PORT_IN))) {
			cnierr_set(err, errlen, "table inet weft lacks the redirects to :%d/:%d",
				   CNINFT_PORT_OUT, CNINFT_PORT_IN);
			ret = -ENODATA;
		}
		break;
	}
out:
	nft_ctx_free(nft);
	return ret;
}

/* Enter netns_path, run op, come back. A failure to come back is reported
 * as such: the caller must not carry on in the pod's namespace. */
static int cninft_in_netns(const char *netns_path, enum cninft_op op, char *err, size_t errlen)
{
	int self, target, ret;

	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "cannot open our own netns: %s", strerror(-ret));
		return ret;
	}
	target = open(netns_path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "cannot open netns %s: %s", netns_path, strerror(-ret));
		goto fail_target;
	}
	if (setns(target, CLONE_NEWNET) < 0) {
		ret = -errno;
		cnierr_set(err, errlen, "cannot enter netns %s: %s", netns_path, strerror(-ret));
		goto fail_setns;
	}
	ret = cninft_run(op, err, errlen);
	if (setns(self, CLONE_NEWNET) < 0) {
		int e = errno;

		cnierr_set(err, errlen, "cannot return from netns %s: %s", netns_path, strerror(e));
		ret = -e;
	}
fail_setns:
	close(target);
fail_target:
	close(self);
	return ret;
}

int cninft_install(const char *netns_path, char *err, size_t errlen)
{
	return cninft_in_netns(netns_path, CNINFT_INSTALL, err, errlen);
}

int cninft_remove(const char *netns_path, char *err, size_t errlen)
{
	return cninft_in_netns(netns_path, CNINFT_REMOVE, err, errlen);
}

int cninft_check(const char *netns_path, char *err, size_t errlen)
{
	return cninft_in_netns(netns_path, CNINFT_CHECK, err, errlen);
}
