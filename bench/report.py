#!/usr/bin/env python3
"""bench/report.py — turns one run of bench/run.sh (a results/<time>/ directory) into the
markdown results table. Standard library only. Usage: report.py RESULTS_DIR > results.md

Overhead is AI Hub minus the baseline (the same load sent straight to the mock upstream in the
same run), percentile by percentile.
"""

import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def ms(seconds):
    return None if seconds is None else seconds * 1000.0


def fmt(v, digits=2):
    if v is None:
        return "—"
    return f"{v:.{digits}f}"


def fmt_delta(v, digits=2):
    if v is None:
        return "—"
    return f"{v:+.{digits}f}"


class Run:
    """One oha run and what run.sh measured around it."""

    def __init__(self, meta, raw_dir):
        self.meta = meta
        self.id = meta["id"]
        self.label = meta["label"]
        self.skipped = meta.get("skipped")
        self.oha = None
        if not self.skipped:
            self.oha = load(os.path.join(raw_dir, self.id + ".oha.json"))

    def pct(self, p, key="latencyPercentiles"):
        if not self.oha:
            return None
        return ms(self.oha.get(key, {}).get(p))

    @property
    def responses(self):
        return sum(self.oha["statusCodeDistribution"].values()) if self.oha else 0

    @property
    def ok(self):
        return self.oha["statusCodeDistribution"].get("200", 0) if self.oha else 0

    @property
    def errors(self):
        """Transport errors plus non-200 answers."""
        if not self.oha:
            return None
        return sum(self.oha["errorDistribution"].values()) + self.responses - self.ok

    @property
    def rps(self):
        """Responses per second of the configured duration. With `-w`, oha lets requests in
        flight at the deadline finish (so its own total runs a little longer) and sends
        nothing new, so this is the rate at which requests were actually sent."""
        if not self.oha:
            return None
        return self.responses / float(self.meta["duration"].rstrip("s"))

    @property
    def cpu_us_per_req(self):
        if not self.oha or not self.responses:
            return None
        return self.meta["cpu_ticks"] / self.meta["clk_tck"] * 1e6 / self.responses

    @property
    def pg_cpu_us_per_req(self):
        if not self.oha or not self.responses or self.meta.get("target") != "cluster":
            return None
        return self.meta["postgres_cpu_ticks"] / self.meta["clk_tck"] * 1e6 / self.responses

    def redis_per_req(self, field, scale=1):
        """Redis commands (or CPU µs, with `scale` 1e6) per response over a cluster run."""
        if not self.oha or not self.responses or field not in self.meta:
            return None
        return self.meta[field] * scale / self.responses

    @property
    def rss_mib(self):
        if not self.oha:
            return "—"
        return " + ".join(f"{kb / 1024:.0f}" for kb in self.meta["hwm_kb"])


def cpu_cell(run):
    """CPU per request of the process(es) behind the target: AI Hub's, or the mock's for the
    baseline (in parentheses: it is the upstream's own cost, not overhead)."""
    v = run.cpu_us_per_req
    if v is None:
        return "—"
    return f"({v:.0f} mock)" if run.meta["target"] == "baseline" else f"{v:.0f}"


def rss_cell(run):
    return f"({run.rss_mib} mock)" if run.meta["target"] == "baseline" else run.rss_mib


PCTS = ["p50", "p99", "p99.9"]


def saturated(run, queue_check=True):
    """Marks a fixed-rate run beyond what the target sustains on this machine: it could not
    keep the rate, or requests queued (median above 10 ms, against well under 1 ms when it
    keeps up). Queueing, not overhead, then dominates its latencies."""
    rate = run.meta.get("rate", "max")
    if not rate.isdigit() or run.rps is None:
        return ""
    if run.rps < 0.97 * int(rate):
        return " (saturated)"
    return " (queueing)" if queue_check and (run.pct("p50") or 0) > 10 else ""


def run_row(out, first_col, r, key="latencyPercentiles", with_rate=True):
    cells = [first_col, r.label]
    if with_rate:
        cells.append(fmt(r.rps, 0) + saturated(r, key == "latencyPercentiles"))
    cells += [fmt(r.pct(p, key)) for p in PCTS]
    cells += [str(r.errors), cpu_cell(r), rss_cell(r)]
    out.append("| " + " | ".join(cells) + " |")


def latency_rows(out, first_col, base, hub, key="latencyPercentiles", with_rate=True):
    for r in (base, hub):
        run_row(out, first_col, r, key, with_rate)
    cells = [first_col, "**overhead**"]
    if with_rate:
        cells.append("")
    for p in PCTS:
        a, b = hub.pct(p, key), base.pct(p, key)
        cells.append("**" + fmt_delta(None if a is None or b is None else a - b) + "**")
    cells += ["", "", ""]
    out.append("| " + " | ".join(cells) + " |")


def main():
    results = sys.argv[1]
    raw = os.path.join(results, "raw")
    info = load(os.path.join(results, "run.json"))
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw, "*.meta.json"))):
        r = Run(load(path), raw)
        runs[r.id] = r

    out = []
    w = out.append
    w(
        f"<!-- Results table of one bench/run.sh run ({info['stamp']}), written by "
        "bench/report.py. See docs/benchmarks.md for what each scenario measures. -->"
    )
    w("")
    w("## Results")
    w("")
    mode = "quick (smoke test: short runs, noisy figures)" if info["quick"] else "full"
    pin = (
        "pinned: oha and the mock on CPU 0, AI Hub on CPU 1"
        if info["pinned"]
        else "not pinned: oha, the mock and AI Hub share all CPUs"
    )
    w(f"Run `{info['stamp']}`, {mode}, {pin}; took {info['elapsed_s']} s.")
    w(
        f"Machine: {info['cores']} × {info['cpu']}"
        + (f" under {info['hypervisor']}" if info.get("hypervisor") else "")
        + f", {info['mem_gib']} GiB RAM, Linux "
        f"{info['kernel']}. {info['rustc']}; {info['oha']}; AI Hub commit `{info['commit']}`."
    )
    w("")
    w(
        "Latencies in ms, measured by oha. Fixed-rate runs are open loop with oha's latency "
        "correction (a late request counts from when it should have been sent). **overhead** = "
        "AI Hub − mock direct at the same load in the same run, per percentile. Errors = "
        "transport errors + non-200 answers. CPU = user + system CPU time of the AI Hub "
        "process(es) during the run ÷ responses, in µs (for the baseline: the mock's own, in "
        "parentheses). Peak RSS = VmHWM of each AI Hub process during the run, MiB."
    )
    w("")

    d = info["durations"]
    w(f"### A. Open loop, non-streaming chat ({d['rate']} per run, ≤ {info['open_conns']} connections)")
    w("")
    w("| Rate (req/s) | Target | Achieved req/s | p50 | p99 | p99.9 | Errors | CPU µs/req | Peak RSS MiB |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    rates = sorted(
        {int(r.meta["rate"]) for r in runs.values() if r.meta["section"] == "A"}
    )
    for rate in rates:
        base, hub = runs.get(f"a-{rate}-direct"), runs.get(f"a-{rate}-hub")
        if base and hub:
            latency_rows(out, str(rate), base, hub)
    w("")

    base, hub = runs.get("b-direct"), runs.get("b-hub")
    if base and hub:
        w(f"### B. Closed loop, {info['max_conns']} connections, as fast as possible ({d['max']})")
        w("")
        w("| Load | Target | Throughput req/s | p50 | p99 | p99.9 | Errors | CPU µs/req | Peak RSS MiB |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        latency_rows(out, "max", base, hub)
        floor = runs.get("b-forwarder")
        if floor:
            run_row(out, "max", floor)
        ratio = hub.rps / base.rps if base.rps else None
        w("")
        line = f"AI Hub's throughput is {fmt(ratio * 100 if ratio else None, 0)} % of the mock's alone"
        if floor and floor.rps and base.rps:
            line += (
                f"; the bare forwarder's (the floor of any proxy here) is "
                f"{fmt(floor.rps / base.rps * 100, 0)} %, and AI Hub reaches "
                f"{fmt(hub.rps / floor.rps * 100, 0)} % of the floor"
            )
        w(line + ".")
        w("")

    base, hub = runs.get("c-direct"), runs.get("c-hub")
    if base and hub:
        w(
            f"### C. Streaming: time to first byte at {info['stream_rate']} streams/s ({d['stream']}; "
            f"16 tokens, one chunk every {info['chunk_ms']} ms)"
        )
        w("")
        w("Time from sending the request to the first body bytes (the first SSE event).")
        w("")
        w("| Load | Target | Streams/s | TTFB p50 | TTFB p99 | TTFB p99.9 | Errors | CPU µs/stream | Peak RSS MiB |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        latency_rows(out, str(info["stream_rate"]), base, hub, key="firstBytePercentiles")
        w("")
        w(
            "Whole stream p50: mock direct "
            f"{fmt(base.pct('p50'))} ms, AI Hub {fmt(hub.pct('p50'))} ms."
        )
        w("")

    rate = info["check_rate"]
    w(f"### D. Checks ladder at {rate} req/s ({d['check']} per rung)")
    w("")
    w(
        "The ladder starts from the floor, a bare forwarder to the mock on AI Hub's CPU (not "
        "AI Hub: what any proxy costs here), then climbs through endpoints and keys that run "
        "more and more checks, on the same AI Hub instance: no checks (/healthz), key auth "
        "(/v1/models), the built-in provider (no upstream hop), then chat through the HTTP "
        "upstream with auth + metering, with limits added, and (row A) with limits and "
        "budgets: every check on."
    )
    w("")
    w("| Configuration | p50 | p99 | p99.9 | Errors | CPU µs/req | Peak RSS MiB |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    order = ["d-forwarder", "d-healthz", "d-models", "d-builtin", "d-none", "d-limits"]
    rows = []
    if runs.get(f"a-{rate}-direct"):
        rows.append(("mock direct, no gateway (baseline)", runs[f"a-{rate}-direct"]))
    for i in order:
        if i in runs:
            rows.append((runs[i].label, runs[i]))
    if runs.get(f"a-{rate}-hub"):
        rows.append(
            ("AI Hub chat — every check on: auth + metering + limits + budgets on key and org (row A)", runs[f"a-{rate}-hub"])
        )
    for r in sorted((r for r in runs.values() if r.meta["section"] == "D" and r.id not in order), key=lambda r: r.id):
        rows.append((r.label, r))
    for label, r in rows:
        if r.skipped:
            w(f"| {label} | {r.skipped} | | | | | |")
            continue
        w(
            f"| {label} | "
            + " | ".join(fmt(r.pct(p)) for p in PCTS)
            + f" | {r.errors} | {cpu_cell(r)} | {rss_cell(r)} |"
        )
    w("")

    cluster = sorted(
        (r for r in runs.values() if r.meta["section"] == "E"),
        # by rate; at the full run's rate, the one with leases off, then the one without limits
        # or budgets, right after it
        key=lambda r: (
            r.meta.get("rate") == "max",
            int(r.meta["rate"]) if r.meta.get("rate", "max").isdigit() else 0,
            {"redis": 1, "none": 2}.get(r.meta["id"].rsplit("-", 1)[-1], 0),
        ),
    )
    w("### E. Cluster: two AI Hub processes on PostgreSQL and Redis")
    w("")
    if cluster and cluster[0].skipped:
        w(f"Not measured: {cluster[0].skipped}.")
    elif cluster:
        split = os.path.join(raw, "e-split.json")
        if os.path.exists(split):
            counts = load(split)["requests_per_instance"]
            total = sum(counts) or 1
            w(
                "One oha process, with two `--connect-to` entries: each connection goes to one "
                "of the two instances at random. Requests served (whole phase): "
                + " / ".join(f"{c} ({c * 100 / total:.0f} %)" for c in counts)
                + ". The baseline is scenario A's mock-direct row at the same rate "
                "(same run). Every check is on, and each instance admits most requests from "
                "its leases of the shared limits and budgets (`limits.leases`, the default). "
                "The row \"leases off\" is the same key on the same two instances restarted "
                "with `limits.leases = false`: every request checked in Redis, one round trip "
                "on its path. The row \"auth + metering only\" uses a key of a second "
                "organization, one without limits or budgets, so no Redis call is on its "
                "request path: it shows what the shared limits and budgets cost at all."
            )
            w("")
        w("| Rate (req/s) | Target | Achieved req/s | p50 | p99 | p99.9 | Errors | CPU µs/req (both) | PostgreSQL CPU µs/req | Redis CPU µs/req | Redis commands/req | Peak RSS MiB (each) |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in cluster:
            rate = r.meta["rate"]
            base = runs.get(f"a-{rate}-direct") if rate != "max" else runs.get("b-direct")
            w(
                f"| {rate} | {r.label} | {fmt(r.rps, 0)}{saturated(r)} | "
                + " | ".join(fmt(r.pct(p)) for p in PCTS)
                + f" | {r.errors} | {cpu_cell(r)} | {fmt(r.pg_cpu_us_per_req, 0)}"
                + f" | {fmt(r.redis_per_req('redis_cpu_s', 1e6), 0)}"
                + f" | {fmt(r.redis_per_req('redis_commands'), 2)} | {r.rss_mib} |"
            )
            if base:
                w(
                    f"| {rate} | **overhead** vs mock direct | | "
                    + " | ".join(
                        "**" + fmt_delta(r.pct(p) - base.pct(p)) + "**" for p in PCTS
                    )
                    + " | | | | | | |"
                )
    w("")

    meters = [load(p) for p in sorted(glob.glob(os.path.join(raw, "*.metering.json")))]
    if meters:
        w("### Metering: usage loaded into the database")
        w("")
        w("After each setup's last run: chat requests AI Hub answered (warm-ups included) vs. "
          "usage records in the database, and how long after the load stopped the background "
          "loader had them all.")
        w("")
        w("| Setup | Chat requests answered | Usage records in DB | All loaded after |")
        w("|---|---:|---:|---:|")
        for m in meters:
            ok = m["usage_records"] >= m["expected"]
            w(
                f"| {m['label']} | {m['expected']} | {m['usage_records']}"
                + ("" if ok else " **(missing after 60 s)**")
                + f" | {m['catch_up_s']:.1f} s |"
            )
        w("")

    budgets = {
        os.path.basename(p).split(".")[0]: load(p)
        for p in sorted(glob.glob(os.path.join(raw, "*.budgets.json")))
    }
    if budgets:
        w("### Budgets: charged during the runs")
        w("")
        w("The model is priced (USD 0.15 / 0.60 per million tokens, as gpt-4o-mini), so every "
          "request through the every-check key reserved against the key's budget and the org's "
          "and settled its cost on both. Spend at the end of each setup (the run fails if a "
          "budget was not charged):")
        w("")
        w("| Setup | Budget | Spent (USD) | Still reserved (USD) |")
        w("|---|---|---:|---:|")
        names = {"b-single": "single node (SQLite)", "b-cluster": "cluster (PostgreSQL + Redis)",
                 "b-callgrind": "callgrind"}
        for setup, rows in budgets.items():
            for b in rows:
                w(f"| {names.get(setup, setup)} | {b['scope_type']}, {b['period']} "
                  f"| {b['spent']} | {b['reserved']} |")
        w("")

    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
