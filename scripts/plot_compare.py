"""Charts from the comparison CSVs (see scripts/plot-compare)."""

import csv
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIZE_KEY = re.compile(r"_(64|4k|64k|1m|16m|256m)(?=_|$)")
SIZE_LABEL = re.compile(r"\d+ (B|KiB|MiB)(, )?")


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def caption(rows, path):
    """Source line: the file and the date of the run, if the notes carry it."""
    return f"source: {path} ({len(rows)} rows)"


def latency_chart(rows, out, src):
    rows = [r for r in rows if r["kind"] == "latency" and r["key"] != "am_shm_kill"]
    rows.sort(key=lambda r: float(r["median_ns"]))
    labels = [r["label"] for r in rows]
    med = [float(r["median_ns"]) / 1e3 for r in rows]
    p99 = [float(r["p99_or_slowest_ns"]) / 1e3 for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(y, med, color="#4878a8", label="median")
    ax.scatter(p99, y, color="#c0392b", marker="|", s=120, label="p99", zorder=3)
    for i, (m, p) in enumerate(zip(med, p99)):
        ax.text(max(m, p) * 1.12, i, f"{m:.2f} µs", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("round trip, µs (log scale)")
    ax.set_title("Latency by case: two pinned processes, 64 B unless stated")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.text(0.01, 0.005, src, fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def throughput_chart(rows, out, src):
    series = {}
    for r in rows:
        # One-way rates only: streams and round trips have their own sections.
        if r["kind"] != "rate" or r["key"].startswith(("stream_", "am_shm_rt_")):
            continue
        key = SIZE_KEY.sub("", r["key"])
        name = SIZE_LABEL.sub("", r["label"], count=1)
        name = name.replace(", )", ")").replace("()", "").replace("  ", " ").strip()
        series.setdefault(key, (name, []))[1].append((int(r["size_bytes"]), float(r["gb_per_s"])))
    fig, ax = plt.subplots(figsize=(14, 6.5))
    # More series than the default cycle's ten colours: one colour each.
    colours = plt.get_cmap("tab20").colors
    for i, (key, (name, pts)) in enumerate(sorted(series.items())):
        pts.sort()
        style = "--" if key.startswith(("memcpy", "zmq")) else "-"
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, style, marker="o", color=colours[i % len(colours)], label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({p[0] for _, pts in series.values() for p in pts})
    ax.set_xticks(sizes, [f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB" if s >= 1024 else f"{s} B" for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel("GB/s (log scale; median batch)")
    ax.set_title("One-way throughput by size (two pinned processes; memcpy in process)")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.text(0.01, 0.005, src, fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def peers_chart(rows, out, src):
    by = {}
    for r in rows:
        if r["kind"] == "latency":
            by.setdefault(r["label"], []).append(float(r["median_ns"]) / 1e3)
    items = sorted(by.items(), key=lambda kv: statistics.median(kv[1]))
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(items) + 1.6))
    for i, (label, vals) in enumerate(items):
        m = statistics.median(vals)
        ax.barh(i, m, color="#4878a8")
        ax.scatter(vals, [i] * len(vals), color="black", s=10, zorder=3)
        ax.text(m * 1.04, i - 0.3, f"{m:.2f} µs", fontsize=8)
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("round trip, µs (log scale): bar = median of the round medians, dots = each round")
    ax.set_title("Peers in the same run: 64 B round trips, busy-polling, pinned")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.text(0.01, 0.005, src, fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    compare, peers, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    if os.path.exists(compare):
        rows = read(compare)
        latency_chart(rows, os.path.join(outdir, "compare-latency.png"), caption(rows, compare))
        throughput_chart(rows, os.path.join(outdir, "compare-throughput.png"), caption(rows, compare))
        print(f"charts from {compare} written to {outdir}/compare-*.png")
    else:
        sys.exit(f"{compare} not found: run `cargo bench --bench compare` first")
    if os.path.exists(peers):
        rows = read(peers)
        peers_chart(rows, os.path.join(outdir, "peers-latency.png"), caption(rows, peers))
        print(f"chart from {peers} written to {outdir}/peers-latency.png")


if __name__ == "__main__":
    main()
