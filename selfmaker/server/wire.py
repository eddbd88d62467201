"""Which wire protocols each service accepts, whatever its served model declares.

AWS moves services between protocols (Athena from JSON 1.1 to rest-json in botocore 1.44,
SQS from query to JSON 1.0, CloudWatch from query to JSON 1.0 and then Smithy RPC v2
CBOR), but the clients already installed keep speaking the old one. So a service accepts
the protocols its model declares plus the ones in LEGACY_PROTOCOLS, each reaching the same
operation with the same validation and answering in the protocol the request came in.

The app routes a request by what it carries (``X-Amz-Target``, the RPC v2 CBOR path, a
form body, a rest-json method and path) and the service its SigV4 scope names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .models import SERVED_SERVICES, service_model

# Protocols a service's clients have spoken that its served model may no longer declare, with what
# the model no longer says about them: the X-Amz-Target prefix and JSON version of the JSON protocols.
# ``path_member``: a query request posted to a
# path other than / names that member by its URL (SQS clients post to the queue URL).
LEGACY_PROTOCOLS: dict[str, dict[str, dict]] = {
    "athena": {"json": {"target": "AmazonAthena", "json_version": "1.1"}},  # boto3 before 1.44.x
    "cloudwatch": {"query": {}, "json": {}, "smithy-rpc-v2-cbor": {}},  # query: boto3 1.35 and older
    "sqs": {"query": {"path_member": "QueueUrl"}, "json": {}},  # query: boto3 up to 1.34.8x
}

# SigV4 signing names that differ from the botocore service name.
_SIGNING_NAMES = {"cloudwatch": "monitoring"}

S3 = "s3"  # rest-xml and streaming: served by selfmaker.objects.endpoint, not here


@dataclass(frozen=True)
class ServiceWire:
    service: str
    signing_name: str
    protocols: tuple[str, ...]
    json_target: str | None  # X-Amz-Target prefix (JSON protocols, and the RPC v2 CBOR path)
    json_version: str  # application/x-amz-json-<version>
    query_path_member: str | None = None


@cache
def wire(service: str) -> ServiceWire:
    model = service_model(service)
    meta = model.metadata
    legacy = LEGACY_PROTOCOLS.get(service, {})
    declared = meta.get("protocols") or [meta["protocol"]]
    protocols = tuple(dict.fromkeys([*declared, *legacy]))
    json_extra = legacy.get("json", {})
    return ServiceWire(
        service=service,
        signing_name=meta.get("signingName") or _SIGNING_NAMES.get(service) or meta.get("endpointPrefix") or service,
        protocols=protocols,
        json_target=meta.get("targetPrefix") or json_extra.get("target"),
        json_version=meta.get("jsonVersion") or json_extra.get("json_version") or "1.1",
        query_path_member=legacy.get("query", {}).get("path_member"),
    )


def _wires() -> list[ServiceWire]:
    return [wire(s) for s in SERVED_SERVICES if s != S3]


@cache
def json_targets() -> dict[str, str]:
    """X-Amz-Target prefix -> service, for every service that accepts a JSON protocol."""
    return {w.json_target: w.service for w in _wires() if "json" in w.protocols and w.json_target}


@cache
def rpc_v2_cbor_targets() -> dict[str, str]:
    """The RPC v2 CBOR path's service (the target prefix) -> service."""
    return {w.json_target: w.service for w in _wires() if "smithy-rpc-v2-cbor" in w.protocols and w.json_target}


@cache
def query_services() -> dict[str, str]:
    """SigV4 signing name -> the service that accepts the query protocol under it."""
    return {w.signing_name: w.service for w in _wires() if "query" in w.protocols}


@cache
def rest_json_services(signing_name: str) -> tuple[str, ...]:
    """The rest-json services signed as ``signing_name``, literal paths before templates within each."""
    return tuple(w.service for w in _wires() if "rest-json" in w.protocols and w.signing_name == signing_name)


def only_query(service: str) -> bool:
    """True when the query protocol is all the service speaks (STS, IAM): any request signed for it is one."""
    return wire(service).protocols == ("query",)


def accepts(service: str) -> dict[str, tuple[str, ...]]:
    """service -> protocols, for the docs."""
    return {w.service: w.protocols for w in _wires()}
