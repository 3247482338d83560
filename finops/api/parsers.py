"""Request body parsers: DRF's JSON parser with a depth bound, and the raw body for views that parse it
themselves."""

from __future__ import annotations

import io

from django.http import HttpRequest
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from finops.core.json_depth import MAX_DOCUMENT_DEPTH, JsonTooDeep, text_depth_exceeds


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser, refusing with a 400 a body nested deeper than json can read (it recurses per
    level: a deep body was a RecursionError, a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = _read(stream)
        if text_depth_exceeds(body, MAX_DOCUMENT_DEPTH):
            raise ParseError(f"the body is {JsonTooDeep()}")
        return super().parse(io.BytesIO(body), media_type, parser_context)


class RawBody(parsers.BaseParser):
    """The body as bytes, for a view that reads it itself (JSON or NDJSON, decoded once where it is
    used). A view needs a parser even so: a logged-in session's CSRF check reads request.POST, which
    parses the body, and with no parser that was a 415."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return _read(stream)


class RawNDJSONBody(RawBody):
    media_type = "application/x-ndjson"


class RawAnyBody(RawBody):
    """Any other type but forms (which FormParser reads first, for the CSRF check): read as JSON, as
    the ingest views always have."""

    media_type = "*/*"


RAW_BODY_PARSERS = [RawBody, RawNDJSONBody, parsers.FormParser, parsers.MultiPartParser, RawAnyBody]


def raw_body(request) -> bytes:
    """The body a view with RAW_BODY_PARSERS was sent: b"" when there was none (DRF then parses
    nothing) or it was a form (which is not an ingest body)."""
    data = request.data
    return data if isinstance(data, bytes) else b""


def _read(stream) -> bytes:
    if stream is None:
        return b""
    # the request itself when nothing read it yet: its body honours DATA_UPLOAD_MAX_MEMORY_SIZE
    return stream.body if isinstance(stream, HttpRequest) else stream.read()
