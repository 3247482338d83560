"""FOCUS invoices (FinOps Open Cost and Usage Specification) as statement lines. Pure: rows in, lines out.

Columns read (FOCUS 1.0–1.3, github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec, specification/columns):

- required: BilledCost (Decimal, the invoiced amount in BillingCurrency), BillingCurrency (ISO 4217),
  ChargePeriodStart / ChargePeriodEnd (ISO 8601 UTC, end exclusive), and a provider column:
  ServiceProviderName (FOCUS 1.3), else ProviderName (1.0–1.2), else PublisherName.
- optional: ChargeDescription, SkuId, SkuPriceId, ServiceName, ChargeCategory (Usage, Purchase, Tax,
  Credit, Adjustment), ConsumedQuantity / ConsumedUnit (else PricingQuantity / PricingUnit), SubAccountId,
  and x_ custom columns whose name says model (x_Model, x_ModelName, …).

Each row becomes one cost line: amount = BilledCost as an exact Decimal (rounded half-even to the
statement store's 12 decimal places only if it has more), quantity = ConsumedQuantity scaled by the unit's
count ("1000 Tokens", "1M Tokens") when that gives a whole number. Model and token type are parsed from
the row's names ("claude-sonnet-4-5 input tokens", "gpt-4o cached input", "… cache read", "… output");
the provider's own description is always kept as the line item. A row that cannot be read becomes a
FocusRowError with its line number; the other rows are unaffected.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from ingest.connectors.models import StatementKind

AMOUNT_PLACES = Decimal("1e-12")  # StatementLine.amount keeps 12 decimal places
MAX_AMOUNT = Decimal(10) ** 16  # and 16 before the point (numeric(28, 12))
MAX_QUANTITY = 2**63 - 1  # StatementLine.quantity is a bigint
PROVIDER_COLUMNS = ("ServiceProviderName", "ProviderName", "PublisherName")
REQUIRED_COLUMNS = ("BilledCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd")
NAME_COLUMNS = ("x_Model", "x_ModelName", "SkuId", "ChargeDescription", "SkuPriceId", "ServiceName")
PROVIDER_SLUGS = {
    "openai": "openai",
    "open ai": "openai",
    "openai, l.l.c.": "openai",
    "anthropic": "anthropic",
    "anthropic, pbc": "anthropic",
    "google": "google",
    "google cloud": "google",
    "microsoft": "azure",
    "microsoft azure": "azure",
    "azure": "azure",
    "amazon web services": "aws",
    "aws": "aws",
    "mistral ai": "mistral",
}
MODEL_NAME = re.compile(
    r"\b(?P<model>(?:claude|gpt|chatgpt|gemini|mistral|llama|command|text-embedding)(?:[-.][a-z0-9]+)+"
    r"|o[1-9](?:-[a-z0-9]+)*)\b",
    re.IGNORECASE,
)
# most specific first: "cached input" and "cache write" also contain "input" and "write"
TOKEN_TYPE_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"cach\w*[ _-]*(read|hit)|cached[ _-]*input", re.I), "cache_read"),
    (
        re.compile(
            r"(1h|1-hour|one hour|60m)\b.*cach|cach\w*[ _-]*(write|creation)[ _-]*\(?(1h|1-hour)", re.I
        ),
        "cache_write_1h",
    ),
    (re.compile(r"cach\w*[ _-]*(write|creation|storage)", re.I), "cache_write_5m"),
    (re.compile(r"reasoning", re.I), "reasoning"),
    (re.compile(r"output|completion", re.I), "output"),
    (re.compile(r"input|prompt", re.I), "uncached_input"),
)
UNIT_COUNT = re.compile(r"^\s*(?P<count>\d+(?:\.\d+)?)\s*(?P<scale>[kKmM]?)\b")
SCALES = {"": 1, "k": 1000, "m": 1_000_000}


@dataclass(frozen=True)
class FocusRowError:
    line: int
    errors: dict[str, list[str]]
    row: dict[str, str]

    @property
    def position(self) -> str:
        return f"line {self.line}"


def focus_header_problems(*, columns: Iterable[str]) -> list[str]:
    present = set(columns)
    problems = [f"the column {name} is missing" for name in REQUIRED_COLUMNS if name not in present]
    if not present & set(PROVIDER_COLUMNS):
        problems.append(f"no provider column (one of {', '.join(PROVIDER_COLUMNS)})")
    return problems


def provider_slug(name: str) -> str:
    """ "OpenAI" → openai, "Anthropic" → anthropic; a name we do not know becomes a lower-case slug."""
    text = " ".join(name.split()).lower()
    if text in PROVIDER_SLUGS:
        return PROVIDER_SLUGS[text]
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:32]


def _moment(text: str) -> datetime:
    """ISO 8601 in UTC ('2026-11-01T00:00:00Z'); a bare date is its midnight, no offset means UTC."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _decimal(text: str) -> Decimal:
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation
    return value


def _unit_count(unit: str) -> int:
    """How many base units one unit holds: "1000 Tokens" → 1000, "1M Tokens" → 1,000,000, "Tokens" → 1."""
    match = UNIT_COUNT.match(unit or "")
    if not match:
        return 1
    return int(Decimal(match["count"]) * SCALES[match["scale"].lower()])


def model_and_token_type(texts: Iterable[str]) -> tuple[str, str]:
    """The first model name any of the texts names, and the token type the text that names it says."""
    texts = [text for text in texts if text]
    model = ""
    token_type = ""
    for text in texts:
        match = MODEL_NAME.search(text)
        if match and not model:
            model = match["model"].lower()
        for pattern, name in TOKEN_TYPE_WORDS:
            if not token_type and pattern.search(text):
                token_type = name
                break
    return model, token_type if model else ""


def focus_row_line(row: dict[str, str]) -> dict:
    """One FOCUS row as a statement line dict; raises ValueError(errors) naming each bad column."""
    errors: dict[str, list[str]] = {}

    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    def fail(name: str, reason: str) -> None:
        errors.setdefault(name, []).append(reason)

    provider_name = next((cell(name) for name in PROVIDER_COLUMNS if cell(name)), "")
    if not provider_name:
        fail("ProviderName", "empty: the row names no provider")
    period: dict[str, datetime] = {}
    for name in ("ChargePeriodStart", "ChargePeriodEnd"):
        if not cell(name):
            fail(name, "empty")
            continue
        try:
            period[name] = _moment(cell(name))
        except (ValueError, OverflowError):
            fail(name, f"not an ISO 8601 date/time: {cell(name)!r}")
    if len(period) == 2 and period["ChargePeriodEnd"] < period["ChargePeriodStart"]:
        fail("ChargePeriodEnd", "before ChargePeriodStart")
    amount = None
    try:
        amount = _decimal(cell("BilledCost"))
    except (InvalidOperation, ValueError):
        fail("BilledCost", f"not a decimal number: {cell('BilledCost')!r}")
    else:
        if abs(amount) >= MAX_AMOUNT:
            fail("BilledCost", f"{cell('BilledCost')} is too large for a statement line (under 10^16)")
    currency = cell("BillingCurrency").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        fail("BillingCurrency", f"not a three-letter ISO 4217 code: {cell('BillingCurrency')!r}")
    quantity = None
    quantity_column, unit_column = (
        ("ConsumedQuantity", "ConsumedUnit")
        if cell("ConsumedQuantity")
        else ("PricingQuantity", "PricingUnit")
    )
    if cell(quantity_column):
        try:
            scaled = _decimal(cell(quantity_column)) * _unit_count(cell(unit_column))
        except (InvalidOperation, ValueError):
            fail(quantity_column, f"not a decimal number: {cell(quantity_column)!r}")
        else:
            quantity = int(scaled) if scaled == scaled.to_integral_value() else None
            if quantity is not None and abs(quantity) > MAX_QUANTITY:
                fail(quantity_column, f"{cell(quantity_column)} is too large for a statement line's quantity")
    if errors:
        raise ValueError(errors)

    category = cell("ChargeCategory")
    names = [cell(name) for name in NAME_COLUMNS]
    model, token_type = model_and_token_type(names)
    if category and category.lower() != "usage":
        token_type = ""  # taxes, credits, purchases and adjustments are not tokens of a type
    line_item = cell("ChargeDescription") or cell("SkuId") or cell("ServiceName") or category
    return {
        "kind": StatementKind.COST,
        "provider": provider_slug(provider_name),
        "period_start": period["ChargePeriodStart"],
        "period_end": period["ChargePeriodEnd"],
        "model": model[:128],
        "token_type": token_type,
        "line_item": line_item[:255],
        "project_id": cell("SubAccountId")[:128],
        "batch": bool(re.search(r"\bbatch\b", " ".join(names), re.IGNORECASE)),
        "quantity": quantity,
        "amount": amount.quantize(AMOUNT_PLACES, rounding=ROUND_HALF_EVEN)
        if amount.as_tuple().exponent < -12
        else amount,
        "currency": currency,
    }


def focus_csv_records(text_lines: Iterable[str]) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header's column names and (line number, record) for each record of a FOCUS CSV."""
    reader = csv.DictReader(text_lines)
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns

    def records() -> Iterator[tuple[int, dict[str, str]]]:
        last_line = reader.line_num
        for record in reader:
            number = last_line + 1  # where the record starts (a quoted cell may span lines)
            last_line = reader.line_num
            if None in record:
                record["(extra cells)"] = record.pop(None)
            yield number, record

    return columns, records()


def focus_rows_parse(records: Iterable[tuple[int, dict[str, str]]]) -> Iterator[dict | FocusRowError]:
    """Each record's statement line, or a FocusRowError saying which columns are wrong."""
    for number, record in records:
        if None in record.values():
            yield FocusRowError(
                line=number,
                errors={"non_field_errors": ["fewer cells than the header has columns"]},
                row=record,
            )
            continue
        if "(extra cells)" in record:
            yield FocusRowError(
                line=number,
                errors={"non_field_errors": ["more cells than the header has columns"]},
                row=record,
            )
            continue
        try:
            yield focus_row_line(record)
        except ValueError as error:
            yield FocusRowError(line=number, errors=error.args[0], row=record)
