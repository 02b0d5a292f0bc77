"""`mmsearch demo`: the whole path on one machine, the way a user meets it.

Milvus Lite's server mode on 127.0.0.1 -> ingest both emoji vendors (every width) -> the
gRPC sidecar as its own process -> real queries through gRPC (image only, text only, by
stored id, with a category filter) -> a readable table and an HTML contact sheet -> stop
both processes cleanly. A second run resumes: the ingest checkpoint is finished, so only
the servers start again.
"""

from __future__ import annotations

import base64
import html
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.encoders.data.records import manifest_line, read_manifest
from mmsearch.encoders.errors import MmsearchError

BASE = "demo"
# the identities the demo queries; kept in every subset
GRINNING, CAT, DOG, RED_HEART, THUMBS_UP = "1F600", "1F431", "1F436", "2764-FE0F", "1F44D"
# with the look-alikes a name query must not confuse them with (purple heart, thumbs down)
KEPT = (GRINNING, CAT, DOG, RED_HEART, THUMBS_UP, "1F49C", "1F44E")


@dataclass
class DemoQuery:
    title: str
    request: dict[str, Any]  # fields of mmsearch.v1.SearchRequest's query + filter
    image_path: Path | None = None
    reply: Any = None
    hits: list[dict[str, Any]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subset_manifest(data_dir: Path, out: Path, identities: int | None) -> dict[str, Path]:
    """google + twitter items of the first `identities` labels present in both (all when
    None), always with the demo's own identities, written beside the data (manifests name
    images relative to themselves). Returns {id: image path} for the contact sheet."""
    vendors = {v: list(read_manifest(data_dir / f"{v}.jsonl")) for v in ("google", "twitter")}
    shared = sorted({str(r.label) for r in vendors["google"]}
                    & {str(r.label) for r in vendors["twitter"]})
    if identities is not None:
        shared = sorted({*shared[:identities], *KEPT} & set(shared))
    keep = set(shared)
    rows, images = [], {}
    for records in vendors.values():
        for record in records:
            if record.label in keep and record.image is not None:
                images[record.id] = data_dir / record.image
                rows.append(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(manifest_line(r) for r in rows)
    if not out.is_file() or out.read_text() != text:  # rewriting would restart the ingest
        out.write_text(text)
    return images


def item_names(manifest: Path) -> dict[str, str]:
    return {r.id: r.text or "" for r in read_manifest(manifest)}


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MmsearchError(f"{what} exited with code {proc.returncode} while starting")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise MmsearchError(f"{what} did not listen on 127.0.0.1:{port} in {timeout_s:.0f} s")


@contextmanager
def process(command: list[str], port: int, what: str, log_path: Path) -> Iterator[None]:
    """Start a server process, wait for its port, and stop it with SIGTERM (its clean
    shutdown path) when done."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(port, proc, what)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            how = ("stopped cleanly by SIGTERM" if proc.returncode in (0, -signal.SIGTERM)
                   else f"exited with code {proc.returncode}")
            print(f"{what}: {how} (log {log_path})")


def mmsearch_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch.app.cli", *argv]


def wait_serving(address: str, timeout_s: float = 120) -> None:
    from mmsearch.app.healthcheck import serving

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serving(address):
            return
        time.sleep(0.3)
    raise MmsearchError(f"the sidecar at {address} did not report SERVING in {timeout_s:.0f} s")


def demo_queries(images: dict[str, Path]) -> list[DemoQuery]:
    dog = images[f"google:{DOG}"]
    return [
        # google's drawing among twitter's only: the match is another vendor's drawing,
        # not the stored query image itself
        DemoQuery("image only: google's dog face, among twitter's drawings",
                  {"image": dog.read_bytes(), "filter": 'vendor == "twitter"'}, dog),
        DemoQuery("text only: 'red heart'", {"text": "red heart"}),
        DemoQuery("text only: 'thumbs up'", {"text": "thumbs up"}),
        DemoQuery(f"stored id google:{GRINNING} (self excluded)", {"id": f"google:{GRINNING}"},
                  images[f"google:{GRINNING}"]),
        DemoQuery("text 'cat' + filter category == \"Animals & Nature\"",
                  {"text": "cat", "filter": 'category == "Animals & Nature"'}),
    ]


def run_queries(address: str, queries: list[DemoQuery], top_k: int) -> None:
    import grpc

    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for query in queries:
            fields = {k: v for k, v in query.request.items() if k != "filter"}
            query.reply = stub.Search(pb.SearchRequest(
                base=BASE, top_k=top_k, query=pb.Query(**fields),
                filter=query.request.get("filter", "")), timeout=60)
            query.hits = [{"id": h.id, "label": h.label, "score": h.score,
                           "stages": {s: getattr(h.stages, s) for s in ("ann", "refine",
                                                                         "rerank")
                                      if h.stages.HasField(s)}}
                          for h in query.reply.hits]


def table(query: DemoQuery, names: dict[str, str]) -> str:
    lines = [f"\n== {query.title}",
             "rank  id                            name                ann     refine  rerank  "
             "score"]
    for rank, hit in enumerate(query.hits, start=1):
        stages = [f"{hit['stages'][s]:.3f}" if s in hit["stages"] else "   -  "
                  for s in ("ann", "refine", "rerank")]
        lines.append(f"{rank:<5} {hit['id']:<29} {names.get(hit['id'], '')[:19]:<19} "
                     f"{'  '.join(stages)}  {hit['score']:.3f}")
    timings = query.reply.metadata.timings_ms
    lines.append("timings ms: " + ", ".join(f"{k} {timings[k]:.1f}" for k in sorted(timings))
                 + (" (degraded)" if query.reply.metadata.degraded else ""))
    return "\n".join(lines)


def contact_sheet(queries: list[DemoQuery], images: dict[str, Path], path: Path) -> None:
    def img(file: Path | None, caption: str) -> str:
        if file is None:
            return f"<figure class=q><div class=text>{html.escape(caption)}</div></figure>"
        data = base64.b64encode(file.read_bytes()).decode()
        return (f"<figure><img src='data:image/png;base64,{data}'><figcaption>"
                f"{html.escape(caption)}</figcaption></figure>")

    rows = []
    for query in queries:
        cells = [img(query.image_path, query.title)]
        cells += [img(images.get(h["id"]), f"{h['id']} {h['score']:.3f}") for h in query.hits]
        rows.append(f"<h3>{html.escape(query.title)}</h3><div class=row>{''.join(cells)}</div>")
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>mmsearch demo</title><style>"
        "body{font-family:sans-serif}.row{display:flex;gap:8px}figure{margin:0;width:110px;"
        "text-align:center;font-size:11px}img{width:72px;height:72px;image-rendering:pixelated}"
        ".text{height:72px;display:flex;align-items:center;justify-content:center;"
        "background:#eee}</style><h1>mmsearch demo: query → top hits</h1>"
        + "".join(rows))


def by_id_top1(address: str, images: dict[str, Path], rerank: bool, sample: int
               ) -> tuple[int, int]:
    """Google items queried by id (every one, or an even sample of `sample` of them): how
    often the twitter item of the same identity comes first."""
    import grpc

    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    every = sorted(i for i in images if i.startswith("google:"))
    count = min(sample, len(every))
    google = [every[i * len(every) // count] for i in range(count)]  # exactly `count`
    right = 0
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for item in google:
            reply = stub.Search(pb.SearchRequest(
                base=BASE, top_k=1, query=pb.Query(id=item),
                options=pb.SearchOptions(rerank=rerank)), timeout=60)
            right += bool(reply.hits) and reply.hits[0].id == "twitter:" + item.split(":", 1)[1]
    return right, len(google)


def run_demo(data_dir: Path, work_dir: Path, identities: int | None, top_k: int,
             config_path: Path | None, by_id_sample: int = 300) -> dict[str, Any]:
    started = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = data_dir / f"demo-{identities or 'all'}.jsonl"
    if not (data_dir / "google.jsonl").is_file():
        raise MmsearchError(f"{data_dir}/google.jsonl not found: run `mmsearch data emoji` "
                            "(make demo does)")
    images = subset_manifest(data_dir, manifest, identities)
    config = ["--config", str(config_path)] if config_path else []
    milvus_port, sidecar_port = free_port(), free_port()
    uri, address = f"http://127.0.0.1:{milvus_port}", f"127.0.0.1:{sidecar_port}"
    env_note = os.environ.get("MMSEARCH_MODELS", "./models")
    print(f"{len(images)} items ({len(images) // 2} identities x google, twitter); models "
          f"from {env_note}; Milvus Lite at {work_dir / 'milvus'}")
    with process(mmsearch_command("lite-server", "--data-dir", str(work_dir / "milvus"),
                                  "--port", str(milvus_port)), milvus_port,
                 "Milvus Lite server", work_dir / "lite-server.log"):
        ingest = subprocess.run(mmsearch_command(
            "ingest", *config, "--manifest", str(manifest), "--base", BASE, "--uri", uri,
            "--state-dir", str(work_dir / "state"), "--no-progress"), text=True,
            capture_output=True)
        clean = " rejected 0" in ingest.stdout or "already finished" in ingest.stdout
        if ingest.returncode != 0 or not clean:
            raise MmsearchError(f"ingest failed or rejected items ({ingest.returncode}; dead "
                                f"letters in {work_dir / 'state'}):\n{ingest.stdout}"
                                f"{ingest.stderr[-3000:]}")
        print(ingest.stdout.strip())
        with process(mmsearch_command("serve", *config, "--uri", uri, "--address", address),
                     sidecar_port, "gRPC sidecar", work_dir / "sidecar.log"):
            wait_serving(address)
            queries = demo_queries(images)
            run_queries(address, queries, top_k)
            right, total = by_id_top1(address, images, True, by_id_sample)
            right_refine, _ = by_id_top1(address, images, False, by_id_sample)
            names = item_names(manifest)
            for query in queries:  # the results, before the servers' stop lines
                print(table(query, names))
            print(f"\nby stored id, google -> twitter of the same identity first: "
                  f"{right}/{total} with rerank, {right_refine}/{total} refine only. Items "
                  "carry their names (fused image + text), which makes this easy; image-only "
                  "galleries are the hard benchmark (benchmarks/results/embedder_quality.md).")
    sheet = work_dir / "contact_sheet.html"
    contact_sheet(queries, images, sheet)
    print(f"contact sheet: {sheet}\ndone in {time.monotonic() - started:.0f} s")
    return {"queries": [{"title": q.title, "hits": q.hits} for q in queries],
            "by_id_top1": [right, total], "by_id_top1_refine": [right_refine, total],
            "contact_sheet": str(sheet)}
