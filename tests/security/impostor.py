"""An impostor agent server, run by another Unix user: it listens where a victim expects its server,
writes down everything it receives, and answers the handshake without knowing the token.

``python impostor.py LOG_FILE``: prints its port, then serves until killed.
"""

import os
import sys
from concurrent import futures

import grpc

SERVICE = "agentnb.AgentServer"


def main() -> None:
    log = open(sys.argv[1], "a", buffering=1)

    def record(method: str, request: bytes, context: grpc.ServicerContext) -> None:
        metadata = ", ".join(f"{k}={v}" for k, v in context.invocation_metadata())
        log.write(f"{method} [{metadata}] {request.hex()}\n")

    def hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        record("Hello", request, context)
        # HelloReply{server_nonce: 64 random bytes, server_proof: 32 random bytes}: no token to make it right.
        return b"\x0a\x40" + os.urandom(64) + b"\x12\x20" + os.urandom(32)

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        record("unary", request, context)
        return b""

    def stream(requests, context: grpc.ServicerContext):  # noqa: ANN001, ANN201
        for request in requests:
            record("Session", request, context)
        return iter(())

    handlers = {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
    for name in ("GetInfo", "ListAgents", "Shutdown"):
        handlers[name] = grpc.unary_unary_rpc_method_handler(unary)
    handlers["GetResult"] = grpc.unary_stream_rpc_method_handler(lambda r, c: (record("GetResult", r, c), iter(()))[1])
    handlers["Session"] = grpc.stream_stream_rpc_method_handler(stream)
    server = grpc.server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
