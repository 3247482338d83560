"""One error shape for the API: {"message": ..., "extra": {...}} (SPEC's own shapes where it gives one)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, Http404):
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
