"""Connecting to Milvus (Lite folder or server URI) and retrying when it is unavailable.

The token comes from config (env or file) and is handed to pymilvus only; it is never logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mmsearch.encoders.errors import MmsearchError

log = logging.getLogger(__name__)
T = TypeVar("T")
UNAVAILABLE_CODES = {2, 503}  # pymilvus: "Fail connecting to server" / service unavailable


class MilvusUnavailableError(MmsearchError):
    """Milvus did not answer after the bounded retries."""


@dataclass(frozen=True)
class MilvusTarget:
    """Where Milvus is (the config's `milvus` section holds the defaults); None: not set,
    so the server's own default database, no TLS, no per-call timeout."""

    uri: str
    token: str | None = None
    db_name: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # seconds per call for batch work (worker, index tools): a hung server then fails the
    # call, which is retried, instead of blocking the process forever; the sidecar passes
    # each request's time left instead
    call_timeout_s: float | None = None

    @property
    def is_lite_folder(self) -> bool:
        return "://" not in self.uri

    def identity(self) -> str:
        """Which store this is, for checkpoints: the resolved folder of a Milvus Lite store,
        or the server URI, and the database."""
        where = str(Path(self.uri).resolve()) if self.is_lite_folder else self.uri
        return f"{where}|{self.db_name or 'default'}"

    def describe(self) -> str:
        """For logs: the URI and database, never the token."""
        return f"{self.uri} (db {self.db_name or 'default'})"


class StoreError(MmsearchError):
    """A Milvus Lite store that cannot be opened: a bad path, or one another process holds."""


def _check_lite_path(uri: str) -> None:
    if not uri.endswith(".db"):
        raise StoreError(f"--uri / milvus.uri {uri!r}: a Milvus Lite store is a path ending "
                         "in .db (e.g. ./mmsearch.db), a server is http://HOST:PORT")
    Path(uri).parent.mkdir(parents=True, exist_ok=True)


def lite_store_is_locked(uri: str) -> bool:
    """Whether another open store (another process, or another client here) holds the
    Milvus Lite folder's lock, which milvus-lite takes with flock on <folder>/LOCK."""
    import fcntl

    lock = Path(uri) / "LOCK"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def connect(target: MilvusTarget) -> Any:
    """A MilvusClient for a Milvus Lite folder (in-process) or a server URI."""
    from pymilvus import MilvusClient

    if target.is_lite_folder:
        _check_lite_path(target.uri)
    kwargs: dict[str, Any] = {"uri": target.uri}
    if target.call_timeout_s is not None:
        kwargs["timeout"] = target.call_timeout_s  # the connection handshake
    if not target.is_lite_folder:
        if target.db_name:
            kwargs["db_name"] = target.db_name
        if target.token:
            kwargs["token"] = target.token
        if target.tls_ca or target.tls_cert:
            kwargs["secure"] = True
            if target.tls_ca:
                kwargs["ca_pem_path"] = target.tls_ca
            if target.tls_cert:
                kwargs["client_pem_path"] = target.tls_cert
                kwargs["client_key_path"] = target.tls_key
    try:
        return MilvusClient(**kwargs)
    except Exception:
        if target.is_lite_folder and lite_store_is_locked(target.uri):
            raise StoreError(
                f"the Milvus Lite store {target.uri} is open in another process (a running "
                "sidecar or worker): for several processes run `mmsearch lite-server "
                f"--data-dir {target.uri} --port 19530` and give each --uri "
                "http://127.0.0.1:19530") from None
        raise


def milvus_lite_executable() -> str:
    """The `milvus-lite` script of this interpreter's environment (works without an
    activated venv), else the one on PATH."""
    import shutil
    import sys
    from pathlib import Path

    sibling = Path(sys.executable).with_name("milvus-lite")
    found = str(sibling) if sibling.is_file() else shutil.which("milvus-lite")
    if found is None:
        from mmsearch.encoders.errors import BackendMissingError

        raise BackendMissingError("milvus-lite (its server command)", "pip install milvus-lite")
    return found


def is_unavailable(error: BaseException) -> bool:
    code = getattr(error, "code", None)
    text = str(error).lower()
    # a call that timed out (a hung server) is retried like a refused one
    return (code in UNAVAILABLE_CODES or "unavailable" in text or "fail connecting" in text
            or is_timeout(error))


# how each server words a filter it cannot parse or type-check: Milvus Lite's parser
# points at the column; the server's proxy fails to build the query plan
EXPRESSION_ERROR_MARKERS = (" at column ", "cannot parse expression",
                            "failed to create query plan")


def is_expression_error(error: BaseException) -> bool:
    """Milvus rejected a filter expression (a client's mistake, not an outage)."""
    text = str(error).lower()
    return not is_unavailable(error) and any(m in text for m in EXPRESSION_ERROR_MARKERS)


def is_timeout(error: BaseException) -> bool:
    return "deadline exceeded" in str(error).lower()


class Retrying:
    """Runs Milvus calls with bounded exponential backoff; reconnects between attempts."""

    def __init__(self, target: MilvusTarget, attempts: int = 6, base_delay: float = 0.5,
                 max_delay: float = 8.0, on_retry: Callable[[], None] | None = None) -> None:
        self.target = target
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.on_retry = on_retry
        # runs on every fresh connection after a failure, e.g. to re-load collections that a
        # restarted server brings back released
        self.on_reconnect: Callable[[Any], None] | None = None
        self.timeout = target.call_timeout_s  # for batch callers' pymilvus calls
        self._lock = threading.Lock()  # the worker's encoder and writer threads share this
        self.client = self._connect()

    def _connect(self) -> Any:
        try:
            return connect(self.target)
        except Exception as exc:
            if is_unavailable(exc):
                return None  # the first call() retries the connection
            raise

    def _current(self) -> Any:
        with self._lock:
            if self.client is None:
                client = connect(self.target)
                if self.on_reconnect is not None:
                    self.on_reconnect(client)
                self.client = client
            return self.client

    def call(self, what: str, fn: Callable[[Any], T], deadline: float | None = None) -> T:
        """deadline (time.monotonic()): no retry sleeps past it, so a request that has a
        deadline gets UNAVAILABLE inside it rather than after the whole backoff."""
        delay = self.base_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(self._current())
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._forget_refused(exc)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise MilvusUnavailableError(
                        f"Milvus at {self.target.describe()} unavailable during {what} "
                        f"({attempt} attempts before the request's deadline): {exc}") from None
                if attempt == self.attempts:
                    raise MilvusUnavailableError(
                        f"Milvus at {self.target.describe()} unavailable during {what} after "
                        f"{self.attempts} attempts: {exc}. Nothing past the last checkpoint "
                        "was committed; re-run the same command to resume."
                    ) from None
                log.warning("Milvus unavailable during %s (attempt %d/%d), retrying in %.1fs",
                            what, attempt, self.attempts, delay)
                if self.on_retry:
                    self.on_retry()
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable")

    def _forget_refused(self, error: BaseException) -> None:
        """A refused connection drops the client, so the next attempt reconnects. A timeout
        keeps it: the channel to a hung server is fine once the server answers again, and
        reconnecting would block, under the lock, every caller that shares this client."""
        if not is_timeout(error):
            self.client = None

    def probe(self, fn: Callable[[Any], object]) -> bool:
        """One attempt, no retries: a health check must answer now, not after the backoff."""
        try:
            fn(self._current())
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._forget_refused(exc)
            return False
        return True
