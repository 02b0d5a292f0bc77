"""JSON logs: one object per line; tokens and base64 blobs never reach the output."""

from __future__ import annotations

import json
import logging

from mmsearch.app.logs import JsonFormatter, RedactingFormatter, redact


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("mmsearch.test", logging.WARNING, __file__, 1, message, None, None)


def test_json_line_has_the_fields_and_redacts() -> None:
    blob = "iVBORw0KGgo" * 40
    line = JsonFormatter().format(record(f"auth 'Bearer s3cret-token' token=abc123 img {blob}"))
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "mmsearch.test"
    assert entry["ts"].endswith("Z")
    assert "s3cret-token" not in line and "abc123" not in line and blob not in line
    assert "[redacted]" in entry["message"] and "[base64 redacted]" in entry["message"]


def test_text_format_redacts_too() -> None:
    text = RedactingFormatter("%(message)s").format(record("authorization: Bearer xyz"))
    assert text == "authorization: Bearer [redacted]"
    assert redact("nothing secret here") == "nothing secret here"


def test_json_logs_own_every_library_logger(tmp_path) -> None:  # noqa: ANN001
    """pymilvus installs its own text handlers at import: after setup_logging every line,
    from any library, is one JSON object, and redaction applies to all of them."""
    import subprocess
    import sys

    code = ("import logging; from mmsearch.app.logs import setup_logging;"
            "setup_logging(False, 'json');"
            "import pymilvus.milvus_client;"
            "logging.getLogger('pymilvus').critical('server said Bearer abc.def');"
            "logging.getLogger('pymilvus.milvus_client').critical('boom');"
            "logging.getLogger('milvus_lite.server_manager').error('failed',"
            " exc_info=RuntimeError('x'));"
            "logging.getLogger('mmsearch.x').info('ours')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # fails on any text line
    assert [e["logger"] for e in entries] == ["pymilvus", "pymilvus.milvus_client",
                                              "milvus_lite.server_manager", "mmsearch.x"]
    assert "abc.def" not in out.stderr and "exception" in entries[2]


def test_repeated_warnings_are_held_back_and_counted() -> None:
    import time

    from mmsearch.app.logs import RepeatLimit

    limit = RepeatLimit(window_s=0.2)
    same = [limit.filter(record("Milvus unavailable")) for _ in range(5)]
    assert same == [True, False, False, False, False]
    assert limit.filter(record("another message"))
    time.sleep(0.25)
    after = record("Milvus unavailable")
    assert limit.filter(after) and "4 more like this" in after.getMessage()


def test_repeats_are_keyed_by_template_so_request_ids_do_not_defeat_the_limit() -> None:
    from mmsearch.app.logs import RepeatLimit

    limit = RepeatLimit(window_s=60)

    def warning(request_id: str) -> logging.LogRecord:
        return logging.LogRecord("mmsearch.rerank.server", logging.WARNING, __file__, 1,
                                 "request %s Search: %s", (request_id, "UNAVAILABLE"), None)

    passed = [limit.filter(warning(f"r{i}")) for i in range(50)]
    assert passed == [True] + [False] * 49
    assert len(limit._last) == 1
