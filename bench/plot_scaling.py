"""Draw the scaling section's plot: time per query against the floor per query.

Reads the raw numbers bench/run.py wrote (.cache/bench/scaling.json) and writes a PNG
(docs/scaling.png): one colour per table, query count on x, seconds per query on y (both
logarithmic); solid line with dots = embinspect (median), dashed = the floor measured in
the same run. Usage: plot_scaling.py SCALING_JSON OUT_PNG
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the bench runs headless
import matplotlib.pyplot as plt  # noqa: E402


def median(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[len(ordered) // 2]


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    raw = json.loads(Path(source).read_text())
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for i, table in enumerate(raw["tables"]):
        points = [p for p in table["points"] if "times" in p]
        if not points:
            continue
        colour = f"C{i}"
        n = [p["queries"] for p in points]
        ax.plot(
            n,
            [median(p["times"]) / p["queries"] for p in points],
            "o-",
            color=colour,
            label=f"{table['table']}: embinspect",
        )
        ax.plot(
            n,
            [p["floor_s"] / p["queries"] for p in points],
            "--",
            color=colour,
            alpha=0.7,
            label=f"{table['table']}: floor",
        )
    floors = raw["floors"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("queries in one batch (warm process)")
    ax.set_ylabel("seconds per query")
    ax.set_title(
        "embinspect neighbors, k=10, dim 4096 bf16: time per query vs floor\n"
        f"floors: read {floors['read_bandwidth'] / 1e9:.1f} GB/s, "
        f"bf16 matmul {floors['matmul_bf16'] / 1e9:.0f} GFLOP/s, "
        f"{floors['threads']} threads",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(target)


if __name__ == "__main__":
    main()
