"""Logging setup: human text (default) or one JSON object per line (`--log-format json`).

Logs never carry tokens or image bytes: mmsearch never logs them, and the formatter also
redacts anything shaped like a bearer token or a long base64 run, so a third-party
library's message cannot leak one either.
"""

from __future__ import annotations

import json
import logging
import re
import time

REDACTIONS = (
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(token['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1[redacted]"),
    (re.compile(r"[A-Za-z0-9+/]{200,}={0,2}"), "[base64 redacted]"),
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname,
                 "logger": record.name, "message": redact(record.getMessage())}
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class DropReported(logging.Filter):
    """Failures a library logs with a traceback that the command then reports itself as
    one clear line (a Milvus Lite store locked by another process)."""

    REPORTED = ("DataDirLockedError",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and type(record.exc_info[1]).__name__ in self.REPORTED)


class RepeatLimit(logging.Filter):
    """The same warning at most once per window: a Milvus outage under load would
    otherwise write one line per request. "The same" is logger, level and message template
    (not the formatted text, which carries each request's id); the next line after the
    window says how many were held back."""

    MAX_KEYS = 1000  # past this, keys idle for a window are forgotten (bounded memory)

    def __init__(self, window_s: float = 10.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.exc_info:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        if len(self._last) > self.MAX_KEYS:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.window_s}
        last, held = self._last.get(key, (-1e18, 0))
        if now - last < self.window_s:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this in the last " \
                         f"{self.window_s:.0f} s)"
            record.args = ()
        return True


def setup_logging(verbose: bool, log_format: str) -> None:
    """One handler, on the root, for every logger: libraries that install their own
    (pymilvus does at import) are re-routed to it, so `--log-format json` is JSON on every
    line and redaction applies to all of them."""
    import pymilvus  # noqa: F401 - its import configures its loggers: let it happen first

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else RedactingFormatter(TEXT_FORMAT))
    handler.addFilter(DropReported())
    handler.addFilter(RepeatLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
            if name.startswith("pymilvus") and not verbose:
                # every pymilvus error also reaches us as an exception, reported once
                # by the command or the sidecar: its own ERROR lines would repeat it
                logger.setLevel(logging.CRITICAL)
    # milvus-lite's per-segment progress and faiss's loader lines are debugging detail
    for name in ("milvus_lite", "faiss"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
