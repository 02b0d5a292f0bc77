"""Bulk backfill: plan a manifest into blocks, encode each block once into the files
Milvus bulk import reads (one set per width), then import them into fresh versions and
move the aliases."""
