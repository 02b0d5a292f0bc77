"""Submitting bulk-import files to Milvus and waiting for them, behind one small interface:
Milvus 2.3/2.4 take them through `utility.do_bulk_insert` (gRPC; pymilvus marks it for
removal in 3.1), Milvus 2.5+ through the import jobs of its REST API
(`pymilvus.bulk_writer.bulk_import`). Milvus Lite has neither."""

from __future__ import annotations

import re
import uuid
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from mmsearch.encoders.errors import BackendMissingError, MmsearchError
from mmsearch.plugin.connection import MilvusTarget

INGEST_INSTEAD = ("use `mmsearch ingest --manifest ...`, which upserts row by row and works "
                  "on every Milvus")


class ImportUnsupportedError(MmsearchError):
    """The server has no bulk import."""


@dataclass(frozen=True)
class TaskState:
    finished: bool
    failed: str | None  # the server's reason, once it failed
    rows: int  # rows imported so far


class ImportApi(ABC):
    name: str

    @abstractmethod
    def submit(self, collection: str, files: list[str]) -> Any:
        """Start importing one file (or one file set) into `collection`; returns a task."""

    @abstractmethod
    def state(self, task: Any) -> TaskState: ...

    def close(self) -> None:
        return None


def server_release(version: str) -> tuple[int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)", version)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def import_api_for(target: MilvusTarget, version: str) -> ImportApi:
    if target.is_lite_folder or version.startswith("milvus_lite"):
        raise ImportUnsupportedError(
            f"Milvus Lite ({version}) has no bulk import (it answers UNIMPLEMENTED): "
            f"{INGEST_INSTEAD}, or point --uri at a Milvus server")
    release = server_release(version)
    if release is not None and release < (2, 5):
        return OrmBulkInsert(target)
    return RestImport(target)


class OrmBulkInsert(ImportApi):
    """Milvus 2.3/2.4: one bulk-insert task per Parquet file."""

    name = "utility.do_bulk_insert (Milvus 2.3/2.4)"

    def __init__(self, target: MilvusTarget) -> None:
        try:
            from pymilvus import connections, utility
        except ImportError:
            raise BackendMissingError(
                "pymilvus's ORM utility (removed in pymilvus 3.1; Milvus before 2.5 imports "
                "only through it)", "pip install 'pymilvus<3.1'") from None
        # the deprecation is known and said in the README; once per poll it only hides output
        warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")
        self.utility = utility
        self.connections = connections
        self.alias = f"mmsearch-bulk-{uuid.uuid4().hex[:8]}"
        kwargs: dict[str, Any] = {"uri": target.uri}
        if target.token:
            kwargs["token"] = target.token
        if target.db_name:
            kwargs["db_name"] = target.db_name
        connections.connect(alias=self.alias, **kwargs)

    def submit(self, collection: str, files: list[str]) -> Any:
        import grpc

        try:
            return self.utility.do_bulk_insert(collection, files=files, using=self.alias)
        except grpc.RpcError as exc:  # a server without the RPC (Milvus Lite behind a URI)
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise ImportUnsupportedError(f"the server has no bulk import "
                                             f"(UNIMPLEMENTED): {INGEST_INSTEAD}") from None
            raise

    def state(self, task: Any) -> TaskState:
        found = self.utility.get_bulk_insert_state(task, using=self.alias)
        failed = found.state_name in ("Failed", "ImportFailed", "FailedAndCleaned")
        return TaskState(failed or found.state_name == "Completed",
                         (found.infos.get("failed_reason") or found.state_name) if failed
                         else None, int(found.row_count))

    def close(self) -> None:
        self.connections.disconnect(self.alias)


class RestImport(ImportApi):
    """Milvus 2.5+: import jobs through the REST API on the same address. Written against
    pymilvus's documented `bulk_import`/`get_import_progress`; no 2.5+ server ran here."""

    name = "bulk_import REST jobs (Milvus 2.5+)"

    def __init__(self, target: MilvusTarget) -> None:
        try:
            from pymilvus.bulk_writer import bulk_import, get_import_progress
        except ModuleNotFoundError:
            raise BackendMissingError("pymilvus's bulk writer",
                                      "pip install 'mmsearch[bulk]'") from None
        self.bulk_import, self.progress = bulk_import, get_import_progress
        self.url = target.uri.replace("grpc://", "http://")
        self.token = target.token or ""
        self.db_name = target.db_name or ""

    def submit(self, collection: str, files: list[str]) -> Any:
        reply = self.bulk_import(url=self.url, collection_name=collection, files=[files],
                                 api_key=self.token, db_name=self.db_name).json()
        if reply.get("code") != 0:
            raise MmsearchError(f"import into {collection} refused: {reply.get('message')}")
        return reply["data"]["jobId"]

    def state(self, task: Any) -> TaskState:
        reply = self.progress(url=self.url, job_id=task, api_key=self.token).json()
        data = reply.get("data", {})
        state = data.get("state", "")
        return TaskState(state in ("Completed", "Failed"),
                         data.get("reason") or state if state == "Failed" else None,
                         int(data.get("importedRows", 0)))
