"""The OpenAPI schema tells the truth: every error an operation can answer, in the one error shape.

`AutoSchema` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds to each operation the error statuses the
project's machinery can answer, so a view documents only its own success responses:

- 400 where the request carries input (a body or parameters): a validation error or an unreadable body;
- 401, 403 and 404 where authentication is required: no or a bad token; a token without the scope or a
  role without the right; a resource that does not exist or lies outside the caller's teams;
- 413 and 415 where there is a request body: one over DATA_UPLOAD_MAX_MEMORY_SIZE; a Content-Type no
  parser of the view reads;
- 429 where authentication is required (too many unknown bearer tokens from the address) or the
  view is throttled.

Query parameters that are not required may be empty (`?start=` is no start, as DRF reads it). A
request serializer may state the cross-field rules its validate() applies as `schema_rules` (JSON
Schema keywords, e.g. an `anyOf` of required fields). Decimal strings get a pattern matching exactly
what DecimalField reads, strings one refusing NUL, and read-only choices the "" or null their model
column may hold.
"""

from __future__ import annotations

from http import HTTPStatus

from django.core.exceptions import FieldDoesNotExist
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"message": "...", "extra": {...}}`; a validation error's fields are in
    `extra.fields`, each with its list of messages."""

    message = serializers.CharField()
    extra = serializers.DictField()

    class Meta:
        ref_name = "Error"


ERROR_RESPONSES = {
    400: "the request is not valid: `extra.fields` names each bad field (or the body is unreadable)",
    401: "no API token, or an unknown or revoked one (send `Authorization: Bearer <token>`)",
    403: "the token lacks the scope, or the user the role, this operation needs",
    404: "no such resource, or it lies outside the caller's teams",
    413: "the body is larger than the server reads (DATA_UPLOAD_MAX_MEMORY_SIZE): send smaller batches",
    415: "the body's Content-Type is not one this operation reads",
    429: "too many requests: retry after the `Retry-After` seconds",
}


class Batch(serializers.ListSerializer):
    """A batch body for the schema: an array whose items should be `child`. An item that is not one is a
    rejected row of the 200 answer, never a 400, so the schema may not forbid any item; it shows the
    shape and says so. `or_one=True`: a single object is read as a batch of one."""

    def __init__(self, *args, or_one: bool = False, **kwargs):
        self.or_one = or_one
        super().__init__(*args, **kwargs)


def error_response(status: int) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=ERROR_RESPONSES[status])


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        if method in ("POST", "PUT") and "requestBody" in operation:
            # every POST or PUT of this API that documents a body needs one (an empty body is a 400):
            # spectacular marks it optional when one media type, such as NDJSON text, is not a serializer
            operation["requestBody"]["required"] = True
        responses = operation["responses"]
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and not parameter.get("required"):
                # DRF's query serializers and FilterSets read `?name=` as no value given
                parameter.setdefault("allowEmptyValue", True)
        for status in self._error_statuses(operation):
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(error_response(status), str(status))
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _get_request_for_media_type(self, serializer, direction="request"):
        if not isinstance(serializer, Batch):
            schema, required = super()._get_request_for_media_type(serializer, direction)
            # a serializer whose rules ask for some field cannot be sent without a body
            return schema, required or bool(getattr(serializer, "schema_rules", None))
        item = self.resolve_serializer(serializer.child, direction).ref
        batch = {
            "type": "array",
            "items": {"anyOf": [item, {}]},
            "description": "an item that is not valid is a rejected row of the answer, with its reasons",
        }
        return (
            {"anyOf": [batch, {"anyOf": [item, {"type": "object"}]}]} if serializer.or_one else batch
        ), True

    def _error_statuses(self, operation: dict) -> list[int]:
        statuses = []
        if operation.get("requestBody") or operation.get("parameters"):
            statuses.append(HTTPStatus.BAD_REQUEST)
        if {} not in operation.get("security", [{}]):
            statuses += [HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND]
        if operation.get("requestBody"):
            statuses += [HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.UNSUPPORTED_MEDIA_TYPE]
        # an address that sent too many unknown bearer tokens is refused on every authenticated operation
        # (finops.accounts.throttling), as is any view with DRF throttles of its own
        if {} not in operation.get("security", [{}]) or self.view.get_throttles():
            statuses.append(HTTPStatus.TOO_MANY_REQUESTS)
        return statuses

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request":  # cross-field rules a serializer's validate() applies, stated for clients
            schema.update(getattr(serializer, "schema_rules", {}))
        return schema

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if schema.get("type") == "string" and "pattern" not in schema and _refuses_nul(field):
            schema["pattern"] = NO_NUL  # DRF's CharField refuses NUL (so does PostgreSQL's text)

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            schema["pattern"] = decimal_pattern(field)
        if isinstance(field, serializers.ChoiceField) and field.read_only:
            _add_blank_and_null_choices(field, schema)
        return schema


NO_NUL = r"^[^\x00]*$"


def _refuses_nul(field) -> bool:
    return isinstance(field, serializers.CharField) and any(
        isinstance(validator, ProhibitNullCharactersValidator) for validator in field.validators
    )


def decimal_pattern(field: serializers.DecimalField) -> str:
    """What DecimalField reads, as a pattern: digits within its whole and decimal places (leading zeros
    do not count; "1." is 1). spectacular's own pattern also matches "", "-" and ".", which it refuses."""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    places = field.decimal_places
    if field.max_whole_digits == 0:  # "0" has a whole digit; "0.5" and ".5" have none
        return rf"^{sign}0*\.\d{{1,{places}}}$"
    whole = rf"0*\d{{1,{field.max_whole_digits}}}"
    if not places:
        return rf"^{sign}{whole}\.?$"
    return rf"^{sign}(?:{whole}(?:\.\d{{0,{places}}})?|0*\.\d{{1,{places}}})$"


def _add_blank_and_null_choices(field: serializers.ChoiceField, schema: dict) -> None:
    """DRF drops allow_blank and allow_null from read-only model fields, so an empty column ("" or
    null, e.g. a connector that never ran) would break the enum the schema promises."""
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    if model is None or "enum" not in schema:
        return
    try:
        model_field = model._meta.get_field(field.source)
    except FieldDoesNotExist:  # a dotted source or a property: nothing to learn from the model
        return
    if model_field.blank and "" not in schema["enum"]:
        schema["enum"] = [*schema["enum"], ""]
    if model_field.null and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
        schema["nullable"] = True
