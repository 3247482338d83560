"""POST /v1/traces in the OpenAPI schema (a drf-spectacular postprocessing hook: the view is plain Django).

The message shapes are derived from the protobuf descriptors themselves, in the proto3 JSON mapping the
endpoint reads (opentelemetry-proto `docs/specification.md`, "JSON Protobuf Encoding"): camelCase
names, 64-bit integers as numbers or decimal strings, enums as numbers or names, trace and span ids as
hex, any field null meaning absent, unknown fields ignored. The protobuf body is the same message in
its binary encoding.
"""

from __future__ import annotations

from itertools import combinations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ingest.otlp.decoding import _ID_KEYS, BASE64_PATTERN, HEX_PATTERN, JSON, PROTOBUF

PATH = "/v1/traces"


def _integer(minimum: int, maximum: int, digits: int, signed: bool) -> dict:
    """proto3 JSON reads an integer as a number or a decimal string (`digits` long at most, so in range)."""
    pattern = rf"^{'-?' if signed else ''}\d{{1,{digits}}}$"
    return {
        "oneOf": [
            {"type": "integer", "minimum": minimum, "maximum": maximum},
            {"type": "string", "pattern": pattern},
        ]
    }


_INT32 = _integer(-(2**31), 2**31 - 1, 9, signed=True)
_UINT32 = _integer(0, 2**32 - 1, 9, signed=False)
_INT64 = _integer(-(2**63), 2**63 - 1, 18, signed=True)
_UINT64 = _integer(0, 2**64 - 1, 18, signed=False)
_DOUBLE = {
    "oneOf": [
        {"type": "number"},
        {"type": "string", "pattern": r"^(?:-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|-?Infinity)$"},
    ]
}
_SCALARS = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: _DOUBLE,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_BYTES: {
        "type": "string",
        "pattern": BASE64_PATTERN,
        "description": "base64",
    },
}
_HEX_ID = {"type": "string", "pattern": HEX_PATTERN, "description": "hex (OTLP/JSON ids)"}


def component_name(descriptor: Descriptor) -> str:
    """opentelemetry.proto.trace.v1.Span.Event -> OtlpSpanEvent; google.rpc.Status -> RpcStatus."""
    package = descriptor.file.package
    return ("Otlp" if package.startswith("opentelemetry") else "Rpc") + descriptor.full_name[
        len(package) + 1 :
    ].replace(".", "")


def message_schemas(descriptor: Descriptor, components: dict[str, dict]) -> dict:
    """A $ref to the JSON Schema of a message, adding it and every message it holds to components."""
    name = component_name(descriptor)
    if descriptor.full_name == "google.protobuf.Any":
        return {"type": "object", "description": 'a google.protobuf.Any: {"@type": ..., ...}'}
    if name not in components:
        components[name] = {}  # placed first: messages nest themselves (AnyValue holds AnyValue)
        properties = {}
        for field in descriptor.fields:
            schema = _field_schema(field, components)
            properties[field.json_name] = (
                {**schema, "nullable": True}
                if "$ref" not in schema
                else {
                    "allOf": [schema],
                    "nullable": True,
                }
            )
        schema = {"type": "object", "properties": properties}
        exclusive = [
            [field.json_name for field in oneof.fields]
            for oneof in descriptor.oneofs
            if len(oneof.fields) > 1 and not oneof.name.startswith("_")
        ]
        if exclusive:  # proto3 JSON refuses two members of one oneof
            schema["not"] = {
                "anyOf": [
                    {"required": list(pair)} for members in exclusive for pair in combinations(members, 2)
                ]
            }
        if descriptor.full_name.startswith("opentelemetry"):
            schema["description"] = f"`{descriptor.full_name}` (null or absent fields are their default)"
        components[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _field_schema(field: FieldDescriptor, components: dict[str, dict]) -> dict:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        item = message_schemas(field.message_type, components)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: any number is kept, and an unknown name is ignored (read as 0)
        names = ", ".join(field.enum_type.values_by_name)
        item = {"oneOf": [_INT32, {"type": "string", "description": f"one of {names}"}]}
    elif field.type == FieldDescriptor.TYPE_BYTES and field.json_name in _ID_KEYS:
        item = _HEX_ID
    else:
        item = _SCALARS[field.type]
    return {"type": "array", "items": item} if field.is_repeated else item


def _status_response(description: str, media_types: tuple[str, ...] = (PROTOBUF, JSON)) -> dict:
    return {
        "description": f"{description}; the body is a google.rpc.Status in the request's encoding",
        "content": {
            media_type: {"schema": {"$ref": "#/components/schemas/RpcStatus"}} for media_type in media_types
        },
    }


def otlp_traces_document(result: dict, generator, request, public) -> dict:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    request_ref = message_schemas(ExportTraceServiceRequest.DESCRIPTOR, components)
    response_ref = message_schemas(ExportTraceServiceResponse.DESCRIPTOR, components)
    message_schemas(Status.DESCRIPTOR, components)
    result.setdefault("paths", {})[PATH] = {
        "post": {
            "operationId": "otlp_traces_export",
            "summary": "Export spans over OTLP/HTTP",
            "description": (
                "OpenTelemetry's OTLP/HTTP trace export (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). LLM spans "
                "(GenAI semantic conventions, OpenInference, OpenLLMetry) become usage events; others are "
                "ignored. Bodies may be gzip or deflate compressed (`Content-Encoding`). Spans that cannot "
                "be read are counted in `partialSuccess.rejectedSpans`, with the reason."
            ),
            "tags": ["otlp"],
            "security": [{"bearerAuth": []}],
            "requestBody": {
                "required": True,
                "content": {
                    PROTOBUF: {"schema": request_ref},
                    JSON: {"schema": request_ref},
                },
            },
            "responses": {
                "200": {
                    "description": "accepted; partialSuccess says how many spans were rejected and why",
                    "content": {PROTOBUF: {"schema": response_ref}, JSON: {"schema": response_ref}},
                },
                "400": _status_response("the body is not an ExportTraceServiceRequest in its encoding"),
                "401": {
                    **_status_response("no API token, or an unknown or revoked one"),
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                },
                "403": _status_response("the token lacks the 'ingest' scope"),
                "413": _status_response("the body is over 20 MiB, before or after decompression"),
                "415": _status_response("the Content-Type is not OTLP's", (JSON,)),
                "429": {
                    **_status_response("too many unknown API tokens from this address: retry later"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                },
            },
        }
    }
    return result
