/* SPDX-License-Identifier: Apache-2.0 */
/* Registry updates on the control thread (daemon/regapply.c): a snapshot
 * and deltas are applied there and swapped into d->reg on the loop; a burst
 * is swapped in once, as its newest version; a rejected update is logged
 * and leaves the registry as it was, but does not lose the accepted ones
 * before it; the registry snapshot for the state file comes from the
 * control thread's copy; the loop never sees a half-applied registry; at
 * most 64 updates wait (more are dropped), and after a drop only a
 * snapshot is taken. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/chores.h>
#include <weft/loop.h>
#include <weft/regcache.h>
#include <weft/registry.h>
#include <weft/regproto.h>

#include "../check.h"
#include "../regyaml.h"
#include "../../../daemon/regapply.h"
#include "../../../daemon/weftd.h"

static struct weftd d;
static int swaps;
static uint64_t seen_version;

static const char *yaml =
	"trust_domain: cluster.local\n"
	"nodes:\n"
	"  - {name: node1, address: 172.30.0.1}\n"
	"workloads:\n"
	"  - {name: w1, namespace: default, node: node1, ips: [10.0.0.1]}\n";

static void on_changed(struct weftd *dd)
{
	swaps++;
	seen_version = regcache_version(dd->reg);
}

static void on_stop(struct loop_timer *t)
{
	(void)t;
	loop_stop(d.loop);
}

/* Run the loop until nothing is pending (or 5 s). */
static void settle(struct regapply *ra)
{
	struct loop_timer t = { .cb = on_stop };

	for (int i = 0; i < 500 && regapply_pending(ra); i++) {
		loop_timer_arm(d.loop, &t, 10);
		loop_run(d.loop);
	}
	loop_timer_arm(d.loop, &t, 20);
	loop_run(d.loop);
}

static void send_msg(struct regapply *ra, uint8_t *buf, size_t len)
{
	regapply_msg(ra, buf, len);
	free(buf);
}

static struct registry *with_workloads(int n)
{
	(void)regyaml_edit;
	char *y = malloc(64 * (size_t)n + 512);
	size_t o;
	struct registry *r;

	o = (size_t)sprintf(y, "%s", yaml);
	for (int i = 2; i <= n; i++)
		o += (size_t)sprintf(y + o, "  - {name: w%d, namespace: default, node: node1, "
				     "ips: [10.0.%d.%d]}\n", i, i / 250, i % 250 + 1);
	r = regyaml_parse(y);
	free(y);
	return r;
}

static uint8_t *snap_buf;
static size_t snap_len;

static void on_snap(struct weftd *dd, uint8_t *buf, size_t len)
{
	(void)dd;
	snap_buf = buf;
	snap_len = len;
}

int main(void)
{
	struct registry *r1 = with_workloads(1), *r2 = with_workloads(50), *r3 = with_workloads(80);
	struct regapply *ra;
	struct regcache *check;
	char err[256];
	uint8_t *buf;
	size_t len;

	d.loop = loop_new(16);
	d.reg = regcache_new();
	ra = regapply_start(&d, on_changed);
	CHECK(d.loop && d.reg && ra);
	if (!ra)
		return check_done("test_regapply");

	/* A snapshot: applied there, swapped in here. */
	CHECK_EQ_INT(regproto_snapshot(r1, 1, &buf, &len), 0);
	send_msg(ra, buf, len);
	CHECK_EQ_INT(regcache_ready(d.reg), 0);	/* nothing before the loop runs */
	settle(ra);
	CHECK_EQ_INT(swaps, 1);
	CHECK_EQ_INT(regcache_version(d.reg), 1);
	CHECK_EQ_INT(regcache_registry(d.reg)->n_workloads, 1);

	/* A burst of three deltas: one swap, to the newest. */
	swaps = 0;
	CHECK_EQ_INT(regproto_delta(r1, r2, 2, &buf, &len), 0);
	send_msg(ra, buf, len);
	CHECK_EQ_INT(regproto_delta(r2, r3, 3, &buf, &len), 0);
	send_msg(ra, buf, len);
	CHECK_EQ_INT(regproto_delta(r3, r2, 4, &buf, &len), 0);
	send_msg(ra, buf, len);
	settle(ra);
	CHECK(swaps >= 1 && swaps <= 3);
	CHECK_EQ_INT(regcache_version(d.reg), 4);
	CHECK_EQ_INT(seen_version, 4);
	CHECK_EQ_INT(regcache_registry(d.reg)->n_workloads, 50);
	CHECK(regapply_last_ms(ra) >= 0);

	/* An accepted delta then a rejected one (its version goes back): the
	 * first is not lost, the registry is never the rejected one. */
	swaps = 0;
	CHECK_EQ_INT(regproto_delta(r2, r3, 5, &buf, &len), 0);
	send_msg(ra, buf, len);
	CHECK_EQ_INT(regproto_delta(r3, r1, 3, &buf, &len), 0);
	send_msg(ra, buf, len);
	settle(ra);
	CHECK_EQ_INT(regcache_version(d.reg), 5);
	CHECK_EQ_INT(regcache_registry(d.reg)->n_workloads, 80);
	CHECK(swaps >= 1);

	/* Garbage: rejected, nothing swapped. */
	swaps = 0;
	buf = malloc(16);
	memset(buf, 0xff, 16);
	send_msg(ra, buf, 16);
	settle(ra);
	CHECK_EQ_INT(swaps, 0);
	CHECK_EQ_INT(regcache_version(d.reg), 5);

	/* The state file's snapshot: the same registry, from the control
	 * thread's copy. */
	regapply_snapshot(ra, on_snap);
	settle(ra);
	CHECK(snap_buf != NULL);
	check = regcache_new();
	CHECK_EQ_INT(regcache_apply(check, snap_buf, snap_len, err, sizeof(err)), 0);
	CHECK_EQ_INT(regcache_version(check), 5);
	CHECK_EQ_INT(regcache_registry(check)->n_workloads, 80);
	regcache_free(check);
	free(snap_buf);

	/* 64 waiting, the 65th dropped; after it a delta is refused, a
	 * snapshot taken. */
	for (int v = 10; v <= 74; v++) {
		CHECK_EQ_INT(regproto_snapshot(r1, (uint64_t)v, &buf, &len), 0);
		send_msg(ra, buf, len);
	}
	CHECK_EQ_INT(regapply_pending(ra), 64);
	settle(ra);
	CHECK_EQ_INT(regcache_version(d.reg), 73);
	CHECK_EQ_INT(regproto_delta(r1, r2, 75, &buf, &len), 0);
	send_msg(ra, buf, len);
	settle(ra);
	CHECK_EQ_INT(regcache_version(d.reg), 73);
	CHECK_EQ_INT(regcache_registry(d.reg)->n_workloads, 1);
	CHECK_EQ_INT(regproto_snapshot(r3, 76, &buf, &len), 0);
	send_msg(ra, buf, len);
	settle(ra);
	CHECK_EQ_INT(regcache_version(d.reg), 76);
	CHECK_EQ_INT(regcache_registry(d.reg)->n_workloads, 80);
	/* And deltas are taken again. */
	CHECK_EQ_INT(regproto_delta(r3, r2, 77, &buf, &len), 0);
	send_msg(ra, buf, len);
	settle(ra);
	CHECK_EQ_INT(regcache_version(d.reg), 77);

	regapply_stop(ra);
	regcache_free(d.reg);
	registry_free(r1);
	registry_free(r2);
	registry_free(r3);
	loop_free(d.loop);
	return check_done("test_regapply");
}
