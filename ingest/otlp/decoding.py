"""OTLP/HTTP request bodies (opentelemetry-proto `docs/specification.md`, "OTLP/HTTP") to and from protobuf.

Both encodings become one ExportTraceServiceRequest. OTLP/JSON is proto3's JSON mapping except that
trace and span ids are hex, not base64, so the ids are rewritten before json_format parses the rest
(camelCase keys, int64 as strings or numbers, enums as integers, unknown fields ignored).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from finops.core.json_depth import JsonTooDeep, json_loads_bounded

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 20 * 1024 * 1024  # the spec's recommended limit, after decompression
_WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # the Python exporter offers both
HEX_PATTERN = r"^(?:[0-9a-fA-F]{2})*$"  # OTLP/JSON's trace and span ids
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$"
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class UndecodableBody(ValueError):
    """The body is not an ExportTraceServiceRequest in the declared encoding (HTTP 400)."""


class BodyTooLarge(ValueError):
    """The body is over MAX_BODY_BYTES, before or after decompression (HTTP 413)."""


def encoding_of(content_type: str) -> str | None:
    """PROTOBUF, JSON, or None for a content type OTLP/HTTP does not define."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type if media_type in (PROTOBUF, JSON) else None


def body_decompress(*, body: bytes, content_encoding: str) -> bytes:
    content_encoding = content_encoding.strip().lower()
    if content_encoding in ("", "identity"):
        return body
    if content_encoding not in _WINDOW_BITS:
        raise UndecodableBody(f"Content-Encoding {content_encoding!r} is not supported; send gzip or none")
    decompressor = zlib.decompressobj(_WINDOW_BITS[content_encoding])
    try:
        data = decompressor.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as error:
        raise UndecodableBody(f"the body is not valid gzip ({error})") from None
    if len(data) > MAX_BODY_BYTES or decompressor.unconsumed_tail:
        raise BodyTooLarge(f"the decompressed body is over {MAX_BODY_BYTES} bytes; export smaller batches")
    return data


def export_request_decode(*, body: bytes, encoding: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if encoding == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as error:
            raise UndecodableBody(f"the body is not a protobuf ExportTraceServiceRequest ({error})") from None
        return request
    try:
        document = json_loads_bounded(body)
    except JsonTooDeep as error:
        raise UndecodableBody(f"the body is {error}") from None
    except ValueError as error:
        raise UndecodableBody(f"the body is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise UndecodableBody("the body must be a JSON ExportTraceServiceRequest object")
    try:
        json_types_check(document, request.DESCRIPTOR)
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, UndecodableBody) as error:
        raise UndecodableBody(f"the body is not an OTLP/JSON ExportTraceServiceRequest ({error})") from None
    except RecursionError:
        raise UndecodableBody("the body nests values too deeply to be an ExportTraceServiceRequest") from None
    return request


_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}  # fmt: skip


def json_types_check(node: Any, descriptor: Descriptor, path: str = "") -> None:
    """Each known field holds its proto3 JSON type, else UndecodableBody naming the field. json_format
    alone reads a string where a message belongs as a message of unknown fields (so nothing), true
    as 1 in an enum and 2.5 as 2."""
    if not isinstance(node, dict):
        raise UndecodableBody(f"{path or 'the body'} must be an object")
    for oneof in descriptor.oneofs:
        present = [field.json_name for field in oneof.fields if field.json_name in node or field.name in node]
        if len(present) > 1:
            raise UndecodableBody(f"{path or 'the body'} holds {' and '.join(present)}: give one of them")
    for field in descriptor.fields:
        name = field.json_name if field.json_name in node else field.name
        value = node.get(name)
        if value is None:  # null is the field's default, as absent
            continue
        where = f"{path}.{name}" if path else name
        if field.is_repeated:
            if not isinstance(value, list):
                raise UndecodableBody(f"{where} must be an array")
            for index, item in enumerate(value):
                _json_value_check(item, field, f"{where}[{index}]")
        else:
            _json_value_check(value, field, where)


def _json_value_check(value: Any, field: FieldDescriptor, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        json_types_check(value, field.message_type, where)
        return
    if field.type == FieldDescriptor.TYPE_BOOL:
        valid = isinstance(value, bool)
    elif isinstance(value, bool):
        valid = False
    elif field.type in _INTEGER_TYPES or field.type == FieldDescriptor.TYPE_ENUM:
        valid = isinstance(value, str) or (isinstance(value, (int, float)) and float(value).is_integer())
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        valid = isinstance(value, (int, float, str))
    elif field.type == FieldDescriptor.TYPE_BYTES:  # json_format would drop what is not base64, and pad
        pattern = HEX_PATTERN if field.json_name in _ID_KEYS else BASE64_PATTERN
        valid = isinstance(value, str) and re.fullmatch(pattern, value) is not None
    else:
        valid = isinstance(value, str)
    if not valid:
        raise UndecodableBody(
            f"{where} is {json.dumps(value)[:40]}, not a valid {_TYPE_NAMES.get(field.type, 'value')}"
        )


_TYPE_NAMES = {FieldDescriptor.TYPE_BOOL: "true or false", FieldDescriptor.TYPE_STRING: "string",
               FieldDescriptor.TYPE_BYTES: "hex (ids) or base64 string", FieldDescriptor.TYPE_ENUM: "enum number or name",
               FieldDescriptor.TYPE_DOUBLE: "number"}  # fmt: skip


def message_encode(*, message: Message, encoding: str) -> bytes:
    if encoding == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def status_encode(*, code: int, message: str, encoding: str) -> bytes:
    """A google.rpc.Status body, as the spec asks of every 4xx and 5xx answer."""
    return message_encode(message=Status(code=code, message=message), encoding=encoding)


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key in _ID_KEYS and isinstance(value, str):
            try:
                converted[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise UndecodableBody(f"{key} {value!r} is not hex") from None
        else:
            converted[key] = _hex_ids_to_base64(value)
    return converted
