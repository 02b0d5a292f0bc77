"""Error kinds of the search service and the one table that maps them to gRPC codes.

Pipeline code raises these; the server turns them into statuses via `status_for`. Anything
not listed here is unexpected and becomes INTERNAL (logged with its traceback).
"""

from __future__ import annotations

from mmsearch.encoders.errors import InvalidInputError, MmsearchError, ModelMismatchError
from mmsearch.plugin.connection import MilvusUnavailableError

# a status message travels in gRPC's trailing metadata (16 KB in all): a message that
# echoes a client's 20,000-character value would overflow it and turn into another error
MAX_MESSAGE_CHARS = 1000
MAX_SHOWN_CHARS = 80
UNAVAILABLE_MESSAGE = "Milvus is unavailable: retry with backoff (the sidecar's log has details)"


def shown(value: str) -> str:
    """A client's value as it may appear in a message: repr'd, cut to MAX_SHOWN_CHARS."""
    if len(value) <= MAX_SHOWN_CHARS:
        return repr(value)
    return f"{value[:MAX_SHOWN_CHARS]!r}... ({len(value)} characters)"


def _capped(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else (
        message[:MAX_MESSAGE_CHARS] + " ... (message cut)")


class RequestError(MmsearchError):
    """Base of the errors a request can end with. `field` names the input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class ValidationError(RequestError):
    """The request is malformed or out of bounds."""


class NotFoundError(RequestError):
    """Unknown base, or a query/candidate id that is not stored."""


class OverloadedError(RequestError):
    """Too many requests in flight."""


class DeadlineError(RequestError):
    """The request's deadline passed before it could be answered."""


class PreconditionError(RequestError):
    """The server lacks what the request needs (e.g. rerank asked, no scorer loaded)."""


class UnauthenticatedError(RequestError):
    """Missing or wrong bearer token."""


def status_for(error: BaseException) -> tuple[str, str]:
    """(grpc.StatusCode name, message) for an error. The single mapping table."""
    table: tuple[tuple[type[BaseException], str], ...] = (
        (ValidationError, "INVALID_ARGUMENT"),
        (InvalidInputError, "INVALID_ARGUMENT"),
        (NotFoundError, "NOT_FOUND"),
        (MilvusUnavailableError, "UNAVAILABLE"),
        (OverloadedError, "RESOURCE_EXHAUSTED"),
        (DeadlineError, "DEADLINE_EXCEEDED"),
        (PreconditionError, "FAILED_PRECONDITION"),
        (ModelMismatchError, "FAILED_PRECONDITION"),
        (UnauthenticatedError, "UNAUTHENTICATED"),
    )
    for kind, code in table:
        if isinstance(error, kind):
            if isinstance(error, InvalidInputError):
                return code, _capped(f"query.{error.field}: {error.reason}")
            if isinstance(error, MilvusUnavailableError):  # its text names internal addresses
                return code, UNAVAILABLE_MESSAGE
            return code, _capped(str(error))
    return "INTERNAL", "internal error (logged on the server)"
