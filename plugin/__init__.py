"""The Milvus side: width collections, the ingestion worker, sources, checkpoints, index tools."""
