"""OTLP/HTTP request bodies (opentelemetry-proto `docs/specification.md`, "OTLP/HTTP") to and from protobuf.

Both encodings become one ExportTraceServiceRequest. OTLP/JSON is proto3's JSON mapping except that
trace and span ids are hex, not base64, so the ids are rewritten before json_format parses the rest
(camelCase keys, int64 as strings or numbers, enums as integers, unknown fields ignored).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 20 * 1024 * 1024  # the spec's recommended limit, after decompression
_WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}  # the Python exporter offers both
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
# AnyValue's is the only bool field of a trace export; json_format would read true as 1 in an enum
_BOOL_KEYS = ("boolValue", "bool_value")


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
        document = json.loads(body)
    except ValueError as error:
        raise UndecodableBody(f"the body is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise UndecodableBody("the body must be a JSON ExportTraceServiceRequest object")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except (json_format.ParseError, UndecodableBody) as error:
        raise UndecodableBody(f"the body is not an OTLP/JSON ExportTraceServiceRequest ({error})") from None
    return request


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
        elif isinstance(value, bool) and key not in _BOOL_KEYS:
            raise UndecodableBody(f"{key} is {str(value).lower()}: only boolValue holds true or false")
        else:
            converted[key] = _hex_ids_to_base64(value)
    return converted
