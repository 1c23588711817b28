#!/usr/bin/env python3
"""Draws DIR/report.png from DIR/report.json: the graceful handover and crash failover overhead of
every candidate, one dot per measurement, with the median marked."""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(folder: Path) -> None:
    report = json.loads((folder / "report.json").read_text())
    candidates = report["candidates"]
    names = sorted(candidates, key=lambda n: (n != "leadership", n))
    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = [
        ("handover_ms", "Graceful handover (SIGTERM to new leader), ms", True),
        ("crash_overhead_ms", "Crash failover above the lease length, ms", False),
    ]
    for axis, (key, title, log) in zip(axes, panels):
        for i, name in enumerate(names):
            samples = candidates[name]["samples"].get(key, [])
            if not samples:
                continue
            jitter = [i + (j % 7 - 3) * 0.04 for j in range(len(samples))]
            axis.scatter(jitter, samples, s=14, alpha=0.7, color="#1f77b4" if name == "leadership" else "#7f7f7f")
            median = sorted(samples)[len(samples) // 2]
            axis.hlines(median, i - 0.3, i + 0.3, color="#d62728", linewidth=2)
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=20, ha="right")
        axis.set_title(title)
        if log:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    quick = " (quick run: harness check only)" if report.get("quick") else ""
    figure.suptitle(f"Leader election, measured side by side on one control plane{quick}")
    figure.tight_layout()
    figure.savefig(folder / "report.png", dpi=110)
    print(f"wrote {folder / 'report.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-report"))
