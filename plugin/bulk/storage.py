"""Putting backfill files where the server reads them: nothing to do on a shared
filesystem; an upload into Milvus's own bucket (MinIO/S3) otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmsearch.encoders.errors import BackendMissingError, ConfigError


def s3_uploader(endpoint: str, bucket: str, prefix: str, secure: bool, access_key_file: str,
                secret_key_file: str, backfill_id: str) -> Callable[[Path, str], str]:
    """upload(local path, relative name) -> the object key the import names. Keys carry
    the backfill's id, so two backfills never overwrite each other's files."""
    try:
        from minio import Minio
    except ImportError:
        raise BackendMissingError("minio (S3 uploads of bulk files)",
                                  "pip install 'mmsearch[bulk]'") from None
    keys = {}
    for name, path in (("bulk.access_key_file", access_key_file),
                       ("bulk.secret_key_file", secret_key_file)):
        try:
            keys[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from None
    client = Minio(endpoint, access_key=keys["bulk.access_key_file"],
                   secret_key=keys["bulk.secret_key_file"], secure=secure)

    def upload(path: Path, name: str) -> str:
        key = f"{prefix.strip('/')}/{backfill_id}/{name}"
        client.fput_object(bucket, key, str(path))
        return key
    return upload
