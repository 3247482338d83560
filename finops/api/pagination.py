"""Pagination shapes of the API beyond DRF's own."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response


class CountedLimitOffset(BasePagination):
    """?limit=&offset= answered as {"count", "results"} (the quarantine's shape): limit clamped to
    1..1000 (default 100), offset to 0..2**62 (past any row count, and within Postgres' bigint)."""

    default_limit = 100
    max_limit = 1000
    max_offset = 2**62

    def paginate_queryset(self, queryset, request, view=None):
        try:
            limit = min(max(int(request.query_params.get("limit", self.default_limit)), 1), self.max_limit)
            offset = min(max(int(request.query_params.get("offset", 0)), 0), self.max_offset)
        except ValueError:
            raise ParseError("limit and offset must be whole numbers") from None
        self.count = queryset.count()
        return list(queryset[offset : offset + limit])

    def get_paginated_response(self, data):
        return Response({"count": self.count, "results": data})
