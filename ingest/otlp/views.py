"""POST /v1/traces: OTLP/HTTP trace export (opentelemetry-proto `docs/specification.md`, "OTLP/HTTP").

A plain Django view: OTLP answers in its own protobuf shapes (ExportTraceServiceResponse on success,
google.rpc.Status on failure) in the request's encoding, which DRF's renderers and error handler do not.
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from finops.accounts.authentication import token_for_request
from finops.accounts.models import TokenScope
from finops.accounts.throttling import Throttled
from ingest.otlp.decoding import (
    JSON,
    MAX_BODY_BYTES,
    BodyTooLarge,
    UndecodableBody,
    body_decompress,
    encoding_of,
    export_request_decode,
    message_encode,
    status_encode,
)
from ingest.otlp.services import traces_ingest

# google.rpc.Code values, for the Status bodies
_UNAUTHENTICATED, _PERMISSION_DENIED, _INVALID_ARGUMENT, _RESOURCE_EXHAUSTED = 16, 7, 3, 8


@csrf_exempt  # bearer-token API: no cookies, so no cross-site request to forge
@require_POST
def traces_view(request: HttpRequest) -> HttpResponse:
    encoding = encoding_of(request.content_type or "")
    if encoding is None:
        return _status_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            _INVALID_ARGUMENT,
            f"Content-Type {request.content_type!r} is not OTLP; send application/x-protobuf or application/json",
            JSON,
        )
    try:
        token = _token(request)
    except Throttled as throttled:
        # OTLP exporters retry a 429 after its Retry-After
        seconds = throttled.retry_after_seconds()
        response = _status_response(
            HTTPStatus.TOO_MANY_REQUESTS,
            _RESOURCE_EXHAUSTED,
            f"too many unknown API tokens from your address; try again in {seconds} s",
            encoding,
        )
        response["Retry-After"] = str(seconds)
        return response
    if token is None:
        response = _status_response(
            HTTPStatus.UNAUTHORIZED,
            _UNAUTHENTICATED,
            "missing or unknown API token: send 'Authorization: Bearer <token>' "
            "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer <token>); create one with "
            "`finops token create --scope ingest`",
            encoding,
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    if TokenScope.INGEST not in token.scopes:
        return _status_response(
            HTTPStatus.FORBIDDEN,
            _PERMISSION_DENIED,
            "this API token lacks the 'ingest' scope; create one with `finops token create --scope ingest`",
            encoding,
        )
    # read the stream, not request.body: the size limit here is OTLP's, not DATA_UPLOAD_MAX_MEMORY_SIZE
    body = request.read(MAX_BODY_BYTES + 1)
    try:
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes; export smaller batches")
        body = body_decompress(body=body, content_encoding=request.headers.get("Content-Encoding", ""))
        export_request = export_request_decode(body=body, encoding=encoding)
    except BodyTooLarge as error:
        return _status_response(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _RESOURCE_EXHAUSTED, str(error), encoding
        )
    except UndecodableBody as error:
        return _status_response(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, str(error), encoding)
    result = traces_ingest(request=export_request, token=token)
    export_response = ExportTraceServiceResponse()
    if result.rejected_spans:
        export_response.partial_success.rejected_spans = result.rejected_spans
        export_response.partial_success.error_message = result.error_message
    return HttpResponse(message_encode(message=export_response, encoding=encoding), content_type=encoding)


def _token(request: HttpRequest):
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return token_for_request(request=request, secret=secret.strip())


def _status_response(http_status: HTTPStatus, code: int, message: str, encoding: str) -> HttpResponse:
    return HttpResponse(
        status_encode(code=code, message=message, encoding=encoding),
        status=http_status,
        content_type=encoding,
    )
