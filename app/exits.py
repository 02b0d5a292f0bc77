"""The exit codes every `mmsearch` command uses, and the one mapping from errors to them.

| code | meaning |
|---|---|
| 0 | done |
| 1 | bad input, config or model (a manifest, queries file, config key, model folder), |
|   | or some queries of a batch failed |
| 2 | usage error: an unknown flag or a flag value out of range (argparse's own code) |
| 3 | Milvus unavailable after retries: re-run the same command to resume |
"""

from __future__ import annotations

from enum import IntEnum

from mmsearch.encoders.errors import MmsearchError, UsageError
from mmsearch.plugin.connection import MilvusUnavailableError


class Exit(IntEnum):
    OK = 0
    BAD_INPUT = 1
    USAGE = 2
    MILVUS_UNAVAILABLE = 3


# the table in one line, for every command's --help
EXIT_HELP = ("Exit codes: 0 done, 1 bad input/config/model, 2 usage, 3 Milvus unavailable "
             "after retries (re-run the same command to resume).")


def exit_code_for(error: BaseException) -> Exit | None:
    """The exit code of an expected error, or None for a bug (the traceback is kept)."""
    if isinstance(error, UsageError):
        return Exit.USAGE
    if isinstance(error, MilvusUnavailableError):
        return Exit.MILVUS_UNAVAILABLE
    if isinstance(error, MmsearchError | FileNotFoundError):
        return Exit.BAD_INPUT
    return None
