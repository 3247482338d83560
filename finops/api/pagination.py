"""Pagination shapes of the API: a page size the client names is honoured or refused, never silently
replaced; and the quarantine's counted limit/offset."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.response import Response


class CountedLimitOffset(pagination.BasePagination):
    """?limit=&offset= answered as {"count", "results"} (the quarantine's shape): limit clamped to
    1..1000 (default 100, also for `?limit=`), offset to 0..2**62 (past any row count, and within Postgres' bigint)."""

    default_limit = 100
    max_limit = 1000
    max_offset = 2**62

    def paginate_queryset(self, queryset, request, view=None):
        try:
            limit = min(max(int(request.query_params.get("limit") or self.default_limit), 1), self.max_limit)
            offset = min(max(int(request.query_params.get("offset") or 0), 0), self.max_offset)
        except ValueError:
            raise ParseError("limit and offset must be whole numbers") from None
        self.count = queryset.count()
        return list(queryset[offset : offset + limit])

    def get_paginated_response(self, data):
        return Response({"count": self.count, "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {"count": {"type": "integer", "minimum": 0}, "results": schema},
        }

    def get_schema_operation_parameters(self, view):
        def whole_number(name: str, description: str) -> dict:
            return {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": {"type": "integer"},
            }

        # any whole number is accepted: values past the bounds are clamped to them
        return [
            whole_number("limit", f"rows to answer, 1 to {self.max_limit} (default {self.default_limit})"),
            whole_number("offset", f"rows to skip, 0 to {self.max_offset}"),
        ]


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"

    def get_page_size(self, request):
        value = request.query_params.get(self.page_size_query_param)
        if value in (None, ""):
            return self.page_size
        try:
            page_size = int(value)
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"must be a whole number from 1 to {self.max_page_size}"]}
            )
        return page_size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """?limit=&offset= with DRF's page shape; a value the client names is honoured or refused (DRF's own
    falls back to the default on `offset=null`)."""

    max_offset = 2**62  # within Postgres' bigint OFFSET

    def get_limit(self, request):
        return self._whole_number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request):
        return self._whole_number(request, self.offset_query_param, 0, 0, self.max_offset)

    @staticmethod
    def _whole_number(request, name: str, default: int, lowest: int, highest: int) -> int:
        value = request.query_params.get(name)
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except ValueError:
            number = lowest - 1
        if not lowest <= number <= highest:
            raise ValidationError({name: [f"must be a whole number from {lowest} to {highest}"]})
        return number

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, self.max_offset)}
        for parameter in parameters:
            lowest, highest = bounds[parameter["name"]]
            parameter["schema"].update(minimum=lowest, maximum=highest)
        return parameters
