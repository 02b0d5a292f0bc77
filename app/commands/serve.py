"""`mmsearch serve` and `mmsearch search`."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from mmsearch.app.config import Config
from mmsearch.app.exits import Exit
from mmsearch.encoders.errors import MmsearchError, UsageError
from mmsearch.rerank.errors import ValidationError, status_for
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import SearchParams, SearchQuery, SearchResult

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.app.serving import MAX_PROCESSES, run_server, serve_processes

    if not 1 <= args.processes <= MAX_PROCESSES:
        raise UsageError("--processes", f"must be in 1..{MAX_PROCESSES}, got {args.processes}")
    if args.processes == 1:
        return run_server(config, args.address)
    return serve_processes(config, args.address, args.processes,
                           (args.verbose, args.log_format))


def read_queries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MmsearchError(f"--queries {path}:{number}: not valid JSON "
                                    f"({exc.msg})") from None
            if not isinstance(data, dict) or "qid" not in data:
                raise MmsearchError(f"--queries {path}:{number}: a query line is an object "
                                    "with a 'qid'")
            out.append((number, data))
    return out


def _query(data: dict[str, Any], root: Path) -> SearchQuery:
    image = None
    if data.get("image"):
        try:
            image = (root / data["image"]).read_bytes()
        except OSError as exc:
            raise ValidationError(f"cannot read {root / data['image']}: {exc.strerror}",
                                  "image") from None
    return SearchQuery(image=image, text=data.get("text"), id=data.get("id"))


def result_line(qid: Any, result: SearchResult) -> dict[str, Any]:
    hits = [{"id": h.id, "score": h.score, "stages": {k: v for k, v in
             (("ann", h.ann), ("refine", h.refine), ("rerank", h.rerank)) if v is not None}}
            for h in result.hits]
    line = {"qid": qid, "hits": hits, "timings_ms": result.timings_ms}
    if result.degraded_reasons:
        line["degraded"] = result.degraded_reasons
    return line


def error_line(qid: Any, number: int, code: str, message: str) -> dict[str, Any]:
    """The same shape in-process and through a server: code as gRPC names it, the field
    the message starts with (the server's messages name it first), the message."""
    head, _, rest = message.partition(": ")
    field = head if rest and " " not in head else None
    return {"qid": qid, "line": number, "error": {"code": code, "field": field,
                                                   "message": message}}


BATCH = 64  # queries per SearchBatch call (the sidecar's default limits.max_batch)

# one query's outcome: its output line without qid, or (status code, message)
Outcome = dict[str, Any] | tuple[str, str]


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    """Queries go in batches (SearchBatch through --server, search_batch in-process): one
    encoder batch and one ANN call per group of compatible queries, each answered alone."""
    queries = read_queries(Path(args.queries))
    root = Path(args.queries).parent
    run_batch = _remote(args) if args.server else _local(config)
    lines: dict[int, dict[str, Any]] = {}
    failed: Counter[str] = Counter()
    first_failure = ""

    def record(number: int, qid: Any, outcome: Outcome) -> None:
        nonlocal first_failure
        if isinstance(outcome, tuple):
            code, message = outcome
            lines[number] = error_line(qid, number, code, message)
            failed[code] += 1
            first_failure = first_failure or f"line {number}: {code} {message}"
        else:
            lines[number] = {"qid": qid, **outcome}

    ready = []
    for number, data in queries:
        params = SearchParams(
            base=args.base or config.base, top_k=args.top_k, filter=data.get("filter", ""),
            coarse_width=args.coarse_width, candidates=args.candidates,
            refine=not args.no_refine, rerank=False if args.no_rerank else None,
            include_self=bool(data.get("include_self", False)))
        try:
            ready.append((number, data["qid"], _query(data, root), params))
        except Exception as exc:  # noqa: BLE001 - one bad query never stops the batch
            record(number, data["qid"], status_for(exc))
    for start in range(0, len(ready), BATCH):
        chunk = ready[start:start + BATCH]
        for (number, qid, _, _), outcome in zip(chunk, run_batch([(q, p) for _, _, q, p
                                                                  in chunk]), strict=True):
            record(number, qid, outcome)
    with open(args.output, "w", encoding="utf-8") as out:
        for number in sorted(lines):
            out.write(json.dumps(lines[number], ensure_ascii=False) + "\n")
    answered = len(queries) - sum(failed.values())
    summary = f"{answered} queries answered, {sum(failed.values())} failed"
    if failed:
        codes = ", ".join(f"{code} {n}" for code, n in failed.most_common())
        summary += f" ({codes}; first: {first_failure})"
    print(f"{summary} -> {args.output}")
    return Exit.BAD_INPUT if failed else Exit.OK


def _local(config: Config) -> Callable[[list[tuple[SearchQuery, SearchParams]]], list[Outcome]]:
    from mmsearch.app.wiring import build_pipeline

    pipeline: SearchPipeline = build_pipeline(config)

    def run(items: list[tuple[SearchQuery, SearchParams]]) -> list[Outcome]:
        return [status_for(o) if isinstance(o, Exception) else _result_fields(o)
                for o in pipeline.search_batch(items)]
    return run


def _result_fields(result: SearchResult) -> dict[str, Any]:
    line = result_line(None, result)
    del line["qid"]
    return line


def retrying_channel(address: str):  # noqa: ANN201 - grpc.Channel
    """A channel with the retry policy the README recommends to every client
    (mmsearch/v1/service_config.json: UNAVAILABLE and RESOURCE_EXHAUSTED, with backoff)."""
    import grpc

    policy = resources.files("mmsearch.v1").joinpath("service_config.json").read_text()
    return grpc.insecure_channel(address, options=[("grpc.enable_retries", 1),
                                                   ("grpc.service_config", policy)])


def _remote(args: argparse.Namespace
            ) -> Callable[[list[tuple[SearchQuery, SearchParams]]], list[Outcome]]:
    import grpc

    from mmsearch.rerank.convert import DEGRADED_NAMES
    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    stub = search_pb2_grpc.SearchServiceStub(retrying_channel(args.server))

    def request_of(query: SearchQuery, params: SearchParams) -> pb.SearchRequest:
        options = pb.SearchOptions(refine=params.refine, include_self=params.include_self)
        if params.rerank is not None:
            options.rerank = params.rerank
        if params.coarse_width:
            options.coarse_width = params.coarse_width
        if params.candidates:
            options.candidates = params.candidates
        fields = {"image": query.image, "text": query.text, "id": query.id}
        return pb.SearchRequest(base=params.base, top_k=params.top_k, filter=params.filter,
                                options=options, query=pb.Query(
                                    **{k: v for k, v in fields.items() if v is not None}))

    def line_of(reply: pb.SearchResponse, client_ms: float) -> dict[str, Any]:
        hits = [{"id": h.id, "score": h.score, "stages": {
            k: getattr(h.stages, k) for k in ("ann", "refine", "rerank") if h.stages.HasField(k)}}
            for h in reply.hits]
        line: dict[str, Any] = {"hits": hits, "timings_ms": {**reply.metadata.timings_ms,
                                                               "client_total": client_ms}}
        if reply.metadata.degraded:
            line["degraded"] = [DEGRADED_NAMES[r] for r in reply.metadata.degraded_reasons]
        return line

    def run(items: list[tuple[SearchQuery, SearchParams]]) -> list[Outcome]:
        started = time.perf_counter()
        try:
            reply = stub.SearchBatch(pb.SearchBatchRequest(
                requests=[request_of(q, p) for q, p in items]), timeout=60 + 2 * len(items))
        except grpc.RpcError as exc:  # the whole call failed: every query says why
            return [(exc.code().name, exc.details() or "")] * len(items)
        client_ms = (time.perf_counter() - started) * 1000
        return [(item.error.code, item.error.message) if item.HasField("error")
                else line_of(item.response, client_ms) for item in reply.items]
    return run
