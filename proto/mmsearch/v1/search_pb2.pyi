from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DegradedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADED_REASON_UNSPECIFIED: _ClassVar[DegradedReason]
    DEGRADED_REASON_RERANK_DEADLINE: _ClassVar[DegradedReason]
DEGRADED_REASON_UNSPECIFIED: DegradedReason
DEGRADED_REASON_RERANK_DEADLINE: DegradedReason

class Query(_message.Message):
    __slots__ = ("image", "text", "id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    text: str
    id: str
    def __init__(self, image: _Optional[bytes] = ..., text: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class SearchOptions(_message.Message):
    __slots__ = ("coarse_width", "candidates", "refine", "rerank", "include_self", "min_score", "offset", "group_by")
    COARSE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SELF_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    coarse_width: int
    candidates: int
    refine: bool
    rerank: bool
    include_self: bool
    min_score: float
    offset: int
    group_by: str
    def __init__(self, coarse_width: _Optional[int] = ..., candidates: _Optional[int] = ..., refine: _Optional[bool] = ..., rerank: _Optional[bool] = ..., include_self: _Optional[bool] = ..., min_score: _Optional[float] = ..., offset: _Optional[int] = ..., group_by: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("base", "query", "top_k", "filter", "options", "deadline_ms", "output_fields")
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELDS_FIELD_NUMBER: _ClassVar[int]
    base: str
    query: Query
    top_k: int
    filter: str
    options: SearchOptions
    deadline_ms: int
    output_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, base: _Optional[str] = ..., query: _Optional[_Union[Query, _Mapping]] = ..., top_k: _Optional[int] = ..., filter: _Optional[str] = ..., options: _Optional[_Union[SearchOptions, _Mapping]] = ..., deadline_ms: _Optional[int] = ..., output_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value", "null_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    null_value: bool
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., null_value: _Optional[bool] = ...) -> None: ...

class StageScores(_message.Message):
    __slots__ = ("ann", "refine", "rerank")
    ANN_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    ann: float
    refine: float
    rerank: float
    def __init__(self, ann: _Optional[float] = ..., refine: _Optional[float] = ..., rerank: _Optional[float] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "stages", "label", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    stages: StageScores
    label: str
    fields: _containers.MessageMap[str, Value]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., stages: _Optional[_Union[StageScores, _Mapping]] = ..., label: _Optional[str] = ..., fields: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("encode", "ann", "refine", "fetch", "rerank", "total", "queue")
    ENCODE_FIELD_NUMBER: _ClassVar[int]
    ANN_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    RERANK_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    encode: float
    ann: float
    refine: float
    fetch: float
    rerank: float
    total: float
    queue: float
    def __init__(self, encode: _Optional[float] = ..., ann: _Optional[float] = ..., refine: _Optional[float] = ..., fetch: _Optional[float] = ..., rerank: _Optional[float] = ..., total: _Optional[float] = ..., queue: _Optional[float] = ...) -> None: ...

class ResponseMetadata(_message.Message):
    __slots__ = ("timings_ms", "degraded", "degraded_reasons", "model_id", "candidates", "notes", "min_score_applied", "timings")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_APPLIED_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    timings_ms: _containers.ScalarMap[str, float]
    degraded: bool
    degraded_reasons: _containers.RepeatedScalarFieldContainer[DegradedReason]
    model_id: str
    candidates: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    min_score_applied: bool
    timings: Timings
    def __init__(self, timings_ms: _Optional[_Mapping[str, float]] = ..., degraded: _Optional[bool] = ..., degraded_reasons: _Optional[_Iterable[_Union[DegradedReason, str]]] = ..., model_id: _Optional[str] = ..., candidates: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., min_score_applied: _Optional[bool] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "metadata")
    HITS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    metadata: ResponseMetadata
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., metadata: _Optional[_Union[ResponseMetadata, _Mapping]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("image", "text")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    text: str
    def __init__(self, image: _Optional[bytes] = ..., text: _Optional[str] = ...) -> None: ...

class RerankCandidate(_message.Message):
    __slots__ = ("id", "vector", "document", "first_stage_score")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    FIRST_STAGE_SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    vector: Vector
    document: Document
    first_stage_score: float
    def __init__(self, id: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., document: _Optional[_Union[Document, _Mapping]] = ..., first_stage_score: _Optional[float] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("base", "query", "candidates", "top_k", "top_n", "return_documents")
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    RETURN_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    base: str
    query: Query
    candidates: _containers.RepeatedCompositeFieldContainer[RerankCandidate]
    top_k: int
    top_n: int
    return_documents: bool
    def __init__(self, base: _Optional[str] = ..., query: _Optional[_Union[Query, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[RerankCandidate, _Mapping]]] = ..., top_k: _Optional[int] = ..., top_n: _Optional[int] = ..., return_documents: _Optional[bool] = ...) -> None: ...

class RerankedCandidate(_message.Message):
    __slots__ = ("index", "id", "score", "stages", "document", "relevance_score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    score: float
    stages: StageScores
    document: Document
    relevance_score: float
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., score: _Optional[float] = ..., stages: _Optional[_Union[StageScores, _Mapping]] = ..., document: _Optional[_Union[Document, _Mapping]] = ..., relevance_score: _Optional[float] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("results", "metadata")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RerankedCandidate]
    metadata: ResponseMetadata
    def __init__(self, results: _Optional[_Iterable[_Union[RerankedCandidate, _Mapping]]] = ..., metadata: _Optional[_Union[ResponseMetadata, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "model_id", "model_name", "widths", "default_coarse_width", "max_candidates", "max_top_k", "max_message_bytes", "chunk_size", "scorer", "max_batch")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTHS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_COARSE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    version: str
    model_id: str
    model_name: str
    widths: _containers.RepeatedScalarFieldContainer[int]
    default_coarse_width: int
    max_candidates: int
    max_top_k: int
    max_message_bytes: int
    chunk_size: int
    scorer: str
    max_batch: int
    def __init__(self, version: _Optional[str] = ..., model_id: _Optional[str] = ..., model_name: _Optional[str] = ..., widths: _Optional[_Iterable[int]] = ..., default_coarse_width: _Optional[int] = ..., max_candidates: _Optional[int] = ..., max_top_k: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., chunk_size: _Optional[int] = ..., scorer: _Optional[str] = ..., max_batch: _Optional[int] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SearchBatchItem(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: SearchResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[SearchResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SearchBatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[SearchBatchItem, _Mapping]]] = ...) -> None: ...
