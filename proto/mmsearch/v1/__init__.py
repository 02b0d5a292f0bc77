"""Generated gRPC/protobuf stubs for the mmsearch.v1 contract (the sidecar issue adds them)."""
