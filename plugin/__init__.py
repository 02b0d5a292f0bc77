"""The Milvus side: width collections, the ingestion worker, index tools (issues 4 and 7)."""
