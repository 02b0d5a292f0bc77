"""`mmsearch bench all`: run the benchmarks, then write one page, benchmarks/report/README.md.

Runs (unless --reuse) embedder quality, encoder speed, ingest speed, rerank quality,
sidecar latency and the in-process funnel; the Milvus 2.3.5 funnel needs its own server
(`make bench-funnel-milvus`) and is read from its last results. Every section states the
machine and date its numbers were measured on (from each result's JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS, markdown_table

REPORT = Path(__file__).resolve().parent / "report"
RUN = ("embedder_quality", "encoder_speed", "ingest_speed", "rerank_quality",
       "sidecar_latency", "funnel", "min_score")
READ_ONLY = ("funnel_milvus", "decode_memory", "refine_paths_lite", "refine_paths_server",
             "sidecar_load_server", "sidecar_load_lite", "search_batch", "search_batch_server",
             "bulk_import", "backfill_ray", "sizing", "style_holdout", "noisy_queries",
             "input_size", "style_matrix", "validation_styles", "embedder_quality_v2",
             "rerank_quality_v2", "scorer_choices", "tune_blocks", "family_holdout")
# result pages included as they are, under one heading each (title, result names)
INCLUDED = (("Relevance threshold (min_score)", ("min_score",)),
            ("Throughput under 64 clients", ("sidecar_load_server", "sidecar_load_lite")),
            ("SearchBatch vs Search calls", ("search_batch_server", "search_batch")),
            ("First loads: bulk import and Ray", ("bulk_import", "backfill_ray")),
            ("Sizing at 100M items", ("sizing",)),
            ("Styles never trained on (issue 15)", ("style_matrix", "validation_styles",
                                                    "embedder_quality_v2",
                                                    "rerank_quality_v2", "family_holdout",
                                                    "style_holdout",
                                                    "scorer_choices", "tune_blocks",
                                                    "noisy_queries", "input_size")))


def included_section(title: str, names: tuple[str, ...]) -> str:
    """Each result's own Markdown (its first lines name the machine and the date), the
    headings moved one level down and the images pointed at benchmarks/results/."""
    parts = []
    for name in names:
        path = RESULTS / f"{name}.md"
        if path.is_file():
            text = path.read_text().replace("](", "](../results/").replace(
                "](../results/http", "](http")
            parts.append("\n".join("##" + line if line.startswith("#") else line
                                   for line in text.splitlines()))
    return f"## {title}\n\n" + "\n\n".join(parts) + "\n" if parts else ""


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def measured_on(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"*Measured on {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}.*"


METRICS = """## What the metrics mean

- **R@1 / R@10** (Recall@k): the share of queries whose true match is among the first k hits.
- **mAP@R**: mean average precision over the first R hits, R = the number of true matches
  (rewards putting all of them first, not just one).
- **nDCG@10**: ranking quality of the first 10 hits, 1.0 when the true matches lead, with
  less credit the lower they sit.
- **ECE** (expected calibration error): how far the scorer's P(relevant) is from the observed
  share of relevant candidates, averaged over 10 probability bins; 0 = perfectly calibrated.
- **items/s, QPS, p50/p99**: throughput, and the median / 99th-percentile latency.
"""


def quality_section(data: dict[str, Any]) -> str:
    rows = [r for r in data["results"] if "->" in r["task"] and not r["task"].startswith("name")]
    widths = sorted({r["width"] for r in rows if r["method"] == "trained"})
    table = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in ("raw", "pca", "trained", "int8"):
            by_width = {r["width"]: r["recall@1"] for r in rows
                        if r["task"] == task and r["method"] == method}
            full = max(by_width) if method == "raw" else None  # all 1280 raw dims
            table.append((task, method, *(by_width.get(w, "") for w in widths),
                          by_width[full] if full else ""))
    names = [r for r in data["results"] if r["task"].startswith("name")
             and r["method"] == "trained"]
    name_table = [(r["task"], r["width"], r["recall@1"], r["recall@10"]) for r in names]
    return ("## Embedder quality per width (image-only galleries, test identities)\n\n"
            + measured_on(data) + "\n\nRecall@1; `raw` and `pca` are the untrained "
            "baselines.\n\n" + markdown_table(("direction", "method", *map(str, widths),
                                                 "raw, all dims"), table)
            + "\n\nName (text-only) -> image, trained model:\n\n"
            + markdown_table(("task", "width", "R@1", "R@10"), name_table)
            + "\n\n![metric vs width](metric_vs_width.png)\n")


def rerank_section(data: dict[str, Any]) -> str:
    rows = [(r["direction"], r["stage"], r["recall@1"], r["recall@10"], r["map@r"],
             r["ndcg@10"], "" if r["ece"] is None else r["ece"]) for r in data["results"]]
    speed = [(size, v["p50_ms"], v["p99_ms"]) for size, v in data["speed"].items()]
    return ("## Quality per stage and rerank ablations\n\n" + measured_on(data) + "\n\n"
            + markdown_table(("direction", "stage", "R@1", "R@10", "mAP@R", "nDCG@10", "ECE"),
                             rows)
            + "\n\nScorer speed (ONNX Runtime CPU, all chunks in one batch):\n\n"
            + markdown_table(("candidates", "p50 ms", "p99 ms"), speed) + "\n")


def encoder_section(data: dict[str, Any]) -> str:
    rows = [(r["tower"], r["batch"], r["runtime"], round(r["items_per_s"]))
            for r in data["results"] if "items_per_s" in r]
    drift = data.get("int8_cosine", {})
    extra = "".join(f"\n- int8 vs fp32 {t}: cosine min {d['min']:.4f}, mean {d['mean']:.4f}"
                    for t, d in drift.items())
    return ("## Encoder speed per runtime\n\n" + measured_on(data) + "\n\n"
            + markdown_table(("tower", "batch", "runtime", "items/s"), rows) + "\n" + extra
            + "\n" + encoder_notes(data["results"]))


def encoder_notes(results: list[dict[str, Any]]) -> str:
    """A line for each number that looks wrong at first sight."""
    speed = {(r["tower"], r["batch"], r["runtime"]): r["items_per_s"] for r in results
             if "items_per_s" in r}
    notes = []
    for tower in ("image", "text"):
        fp32, int8 = (speed.get((tower, 1, f"onnxruntime {p}")) for p in ("fp32", "int8"))
        if fp32 and int8 and int8 < fp32:
            notes.append(f"- {tower} int8 is slower than fp32 at batch 1 ({int8:.0f} vs "
                         f"{fp32:.0f} items/s): the quantise/dequantise nodes around every "
                         "layer cost a fixed amount per call, which one item cannot amortise; "
                         "at batch 32 int8 is ahead.")
        one, many = speed.get((tower, 1, "torch fp32")), speed.get((tower, 32, "torch fp32"))
        if one and many and many < one:
            notes.append(f"- torch {tower} is slower per item at batch 32 than at batch 1 "
                         f"({many:.0f} vs {one:.0f} items/s). Measured, not profiled: the "
                         "likely cause is torch's eager CPU convolutions falling out of "
                         "cache at batch 32 on 2 cores (a 32x3x224x224 input is 19 MB); the "
                         "exported graphs scale with the batch, and serving uses them.")
    return ("\nWhy some numbers look odd:\n\n" + "\n".join(notes) + "\n") if notes else ""


def ingest_section(data: dict[str, Any]) -> str:
    e2e, enc = data["end_to_end"], data["encoder_only"]
    synthetic = data["synthetic_write_path"]
    rows = [("end to end (emoji, both vendors)", e2e["items"],
             round(e2e["items"] / e2e["seconds"])),
            ("encoder only", enc["items"], round(enc["items"] / enc["seconds"])),
            ("write path (synthetic vectors)", synthetic["items"],
             round(synthetic["items"] / synthetic["seconds"]))]
    return ("## Ingestion speed\n\n" + measured_on(data) + "\n\n"
            + markdown_table(("path", "items", "items/s"), rows)
            + f"\n\nEnd to end / encoder only = {data['ratio']:.2f}.\n")


def latency_section(data: dict[str, Any]) -> str:
    rows = [(kind, path, v["p50_ms"], v["p99_ms"]) for kind, paths in data["timings"].items()
            for path, v in paths.items()]
    load_ = data["load"]
    clients = (f"{load_['clients']} concurrent clients" if "clients" in load_ else
               "the run's concurrent clients (not recorded in this JSON; `make load-test` "
               "runs 64)")
    return ("## Search latency\n\n" + measured_on(data) + "\n\nOne client, per query kind "
            "(gRPC vs the in-process pipeline):\n\n"
            + markdown_table(("query", "path", "p50 ms", "p99 ms"), rows)
            + f"\n\nLoad, {clients}, in-flight cap above them: {load_['requests']} "
            f"requests, {load_['errors']} errors, "
            f"{load_['qps']:.1f} QPS, p50 {load_['p50_ms']:.0f} ms, p99 {load_['p99_ms']:.0f} "
            f"ms, RSS {load_['rss_start_mb']:.0f} -> {load_['rss_end_mb']:.0f} MB.\n\n"
            + shed_line(data.get("load_default_cap"))
            + "![latency histogram](latency_histogram.png)\n")


def shed_line(shed: dict[str, Any] | None) -> str:
    if not shed:
        return ""
    return (f"At the default in-flight cap (32): {shed['requests']} answered "
            f"({shed['qps']:.1f} QPS, p50 {shed['p50_ms']:.0f} ms, p99 {shed['p99_ms']:.0f} ms), "
            f"{shed['shed']} shed with RESOURCE_EXHAUSTED (reply p50 "
            f"{shed['shed_p50_ms'] or 0:.1f} ms), {shed['errors'] - shed['shed']} other "
            "errors.\n\n")


def funnel_section(faiss: dict[str, Any] | None, milvus: dict[str, Any] | None) -> str:
    parts = ["## Funnel d64 -> d512 vs direct d512\n"]
    for name, data in (("in-process faiss IVF_FLAT (index cost only)", faiss),
                       ("real Milvus 2.3.5 server", milvus)):
        if data is None:
            parts.append(f"\n{name}: not run.\n")
            continue
        best = {}
        for p in data["points"]:
            key = p["method"].split()[0]
            for target in (0.8, 0.9, 0.95):
                if p["recall@10"] >= target and p["qps"] > best.get((key, target), 0):
                    best[(key, target)] = p["qps"]
        rows = [(t, best.get(("direct", t), ""), best.get(("funnel", t), ""),
                 best[("funnel", t)] / best[("direct", t)]
                 if ("funnel", t) in best and ("direct", t) in best else "")
                for t in (0.8, 0.9, 0.95)]
        parts.append(f"\n**{name}** — " + measured_on(data) + "\n\n"
                     + markdown_table(("recall@10 >=", "direct QPS", "funnel QPS",
                                       "funnel / direct"), rows) + "\n")
    parts.append("\n![recall vs QPS](recall_vs_qps.png)\n")
    return "".join(parts)


def decode_section(data: dict[str, Any]) -> str:
    rows = [("unbounded" if r["budget_pixels"] >= 10**12 else
             f"{r['budget_pixels'] // 1_000_000} MP (default)", r["idle_rss_mb"],
             r["peak_rss_mb"]) for r in data["runs"]]
    return ("## Sidecar memory under large images\n\n" + measured_on(data) + "\n\n"
            f"{data['clients']} concurrent queries, each a 39 MP PNG of {data['png_bytes']} "
            "bytes (`make bench-decode-memory`):\n\n"
            + markdown_table(("decode budget", "idle RSS MB", "peak RSS MB"), rows) + "\n")


def refine_section(lite: dict[str, Any] | None, server: dict[str, Any] | None) -> str:
    rows = [(data["server"], where, f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
             f"{r['cpu_ms_per_request']:.0f}")
            for data in (lite, server) if data for where, r in data["runs"].items()]
    if not rows:
        return ""
    return ("## Where refine runs\n\nOne request at a time: ANN d64 for 200 candidates, then "
            "refine (sidecar: fetch the vectors; milvus: a search restricted to the ids) and "
            "the rerank head's fetch (`make bench-refine-milvus` for the server):\n\n"
            + markdown_table(("server", "refine in", "p50 ms", "p99 ms",
                              "sidecar CPU ms/request"), rows)
            + "\n\nOn Milvus Lite the CPU column includes Lite itself, which runs in the "
            "benchmark's process.\n")


def plots(quality: dict | None, faiss: dict | None, milvus: dict | None,
          latency: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if quality:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, task in enumerate(("google->twitter", "openmoji->google")):
            for method, style in (("raw", ":"), ("pca", "--"), ("trained", "-")):
                pts = sorted((r["width"], r["recall@1"]) for r in quality["results"]
                             if r["task"] == task and r["method"] == method
                             and r["width"] <= 512)
                ax.plot(*zip(*pts, strict=True), style, marker="o", color=f"C{i}",
                        label=f"{task} {method}")
        ax.set(xscale="log", xlabel="width", ylabel="Recall@1", title="Recall@1 vs width")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(REPORT / "metric_vs_width.png", dpi=110)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for data, label in ((faiss, "faiss"), (milvus, "Milvus 2.3.5")):
        for method, marker in (("direct", "s"), ("funnel", "o")):
            pts = sorted((p["recall@10"], p["qps"]) for p in (data or {}).get("points", [])
                         if p["method"].startswith(method))
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, linestyle="",
                        label=f"{label} {method}")
    ax.set(yscale="log", xlabel="recall@10", ylabel="QPS (log)", title="Recall vs QPS")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(REPORT / "recall_vs_qps.png", dpi=110)
    if latency and latency["load"].get("latencies_ms"):
        fig, ax = plt.subplots(figsize=(7, 4))
        load = latency["load"]
        ax.hist(load["latencies_ms"], bins=50)
        ax.axvline(load["p50_ms"], color="k", linestyle="--",
                   label=f"p50 {load['p50_ms']:.0f} ms")
        who = f"{load['clients']} clients" if "clients" in load else "load-test clients"
        ax.set(xlabel="ms", ylabel="requests",
               title=f"Search latency under {who} (gRPC, cap above them)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(REPORT / "latency_histogram.png", dpi=110)


def run_all(names: tuple[str, ...]) -> None:
    for name in names:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=True,
                       cwd=Path(__file__).resolve().parents[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reuse", action="store_true",
                        help="do not run anything: compose the page from the last results")
    parser.add_argument("--only", nargs="+", choices=RUN, help="run only these, reuse others")
    args = parser.parse_args()
    if not args.reuse:
        run_all(tuple(args.only or RUN))
    REPORT.mkdir(parents=True, exist_ok=True)
    data = {name: load(name) for name in (*RUN, *READ_ONLY)}
    sections = [
        quality_section(data["embedder_quality"]) if data["embedder_quality"] else "",
        rerank_section(data["rerank_quality"]) if data["rerank_quality"] else "",
        encoder_section(data["encoder_speed"]) if data["encoder_speed"] else "",
        ingest_section(data["ingest_speed"]) if data["ingest_speed"] else "",
        latency_section(data["sidecar_latency"]) if data["sidecar_latency"] else "",
        funnel_section(data["funnel"], data["funnel_milvus"]),
        decode_section(data["decode_memory"]) if data["decode_memory"] else "",
        refine_section(data["refine_paths_lite"], data["refine_paths_server"]),
        *(included_section(title, names) for title, names in INCLUDED),
    ]
    missing = [name for name, value in data.items() if value is None]
    page = ("# mmsearch benchmark report\n\nOne page over `benchmarks/results/` (each section "
            "links its source numbers' machine). Regenerate: `mmsearch bench all` (runs "
            "everything, ~1 h on 2 cores) or `mmsearch bench all --reuse`.\n\n"
            + (f"Not run yet: {', '.join(missing)}.\n\n" if missing else "")
            + METRICS + "\n" + "\n".join(s for s in sections if s))
    plots(data["embedder_quality"], data["funnel"], data["funnel_milvus"],
          data["sidecar_latency"])
    (REPORT / "README.md").write_text(page)
    print(f"report written to {REPORT / 'README.md'}")


if __name__ == "__main__":
    main()
