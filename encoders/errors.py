"""Typed errors for everything a user can hand the embedder.

Each error names the item (its id or position) and the field, so a caller can put it in a
dead-letter file or an RPC status without parsing the message.
"""

from __future__ import annotations

from dataclasses import dataclass


class MmsearchError(Exception):
    """Base class of every error this project raises on purpose."""


class BackendMissingError(MmsearchError, ImportError):
    """A runtime or tower needs a package that is not installed; the message has the fix."""

    def __init__(self, what: str, pip_install: str) -> None:
        super().__init__(f"{what} is not installed. Fix: {pip_install}")
        self.pip_install = pip_install


class ModelMismatchError(MmsearchError):
    """Two parts (models, collections, sidecar) were built from different model manifests."""


class ConfigError(MmsearchError, ValueError):
    """A configuration key is missing, unknown, or has an invalid value. Names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class InputProblem:
    """One rejected or normalised input: which item, which field, and why."""

    index: int
    item: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"item {self.item!r} (#{self.index}) field '{self.field}': {self.reason}"


class InvalidInputError(MmsearchError, ValueError):
    """One input item cannot be used. Carries the field and the reason separately."""

    def __init__(self, field: str, reason: str, item: str = "?") -> None:
        super().__init__(f"item {item!r} field '{field}': {reason}")
        self.field = field
        self.reason = reason
        self.item = item


class ImageDecodeError(InvalidInputError):
    """Bytes that are not a decodable image (corrupt, truncated, unknown format)."""


class ImageSizeError(InvalidInputError):
    """A zero-size image or one over the pixel limit (decompression bomb guard)."""


class TextInputError(InvalidInputError):
    """Text that is empty, not UTF-8, or not a string."""


class UsageError(MmsearchError, ValueError):
    """A command-line flag has a bad value (the CLI's usage error, like argparse's own)."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{flag}: {reason}")
        self.flag = flag
        self.reason = reason


def check_at_least(minimums: dict[str, tuple[int, int]]) -> None:
    """Raise UsageError for the first flag whose value is below its minimum;
    minimums maps a flag to (value, least)."""
    for flag, (value, least) in minimums.items():
        if value < least:
            raise UsageError(flag, f"must be >= {least}, got {value}")
