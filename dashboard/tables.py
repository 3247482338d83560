"""Tables of the dashboard pages, and their CSV export.

A page puts `Table`s in its context and renders with `render_page`: every table it shows is then also
a CSV file at the same URL plus `?export=<table name>`, with the same filters, so what a person
downloads is exactly what they saw. The page shows the value formatted for people (`$1,234.56`,
`42.0%`); the file carries it exact and unformatted (`1234.561234`, `0.42`), ready for a spreadsheet
or a FinOps tool.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.http import HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render

from dashboard import formatting

# how a column's cells read on the page; the file gets the raw value
FORMATS: dict[str, Callable[[Any], str]] = {
    "text": lambda value: "—" if value is None or value == "" else str(value),
    "count": formatting.count,
    "usd": formatting.usd,
    "usd_exact": formatting.usd_exact,
    "percent": formatting.percent,
    "ratio": formatting.ratio,
    "number": formatting.number,
    "date": lambda value: "—" if value is None else value.strftime("%-d %b %Y"),
    "datetime": lambda value: "—" if value is None else value.strftime("%-d %b %Y %H:%M"),
    # 2025-03-04, as a chart's axis reads (a label such as "Total" in a totals row stays as it is)
    "day": lambda value: "—" if value is None else value if isinstance(value, str) else value.isoformat(),
}
NUMERIC = frozenset({"count", "usd", "usd_exact", "percent", "ratio", "number"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Column:
    label: str
    kind: str = "text"  # a key of FORMATS
    # this column's cell links to link(source), source being what the row was made from (Table.sources)
    link: Callable[[Any], str | None] | None = None
    # "usd" columns naming the same group show one precision (formatting.usd_places over all their cells,
    # the totals row too), so the digits of a chart's table line up
    align: str = ""
    # the page's text of a cell when its kind alone cannot say it (an alert's value: dollars, points,
    # a share, by its rule): display(value, source); the file keeps the raw value
    display: Callable[[Any, Any], str] | None = None

    def __post_init__(self):
        if self.kind not in FORMATS:
            raise ValueError(f"column {self.label!r}: kind must be one of {', '.join(FORMATS)}")

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC


@dataclass(frozen=True)
class Cell:
    text: str
    href: str | None
    numeric: bool


@dataclass
class Table:
    """Rows of raw values (Decimal, int, float, str, date, datetime or None), one per column."""

    name: str  # unique on its page: the value of ?export= and the file's name
    caption: str
    columns: list[Column]
    rows: list[list]
    foot: list | None = None  # a totals row, in the columns' kinds
    empty: str = "Nothing to show in this window."
    row_classes: list[str] = field(default_factory=list)  # a CSS class per row ("" for none)
    sources: list = field(default_factory=list)  # what each row was made from, for the columns' links

    def __post_init__(self):
        if not NAME.match(self.name):
            raise ValueError(f"table name {self.name!r}: lowercase letters, digits and dashes")
        for number, row in enumerate(self.rows, start=1):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name}: row {number} has {len(row)} cells, not {len(self.columns)}"
                )

    def _aligned(self) -> dict[int, Decimal]:
        """The shared precision of each aligned column, by its position."""
        groups: dict[str, list[int]] = {}
        for position, column in enumerate(self.columns):
            if column.align:
                groups.setdefault(column.align, []).append(position)
        places = {}
        for positions in groups.values():
            lines = [*self.rows, *([self.foot] if self.foot is not None else [])]
            group_places = formatting.usd_places(
                [
                    line[position]
                    for line in lines
                    for position in positions
                    if isinstance(line[position], Decimal)
                ]
            )
            places |= dict.fromkeys(positions, group_places)
        return places

    def _cells(self, row: list, source=None, *, aligned: dict[int, Decimal]) -> list[Cell]:
        return [
            Cell(
                text=column.display(value, source)
                if column.display and source is not None
                else formatting.usd_at(value, aligned[position])
                if position in aligned and (value is None or isinstance(value, Decimal))
                else FORMATS[column.kind](value),
                href=column.link(source) if column.link and source is not None else None,
                numeric=column.numeric,
            )
            for position, (column, value) in enumerate(zip(self.columns, row, strict=True))
        ]

    @property
    def display_rows(self) -> Iterator[tuple[list[Cell], str]]:
        classes = self.row_classes or [""] * len(self.rows)
        sources = self.sources or [None] * len(self.rows)
        aligned = self._aligned()
        for row, css, source in zip(self.rows, classes, sources, strict=True):
            yield self._cells(row, source, aligned=aligned), css

    @property
    def display_foot(self) -> list[Cell] | None:
        return None if self.foot is None else self._cells(self.foot, aligned=self._aligned())

    def csv_lines(self) -> Iterator[list[str]]:
        yield [column.label for column in self.columns]
        for row in self.rows:
            yield [csv_value(value) for value in row]
        if self.foot is not None:
            yield [csv_value(value) for value in self.foot]


def csv_value(value) -> str:
    """A cell as a spreadsheet should read it: exact numbers, ISO dates, text that cannot run."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_response(table: Table, *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(line) for line in table.csv_lines()), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def tables_in(value, depth: int = 0) -> Iterable[Table]:
    """Every Table in a page's context: directly, in lists and dicts, or as a chart's `table`."""
    if depth > 3:
        return
    if isinstance(value, Table):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tables_in(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from tables_in(item, depth + 1)
    elif isinstance(getattr(value, "table", None), Table):
        yield value.table


def render_page(request, template: str, context: dict, *, page: str, status: int = 200) -> HttpResponse:
    """The page, or with ?export=<name> that table of it as CSV (a 400 naming the tables it has)."""
    wanted = request.GET.get("export")
    if wanted is None or request.method != "GET":
        return render(request, template, context, status=status)
    tables = {table.name: table for table in tables_in(context)}
    if wanted not in tables:
        offered = ", ".join(sorted(tables)) or "none"
        return HttpResponseBadRequest(
            f"export={wanted}: this page, with these filters, has no such table (its tables: {offered})\n",
            content_type="text/plain; charset=utf-8",
        )
    window = "_".join(
        str(part) for part in (request.GET.get("start"), request.GET.get("end")) if part and NAME.match(part)
    )
    filename = "-".join(part for part in ("finops", page, wanted, window) if part) + ".csv"
    return csv_response(tables[wanted], filename=filename)
