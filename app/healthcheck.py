"""`python -m mmsearch.app.healthcheck HOST:PORT`: exit 0 when the sidecar's standard gRPC
health service says SERVING (the container healthcheck; grpcurl-free)."""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, timeout_s: float = 5.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                               timeout=timeout_s)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


if __name__ == "__main__":
    sys.exit(0 if serving(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051") else 1)
