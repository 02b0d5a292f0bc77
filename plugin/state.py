"""Checkpoints and dead-letter files in the state folder (never next to the manifest).

A checkpoint records the last source line whose records are all acknowledged by Milvus
(or dead-lettered), and the dead-letter file's size at that moment: a resumed run truncates
the dead-letter file back to it, so a replayed batch never writes a rejection twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.plugin.validate import Rejection


@dataclass
class Checkpoint:
    source: str
    fingerprint: str
    base: str
    shard: str
    target: str = ""  # MilvusTarget.identity(): the store this checkpoint describes
    # {alias: collection uuid} of the base when the checkpoint was committed
    collections: dict[str, str | None] = field(default_factory=dict)
    offset: int = 0
    finished: bool = False
    deadletter_bytes: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {
        "ingested": 0, "unchanged": 0, "rejected": 0, "deleted": 0, "not_stored": 0})


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore:
    def __init__(self, state_dir: Path, source: Path, base: str, shard: str,
                 target: str) -> None:
        """One checkpoint per (source, base, shard); it vouches only for the collections
        it records (see IngestWorker._checkpoint_for_this_store), so the same manifest
        ingested into another Milvus never reads as finished."""
        self.source = str(Path(source).resolve())
        self.target = target
        key = hashlib.sha1(f"{self.source}|{base}|{shard}".encode()).hexdigest()[:12]
        name = f"{Path(source).stem}-{base}-{shard.replace('/', 'of')}-{key}"
        self.checkpoint_path = Path(state_dir) / "checkpoints" / f"{name}.json"
        self.deadletter_path = Path(state_dir) / "deadletter" / f"{name}.jsonl"
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        self.deadletter_path.parent.mkdir(parents=True, exist_ok=True)
        self._deadletter: Any = None

    def load(self) -> Checkpoint | None:
        if not self.checkpoint_path.is_file():
            return None
        return Checkpoint(**json.loads(self.checkpoint_path.read_text()))

    def commit(self, checkpoint: Checkpoint) -> None:
        """Atomic: write a temp file, fsync, rename over the old one, fsync the folder."""
        if self._deadletter is not None:
            self._deadletter.flush()
            os.fsync(self._deadletter.fileno())
            checkpoint.deadletter_bytes = self._deadletter.tell()
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(asdict(checkpoint), handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.checkpoint_path)
        _fsync_dir(self.checkpoint_path.parent)

    def open_deadletter(self, committed_bytes: int) -> None:
        """Append mode from the committed size: drop rejections of an uncommitted batch."""
        handle = open(self.deadletter_path, "a+b")  # noqa: SIM115 - held for the run
        handle.truncate(committed_bytes)
        handle.seek(committed_bytes)
        self._deadletter = handle

    def reject(self, rejection: Rejection, source: str) -> None:
        line = json.dumps({"source": source, **rejection.to_json()}, ensure_ascii=False)
        self._deadletter.write(line.encode() + b"\n")

    def close(self) -> None:
        if self._deadletter is not None:
            self._deadletter.close()
            self._deadletter = None
