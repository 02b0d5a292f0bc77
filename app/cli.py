"""`mmsearch` command line: one subcommand per job in DESIGN's table.

Commands that later issues bring exist already with their help, say which issue brings
them, and exit 2, so scripts can rely on the names today.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmsearch.app.commands import backfill as backfill_commands
from mmsearch.app.commands import index as index_commands
from mmsearch.app.commands import ingest as ingest_commands
from mmsearch.app.commands import serve as serve_commands
from mmsearch.app.commands import train as train_commands
from mmsearch.app.config import (
    MODELS_SEARCH_ORDER,
    Config,
    MilvusConfig,
    ModelsConfig,
    load_config,
    project_path,
)
from mmsearch.app.exits import EXIT_HELP, exit_code_for
from mmsearch.app.logs import setup_logging
from mmsearch.encoders.errors import UsageError, check_at_least

log = logging.getLogger("mmsearch")
# every command handler: (parsed flags, validated config) -> exit code
Handler = Callable[[argparse.Namespace, Config], int]
DATA_DIR = project_path("data/emoji")
NPM_CACHE = Path(".cache/npm")

def _config(args: argparse.Namespace) -> Config:
    overrides: dict = {}
    if getattr(args, "uri", None):
        overrides.setdefault("milvus", {})["uri"] = args.uri
    for flag in ("token_file", "db_name", "tls_ca", "tls_cert", "tls_key"):
        if getattr(args, flag, None):
            overrides.setdefault("milvus", {})[flag] = getattr(args, flag)
    if getattr(args, "runtime", None):
        overrides.setdefault("models", {})["runtime"] = args.runtime
    if getattr(args, "models_dir", None):
        overrides.setdefault("models", {})["dir"] = args.models_dir
    if getattr(args, "model", None):
        overrides.setdefault("models", {})["model"] = args.model
    return load_config(getattr(args, "config", None), overrides=overrides)


def cmd_bench(args: argparse.Namespace, config: Config) -> int:
    name = "report" if args.which == "all" else args.which.replace("-", "_")
    script = Path("benchmarks") / f"{name}.py"
    if not script.is_file():
        raise UsageError("bench", f"{script} not found: run `mmsearch bench` from a source "
                         "checkout")
    # `python -m` from the checkout: benchmarks/ is not installed, the library is
    return subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args.rest],
                          check=False).returncode


def _common(parser: argparse.ArgumentParser, milvus: bool = False) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file (env MMSEARCH_* overrides)")
    parser.add_argument("--models-dir", help=f"models folder (searched: {MODELS_SEARCH_ORDER})")
    parser.add_argument("--model", help="model name inside the models folder (default "
                        f"{ModelsConfig.model})")
    if milvus:
        parser.add_argument("--uri", help=f"Milvus URI (default {MilvusConfig.uri}, Milvus "
                            "Lite; a server: http://HOST:PORT)")
        parser.add_argument("--token-file", help="file holding the Milvus token "
                            "(or env MMSEARCH_MILVUS_TOKEN)")
        parser.add_argument("--db-name", help="Milvus database (server URIs only)")
        parser.add_argument("--tls-ca", help="CA certificate (PEM) for TLS to Milvus")
        parser.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
        parser.add_argument("--tls-key", help="client key (PEM) for mutual TLS")


def _train_manifests(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, nargs="+", help="train-split items",
                        default=[DATA_DIR / "google.jsonl", DATA_DIR / "twitter.jsonl"])


def _plugin_parsers(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="encode items into one Milvus collection per width",
                            description=EXIT_HELP)
    _common(ingest, milvus=True)
    source = ingest.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="JSONL or Parquet manifest, or a folder of images")
    source.add_argument("--watch", help="folder of manifests: process each new one once")
    ingest.add_argument("--base", help="base name: collections <base>_d<width> (default: config)")
    ingest.add_argument("--state-dir", help="checkpoints and dead-letter files "
                        "(default .mmsearch/state)")
    ingest.add_argument("--runtime", choices=("onnx", "tensorrt", "torch"),
                        help="encoder runtime (default: config, onnx)")
    ingest.add_argument("--batch-size", type=int, help="records per batch")
    ingest.add_argument("--shard", default="0/1", help="i/N: take records with sha1(id) %% N == i")
    ingest.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    ingest.add_argument("--metrics-address", default="127.0.0.1",
                        help="metrics bind address (0.0.0.0 inside a scraped container)")
    ingest.add_argument("--poll-seconds", type=float, default=2.0, help="--watch poll interval")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(func=ingest_commands.cmd_ingest)

    delete = sub.add_parser("delete", help="remove items from every width of a base "
                            "(checkpointed like ingest; an id not stored is counted)",
                            description=EXIT_HELP)
    _common(delete, milvus=True)
    delete.add_argument("--ids", required=True, help="file of ids, one per line, or - for stdin")
    delete.add_argument("--base", help="base name (default: config)")
    delete.add_argument("--state-dir", help="checkpoints and dead-letter files")
    delete.add_argument("--batch-size", type=int, help="ids per batch")
    delete.add_argument("--no-progress", action="store_true", help="no progress bar")
    delete.set_defaults(func=ingest_commands.cmd_delete)

    collections = sub.add_parser("collections", help="create / describe / drop the width "
                                 "collections of a base")
    collections.add_argument("action", choices=("create", "describe", "drop"))
    _common(collections, milvus=True)
    collections.add_argument("--base", help="base name (default: config)")
    collections.add_argument("--runtime", choices=("onnx", "tensorrt", "torch"))
    collections.add_argument("--yes", action="store_true", help="drop without asking")
    collections.set_defaults(func=ingest_commands.cmd_collections)

    lite = sub.add_parser("lite-server", help="run Milvus Lite's server mode so several "
                          "processes can share one store (then pass --uri http://HOST:PORT)")
    lite.add_argument("--data-dir", type=Path, default=Path("mmsearch.db"))
    lite.add_argument("--host", default="127.0.0.1")
    lite.add_argument("--port", type=int, default=19530)
    lite.set_defaults(func=ingest_commands.cmd_lite_server)
    backfill_commands.add_parser(sub, _common)


def _rerank_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gRPC search + rerank sidecar")
    _common(serve, milvus=True)
    serve.add_argument("--address", help="HOST:PORT to listen on (default 127.0.0.1:50051)")
    serve.add_argument("--processes", type=int, default=1,
                       help="worker processes sharing the port (each loads the models; "
                            "Milvus Lite needs `mmsearch lite-server` for more than one)")
    serve.set_defaults(func=serve_commands.cmd_serve)

    search = sub.add_parser("search", help="run a JSONL of queries through the search "
                            "pipeline (in-process, or through a running sidecar)")
    _common(search, milvus=True)
    search.add_argument("--base", help="base name (default: config)")
    search.add_argument("--queries", required=True, help='JSONL: {"qid", "image"?, "text"?, '
                        '"id"?, "filter"?} (image paths relative to the file)')
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--output", required=True, help="JSONL of results, one line per query")
    search.add_argument("--server", help="HOST:PORT of a running sidecar (default: in-process)")
    search.add_argument("--no-rerank", action="store_true", help="skip the listwise scorer")
    search.add_argument("--no-refine", action="store_true", help="skip full-width refinement")
    search.add_argument("--coarse-width", type=int, help="width of the ANN stage")
    search.add_argument("--candidates", type=int, help="ANN candidates to refine/rerank")
    search.set_defaults(func=serve_commands.cmd_search)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.app.demo import run_demo

    check_at_least({"--by-id-sample": (args.by_id_sample, 1)})
    result = run_demo(args.data_dir, args.work_dir, args.identities, args.top_k, args.config,
                      args.by_id_sample)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _index_parsers(sub: Any) -> None:
    index = sub.add_parser("index", help="DBA tools: show / bench / recommend / rebuild / "
                           "rollback / funnel over the width collections of a base")
    actions = index.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, handler: Handler, text: str, width: bool = False
               ) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text)
        _common(parser, milvus=True)
        parser.add_argument("--base", help="base name (default: config)")
        if width:
            parser.add_argument("--width", type=int, required=True, help="one width")
        parser.set_defaults(func=handler)
        return parser

    show = action("show", index_commands.cmd_index_show,
                     "index, params, entities, size estimate and alias of every width")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench = action("bench", index_commands.cmd_index_bench,
                     "sweep index configs on a copy of one width collection", True)
    bench.add_argument("--configs", type=Path, help="YAML/JSON list of {index_type, params, "
                       "search: [...]} (default: FLAT, HNSW, IVF_*, SCANN sized to the data)")
    bench.add_argument("--queries", type=int, default=200, help="stored vectors sampled as "
                       "queries")
    bench.add_argument("--query-file", type=Path, help=".npy of query vectors instead")
    bench.add_argument("--results", type=Path, default=Path("index-bench"),
                       help="folder for <alias>.json/.md/.png")
    recommend = action("recommend", index_commands.cmd_index_recommend,
                     "pick the cheapest swept config per width for a target")
    recommend.add_argument("--target", type=float, default=0.95, help="recall to reach")
    recommend.add_argument("--k", type=int, choices=(10, 100), help="recall@k (default: "
                           "100 for coarse widths, which the funnel refines; 10 for the full)")
    recommend.add_argument("--results", type=Path, default=Path("index-bench"))
    rebuild = action("rebuild", index_commands.cmd_index_rebuild,
                     "build a new version with another index, catch up, verify, "
                     "move the alias", True)
    rebuild.add_argument("--index-config", required=True, help='JSON or YAML mapping, e.g. '
                         '\'{"index_type": "IVF_FLAT", "params": {"nlist": 1024}, '
                         '"search_params": {"nprobe": 16}}\'')
    rebuild.add_argument("--min-recall", type=float, default=0.9,
                         help="recall@10 floor of the sampled check before the swap")
    rebuild.add_argument("--drop-old", action="store_true",
                         help="drop the older versions after the swap (no rollback then)")
    rollback = action("rollback", index_commands.cmd_index_rollback,
                     "move the alias back to an older kept version", True)
    rollback.add_argument("--to-version", type=int, help="default: the newest older version")
    funnel = action("funnel", index_commands.cmd_index_funnel,
                     "end-to-end recall@10 per coarse width x candidates x refine")
    funnel.add_argument("--queries", type=int, default=200)
    funnel.add_argument("--candidates", default="50,100,200,400",
                        help="comma-separated candidate counts")
    funnel.add_argument("--target", type=float, default=0.95)
    funnel.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsearch", description=(
        "Multimodal (image + text) search for Milvus: Matryoshka-width ingestion and a "
        "gRPC rerank sidecar."), epilog=EXIT_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one object per line (ts, level, logger, message)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="fetch and prepare evaluation data (npm, Debian)")
    data.add_argument("dataset", choices=("emoji", "styles", "openmoji", "fashion-mnist"),
                      help="styles: the extra emoji styles for training (several npm "
                      "packages, JoyPixels alone 133 MB; see README's data section)")
    data.add_argument("--out", type=Path, default=DATA_DIR,
                      help="output folder (default %(default)s)")
    data.add_argument("--cache", type=Path, default=NPM_CACHE, help="npm tarball cache")
    data.add_argument("--limit", type=int, help="fashion-mnist: images per split")
    data.add_argument("--style", action="append", help="styles: only these (repeatable)")
    data.set_defaults(func=train_commands.cmd_data)

    train = sub.add_parser("train", help="fit / train models (the `train` extra)")
    train_sub = train.add_subparsers(dest="what", required=True, metavar="WHAT")
    baseline = train_sub.add_parser("baseline", help="fit the untrained PCA baseline heads")
    _common(baseline)
    _train_manifests(baseline)
    baseline.add_argument("--out", type=Path, help="model folder (default models/<model>)")
    baseline.add_argument("--image-tower", type=Path, help="a local Hugging Face vision "
                          "folder (CLIP, SigLIP, any transformers vision model) instead of "
                          "the offline MobileNetV2")
    baseline.add_argument("--text-tower", type=Path, help="a local text folder: a CLIP/SigLIP "
                          "folder (its text half) or a sentence encoder (default MiniLM, or "
                          "--image-tower's own text half when it is CLIP/SigLIP)")
    baseline.add_argument("--local-dim", type=int, default=64,
                          help="dims of each local feature row (at most the tower's width)")
    baseline.set_defaults(func=train_commands.cmd_train_baseline)
    encoder = train_sub.add_parser("encoder", help="train the embedder: prototype ID "
                                   "recognition + image/image and image/text InfoNCE at every "
                                   "width, on cached frozen features (train identities)")
    _common(encoder)
    _train_manifests(encoder)
    encoder.add_argument("--name", default="emoji-v1", help="model folder name under models/")
    encoder.add_argument("--out", type=Path, help="model folder (default models/<name>)")
    encoder.add_argument("--cache", type=Path, default=Path(".cache/features"),
                         help="where cached trunk features live (reused across runs)")
    encoder.add_argument("--epochs", type=int, default=30)
    encoder.add_argument("--views", type=int, default=3,
                         help="views per image: 1 clean + (views-1) augmented")
    encoder.add_argument("--tune-blocks", type=int, default=2,
                         help="last image-tower stages to fine-tune (0 = frozen tower)")
    encoder.add_argument("--batch-identities", type=int, default=128)
    encoder.add_argument("--instances", type=int, default=2,
                         help="items of each identity per batch (its drawings in several "
                         "styles); image/image InfoNCE runs between every pair of them")
    encoder.add_argument("--augment", choices=("drawing", "query-noise"), default="drawing",
                         help="augmented views: drawing changes only (emoji-v1), or with "
                         "query noise (rotation, clutter, occlusion, JPEG)")
    encoder.add_argument("--name-share", type=float, default=0.0,
                         help="share of items whose text side in training is their name "
                         "alone (the caption before its keywords), as users type it; 0-1")
    encoder.add_argument("--validation-percent", type=int, default=15,
                         help="train identities (hash rule) kept out of training to choose "
                         "the caption weight and report validation recall on; 0 = train on "
                         "every identity (small catalogues)")
    encoder.add_argument("--seed", type=int, default=0)
    encoder.add_argument("--colour", action=argparse.BooleanOptionalAction, default=True,
                         help="add the colour cell to the local features (encoders.colour)")
    encoder.set_defaults(func=train_commands.cmd_train_encoder)
    colour = train_sub.add_parser("colour", help="fit (or refit) the colour cell of a trained "
                                  "model folder without retraining the rest")
    _common(colour)
    _train_manifests(colour)
    colour.add_argument("--model-dir", type=Path, help="model folder (default models/<model>)")
    colour.set_defaults(func=train_commands.cmd_train_colour)
    reranker = train_sub.add_parser("reranker", help="train the listwise scorer on candidates "
                                    "mined with the embedder (train identities)")
    _common(reranker)
    reranker.add_argument("--data", type=Path, default=DATA_DIR)
    reranker.add_argument("--cache", type=Path, default=Path(".cache/features"))
    reranker.add_argument("--out", type=Path, default=Path("models/scorer"))
    reranker.add_argument("--epochs", type=int, default=2)
    reranker.add_argument("--pg-epochs", type=int, default=1, help="policy-gradient epochs")
    reranker.add_argument("--candidates", type=int, default=64, help="list length per query")
    reranker.add_argument("--chunk-size", type=int, default=16)
    reranker.add_argument("--fused-lists", action=argparse.BooleanOptionalAction, default=True,
                          help="also train on lists of fused (image + caption) items queried "
                          "by stored id in a gallery of both vendors, self excluded")
    reranker.add_argument("--query-views", type=int, default=0,
                          help="augmented views of each train query (harder lists) besides "
                          "the clean one")
    reranker.add_argument("--held-out", type=Path, nargs="+",
                          help="style manifests the embedder trained on: its validation-fold "
                          "identities (never trained on) add cross-fitted lists, half to "
                          "train on and half for the rerank-vs-refine check in scorer.json")
    reranker.add_argument("--vector-tokens", action=argparse.BooleanOptionalAction,
                          default=True, help="feed the elementwise query/candidate "
                          "comparisons to the scorer (they read the embedder's coordinates); "
                          "--no-vector-tokens keeps only the scalar and local evidence")
    reranker.add_argument("--cross-fit", nargs="+", metavar="EXPORT_DIR=STYLE.jsonl[,...]",
                          help="an exported embedder that never trained on these --held-out "
                          "styles: their drawings query the other styles' through it, for "
                          "training lists and a check (benchmarks.family_holdout "
                          "--save-models writes such embedders)")
    reranker.add_argument("--seed", type=int, default=0)
    reranker.set_defaults(func=train_commands.cmd_train_reranker)

    export = sub.add_parser("export", help="export ONNX models (+ TensorRT engines) + manifest")
    _common(export)
    export.add_argument("--model-dir", type=Path, help="model folder (model.json + heads)")
    export.add_argument("--out", type=Path, help="output folder (default models/export/<model>)")
    export.add_argument("--tensorrt", action="store_true", help="also build fp16 TensorRT engines")
    export.add_argument("--no-int8", action="store_true",
                        help="skip the int8 models (image: static, text: dynamic quantisation)")
    export.add_argument("--int8-calibration", type=Path, nargs="+", default=[
        DATA_DIR / "google.jsonl", DATA_DIR / "twitter.jsonl"],
        help="manifests whose train-split images calibrate the int8 image model")
    export.add_argument("--calibration-images", type=int, default=64)
    export.add_argument("--max-batch", type=int, default=32, help="TensorRT profile max batch")
    export.set_defaults(func=train_commands.cmd_export)

    _plugin_parsers(sub)
    _rerank_parsers(sub)
    _index_parsers(sub)
    demo = sub.add_parser("demo", help="Milvus Lite + ingest + gRPC sidecar + real queries "
                          "on the emoji data, then stop (what `make demo` runs)")
    demo.add_argument("--config", type=Path, help="YAML config for ingest and serve")
    demo.add_argument("--data-dir", type=Path, default=DATA_DIR)
    demo.add_argument("--work-dir", type=Path, default=Path(".demo"),
                      help="Milvus Lite store, ingest state, logs, contact sheet")
    demo.add_argument("--identities", type=int, help="only the first N identities (both "
                      "vendors; default all)")
    demo.add_argument("--top-k", type=int, default=5)
    demo.add_argument("--by-id-sample", type=int, default=300,
                      help="google items queried by id for the twin rate (an even sample; "
                      "each costs two gRPC searches)")
    demo.add_argument("--json", type=Path, help="also write the hits as JSON here")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="run a benchmark script from benchmarks/ (`all`: "
                           "every benchmark, then the one-page benchmarks/report/README.md)")
    bench.add_argument("which", choices=("all", "baseline-quality", "embedder-quality",
                                         "encoder-speed", "ingest-speed",
                                         "index-defaults", "rerank-quality",
                                         "sidecar-latency", "funnel"))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        return int(args.func(args, _config(args)))
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        print(f"mmsearch: error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
