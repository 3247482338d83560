"""`finops price`: price one call, as the ledger would (SPEC.md, "Token types and cost")."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, time
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.utils.dateparse import parse_date, parse_datetime

from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.services import PricedCall, call_price

UNPRICED_EXIT_CODE = 2


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of tokens") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} tokens: a token count cannot be negative")
    return number


def moment(value: str) -> datetime:
    """A date (midnight UTC) or an ISO datetime (UTC when it has no offset)."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a date (2026-11-02) or datetime (2026-11-02T10:15Z)"
            )
        parsed = datetime.combine(day, time(0))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def money_text(amount: Decimal) -> str:
    """Exact, without trailing zeros: 0.027075000000 → 0.027075."""
    text = format(amount.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def unpriced_message(*, provider: str, model: str) -> str:
    return (
        f"unpriced: no price for {provider}/{model} in the catalog or overrides; "
        "add one in the admin (Pricing › Model price overrides)"
    )


def priced_call_table(*, priced: PricedCall, provider: str, model: str, at: datetime) -> list[str]:
    rows = [("token type", "tokens", "$/MTok", "amount USD")]
    for line in priced.lines:
        rows.append(
            (line.token_type, f"{line.tokens:,}", money_text(line.rate_per_mtok), money_text(line.amount_usd))
        )
    subtotal = sum((line.amount_usd for line in priced.lines), Decimal(0))
    rows.append(("subtotal", "", "", money_text(subtotal)))
    after_batch = subtotal * (1 - priced.batch_discount)
    if priced.batch_discount:
        rows.append(
            (
                f"batch discount {money_text(priced.batch_discount * 100)}%",
                "",
                "",
                f"-{money_text(subtotal - after_batch)}",
            )
        )
    if priced.negotiated_discount_percent:
        negotiated = after_batch * priced.negotiated_discount_percent / 100
        rows.append(
            (
                f"negotiated discount {money_text(priced.negotiated_discount_percent)}%",
                "",
                "",
                f"-{money_text(negotiated)}",
            )
        )
    rows.append(("total", "", "", money_text(priced.total_usd)))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"{provider}/{model} at {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, priced by {priced.source}"]
    for row in rows:
        lines.append(
            "  ".join(
                [
                    row[0].ljust(widths[0]),
                    row[1].rjust(widths[1]),
                    row[2].rjust(widths[2]),
                    row[3].rjust(widths[3]),
                ]
            ).rstrip()
        )
    lines.append("(total = Σ tokens × rate / 10⁶, less the batch discount, less the negotiated discount)")
    return lines


class Command(BaseCommand):
    help = (
        "Price one LLM call from its six token counts, with the catalog price in force at --at (default now), "
        "the organisation's overrides and negotiated discount, and the batch discount with --batch. "
        f"Exit code {UNPRICED_EXIT_CODE} when the model has no price."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--provider", required=True, help="e.g. anthropic, openai, google")
        parser.add_argument(
            "--model", required=True, help="model name as sent in events, e.g. claude-sonnet-4-5"
        )
        for token_type in TOKEN_TYPES:
            parser.add_argument(
                f"--{token_type.replace('_', '-')}",
                dest=token_type,
                type=non_negative_int,
                default=0,
                metavar="N",
            )
        parser.add_argument("--batch", action="store_true", help="the call ran through a batch API")
        parser.add_argument(
            "--at", type=moment, default=None, metavar="DATE", help="when the call ran (default: now)"
        )
        parser.add_argument("--json", action="store_true", help='print {"total_usd": "...", "lines": [...]}')

    def handle(self, *args, **options) -> None:
        provider: str = options["provider"]
        model: str = options["model"]
        at: datetime = options["at"] or datetime.now(UTC)
        tokens = {token_type: options[token_type] for token_type in TOKEN_TYPES}
        priced = call_price(provider=provider, model=model, tokens=tokens, at=at, batch=options["batch"])
        message = None if priced.priced else unpriced_message(provider=provider, model=model)
        if options["json"]:
            body = {**priced.as_json(), "provider": provider, "model": model, "at": at.isoformat()}
            if message:
                body["message"] = message
            self.stdout.write(json.dumps(body, indent=2))
        elif priced.priced:
            self.stdout.write(
                "\n".join(priced_call_table(priced=priced, provider=provider, model=model, at=at))
            )
        if message:
            self.stderr.write(message)
            raise SystemExit(UNPRICED_EXIT_CODE)
