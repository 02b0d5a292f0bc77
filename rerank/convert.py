"""Protobuf <-> pipeline objects. Field presence (`optional`) decides defaults."""

from __future__ import annotations

import time

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mmsearch.rerank.candidates import RerankCandidate, RerankParams, RerankResult
from mmsearch.rerank.errors import ValidationError
from mmsearch.rerank.requests import Hit, SearchParams, SearchQuery, SearchResult
from mmsearch.v1 import search_pb2 as pb

# grpcio reports "no deadline" as ~9.2e18 s remaining, not None
NO_GRPC_DEADLINE_S = 1e9
DEGRADED = {"rerank_deadline": pb.DEGRADED_REASON_RERANK_DEADLINE}
DEGRADED_NAMES = {code: name for name, code in DEGRADED.items()}
TIMED_STAGES = ("encode", "queue", "ann", "refine", "fetch", "rerank", "total")


def query_from_pb(query: pb.Query) -> SearchQuery:
    return SearchQuery(
        image=query.image if query.HasField("image") else None,
        text=query.text if query.HasField("text") else None,
        id=query.id if query.HasField("id") else None,
    )


def deadline_from(request_ms: int | None, grpc_remaining_s: float | None,
                  default_ms: int | None) -> float | None:
    """The earlier of the request's own budget and the gRPC deadline, as monotonic time;
    the server's default budget (limits.deadline_ms) only when the client set neither, so
    a client that asks for longer gets it and one that forgot cannot hold a slot forever."""
    if grpc_remaining_s is not None and grpc_remaining_s > NO_GRPC_DEADLINE_S:
        grpc_remaining_s = None
    budgets = [s for s in (None if request_ms is None else request_ms / 1000, grpc_remaining_s)
               if s is not None]
    if not budgets and default_ms is not None:
        budgets = [default_ms / 1000]
    return time.monotonic() + min(budgets) if budgets else None


def search_from_pb(request: pb.SearchRequest, grpc_remaining_s: float | None,
                   default_deadline_ms: int | None = None) -> tuple[SearchQuery, SearchParams]:
    """A SearchRequest (alone or an item of a SearchBatch) as the pipeline's query and params."""
    if not request.HasField("query"):
        raise ValidationError("required", "query")
    return (query_from_pb(request.query),
            params_from_pb(request, grpc_remaining_s, default_deadline_ms))


def params_from_pb(request: pb.SearchRequest, grpc_remaining_s: float | None,
                   default_deadline_ms: int | None = None) -> SearchParams:
    options = request.options
    if request.HasField("deadline_ms") and request.deadline_ms == 0:
        raise ValidationError("must be positive when set", "deadline_ms")
    return SearchParams(
        base=request.base, top_k=request.top_k, filter=request.filter,
        coarse_width=options.coarse_width if options.HasField("coarse_width") else None,
        candidates=options.candidates if options.HasField("candidates") else None,
        refine=options.refine if options.HasField("refine") else True,
        rerank=options.rerank if options.HasField("rerank") else None,
        include_self=options.include_self,
        output_fields=tuple(request.output_fields),
        min_score=options.min_score if options.HasField("min_score") else None,
        offset=options.offset if options.HasField("offset") else 0,
        group_by=options.group_by if options.HasField("group_by") else None,
        deadline=deadline_from(request.deadline_ms if request.HasField("deadline_ms") else None,
                               grpc_remaining_s, default_deadline_ms),
    )


def hit_to_pb(hit: Hit) -> pb.Hit:
    stages = pb.StageScores(ann=hit.ann)
    if hit.refine is not None:
        stages.refine = hit.refine
    if hit.rerank is not None:
        stages.rerank = hit.rerank
    return pb.Hit(id=hit.id, score=hit.score, stages=stages, label=hit.label or "",
                  fields={name: value_to_pb(value) for name, value in hit.fields.items()})


def value_to_pb(value: object) -> pb.Value:
    """A stored scalar as a typed Value (bool before int: a bool is an int in Python)."""
    if value is None:
        return pb.Value(null_value=True)
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        return pb.Value(int_value=value)
    if isinstance(value, float):
        return pb.Value(double_value=value)
    return pb.Value(string_value=str(value))


def metadata_to_pb(result: SearchResult, model_id: str) -> pb.ResponseMetadata:
    return pb.ResponseMetadata(
        timings_ms=result.timings_ms, degraded=bool(result.degraded_reasons),
        degraded_reasons=[DEGRADED[r] for r in result.degraded_reasons], model_id=model_id,
        candidates=result.candidates, notes=result.notes,
        min_score_applied=result.min_score_applied, timings=timings_to_pb(result.timings_ms))


def timings_to_pb(timings: dict[str, float]) -> pb.Timings:
    return pb.Timings(**{stage: timings.get(stage, 0.0) for stage in TIMED_STAGES})


def search_response(result: SearchResult, model_id: str) -> pb.SearchResponse:
    return pb.SearchResponse(hits=[hit_to_pb(h) for h in result.hits],
                             metadata=metadata_to_pb(result, model_id))


def rerank_from_pb(request: pb.RerankRequest, grpc_remaining_s: float | None,
                   default_deadline_ms: int | None = None
                   ) -> tuple[SearchQuery, list[RerankCandidate], RerankParams]:
    if not request.HasField("query"):
        raise ValidationError("required", "query")
    candidates = [RerankCandidate(
        id=c.id if c.WhichOneof("source") == "id" else None,
        vector=tuple(c.vector.values) if c.WhichOneof("source") == "vector" else None,
        first_stage_score=c.first_stage_score if c.HasField("first_stage_score") else None,
        image=c.document.image if c.document.HasField("image") else None,
        text=c.document.text if c.document.HasField("text") else None)
        for c in request.candidates]
    if request.HasField("top_n") and request.top_k:
        raise ValidationError("give top_n or top_k, not both", "top_n")
    top = request.top_n if request.HasField("top_n") else request.top_k
    params = RerankParams(base=request.base, top_k=top,
                          deadline=deadline_from(None, grpc_remaining_s, default_deadline_ms))
    return query_from_pb(request.query), candidates, params


def rerank_response(result: RerankResult, model_id: str, request: pb.RerankRequest
                    ) -> pb.RerankResponse:
    results = [pb.RerankedCandidate(index=r.index, id=r.id or "", score=r.score,
                                    relevance_score=r.score,
                                    stages=pb.StageScores(refine=r.refine, rerank=r.score))
               for r in result.results]
    if request.return_documents:
        for out in results:
            candidate = request.candidates[out.index]
            if candidate.WhichOneof("source") == "document":
                out.document.CopyFrom(candidate.document)
    metadata = pb.ResponseMetadata(timings_ms=result.timings_ms, model_id=model_id,
                                   candidates=result.candidates, notes=result.notes,
                                   timings=timings_to_pb(result.timings_ms))
    return pb.RerankResponse(results=results, metadata=metadata)


def bad_utf8_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field whose bytes are not UTF-8 (protobuf's own error
    does not say which): a walk over the wire format, nested messages and repeated
    fields included (`candidates[2].id`)."""
    seen: dict[int, int] = {}
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            size, position = _varint(data, position)
            payload, position = data[position:position + size], position + size
            field = descriptor.fields_by_number.get(number)
            if field is None:
                continue
            index = seen.get(number, 0)
            seen[number] = index + 1
            name = f"{prefix}{field.name}" + (f"[{index}]" if field.is_repeated else "")
            if field.type == FieldDescriptor.TYPE_STRING:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return name
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                found = bad_utf8_field(field.message_type, payload, f"{name}.")
                if found:
                    return found
        else:
            return None  # groups are not in this contract; stop rather than guess
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while position < len(data):
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return result, position
