#!/usr/bin/env python3
"""Draws DIR/report.png from DIR/report.json: per candidate (grouped: at defaults, at equal crash
failover), the graceful handover, the crash failover and its overhead past the lease, one dot per
measurement with the median marked, and the writes per leader per minute; per family, the load
generator's API requests per second, time until all applications led and the API server's heap per
unit, at each size; our operator's expiry lag at each lease count; our socket against a bare
responder; and our renewals under a flood, without and with the chart's flow-control objects."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OURS = "leadership"


def color(family: str) -> str:
    """Ours in blue (ours at another failover, `leadership (failover-Ns)`, lighter), peers grey."""
    if family == OURS:
        return "#1f77b4"
    return "#9ecae1" if family.startswith(OURS) else "#7f7f7f"


def heap_per_unit(entry: dict):
    during, before = entry.get("apiserver_heap_mib"), entry.get("apiserver_heap_idle_mib")
    if during is None or before is None or not entry.get("units"):
        return None
    return (during - before) * 1024 / entry["units"]


def main(folder: Path) -> None:
    report = json.loads((folder / "report.json").read_text())
    candidates = {n: c for n, c in report["candidates"].items() if c.get("samples")}
    names = sorted(candidates, key=lambda n: (candidates[n]["group"], candidates[n]["family"] != OURS, n))
    load = report.get("load", {})
    figure, axes = plt.subplots(4, 3, figsize=(22, 20))
    panels = [
        ("handover_ms", "Graceful handover (SIGTERM to new leader), ms", True),
        ("crash_failover_ms", "Crash failover (SIGKILL to new leader), ms", False),
        ("crash_overhead_ms", "Crash overhead: new leader after the lease ran out, ms", False),
    ]
    if not names:
        # A run without the election part (`--only`): its panels are left out.
        for axis in [*axes[0], axes[1][0]]:
            axis.set_axis_off()
    for axis, (key, title, log) in zip(axes[0], panels if names else []):
        for i, name in enumerate(names):
            samples = candidates[name]["samples"].get(key, [])
            if not samples:
                continue
            jitter = [i + (j % 7 - 3) * 0.04 for j in range(len(samples))]
            axis.scatter(jitter, samples, s=14, alpha=0.7, color=color(candidates[name]["family"]))
            median = sorted(samples)[len(samples) // 2]
            axis.hlines(median, i - 0.3, i + 0.3, color="#d62728", linewidth=2)
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title)
        if log:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    if names:
        writes = axes[1][0]
        values = [candidates[n].get("api_writes_per_leader_min") or 0 for n in names]
        writes.bar(range(len(names)), values, color=[color(candidates[n]["family"]) for n in names])
        for i, v in enumerate(values):
            writes.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
        writes.set_xticks(range(len(names)))
        writes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        writes.set_title("API writes per leader per minute (3 processes, one application)")
        writes.grid(axis="y", alpha=0.3)
    families = sorted({l["family"] for l in load.values() if l.get("family")},
                      key=lambda f: (not f.startswith(OURS), f != OURS, f))
    sizes = sorted({l["units"] for l in load.values() if l.get("family")})
    load_panels = [
        (axes[1][1], lambda l: l.get("requests_per_s"), "API requests per second", "{:.0f}/s", True),
        (axes[2][0], lambda l: l.get("all_leading_s"), "Time until every application led, s", "{:.0f} s", False),
        (axes[2][1], heap_per_unit, "API server heap growth per unit, KiB", "{:.0f}", False),
    ]
    for axis, value, title, label, log in load_panels:
        if not families or not sizes:
            axis.set_axis_off()
            continue
        width = 0.8 / len(families)
        for j, family in enumerate(families):
            for i, units in enumerate(sizes):
                entry = next((l for l in load.values() if l.get("family") == family and l["units"] == units), None)
                v = value(entry) if entry else None
                x = i + (j - (len(families) - 1) / 2) * width
                if v is None:
                    if entry:
                        axis.text(x, 0, "not\nmeasured", ha="center", va="bottom", fontsize=7, color=color(family))
                    continue
                axis.bar(x, v, width=width, color=color(family),
                         alpha=1.0 if family.startswith(OURS) else 0.4 + 0.2 * j,
                         label=family if i == 0 else None)
                axis.text(x, v, label.format(v), ha="center", va="bottom", fontsize=8)
        axis.set_xticks(range(len(sizes)))
        axis.set_xticklabels([f"{u:,} units" for u in sizes])
        axis.set_title(f"Load (defaults; ours also at a peer's failover): {title}", fontsize=10)
        if log:
            axis.set_yscale("log")
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    socket = axes[2][2]
    runs = (report.get("socket") or {}).get("runs", [])
    if runs:
        for offset, (who, shade) in zip((-0.2, 0.2), (("floor_us", "#7f7f7f"), ("ours_us", "#1f77b4"))):
            values = [r[who]["p99"] for r in runs]
            socket.bar([i + offset for i in range(len(runs))], values, width=0.4, color=shade,
                       label="bare responder" if who == "floor_us" else "our GET /v1/status")
            for i, v in enumerate(values):
                socket.text(i + offset, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
        socket.set_xticks(range(len(runs)))
        socket.set_xticklabels([f"{r['clients']} client(s), ratio {r['p99_ratio']:.2f}" for r in runs])
        socket.set_title("Socket latency p99, µs (same client, same bytes)")
        socket.legend()
        socket.grid(axis="y", alpha=0.3)
    else:
        socket.set_axis_off()
    expiry = axes[1][2]
    scale = report.get("ours", {}).get("operator_at_scale", {})
    counts = sorted((c for c in scale if scale[c].get("expiry_lag_ms")), key=int)
    if counts:
        for offset, (quantile, shade) in zip((-0.2, 0.2), (("p50", "#aec7e8"), ("p99", "#1f77b4"))):
            values = [scale[c]["expiry_lag_ms"][quantile] for c in counts]
            expiry.bar([i + offset for i in range(len(counts))], values, width=0.4, color=shade, label=quantile)
            for i, v in enumerate(values):
                expiry.text(i + offset, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
        expiry.set_xticks(range(len(counts)))
        expiry.set_xticklabels(
            [f"{int(c):,} leases, {scale[c].get('expiries_per_s') or 0:.0f} run out/s" for c in counts]
        )
        expiry.set_title("Our operator: expiry lag (due to cleared, seen by watch), ms")
        expiry.legend()
        expiry.grid(axis="y", alpha=0.3)
    else:
        expiry.set_axis_off()
    flood_panels(report.get("flood"), axes[3])
    quick = " (quick run: harness check only)" if report.get("quick") else ""
    figure.suptitle(f"Leader election, measured side by side on one control plane{quick}")
    figure.tight_layout()
    figure.savefig(folder / "report.png", dpi=100)
    print(f"wrote {folder / 'report.png'}")


def flood_panels(flood, axes) -> None:
    """Our units under a flood: what they did, how long renewals took, how full workload-low was;
    one group of bars per run (without, then with the chart's flow-control objects)."""
    runs = (flood or {}).get("runs", [])
    if not runs:
        for axis in axes:
            axis.set_axis_off()
        return
    names = ["chart's objects installed" if r["chart_objects"] else "no flow-control objects" for r in runs]
    shades = ["#1f77b4" if r["chart_objects"] else "#7f7f7f" for r in runs]
    panels = [
        (axes[0], [("renewals", lambda r: r["renewed"]), ("leaderships lost", lambda r: r["leaderships_lost"]),
                   ("new terms", lambda r: r["new_terms"])],
         f"Units under a flood for {flood['window_s']:.0f} s: renewals and spurious losses", "{:.0f}"),
        (axes[1], [("p50", lambda r: (r.get("renewal_ms") or {}).get("p50")),
                   ("p99", lambda r: (r.get("renewal_ms") or {}).get("p99"))],
         "Renewal latency under the flood, ms", "{:.0f}"),
        (axes[2], [("seats busy", lambda r: r["workload_low"]["seats_in_use_mean"]),
                   ("seat limit", lambda r: r["workload_low"]["seats_limit"]),
                   ("refused/s", lambda r: r["workload_low"]["rejected_per_s"])],
         "workload-low during the flood (mean of 1 s samples)", "{:.0f}"),
    ]
    for axis, figures, title, label in panels:
        width = 0.8 / len(runs)
        for j, (run, name, shade) in enumerate(zip(runs, names, shades)):
            for i, (_, value) in enumerate(figures):
                v = value(run)
                x = i + (j - (len(runs) - 1) / 2) * width
                if v is None:
                    axis.text(x, 0, "none", ha="center", va="bottom", fontsize=8, color=shade)
                    continue
                axis.bar(x, v, width=width, color=shade, label=name if i == 0 else None)
                axis.text(x, v, label.format(v), ha="center", va="bottom", fontsize=9)
        axis.set_xticks(range(len(figures)))
        axis.set_xticklabels([f for f, _ in figures])
        axis.set_title(title)
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-report"))
