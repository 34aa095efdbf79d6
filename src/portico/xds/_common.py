"""Small helpers shared by the xds builders (Any packing, ADS config sources, durations)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import backoff_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"

# The static cluster with no endpoints that invalid backends route to (HTTPRoute spec:
# an invalid backendRef's share of requests answers 500; TCP connections get closed).
INVALID_CLUSTER = "portico/invalid-backend"
INVALID_BACKEND_HEADER = "x-portico-invalid-backend"


def pack(msg: Message) -> any_pb2.Any:
    """Pack `msg` into an Any with the canonical type.googleapis.com prefix. Its bytes are
    serialized deterministically (map entries in key order): equal configurations then
    make equal resources, whatever order their maps were filled in, so a resource's
    version changes only when its content does (else Envoy is sent it again for nothing)."""
    out = any_pb2.Any()
    out.Pack(msg, type_url_prefix="type.googleapis.com/", deterministic=True)
    return out


def ads_source() -> config_source_pb2.ConfigSource:
    """A config source telling Envoy to fetch the resource over the ADS stream (xDS v3)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


XDS_CLUSTER = "portico-xds"  # the bootstrap's cluster of the control plane


def vhds_source() -> config_source_pb2.ConfigSource:
    """Where a route configuration's virtual hosts come from: the control plane's own
    delta stream (Envoy takes VHDS over delta gRPC only, not over ADS)."""
    grpc = grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
        cluster_name=XDS_CLUSTER,
        # a control plane that restarts is found again within a second, as for ADS
        retry_policy=base_pb2.RetryPolicy(retry_back_off=backoff_pb2.BackoffStrategy(
            base_interval=millis(100), max_interval=millis(1000)))))
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.DELTA_GRPC, transport_api_version=config_source_pb2.ApiVersion.V3,
        grpc_services=[grpc], set_node_on_first_message_only=True)
    return config_source_pb2.ConfigSource(api_config_source=api, resource_api_version=config_source_pb2.ApiVersion.V3)


def millis(ms: int) -> duration_pb2.Duration:
    """A protobuf Duration of `ms` milliseconds."""
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def stat_name(name: str) -> str:
    """Envoy stat prefixes: keep it to characters that do not split stat names (no '.' or ':')."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def set_wrapped(message: Any, **values: int | None) -> None:
    """Set the wrapper fields (UInt32Value, ...) of `message` whose value is not None."""
    for name, value in values.items():
        if value is not None:
            getattr(message, name).value = value
