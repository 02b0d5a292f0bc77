"""The search pipeline, the chunked listwise scorer and the gRPC sidecar."""
