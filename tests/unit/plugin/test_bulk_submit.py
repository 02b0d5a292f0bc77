"""Which import API a server gets: none on Milvus Lite (with the way out), the ORM bulk
insert before 2.5, the REST import jobs from 2.5 on."""

from __future__ import annotations

import pytest

from mmsearch.plugin.bulk.submit import (
    ImportUnsupportedError,
    OrmBulkInsert,
    RestImport,
    import_api_for,
    server_release,
)
from mmsearch.plugin.connection import MilvusTarget


def test_milvus_lite_has_no_bulk_import() -> None:
    for target, version in ((MilvusTarget("./mmsearch.db"), "milvus_lite-3.2.2"),
                            (MilvusTarget("http://127.0.0.1:19530"), "milvus_lite-3.2.2")):
        with pytest.raises(ImportUnsupportedError, match="mmsearch ingest"):
            import_api_for(target, version)


def test_release_parsing() -> None:
    assert server_release("v2.3.5-lite") == (2, 3)
    assert server_release("2.6.9") == (2, 6)
    assert server_release("unknown") is None


def test_servers_from_2_5_get_the_rest_import_jobs() -> None:
    api = import_api_for(MilvusTarget("http://milvus:19530", token="root:Milvus"), "v2.6.9")
    assert isinstance(api, RestImport) and api.url == "http://milvus:19530"
    assert api.token == "root:Milvus"


def test_servers_before_2_5_get_the_orm_bulk_insert() -> None:
    # connecting is lazy in pymilvus's ORM only up to the first call: an unreachable
    # address fails here, which is what a user with a wrong --uri should see
    with pytest.raises(Exception):  # noqa: B017 - pymilvus raises its own MilvusException
        import_api_for(MilvusTarget("http://127.0.0.1:1", call_timeout_s=1), "v2.3.5")
    assert OrmBulkInsert.name.startswith("utility.do_bulk_insert")
