"""Files written by `mmsearch index bench` (JSON, Markdown, PNG per width) and the pick
made by `mmsearch index recommend` from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmsearch.plugin.index.estimate import human


def bench_stem(results_dir: Path, alias: str) -> Path:
    return results_dir / alias


def write_bench(results_dir: Path, sweep: dict[str, Any], server: str) -> list[Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = bench_stem(results_dir, sweep["collection"])
    payload = {"server": server, **sweep}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    stem.with_suffix(".md").write_text(bench_markdown(payload))
    plot_bench(payload, stem.with_suffix(".png"))
    return [stem.with_suffix(s) for s in (".json", ".md", ".png")]


def bench_markdown(payload: dict[str, Any]) -> str:
    lines = [f"# Index sweep: {payload['collection']} on {payload['server']}", "",
             f"{payload['rows']:,} rows of dimension {payload['dim']}, {payload['queries']} "
             f"queries, exact top-{payload['k']} by brute force. Memory is an estimate "
             "(sizing formula); * marks the Pareto front (recall@10, recall@100, QPS).", "",
             "| config | search | recall@10 | recall@100 | QPS b1 | QPS b100 | p50 ms | p99 ms "
             "| build s | memory |", "|" + "---|" * 10]
    refused = []
    for config in payload["configs"]:
        if "refused" in config:
            refused.append(f"- {config['label']}: {config['refused']}")
            continue
        for p in config["points"]:
            search = ",".join(f"{k}={v}" for k, v in p["search"].items()) or "-"
            lines.append(f"| {'*' if p['pareto'] else ''}{config['label']} | {search} | "
                         f"{p['recall@10']:.3f} | {p['recall@100']:.3f} | {p['qps_batch1']:.1f} "
                         f"| {p['qps_batch100']:.1f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                         f"{config['build_s']:.1f} | {human(p['memory'])} |")
    if refused:
        lines += ["", "Refused by this server:", *refused]
    return "\n".join(lines) + "\n"


def plot_bench(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for config in payload["configs"]:
        points = config.get("points", [])
        if points:
            ax.plot([p["recall@100"] for p in points], [p["qps_batch1"] for p in points],
                    marker="o", label=config["label"], alpha=0.8)
    front = sorted((p for c in payload["configs"] for p in c.get("points", []) if p["pareto"]),
                   key=lambda p: p["recall@100"])
    if front:
        ax.plot([p["recall@100"] for p in front], [p["qps_batch1"] for p in front], "k--",
                lw=1, label="Pareto front")
    ax.set_xlabel(f"recall@{payload['k']}")
    ax.set_ylabel("QPS (batch 1)")
    ax.set_yscale("log")
    ax.set_title(f"{payload['collection']} ({payload['rows']:,} rows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_bench(results_dir: Path, alias: str) -> dict[str, Any]:
    path = bench_stem(results_dir, alias).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no sweep for {alias} in {results_dir}: run `mmsearch index "
                                f"bench --width ...` first")
    return json.loads(path.read_text())


def pick_cheapest(payload: dict[str, Any], k: int, target: float) -> dict[str, Any] | None:
    """The point meeting recall@k >= target with the highest batch-1 QPS (ties: less
    memory); None when no point meets it."""
    meeting = [p for c in payload["configs"] for p in c.get("points", [])
               if p[f"recall@{k}"] >= target]
    if not meeting:
        return None
    return max(meeting, key=lambda p: (round(p["qps_batch1"], 1), -p["memory"]))


def config_block(picks: dict[int, dict[str, Any]], metric: str) -> str:
    """The `index:` section of the mmsearch config for the picked points."""
    lines = ["index:"]
    for width, point in sorted(picks.items()):
        lines += [f"  {width}:", f"    index_type: {point['index_type']}",
                  f"    metric_type: {metric}",
                  f"    params: {json.dumps(point['params'])}",
                  f"    search_params: {json.dumps(point['search'])}"]
    return "\n".join(lines)
