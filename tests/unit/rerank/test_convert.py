"""Request budgets: the request's own, the gRPC deadline, or the server's default."""

from __future__ import annotations

import time

import pytest

from mmsearch.rerank.convert import deadline_from

GRPC_NONE = 9.223372035059301e18  # what grpcio's time_remaining() says without a deadline


@pytest.mark.parametrize(("request_ms", "grpc_s", "default_ms", "expected_s"), [
    (None, None, None, None),
    (None, GRPC_NONE, None, None),
    (None, GRPC_NONE, 2000, 2.0),  # the client set nothing: the server default
    (5000, GRPC_NONE, 2000, 5.0),  # the client's own budget wins over the default
    (5000, 1.0, 2000, 1.0),  # the earlier of the two the client set
    (500, 30.0, 2000, 0.5),
])
def test_deadline_from(request_ms: int | None, grpc_s: float | None, default_ms: int | None,
                       expected_s: float | None) -> None:
    before = time.monotonic()
    deadline = deadline_from(request_ms, grpc_s, default_ms)
    if expected_s is None:
        assert deadline is None
    else:
        assert deadline is not None
        assert deadline - before == pytest.approx(expected_s, abs=0.05)
