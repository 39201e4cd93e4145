#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""report.md and PNG charts from the results.json of bench/run.py.

Kept apart from run.py so a report can be redone (other tables, a fixed chart)
from a finished run without measuring again:

  bench/report.py bench/results/<timestamp>/results.json [--no-charts]

Every figure is the median over the repetitions, with [min–max] when there are
several; ratios divide medians of the same run.
"""
import json
import os
import statistics
import sys

BREAK_FACTOR = 4.0      # sweep: p99 above this × the plane's p99 at the lowest rate
BREAK_RATE = 0.97       # ... or achieved rate below this share of the target


# --- extracting figures from the runs ------------------------------------------------------
def _lat(workload, pct):
    return lambda r: r[workload]["latency_us"][pct]


def _requests(w):
    """Requests (or connections) the loadgen run made, warm-up included: the
    CPU figures cover the whole run."""
    span = w["warmup_s"] + w["duration_s"]
    rate = w["rate_target"] if w.get("rate_target") else w["rate_achieved"]
    return rate * span


def _cpu_per_1000(workload):
    return lambda r: r[workload]["mesh"]["cpu_s"] / _requests(r[workload]) * 1000


def _vcpu_node(workload):
    """vCPU of the mesh on the busiest node."""
    def f(r):
        w = r[workload]
        per = w["mesh"]["cpu_s_per_node"]
        return max(per.values()) / (w["warmup_s"] + w["duration_s"]) if per else 0.0
    return f


def _rss_idle_node(r):
    v = r["rss_idle_kb"]
    return max(v.values()) / 1024 if v else 0.0


def _rss_per_conn(r):
    c = r["conns"]
    if not c["mesh"]["rss_peak_kb"]:
        return 0.0
    return max(0, c["mesh"]["rss_peak_kb"] - c["rss_before_kb"]) / c["conns"]


def _handshake(r):
    hs = r.get("handshake_ms")
    return min(hs) if hs else None


def _handshake_first(r):
    hs = r.get("handshake_ms")
    return hs[0] if hs else None


METRICS = {
    "rr.p50": _lat("rr", "p50"), "rr.p90": _lat("rr", "p90"), "rr.p99": _lat("rr", "p99"),
    "rr.p999": _lat("rr", "p999"), "rr.rate": lambda r: r["rr"]["rate_achieved"],
    "rr.errors": lambda r: r["rr"]["errors"],
    "max.req_s": lambda r: r["max"]["rate_achieved"],
    "max.p50": _lat("max", "p50"), "max.p99": _lat("max", "p99"),
    "churn.cps": lambda r: r["churn"]["rate_achieved"],
    "churn.p50": _lat("churn", "p50"), "churn.p99": _lat("churn", "p99"),
    "churn.errors": lambda r: r["churn"]["errors"],
    "bulk1.gbps": lambda r: r["bulk1"]["gbps"], "bulk8.gbps": lambda r: r["bulk8"]["gbps"],
    "rr.cpu1k": _cpu_per_1000("rr"), "rr.vcpu": _vcpu_node("rr"),
    "churn.cpu1k": _cpu_per_1000("churn"), "max.cpu1k": _cpu_per_1000("max"),
    "rss.idle_mb": _rss_idle_node, "rss.rr_peak_mb": lambda r: r["rr"]["mesh"]["rss_peak_kb"] / 1024,
    "rss.per_conn_kb": _rss_per_conn,
    "probe.first_us": lambda r: r["probe"]["latency_us"]["max"],
    "probe.p50_us": lambda r: r["probe"]["latency_us"]["p50"],
    "handshake_ms": _handshake, "handshake_first_ms": _handshake_first,
}


class Agg:
    """Median, min and max of one figure over the repetitions of each plane."""

    def __init__(self, results):
        self.res = results
        self.planes = [p["key"] for p in results["planes"]]
        self.names = {p["key"]: p["name"] for p in results["planes"]}
        self.ok = {k: [r for r in results["runs"] if r["plane"] == k and r.get("ok")]
                   for k in self.planes}

    def values(self, plane, fn):
        out = []
        for r in self.ok.get(plane, []):
            try:
                v = fn(r) if callable(fn) else METRICS[fn](r)
            except (KeyError, TypeError, ZeroDivisionError, ValueError):
                v = None
            if v is not None:
                out.append(v)
        return out

    def med(self, plane, fn):
        v = self.values(plane, fn)
        return statistics.median(v) if v else None

    def cell(self, plane, fn, fmt="%.0f"):
        v = self.values(plane, fn)
        if not v:
            return "—"
        s = fmt % statistics.median(v)
        if len(v) > 1:
            s += " [" + fmt % min(v) + "–" + fmt % max(v) + "]"
        return s


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(x, fmt="%.2f×"):
    return "—" if x is None else fmt % x


# --- tables -----------------------------------------------------------------------------------
def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def with_ratios(agg, metrics, fmt="%.0f", added=False):
    """Rows: plane, each metric as median [min–max], then ratios of the first
    metric's median to no mesh and to the relay pair (added: of the latency above
    no mesh)."""
    rows = []
    for p in agg.planes:
        row = [agg.names[p]] + [agg.cell(p, m, fmt) for m in metrics]
        for m in metrics:
            v = agg.med(p, m)
            row.append(rfmt(ratio(v, agg.med("nomesh", m))))
        for m in metrics:
            v = agg.med(p, m)
            row.append(rfmt(ratio(v, agg.med("relay", m))))
        if added:
            for m in metrics:
                v, base = agg.med(p, m), agg.med("nomesh", m)
                row.append("—" if v is None or base is None else "%+.0f" % (v - base))
        rows.append(row)
    return rows


def sweep_rows(agg, rates):
    rows, breaks = [], {}
    for p in agg.planes:
        row, first, brk, ok_max = [agg.names[p]], None, None, None
        for rate in rates:
            key = str(rate)
            p99 = agg.med(p, lambda r, k=key: r["sweep"][k]["latency_us"]["p99"])
            got = agg.med(p, lambda r, k=key: r["sweep"][k]["rate_achieved"])
            err = agg.med(p, lambda r, k=key: r["sweep"][k]["errors"])
            if p99 is None:
                row.append("—")
                continue
            first = first if first is not None else p99
            broken = (p99 > BREAK_FACTOR * first or got < BREAK_RATE * rate or err > 0)
            if broken and brk is None:
                brk = rate
            if brk is None:
                ok_max = rate
            row.append("%.0f%s%s" % (p99, "" if got >= BREAK_RATE * rate else
                                     " (%.0f/s)" % got, " ✗" if broken else ""))
        breaks[p] = (ok_max, brk)
        row.append("%s" % (ok_max if ok_max else "below %d" % rates[0]) +
                   ("" if brk is None else " (breaks at %d)" % brk))
        rows.append(row)
    return rows, breaks


# --- §10 targets --------------------------------------------------------------------------------
def targets(agg, res):
    """[(figure, target, measured, verdict)]"""
    rows = []
    w, rp, hm, nm = "weft", "relay", "hamtls", "nomesh"

    def verdict(x, limit, ge=True):
        if x is None:
            return "not measured"
        return "**met**" if (x >= limit if ge else x <= limit) else "**missed**"

    def cmp(label, metric, base, limit, fmt="%.0f"):
        a, b = agg.med(w, metric), agg.med(base, metric)
        r = ratio(a, b)
        meas = "—" if r is None else "%.2f× (%s vs %s)" % (r, fmt % a, fmt % b)
        rows.append((label, "≥ %.1f× %s" % (limit, agg.names.get(base, base)), meas,
                     verdict(r, limit)))

    cmp("closed-loop req/s, 1 KB HTTP, 16 conns", "max.req_s", rp, 1.0)
    cmp("closed-loop req/s, 1 KB HTTP, 16 conns", "max.req_s", hm, 1.8)
    for pct in ("p50", "p99"):
        m = "rr." + pct
        a, b, base = agg.med(w, m), agg.med(rp, m), agg.med(nm, m)
        if None in (a, b, base):
            rows.append(("added latency at 1,000 RPS, " + pct, "≤ 1.3× relay pair's", "—",
                         "not measured"))
            continue
        add_w, add_r = a - base, b - base
        if add_r <= 0:
            rows.append(("added latency at 1,000 RPS, " + pct, "≤ 1.3× relay pair's",
                         "weft +%.0f µs, relay pair %+.0f µs (not above no mesh: noise)" % (
                             add_w, add_r), "undetermined"))
            continue
        r = add_w / add_r
        rows.append(("added latency at 1,000 RPS, " + pct, "≤ 1.3× relay pair's",
                     "%.2f× (+%.0f µs vs +%.0f µs)" % (r, add_w, add_r), verdict(r, 1.3, False)))
    cmp("new connections/s, one request each, 8 concurrent", "churn.cps", rp, 1.2)
    cmp("new connections/s, one request each, 8 concurrent", "churn.cps", hm, 5.0)
    cmp("bulk, one stream (iperf3), Gb/s", "bulk1.gbps", rp, 0.9, "%.2f")
    cmp("bulk, one stream (iperf3), Gb/s", "bulk1.gbps", hm, 1.1, "%.2f")
    v = agg.med(w, "rr.vcpu")
    rows.append(("CPU at 1,000 RPS, 1 KB (busiest node)", "≤ 0.03 vCPU per node",
                 "—" if v is None else "%.3f vCPU (%.3f CPU-s per 1,000 req)" % (
                     v, agg.med(w, "rr.cpu1k") or 0), verdict(v, 0.03, False)))
    v = agg.med(w, "rss.idle_mb")
    rows.append(("RSS idle (2 pods per node)", "≤ 6 MB per node",
                 "—" if v is None else "%.1f MB" % v, verdict(v, 6.0, False)))
    v = agg.med(w, "rss.per_conn_kb")
    n = (agg.ok.get(w) or [{}])[0].get("conns", {}).get("conns")
    rows.append(("RSS per open connection", "≤ 16 KB",
                 "—" if v is None else "%.1f KB (%s connections)" % (v, n),
                 verdict(v, 16.0, False)))
    sc = [s for s in res.get("scale", []) if s.get("plane") == w and "rss_kb" in s]
    if len(sc) >= 2:
        sc.sort(key=lambda s: s["pods"])
        lo, hi = max(sc[0]["rss_kb"].values()), max(sc[-1]["rss_kb"].values())
        g = hi / lo
        rows.append(("RSS flat in pod count (growth ≤ 10%)", "≤ 1.10× from %d to %d pods" % (
            sc[0]["pods"], sc[-1]["pods"]), "%.2f× (%.1f → %.1f MB per node)" % (
                g, lo / 1024, hi / 1024), verdict(g, 1.10, False)))
    else:
        rows.append(("RSS flat in pod count", "≤ 1.10×", "—", "not measured"))
    v, cold = agg.med(w, "handshake_ms"), agg.med(w, "handshake_first_ms")
    first, p50 = agg.med(w, "probe.first_us"), agg.med(w, "probe.p50_us")
    extra = "" if cold is None else "; the first tunnel of a fresh cluster (a new process: " \
        "code and data touched for the first time): %.2f ms" % cold
    if first is not None and p50 is not None:
        extra += "; the first connection through it %.0f µs against %.0f µs p50 of the next " \
            "ones" % (first, p50)
    rows.append(("tunnel handshake (TCP + TLS 1.3 mTLS + HTTP/2 settings)", "≤ 1 ms",
                 "—" if v is None else "%.2f ms (weftd's log, the fastest of 4 tunnels "
                 "opened one after the other%s)" % (v, extra),
                 "not measured" if v is None else verdict(v, 1.0, False)))
    return rows


# --- charts ------------------------------------------------------------------------------------
COLORS = {"nomesh": "#7f7f7f", "relay": "#1f77b4", "weft": "#2ca02c", "wsc": "#9467bd",
          "hamtls": "#d62728"}
WEFT_PLANES = ("weft", "wsc")     # planes whose weftd logs its tunnel set-up


def draw_charts(outdir, agg, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    planes = [p for p in agg.planes if agg.ok.get(p)]

    def err(p, m):
        v = agg.values(p, m)
        if not v:
            return 0, (0, 0)
        med = statistics.median(v)
        return med, (med - min(v), max(v) - med)

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, name), dpi=110)
        plt.close(fig)
        made.append(name)

    def loglog(ax, ticks, xlabel, ylabel, title):
        """Log-log axes with the measured x values as ticks."""
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(x) for x in ticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)

    # Latency percentiles at 1,000 RPS.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    pcts = ["p50", "p90", "p99", "p999"]
    width = 0.8 / max(1, len(planes))
    for i, p in enumerate(planes):
        meds, lo, hi = [], [], []
        for pc in pcts:
            m, (a, b) = err(p, "rr." + pc)
            meds.append(m / 1000)
            lo.append(a / 1000)
            hi.append(b / 1000)
        xs = [j + i * width for j in range(len(pcts))]
        ax.bar(xs, meds, width, yerr=[lo, hi], label=agg.names[p], color=COLORS.get(p),
               capsize=2)
    ax.set_xticks([j + width * (len(planes) - 1) / 2 for j in range(len(pcts))])
    ax.set_xticklabels(["p50", "p90", "p99", "p99.9"])
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log)")
    ax.set_title("1 KB request/response at 1,000 RPS, 16 connections (open loop)")
    ax.legend(fontsize=8)
    save(fig, "latency.png")

    # p99 against the offered rate.
    rates = res["params"]["sweep"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for p in planes:
        ys = [agg.med(p, lambda r, k=str(x): r["sweep"][k]["latency_us"]["p99"]) for x in rates]
        pts = [(x, y / 1000) for x, y in zip(rates, ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=agg.names[p], color=COLORS.get(p))
    loglog(ax, rates, "offered rate, req/s (16 connections)", "p99 latency, ms (log)",
           "p99 against the rate")
    save(fig, "p99_vs_rate.png")

    # RSS against pods per node.
    sc = [s for s in res.get("scale", []) if "rss_kb" in s]
    if sc:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for p in planes:
            pts = sorted((s["pods"], max(s["rss_kb"].values()) / 1024) for s in sc
                         if s["plane"] == p)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=agg.names[p], color=COLORS.get(p))
        loglog(ax, sorted({s["pods"] for s in sc}), "pods per node",
               "summed RSS of the mesh processes per node, MB (log)",
               "Mesh memory against pods per node (idle)")
        save(fig, "rss_vs_pods.png")

    # Throughput: closed loop, churn, bulk.
    fig, axs = plt.subplots(1, 4, figsize=(13, 4))
    for ax, m, title in zip(axs, ["max.req_s", "churn.cps", "bulk1.gbps", "bulk8.gbps"],
                            ["closed loop, req/s", "new connections/s", "bulk 1 stream, Gb/s",
                             "bulk 8 streams, Gb/s"]):
        meds, errs = [], [[], []]
        for p in planes:
            med, (a, b) = err(p, m)
            meds.append(med)
            errs[0].append(a)
            errs[1].append(b)
        ax.bar(range(len(planes)), meds, yerr=errs, capsize=3,
               color=[COLORS.get(p) for p in planes])
        ax.set_xticks(range(len(planes)))
        ax.set_xticklabels([p for p in planes], fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle("Throughput (higher is better)")
    save(fig, "throughput.png")

    # CPU of the mesh processes.
    fig, ax = plt.subplots(figsize=(8, 4))
    mesh = [p for p in planes if p != "nomesh"]
    for i, (m, lab) in enumerate([("rr.cpu1k", "1,000 RPS open loop"),
                                  ("max.cpu1k", "closed loop"),
                                  ("churn.cpu1k", "churn (per 1,000 connections)")]):
        xs = [j + i * 0.27 for j in range(len(mesh))]
        ax.bar(xs, [agg.med(p, m) or 0 for p in mesh], 0.27, label=lab)
    ax.set_xticks([j + 0.27 for j in range(len(mesh))])
    ax.set_xticklabels([agg.names[p] for p in mesh], fontsize=8)
    ax.set_ylabel("CPU seconds of the mesh per 1,000 requests")
    ax.set_title("Mesh CPU per 1,000 requests (both nodes)")
    ax.legend(fontsize=8)
    save(fig, "cpu.png")
    return made


# --- the report --------------------------------------------------------------------------------
def render(res, made):
    agg = Agg(res)
    pr = res["params"]
    m = res["machine"]
    L = []
    L.append("# weft data-plane benchmark — %s (%s)\n" % (res["started"], res["profile"]))
    L.append("`bench/run.py%s`, %d repetition(s) with the data planes interleaved, %.0f s in all. "
             "Figures are medians%s; ratios divide medians of this run.\n" % (
                 " --quick" if res["profile"] == "quick" else "", pr["reps"],
                 res.get("duration_s", 0),
                 " with [min–max] over the repetitions" if pr["reps"] > 1 else
                 " of one repetition (--quick: indicative only)"))
    L.append("## Machine and versions\n")
    rows = [("CPU", "%s × %s" % (m["nproc"], m["cpu_model"])), ("memory", "%s GiB" % m["mem_gib"]),
            ("kernel", m["kernel"]), ("OS", m["os"])]
    rows += [(k, v or "—") for k, v in m["versions"].items()]
    L.append(table(["", ""], rows))
    L.append("## Set-up\n")
    L.append("Same topology for every data plane (`tests/cluster/cluster.sh`, 2 nodes): %s. "
             "App: %s. Each (repetition, data plane) block builds its own cluster from scratch "
             "and tears it down. Load: `build/bench/loadgen` in the client pod, HTTP/1.1, "
             "1 KB request and 1 KB response body; open-loop latency counts from the scheduled "
             "send (no coordinated omission), timer wake-up included equally for all planes.\n" %
             (res["setup"]["topology"], res["setup"]["app"]))
    L.append(table(["data plane", "what"], [
        ("no mesh", "`cluster.sh up --no-weft`: pod to pod over the CNI bridge and the node "
                    "underlay"),
        ("plain relay pair", "HAProxy (Debian) in TCP mode in each pod's netns, no TLS: the "
                             "app's outbound TCP is redirected to it (nftables, port 15001), it "
                             "connects to the original destination, where the server pod's "
                             "inbound rule redirects to its HAProxy (15006), which delivers to "
                             "127.0.0.1; %s" % res["setup"]["haproxy"]),
        ("weft node daemons", "`cluster.sh up --weftd`: weft-cni capture, one weftd per node, "
                              "HBONE over pooled TLS 1.3 mTLS tunnels"),
        ("weft per-pod sidecars", "`cluster.sh up --weftd-sidecar`: `weftd --mode sidecar` in "
                                  "every pod's netns, serving that pod alone (its own registry "
                                  "node, token and certificates; node IP = pod IP), the same "
                                  "weft-cni capture, HBONE between the two pods' sidecars over "
                                  "a pooled TLS 1.3 mTLS tunnel; mesh CPU and RSS sum every "
                                  "sidecar of a node. Not a §10 subject (those are weft node "
                                  "daemons)"),
        ("HAProxy mTLS sidecars", "the relay pair with TLS 1.3 mutual authentication between "
                                  "the two sidecars (a CA and a certificate per side)"),
    ] + [(n["name"], n["why"]) for n in res.get("not_measured", [])]))
    failed = [r for r in res["runs"] if not r.get("ok")]
    if failed:
        L.append("**Failed blocks** (left out of every figure):\n")
        for r in failed:
            L.append("- %s, repetition %d: `%s`" % (r["plane"], r["rep"] + 1,
                                                     r.get("error", "").splitlines()[-1][:300]))
        L.append("")

    L.append("## DESIGN §10 targets\n")
    L.append(table(["figure", "weft node daemons must reach", "measured", "verdict"],
                   targets(agg, res)))

    if made:
        L.append("## Charts\n")
        for f in made:
            L.append("![%s](%s)\n" % (f[:-4], f))

    L.append("## Latency at a fixed 1,000 RPS (16 connections, %d s)\n" % pr["rr_s"])
    mets = ["rr.p50", "rr.p90", "rr.p99", "rr.p999"]
    names = ("p50", "p90", "p99", "p99.9")
    rows = with_ratios(agg, mets, added=True)
    L.append(table(["data plane"] + ["%s µs" % x for x in names] +
                   ["added %s µs" % x for x in names], [r[:5] + r[13:] for r in rows]))
    L.append("Added = the data plane's figure minus no mesh's. As ratios:\n")
    L.append(table(["data plane"] + ["%s ÷ no mesh" % x for x in names] +
                   ["%s ÷ relay" % x for x in names], [r[:1] + r[5:13] for r in rows]))
    L.append("Achieved rate and errors: " + "; ".join(
        "%s %s req/s, %s errors" % (p, agg.cell(p, "rr.rate"), agg.cell(p, "rr.errors"))
        for p in agg.planes) + ".\n")

    L.append("## Rate sweep: p99 µs against the offered rate (16 connections, %d s each)\n" %
             pr["sweep_s"])
    srows, _ = sweep_rows(agg, pr["sweep"])
    L.append(table(["data plane"] + ["%d/s" % r for r in pr["sweep"]] + ["p99 holds up to"],
                   srows))
    L.append("✗ = broken: p99 above %.0f× the plane's p99 at the lowest rate, achieved rate "
             "below %.0f%% of the offered one (shown in brackets), or errors.\n" % (
                 BREAK_FACTOR, BREAK_RATE * 100))

    L.append("## Closed loop (16 connections, %d s)\n" % pr["max_s"])
    L.append(table(["data plane", "req/s", "p50 µs", "p99 µs", "req/s ÷ no mesh", "p50 ÷ no mesh",
                    "p99 ÷ no mesh", "req/s ÷ relay", "p50 ÷ relay", "p99 ÷ relay"],
                   with_ratios(agg, ["max.req_s", "max.p50", "max.p99"])))

    L.append("## Connection churn: a new connection per request (8 concurrent, %d s)\n" %
             pr["churn_s"])
    L.append(table(["data plane", "conn/s", "p50 µs", "p99 µs", "conn/s ÷ no mesh",
                    "p50 ÷ no mesh", "p99 ÷ no mesh", "conn/s ÷ relay", "p50 ÷ relay",
                    "p99 ÷ relay"], with_ratios(agg, ["churn.cps", "churn.p50", "churn.p99"])))

    L.append("## Bulk (iperf3, %d s)\n" % pr["iperf_s"])
    L.append(table(["data plane", "1 stream Gb/s", "8 streams Gb/s", "1 ÷ no mesh",
                    "8 ÷ no mesh", "1 ÷ relay", "8 ÷ relay"],
                   with_ratios(agg, ["bulk1.gbps", "bulk8.gbps"], fmt="%.2f")))

    L.append("## CPU of the mesh processes (weftd ×2, every weftd sidecar, or every HAProxy; "
             "utime+stime)\n")
    rows = []
    for p in agg.planes:
        if p == "nomesh":
            continue
        rows.append([agg.names[p], agg.cell(p, "rr.cpu1k", "%.3f"), agg.cell(p, "rr.vcpu", "%.3f"),
                     agg.cell(p, "max.cpu1k", "%.3f"), agg.cell(p, "churn.cpu1k", "%.3f"),
                     rfmt(ratio(agg.med(p, "rr.cpu1k"), agg.med("relay", "rr.cpu1k")))])
    L.append(table(["data plane", "CPU-s per 1,000 req at 1,000 RPS", "vCPU, busiest node",
                    "CPU-s per 1,000 req, closed loop", "CPU-s per 1,000 connections (churn)",
                    "1,000 RPS ÷ relay"], rows))
    L.append("No-mesh has no mesh processes (0). Closed-loop and churn figures are "
             "per request made over the whole run, warm-up included.\n")

    L.append("## Memory of the mesh processes (summed RSS)\n")
    rows = []
    for p in agg.planes:
        if p == "nomesh":
            continue
        rows.append([agg.names[p], agg.cell(p, "rss.idle_mb", "%.1f"),
                     agg.cell(p, "rss.rr_peak_mb", "%.1f"), agg.cell(p, "rss.per_conn_kb", "%.1f"),
                     rfmt(ratio(agg.med(p, "rss.idle_mb"), agg.med("relay", "rss.idle_mb")))])
    L.append(table(["data plane", "idle, busiest node, MB (2 pods/node)",
                    "peak at 1,000 RPS, both nodes, MB",
                    "per open connection, KB (%d conns)" % pr["conns"], "idle ÷ relay"], rows))
    sc = res.get("scale", [])
    if sc:
        pods = sorted({s["pods"] for s in sc})
        rows = []
        for p in agg.planes:
            if p == "nomesh":
                continue
            row = [agg.names[p]]
            for n in pods:
                s = [x for x in sc if x["plane"] == p and x["pods"] == n and "rss_kb" in x]
                if not s:
                    row.append("—")
                    continue
                pss = s[0].get("pss_kb")
                row.append("%.1f%s (%d proc)" % (
                    max(s[0]["rss_kb"].values()) / 1024,
                    " / PSS %.1f" % (max(pss.values()) / 1024) if pss else "", s[0]["procs"]))
            rows.append(row)
        L.append("Idle RSS per node (MB, the busier node; PSS splits shared library pages "
                 "between the processes that map them) against pods per node:\n")
        L.append(table(["data plane"] + ["%d pods/node" % n for n in pods], rows))
        ups = {}
        for s in sc:
            if "up_s" in s:
                ups.setdefault(s["pods"], []).append(s["up_s"])
        L.append("Cluster set-up time (cluster.sh up): " + ", ".join(
            "%d pods/node %.0f–%.0f s" % (n, min(v), max(v)) for n, v in sorted(ups.items())) +
            ".\n")
        errs = [s for s in sc if "error" in s]
        for s in errs:
            L.append("- scale %s pods (%s) failed: `%s`" % (s["pods"], s["plane"],
                                                            s["error"].splitlines()[-1][:300]))
        if pr["scale"] and max(pr["scale"]) < 100:
            L.append("100 pods per node not measured in this profile (--quick: 2 and 20).\n")
        elif any(s["plane"] == "wsc" for s in res["scale"]):
            L.append("weft per-pod sidecars are scaled to 20 pods per node only: 200 sidecar "
                     "weftds take about 3 minutes to start, more than the full run can spend; "
                     "their memory grows linearly with pods (one weftd each).\n")

    L.append("## First connection and tunnel set-up\n")
    rows = []
    for p in agg.planes:
        rows.append([agg.names[p], agg.cell(p, "probe.first_us"), agg.cell(p, "probe.p50_us"),
                     agg.cell(p, "handshake_first_ms", "%.2f") if p in WEFT_PLANES else "—",
                     agg.cell(p, "handshake_ms", "%.2f") if p in WEFT_PLANES else "—"])
    L.append(table(["data plane", "slowest of the first 10 connections µs (a fresh cluster)",
                    "their p50 µs", "first tunnel up, ms (weftd's log)",
                    "fastest of 4 tunnels, ms"], rows))
    L.append("A weft tunnel's handshake signs and verifies ECDSA P-256 through libcrypto "
             "(weftd's crypto device) and makes its X25519 key share in wolfSSL; the first one "
             "of a process also pays for code and data touched for the first time, and the "
             "first connection through a tunnel waits for it.\n")

    cc = res.get("crosscheck", {})
    L.append("## Cross-check: loadgen against wrk (no mesh, closed loop, 16 connections)\n")
    if "error" in cc:
        L.append("Failed: `%s`\n" % cc["error"].splitlines()[-1][:300])
    elif cc:
        lg, wk = cc["loadgen"], cc["wrk"]
        L.append(table(["tool", "req/s", "p50 µs", "p99 µs"], [
            ["loadgen max --http (%d-byte request)" % lg["req_bytes"], "%.0f" % lg["req_s"],
             "%.0f" % lg["p50_us"], "%.0f" % lg["p99_us"]],
            ["wrk -t1 -c16 --latency", "%.0f" % (wk["req_s"] or 0), "%.0f" % (wk["p50_us"] or 0),
             "%.0f" % (wk["p99_us"] or 0)]]))
        r = ratio(lg["req_s"], wk["req_s"])
        L.append("loadgen ÷ wrk: %s req/s. Same server (loadgen server mode, 1,024-byte "
                 "responses), same pods, one thread each, run one after the other. Closed-loop "
                 "req/s on %s vCPUs shared by client and server is bound by CPU, so the client "
                 "that spends less per request (io_uring, no per-request allocation) leaves more "
                 "to the server and shows a higher rate; the two agree on the order of magnitude "
                 "and latency shape, not to the percent. Every data plane is measured with the "
                 "same tool, so the ratios do not depend on it.\n" % (rfmt(r), res["machine"]["nproc"]))
    L.append("## Caveats\n")
    L.append("- Everything (client, server, both proxies or daemons, the kernel's veth and "
             "bridge work) shares the same %s vCPUs; the figures compare data planes with each "
             "other on this machine, not with dedicated hardware.\n"
             "- HAProxy runs one thread per sidecar (weftd is one thread per node, or per pod "
             "as a sidecar); HAProxy's "
             "TLS is OpenSSL 3, weft's is wolfSSL with AES-256-GCM through libsodium.\n"
             "- The weft-agent (control plane) is not counted in the mesh CPU or RSS.\n" %
             m["nproc"])
    return "\n".join(L)


def write(outdir, res, charts=True):
    made = []
    if charts:
        try:
            made = draw_charts(outdir, Agg(res), res)
        except ImportError as e:
            sys.stderr.write("report: no charts (%s); install python3-matplotlib\n" % e)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(render(res, made))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: report.py RESULTS.json [--no-charts]")
    path = os.path.abspath(sys.argv[1])
    with open(path) as f:
        data = json.load(f)
    write(os.path.dirname(path), data, charts="--no-charts" not in sys.argv[1:])
    print(os.path.join(os.path.dirname(path), "report.md"))
