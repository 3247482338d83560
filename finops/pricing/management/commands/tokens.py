"""`finops tokens`: count the tokens of a text with tiktoken (offline) and estimate its input cost."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from finops.pricing.management.commands.price import money_text
from finops.pricing.services import call_price
from finops.pricing.tokenizer import catalog_provider_for_model, tokens_count


class Command(BaseCommand):
    help = (
        "Count the tokens of a text (a file, or standard input with '-' or no file) as --model would, with "
        "tiktoken and the vocabularies shipped with finops (no network). OpenAI models get their own "
        "encoding; other models (Claude, Gemini...) are estimated with o200k_base, and the output says so. "
        "Also prints the estimated cost of sending the text as uncached input."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, help="e.g. gpt-4o, claude-sonnet-4-5")
        parser.add_argument(
            "--provider", help="provider whose price to use (default: the catalog's provider for the model)"
        )
        parser.add_argument(
            "file", nargs="?", default="-", help="file to read; '-' or nothing: standard input"
        )

    def handle(self, *args, **options) -> None:
        model: str = options["model"]
        text = self._read(options["file"])
        counted = tokens_count(text=text, model=model)
        self.stdout.write(f"tokens: {counted.tokens}")
        encoding_line = f"encoding: {counted.encoding_name}"
        if not counted.exact:
            encoding_line += f" (estimate: {counted.note})"
        self.stdout.write(encoding_line)

        provider = options["provider"] or catalog_provider_for_model(model=model)
        if provider is None:
            self.stdout.write(
                f"estimated input cost: unpriced (no provider known for {model}; pass --provider, "
                "or add a price in the admin: Pricing › Model price overrides)"
            )
            return
        priced = call_price(
            provider=provider, model=model, tokens={"uncached_input": counted.tokens}, at=datetime.now(UTC)
        )
        if not priced.priced:
            self.stdout.write(
                f"estimated input cost: unpriced (no price for {provider}/{model} in the catalog or overrides; "
                "add one in the admin: Pricing › Model price overrides)"
            )
            return
        rate = priced.lines[0].rate_per_mtok
        discount = (
            f", after a {money_text(priced.negotiated_discount_percent)}% negotiated discount"
            if priced.negotiated_discount_percent
            else ""
        )
        self.stdout.write(
            f"estimated input cost: ${money_text(priced.total_usd)} "
            f"({counted.tokens} tokens × ${money_text(rate)}/MTok uncached input, {provider}/{model}{discount})"
        )

    def _read(self, file: str) -> str:
        if file == "-":
            return sys.stdin.read()
        path = Path(file)
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise CommandError(
                f"cannot read {file}: {error.strerror}; give a readable text file, or '-' for stdin"
            ) from None
