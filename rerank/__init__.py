"""The chunked listwise scorer and the gRPC sidecar (issue 5)."""
