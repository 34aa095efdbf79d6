"""gRPC echo for `portico echo --grpc-port`: the upstream conformance echo service
`gateway_api_conformance.echo_basic.grpcecho.GrpcEcho`.

Echo and EchoTwo answer an EchoResponse describing the call (the method, the
metadata it carried, the pod identity); any other method is UNIMPLEMENTED. The
messages are built from a descriptor at import time (no generated code), with
the field numbers of the upstream service, so clients of either interoperate.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection

from portico.echo import Identity

log = logging.getLogger(__name__)

PACKAGE = "gateway_api_conformance.echo_basic.grpcecho"
SERVICE = f"{PACKAGE}.GrpcEcho"
METHODS = ("Echo", "EchoTwo")  # EchoThree exists upstream and is deliberately unimplemented
_F = descriptor_pb2.FieldDescriptorProto


def _message(file: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, str | None, bool]]) -> None:
    """Add message `name`; each field is (name, number, message type or None for string, repeated)."""
    msg = file.message_type.add(name=name)
    for field_name, number, type_name, repeated in fields:
        f = msg.field.add(name=field_name, number=number,
                          label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
        if type_name is None:
            f.type = _F.TYPE_STRING
        else:
            f.type, f.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{type_name}"


def _descriptor() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="portico/grpcecho.proto", package=PACKAGE, syntax="proto3")
    _message(file, "Header", [("key", 1, None, False), ("value", 2, None, False)])
    _message(file, "Context", [("namespace", 1, None, False), ("ingress", 2, None, False),
                               ("service_name", 3, None, False), ("pod", 4, None, False)])
    _message(file, "Assertions", [("fully_qualified_method", 1, None, False), ("headers", 2, "Header", True),
                                  ("authority", 3, None, False), ("context", 4, "Context", False)])
    _message(file, "EchoRequest", [])
    _message(file, "EchoResponse", [("assertions", 1, "Assertions", False), ("request", 2, "EchoRequest", False)])
    service = file.service.add(name=SERVICE.rpartition(".")[2])  # (for server reflection: grpcurl)
    for method in (*METHODS, "EchoThree"):
        service.method.add(name=method, input_type=f".{PACKAGE}.EchoRequest", output_type=f".{PACKAGE}.EchoResponse")
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_descriptor())
EchoRequest: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoRequest"))
EchoResponse: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoResponse"))


@dataclass(frozen=True)
class Call:
    """A call the echo answered: its method and metadata (lower-case keys)."""

    method: str
    metadata: tuple[tuple[str, str], ...]


@dataclass
class GRPCEchoServer:
    identity: Identity
    host: str = "127.0.0.1"
    port: int = 0
    calls: deque[Call] = field(default_factory=lambda: deque(maxlen=1000))
    _server: grpc.aio.Server | None = None

    async def start(self) -> int:
        self._server = grpc.aio.server()
        handlers = {m: grpc.unary_unary_rpc_method_handler(
            self._handler(m), request_deserializer=EchoRequest.FromString,
            response_serializer=EchoResponse.SerializeToString) for m in METHODS}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        # server reflection, so that `grpcurl -plaintext HOST:PORT list` (and describe) work
        reflection.enable_server_reflection((SERVICE, reflection.SERVICE_NAME), self._server, pool=_POOL)
        self.port = self._server.add_insecure_port(f"{self.host}:{self.port}")
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    def _handler(self, method: str) -> Any:
        full = f"/{SERVICE}/{method}"

        async def echo(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = tuple((str(k), v if isinstance(v, str) else v.decode("latin-1"))
                             for k, v in context.invocation_metadata() or ())
            self.calls.append(Call(full, metadata))
            return self.response(full, metadata)

        return echo

    def response(self, method: str, metadata: tuple[tuple[str, str], ...]) -> Any:
        out = EchoResponse()
        a = out.assertions
        a.fully_qualified_method = method
        a.authority = next((v for k, v in metadata if k == ":authority"), "")
        for k, v in metadata:
            a.headers.add(key=k, value=v)
        ctx = a.context
        ctx.namespace, ctx.service_name, ctx.pod = self.identity.namespace, self.identity.service, self.identity.pod
        return out
