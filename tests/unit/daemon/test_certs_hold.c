/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's identities and their holders (issue 8 item 6), driven by the real
 * loop with the agent client replaced by a recorder: an identity renews
 * (here: retries after a refusal) only while a pod uses it; once the last
 * certs_put goes, its holds (tunnel keys) are told and no CreateCertificate
 * is sent any more; a pod taking it again resumes; the last unhold frees
 * it; an identity put while its request is out is freed by the reply. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include <weft/loop.h>

#include "../../../daemon/certs.c"

#define MAX_CALLS 64

static struct {
	char who[SPIFFE_ID_MAX];	/* "" for the node itself */
	agentc_cert_fn cb;
	void *arg;
	int answered;
} calls[MAX_CALLS];
static unsigned n_calls;
static struct loop *L;

int agentc_create_cert(struct agentc *a, const char *csr_pem, const char *impersonate,
		       uint32_t ttl_s, agentc_cert_fn cb, void *arg)
{
	(void)a;
	(void)csr_pem;
	(void)ttl_s;
	if (n_calls >= MAX_CALLS)
		return -ENOMEM;
	snprintf(calls[n_calls].who, sizeof(calls[n_calls].who), "%s",
		 impersonate ? impersonate : "");
	calls[n_calls].cb = cb;
	calls[n_calls].arg = arg;
	n_calls++;
	return 0;
}

int agentc_set_identity(struct agentc *a, const char *chain_pem, size_t chain_len,
			const char *key_pem, size_t key_len)
{
	(void)a, (void)chain_pem, (void)chain_len, (void)key_pem, (void)key_len;
	return 0;
}

/* Requests for who so far. */
static unsigned asked(const char *who)
{
	unsigned n = 0;

	for (unsigned i = 0; i < n_calls; i++)
		n += !strcmp(calls[i].who, who);
	return n;
}

/* Refuse every request not answered yet, as the agent does for a
 * service account without a workload on the node. */
static void refuse_all(enum grpc_status st)
{
	for (unsigned i = 0; i < n_calls; i++) {
		if (!calls[i].answered) {
			calls[i].answered = 1;
			calls[i].cb(calls[i].arg, st, "no workload", NULL, 0);
		}
	}
}

static void on_stop(struct loop_timer *t)
{
	(void)t;
	loop_stop(L);
}

static void run_for(uint64_t ms)
{
	struct loop_timer stop = { .cb = on_stop };

	loop_timer_arm(L, &stop, ms);
	loop_run(L);
	loop_timer_disarm(L, &stop);
}

static unsigned unused_calls;

static void on_unused(struct ident_hold *h)
{
	(void)h;
	unused_calls++;
}

static int json_has(struct certs *c, const char *needle)
{
	static char buf[1 << 16];

	certs_json(c, buf, sizeof(buf));
	return strstr(buf, needle) != NULL;
}

int main(void)
{
	static const char A[] = "spiffe://cluster.local/ns/default/sa/a";
	static const char B[] = "spiffe://cluster.local/ns/default/sa/b";
	struct certs_opts o = {
		.trust_domain = "cluster.local",
		.node = "node1",
		.bundle_pem = "-",
	};
	struct ident_hold h;
	struct ident *a, *a2, *b;
	struct certs *c;
	int dummy;

	L = loop_new(64);
	CHECK(L != NULL);
	if (!L)
		return 1;
	c = certs_new(L, (struct agentc *)&dummy, &o, NULL, NULL);
	CHECK(c != NULL);
	if (!c)
		return 1;
	CHECK(ident_in_use(certs_node(c)));

	/* A pod uses A: asked at once, retried after a refusal. */
	a = certs_get(c, A);
	CHECK(a != NULL && ident_in_use(a));
	run_for(30);
	CHECK_EQ_INT(asked(A), 1);
	refuse_all(GRPC_PERMISSION_DENIED);
	run_for(700);			/* first backoff step: 500 ms */
	CHECK_EQ_INT(asked(A), 2);
	refuse_all(GRPC_PERMISSION_DENIED);

	/* A tunnel key holds it; the pod goes: the holder is told, the
	 * identity stays listed, and is not asked for again. */
	ident_hold(a, &h, on_unused);
	certs_put(a);
	CHECK_EQ_INT(unused_calls, 1);
	CHECK(!ident_in_use(a));
	CHECK(json_has(c, "\"identity\":\"spiffe://cluster.local/ns/default/sa/a\""));
	CHECK(json_has(c, "\"pods\":0,\"holds\":1,\"renewing\":false"));
	run_for(2500);			/* well past the next backoff (1 s) */
	CHECK_EQ_INT(asked(A), 2);

	/* A pod takes it again: the same identity, renewing again at once
	 * (it has no certificate). */
	a2 = certs_get(c, A);
	CHECK(a2 == a);
	CHECK(ident_in_use(a));
	run_for(30);
	CHECK_EQ_INT(asked(A), 3);
	refuse_all(GRPC_PERMISSION_DENIED);
	certs_put(a2);
	CHECK_EQ_INT(unused_calls, 2);

	/* The holder lets go: gone, never asked again. */
	ident_unhold(&h);
	CHECK(!json_has(c, "sa/a\""));
	run_for(1200);
	CHECK_EQ_INT(asked(A), 3);

	/* Without a hold the last put frees it; with its request out, the
	 * reply does (no use after free under ASan). */
	b = certs_get(c, B);
	run_for(30);
	CHECK_EQ_INT(asked(B), 1);
	certs_put(b);
	CHECK(!json_has(c, "sa/b\""));
	refuse_all(GRPC_PERMISSION_DENIED);
	run_for(700);
	CHECK_EQ_INT(asked(B), 1);

	certs_free(c);
	refuse_all(GRPC_UNAVAILABLE);	/* the node's request, now dead */
	loop_free(L);
	printf("test_certs_hold: %d checks, %d failed\n", check_count, check_failures);
	return check_failures ? 1 : 0;
}
