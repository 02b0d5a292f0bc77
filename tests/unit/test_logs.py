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
