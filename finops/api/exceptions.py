"""One error shape for the API: {"message": ..., "extra": {...}} (SPEC's own shapes where it gives one)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE

    def __init__(self) -> None:
        super().__init__(
            f"the body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes; send it in smaller batches"
        )


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        # Django's own answer was an HTML 400 page saying nothing, in no shape the schema documents
        exc = BodyTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"message": "Validation error", "extra": {"fields": detail}}
    else:
        response.data = {"message": str(getattr(exc, "detail", exc)), "extra": {}}
    return response


def page_not_found(request, exception):
    """handler404: a URL under /api/ that matches no route answers in the API's error shape, not HTML."""
    if request.path.startswith("/api/"):
        return JsonResponse({"message": "Not found.", "extra": {}}, status=404)
    return defaults.page_not_found(request, exception)
