"""A provider's own CSV export (a console cost export, any invoice CSV) as statement lines, read through a
saved column mapping. Pure: header and rows in, lines and row errors out; ingest.connectors.services
writes them (source `invoice:<file name>`, the invoice side of a bill: finops/bills/statements.py).

No export looks like another, so nothing here guesses what a column means: the mapping names the column
of each field (or a fixed value), and how its cells read. Where a cell could be read two ways the
mapping says which (dates: D/M/Y or M/D/Y is the mapping's `date_format`, never inferred per row;
`date_formats_reading` only tells the page which formats read a column's sample, so an ambiguous column
is shown as ambiguous). Money is Decimal from the text, never a float.

Each row becomes one cost line, or an InvoiceRowError naming each bad field with its column and reason
(a bad date, an amount that is not a number, a negative amount on a row that is not a credit, a currency
that is not ISO 4217, an empty required cell); the other rows are unaffected.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from ingest.connectors.focus import (
    AMOUNT_PLACES,
    MAX_AMOUNT,
    MAX_QUANTITY,
    TOKEN_TYPE_WORDS,
    model_and_token_type,
    provider_slug,
)
from ingest.connectors.models import StatementKind

PREVIEW_ROWS = 20

# the fields a column can be mapped to, in the order the page asks for them
FIELDS: dict[str, str] = {
    "period_start": "Date or period start",
    "period_end": "Period end (optional)",
    "amount": "Amount",
    "currency": "Currency",
    "provider": "Provider",
    "model": "Model",
    "token_type": "Token type",
    "line_item": "Line item or description",
    "category": "Charge category (usage, credit, tax…)",
    "quantity": "Quantity (tokens or units)",
    "api_key_id": "API key",
    "workspace_id": "Workspace",
    "project_id": "Project",
    "batch": "Batch (yes/no)",
    "service_tier": "Service tier",
    "context_window": "Context window",
}
REQUIRED_FIELDS = ("period_start", "amount")

DATE_FORMATS: dict[str, str] = {
    "iso": "ISO 8601: 2026-11-03, 2026-11-03T14:00:00Z, 2026/11/03",
    "dmy": "day/month/year: 03/11/2026, 03.11.2026, 3-11-2026 14:00",
    "mdy": "month/day/year: 11/03/2026, 11-03-2026 14:00",
    "ym": "year and month: 2026-11 (the whole month)",
    "unix": "Unix time in seconds: 1793664000",
    "unix_ms": "Unix time in milliseconds: 1793664000000",
}
PERIODS = {"day": "one day", "month": "the calendar month"}
AMOUNT_SCALES = {"units": "currency units (dollars)", "cents": "minor units (cents)"}
QUANTITY_SCALES = {1: "units", 1000: "thousands", 1_000_000: "millions"}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

# ISO 4217 codes in use (and the funds and precious-metal codes invoices do not carry are left out)
_ISO_4217_CODES = """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW
    ZWG"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())
# a negative amount is a credit only where the row says so
CREDIT_WORDS = re.compile(r"credit|refund|discount|adjust|promo|rebate|reversal", re.IGNORECASE)
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "batch", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "", "f", "standard", "default", "none", "-"})
# the six token types by the names providers' exports give them (lower case, runs of non-letters as _)
TOKEN_TYPE_NAMES: dict[str, str] = {
    **dict.fromkeys(
        [
            "uncached_input",
            "uncached_input_tokens",
            "input",
            "input_tokens",
            "input_no_cache",
            "input_uncached",
            "input_uncached_tokens",
            "usage_input_tokens_no_cache",
            "prompt",
            "prompt_tokens",
        ],
        "uncached_input",
    ),
    **dict.fromkeys(
        [
            "cache_read",
            "cache_read_input_tokens",
            "input_cache_read",
            "usage_input_tokens_cache_read",
            "cached_input",
            "input_cached",
            "input_cached_tokens",
            "cache_hit",
        ],
        "cache_read",
    ),
    **dict.fromkeys(
        [
            "cache_write_5m",
            "cache_creation_ephemeral_5m_input_tokens",
            "input_cache_write_5m",
            "usage_input_tokens_cache_write_5m",
            "cache_creation_5m",
        ],
        "cache_write_5m",
    ),
    **dict.fromkeys(
        [
            "cache_write_1h",
            "cache_creation_ephemeral_1h_input_tokens",
            "input_cache_write_1h",
            "usage_input_tokens_cache_write_1h",
            "cache_creation_1h",
        ],
        "cache_write_1h",
    ),
    **dict.fromkeys(
        ["output", "output_tokens", "usage_output_tokens", "completion", "completion_tokens"], "output"
    ),
    **dict.fromkeys(["reasoning", "reasoning_tokens", "thinking", "thinking_tokens"], "reasoning"),
}
BATCH_WORD = re.compile(r"\bbatch\b", re.IGNORECASE)
ONE_HOUR = re.compile(r"(?<![0-9])(1h|1-hour|one hour|60m)(?![a-z])", re.IGNORECASE)
CACHE = re.compile(r"cach", re.IGNORECASE)

_DAY_FIRST = re.compile(
    r"(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4})"
    r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
)
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d")
_YEAR_MONTH = re.compile(r"(?P<year>\d{4})[-/](?P<month>\d{1,2})")
_YEAR_FIRST_SLASH = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(.*)")
_INTEGER = re.compile(r"-?\d+(?:\.\d+)?")
_GROUPED_POINT = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")  # 1,234,567.89
_GROUPED_COMMA = re.compile(r"^\d{1,3}([. ]\d{3})+(,\d*)?$")  # 1.234.567,89 or 1 234 567,89
_CURRENCY_SIGNS = "$€£¥"


@dataclass(frozen=True)
class InvoiceMappingSpec:
    """How one export's columns read. `columns` maps a field of FIELDS to a header column ("" or absent:
    not in the file); `currency` and `provider` are the fixed values used where no column is mapped."""

    columns: dict[str, str] = field(default_factory=dict)
    currency: str = ""
    provider: str = ""
    date_format: str = "iso"
    period: str = "day"  # the period of a row without a period-end column
    end_inclusive: bool = False  # a period-end date names the period's last day, not the next one
    amount_scale: str = "units"
    quantity_scale: int = 1
    decimal_comma: bool = False  # 1.234,56 (else 1,234.56)
    delimiter: str = ","

    def column(self, name: str) -> str:
        return self.columns.get(name) or ""

    def as_dict(self) -> dict:
        return {**asdict(self), "columns": {name: column for name, column in self.columns.items() if column}}

    @classmethod
    def from_dict(cls, data: dict) -> InvoiceMappingSpec:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["columns"] = {name: column for name, column in (data.get("columns") or {}).items() if column}
        if "quantity_scale" in known:
            known["quantity_scale"] = int(known["quantity_scale"])
        return cls(**known)


@dataclass(frozen=True)
class InvoiceRowError:
    line: int
    errors: dict[str, list[str]]
    row: dict[str, str]

    @property
    def position(self) -> str:
        return f"line {self.line}"


def mapping_problems(*, spec: InvoiceMappingSpec, header: Iterable[str]) -> list[str]:
    """What makes the mapping unusable on a file with this header (empty: usable)."""
    present = set(header)
    problems = []
    for name in spec.columns:
        if name not in FIELDS:
            problems.append(f"{name} is not a field a column can be mapped to")
    for name in REQUIRED_FIELDS:
        if not spec.column(name):
            problems.append(f"choose the column of the {FIELDS[name].lower()}")
    if not spec.column("currency"):
        if not spec.currency:
            problems.append("choose the currency column, or give the currency of every row")
        elif spec.currency.upper() not in ISO_4217:
            problems.append(f"{spec.currency!r} is not an ISO 4217 currency code")
    if not spec.column("provider") and not provider_slug(spec.provider or ""):
        problems.append("choose the provider column, or give the provider of every row")
    missing = sorted({column for column in spec.columns.values() if column and column not in present})
    if missing:
        problems.append(f"the file has no column {', '.join(repr(column) for column in missing)}")
    if not spec.date_format:
        problems.append("choose how the dates read (the sample reads more than one way, or none)")
    elif spec.date_format not in DATE_FORMATS:
        problems.append(f"unknown date format {spec.date_format!r}; use one of {', '.join(DATE_FORMATS)}")
    if spec.period not in PERIODS:
        problems.append(f"unknown period {spec.period!r}; use one of {', '.join(PERIODS)}")
    if spec.amount_scale not in AMOUNT_SCALES:
        problems.append(f"unknown amount scale {spec.amount_scale!r}; use one of {', '.join(AMOUNT_SCALES)}")
    if spec.quantity_scale not in QUANTITY_SCALES:
        problems.append(f"the quantity scale must be one of {', '.join(map(str, QUANTITY_SCALES))}")
    if spec.delimiter not in DELIMITERS:
        problems.append("the delimiter must be a comma, semicolon, tab or pipe")
    return problems


# --- reading cells ----------------------------------------------------------------------------------


def _utc(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


@lru_cache(maxsize=4096)  # an export repeats its dates on every row of a day
def moment_read(text: str, *, date_format: str) -> tuple[datetime, bool]:
    """The instant a cell names, in UTC (a time without an offset is UTC, as the providers' exports are),
    and whether the cell was a bare date. Raises ValueError saying what was expected."""
    text = text.strip()
    if date_format == "iso":
        slashed = _YEAR_FIRST_SLASH.fullmatch(text)
        if slashed:
            year, month, day, rest = slashed.groups()
            text = f"{year}-{int(month):02d}-{int(day):02d}{rest}"
        if _ISO_DAY.fullmatch(text):
            return _utc(date.fromisoformat(text)), True
        if not _ISO_MOMENT.match(text):
            raise ValueError("not an ISO 8601 date (2026-11-03 or 2026-11-03T14:00:00Z)")
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)), False
    if date_format in ("dmy", "mdy"):
        match = _DAY_FIRST.fullmatch(text)
        if not match:
            example = "03/11/2026" if date_format == "dmy" else "11/03/2026"
            raise ValueError(f"not a {DATE_FORMATS[date_format].split(':')[0]} date like {example}")
        first, second = int(match["a"]), int(match["b"])
        day, month = (first, second) if date_format == "dmy" else (second, first)
        moment = _utc(
            date(int(match["year"]), month, day),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
        )
        return moment, match["hour"] is None
    if date_format == "ym":
        match = _YEAR_MONTH.fullmatch(text)
        if not match:
            raise ValueError("not a year and month like 2026-11")
        return _utc(date(int(match["year"]), int(match["month"]), 1)), True
    if date_format in ("unix", "unix_ms"):
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"not a Unix time ({DATE_FORMATS[date_format].split(': ')[0].lower()})")
        seconds = Decimal(text) / (1000 if date_format == "unix_ms" else 1)
        return datetime.fromtimestamp(int(seconds), UTC) + timedelta(
            microseconds=int((seconds % 1) * 1_000_000)
        ), False
    raise ValueError(f"unknown date format {date_format!r}")


def date_formats_reading(values: Iterable[str]) -> list[str]:
    """The date formats that read every non-empty value (for the preview: one is a safe choice, several
    a choice the person makes — 03/04/2026 reads as D/M/Y and as M/D/Y; none: not a date column)."""
    values = [value for value in values if value and value.strip()]
    if not values:
        return []
    readable = []
    for name in DATE_FORMATS:
        try:
            for value in values:
                moment_read(value, date_format=name)
        except (ValueError, OverflowError, OSError):
            continue
        readable.append(name)
    if "ym" in readable and "iso" in readable:
        readable.remove("ym")
    if "unix" in readable and not all(re.fullmatch(r"\d{9,13}", value.strip()) for value in values):
        readable = [name for name in readable if name not in ("unix", "unix_ms")]  # amounts, counts
    if "unix" in readable:
        # seconds past 10^11 are after the year 5000, and milliseconds under it before 1973: the size of
        # the numbers says which they are, where D/M against M/D is a real choice left to the person
        milliseconds = all(abs(Decimal(value.strip())) >= 10**11 for value in values)
        readable = ["unix_ms" if milliseconds else "unix"]
    return readable


def decimal_read(text: str, *, decimal_comma: bool) -> Decimal:
    """An exact Decimal from a money or quantity cell: 1234.5, 1,234.50 (or 1.234,50 with decimal_comma),
    a leading currency sign, (12.50) for a negative. Raises ValueError."""
    text = text.strip().replace("\u00a0", " ")
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1].strip()
    if text[:1] == "-":
        negative, text = not negative, text[1:].strip()
    text = text.lstrip(_CURRENCY_SIGNS).strip()
    if decimal_comma:
        if _GROUPED_COMMA.match(text):
            text = text.replace(".", "").replace(" ", "")
        text = text.replace(",", ".")
    elif _GROUPED_POINT.match(text):
        text = text.replace(",", "")
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+|\d+(\.\d*)?[eE][+-]?\d+", text):
        raise ValueError
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError
    return -value if negative else value


@lru_cache(maxsize=4096)
def token_type_read(text: str) -> str:
    """One of the six token types a provider's name for it means, or "" when it names none."""
    if not text.strip():
        return ""
    key = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    if key in TOKEN_TYPE_NAMES:
        return TOKEN_TYPE_NAMES[key]
    if CACHE.search(text) and ONE_HOUR.search(text):
        return "cache_write_1h"
    for pattern, name in TOKEN_TYPE_WORDS:
        if pattern.search(text):
            return name
    return ""


_provider_slug = lru_cache(maxsize=256)(provider_slug)


@lru_cache(maxsize=4096)
def _names_parsed(*texts: str) -> tuple[str, str]:
    return model_and_token_type(texts)


def _truthy(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not yes or no: {text!r}")


def _month_after(moment: datetime) -> datetime:
    return moment.replace(year=moment.year + moment.month // 12, month=moment.month % 12 + 1)


def invoice_row_line(row: dict[str, str], *, spec: InvoiceMappingSpec) -> dict:
    """One row as a statement line dict; raises ValueError(errors) naming each bad column."""
    errors: dict[str, list[str]] = {}
    cells = {name: (row.get(column) or "").strip() for name, column in spec.columns.items()}
    cell = lambda name: cells.get(name, "")  # noqa: E731 (read per field, many times a row)

    def fail(name: str, reason: str) -> None:
        errors.setdefault(spec.column(name) or name, []).append(reason)

    start = end = None
    for name in ("period_start", "period_end"):
        if not spec.column(name):
            continue
        if not cell(name):
            if name == "period_start":
                fail(name, "empty: the row has no date")
            continue
        try:
            moment, bare_date = moment_read(cell(name), date_format=spec.date_format)
        except (ValueError, OverflowError, OSError) as error:
            fail(name, f"{cell(name)!r}: {error}")
            continue
        if name == "period_start":
            start = moment
        else:
            end = moment + timedelta(days=1) if spec.end_inclusive and bare_date else moment
    if start is not None and spec.period == "month" and not spec.column("period_end"):
        start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start is not None and end is None and not errors:
        end = _month_after(start) if spec.period == "month" else start + timedelta(days=1)
    if start is not None and end is not None and end <= start:
        fail("period_end", f"{cell('period_end')!r} is not after the period start {cell('period_start')!r}")

    amount = None
    if not cell("amount"):
        fail("amount", "empty: the row has no amount")
    else:
        try:
            amount = decimal_read(cell("amount"), decimal_comma=spec.decimal_comma)
        except (ValueError, InvalidOperation):
            fail("amount", f"not a number: {cell('amount')!r}")
        else:
            if spec.amount_scale == "cents":
                amount = amount / 100
            if abs(amount) >= MAX_AMOUNT:
                fail("amount", f"{cell('amount')} is too large for a statement line (under 10^16)")

    category, line_item = cell("category"), cell("line_item")
    credit = bool(CREDIT_WORDS.search(f"{category} {line_item}"))
    if amount is not None and amount < 0 and not credit:
        fail("amount", f"negative ({cell('amount')}) on a row that is not a credit, refund or discount")

    currency = (cell("currency") if spec.column("currency") else spec.currency).upper()
    if spec.column("currency") and not currency:
        fail("currency", "empty: the row names no currency")
    elif currency not in ISO_4217:
        fail("currency", f"{currency!r} is not an ISO 4217 currency code")

    provider = _provider_slug(cell("provider") if "provider" in cells else spec.provider)
    if not provider:
        fail("provider", "empty: the row names no provider")

    quantity = None
    if cell("quantity"):
        try:
            scaled = decimal_read(cell("quantity"), decimal_comma=spec.decimal_comma) * spec.quantity_scale
        except (ValueError, InvalidOperation):
            fail("quantity", f"not a number: {cell('quantity')!r}")
        else:
            # a fraction of a token is a rounded figure: the amount is kept, the quantity left unknown
            quantity = int(scaled) if scaled == scaled.to_integral_value() else None
            if quantity is not None and abs(quantity) > MAX_QUANTITY:
                fail("quantity", f"{cell('quantity')} is too large for a statement line's quantity")

    batch = False
    if cell("batch"):
        try:
            batch = _truthy(cell("batch"))
        except ValueError as error:
            fail("batch", str(error))
    service_tier = cell("service_tier").lower()
    if service_tier == "batch":
        batch = True
    if not spec.column("batch") and not spec.column("service_tier"):
        batch = bool(BATCH_WORD.search(f"{line_item} {cell('token_type')}"))
    if errors:
        raise ValueError(errors)

    # model and token type: their own columns where mapped, else parsed from the row's names as FOCUS's are
    parsed_model, parsed_type = (
        ("", "")
        if "model" in cells and "token_type" in cells
        else _names_parsed(line_item, cell("token_type"), cell("model"))
    )
    model = cell("model").lower() if spec.column("model") else parsed_model
    if spec.column("token_type"):
        token_type = token_type_read(cell("token_type"))
    else:
        token_type = token_type_read(line_item) if (line_item and model) else parsed_type
    if credit or (category and category.lower() not in ("usage", "tokens", "token")):
        token_type = ""  # credits, taxes and fees are not tokens of a type
    if not line_item:
        line_item = cell("token_type") if not token_type else ""
    if amount.as_tuple().exponent < -12:
        amount = amount.quantize(AMOUNT_PLACES, rounding=ROUND_HALF_EVEN)
    return {
        "kind": StatementKind.COST,
        "provider": provider,
        "period_start": start,
        "period_end": end,
        "model": model[:128],
        "token_type": token_type,
        "line_item": (line_item or category)[:255],
        "project_id": cell("project_id")[:128],
        "api_key_id": cell("api_key_id")[:128],
        "workspace_id": cell("workspace_id")[:128],
        "batch": batch,
        "service_tier": service_tier[:32],
        "context_window": cell("context_window")[:32],
        "quantity": quantity,
        "amount": amount,
        "currency": currency,
    }


# --- reading the file -------------------------------------------------------------------------------


def delimiter_detect(sample: str) -> str:
    """The delimiter of a CSV from its first lines (a comma unless the header says otherwise)."""
    header = sample.splitlines()[0] if sample else ""
    counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > counts[","] else ","


def invoice_csv_records(
    text_lines: Iterable[str], *, delimiter: str = ","
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header's column names and (line number, record) for each record of the CSV."""
    reader = csv.DictReader(text_lines, delimiter=delimiter)
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        last_line = reader.line_num
        for record in reader:
            number = last_line + 1  # where the record starts (a quoted cell may span lines)
            last_line = reader.line_num
            if not any((value or "").strip() for key, value in record.items() if key is not None):
                continue  # a blank line (or a row of empty cells, as spreadsheets leave) is no row
            yield number, record

    return columns, records()


def invoice_rows_parse(
    records: Iterable[tuple[int, dict[str, str]]], *, spec: InvoiceMappingSpec
) -> Iterator[dict | InvoiceRowError]:
    """Each record's statement line, or an InvoiceRowError saying which columns are wrong and why."""
    for number, record in records:
        if None in record:
            extra = record.pop(None)
            yield InvoiceRowError(
                line=number,
                errors={"row": [f"{len(extra)} more cell(s) than the header has columns"]},
                row=record,
            )
            continue
        if None in record.values():
            yield InvoiceRowError(
                line=number, errors={"row": ["fewer cells than the header has columns"]}, row=record
            )
            continue
        try:
            yield invoice_row_line(record, spec=spec)
        except ValueError as error:
            yield InvoiceRowError(line=number, errors=error.args[0], row=record)


@dataclass(frozen=True)
class Preview:
    """The first rows of a file as the page shows them, with what each column reads as."""

    delimiter: str
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line number, cells in header order)
    date_formats: dict[str, list[str]]  # column → the date formats that read its sample


def preview_read(text_lines: Iterable[str], *, delimiter: str, limit: int = PREVIEW_ROWS) -> Preview:
    header, records = invoice_csv_records(text_lines, delimiter=delimiter)
    rows = []
    for number, record in records:
        rows.append((number, [record.get(column) or "" for column in header]))
        if len(rows) >= limit:
            break
    date_formats = {
        column: formats
        for index, column in enumerate(header)
        if (formats := date_formats_reading(cells[index] for _, cells in rows))
    }
    return Preview(delimiter=delimiter, header=header, rows=rows, date_formats=date_formats)


# names providers give their columns → the field, to start a new mapping from (the person confirms it)
COLUMN_HINTS: dict[str, tuple[str, ...]] = {
    "period_start": (
        "usage_date_utc",
        "start_time_iso",
        "date",
        "day",
        "usage_date",
        "period_start",
        "start_date",
        "chargeperiodstart",
        "start_time",
        "timestamp",
    ),
    "period_end": ("end_time_iso", "period_end", "end_date", "chargeperiodend", "end_time"),
    "amount": (
        "cost_usd",
        "amount_value",
        "amount",
        "cost",
        "billedcost",
        "amount_usd",
        "total",
        "charge",
    ),
    "currency": ("amount_currency", "currency", "billingcurrency"),
    "provider": ("provider", "providername", "vendor"),
    "model": ("model", "model_version", "model_name"),
    "token_type": ("token_type", "usage_type_detail"),
    "line_item": ("line_item", "description", "chargedescription", "item"),
    "category": ("cost_type", "category", "chargecategory", "type"),
    "quantity": ("quantity", "tokens", "usage_quantity", "consumedquantity"),
    "api_key_id": ("api_key", "api_key_id", "api_key_name"),
    "workspace_id": ("workspace", "workspace_id", "workspace_name"),
    "project_id": ("project_id", "project", "subaccountid"),
    "batch": ("batch", "is_batch"),
    "service_tier": ("service_tier", "usage_type", "tier"),
    "context_window": ("context_window",),
}


# what a file's name says of its provider, for the suggestion only (the person confirms it)
FILE_NAME_PROVIDERS = (("claude", "anthropic"), ("anthropic", "anthropic"), ("openai", "openai"))


def mapping_suggest(
    *, header: list[str], preview: Preview | None = None, file_name: str = ""
) -> InvoiceMappingSpec:
    """A first mapping from the columns' names, for the person to check (never imported unconfirmed).
    The date format is set only when the sample reads in exactly one: else it is left for the person."""
    by_key = {re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_"): column for column in header}
    columns: dict[str, str] = {}
    taken: set[str] = set()
    for name, hints in COLUMN_HINTS.items():
        for hint in hints:
            column = by_key.get(hint)
            if column and column not in taken:
                columns[name] = column
                taken.add(column)
                break
    formats = preview.date_formats.get(columns.get("period_start", ""), []) if preview else []
    date_format = formats[0] if len(formats) == 1 else ""
    return InvoiceMappingSpec(
        columns=columns,
        date_format=date_format,
        delimiter=preview.delimiter if preview else ",",
        currency="" if "currency" in columns else "USD",
        provider=""
        if "provider" in columns
        else next((slug for word, slug in FILE_NAME_PROVIDERS if word in file_name.lower()), ""),
    )
