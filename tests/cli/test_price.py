"""`finops price`: SPEC's output contract, computed independently from published rates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from finops.pricing.models import NegotiatedDiscount
from tests.cli.conftest import run_command
from tests.pricing.published import published_cost

TOKENS = {
    "uncached_input": 1200,
    "cache_read": 38000,
    "cache_write_5m": 500,
    "cache_write_1h": 700,
    "output": 310,
    "reasoning": 90,
}
TOKEN_FLAGS = [
    part for token_type, count in TOKENS.items() for part in (f"--{token_type.replace('_', '-')}", str(count))
]
UNPRICED = (
    "unpriced: no price for acme/acme-large-2 in the catalog or overrides; "
    "add one in the admin (Pricing › Model price overrides)"
)


def test_price_json_has_total_and_one_line_per_token_type(db):
    ran = run_command(
        "price",
        "--provider",
        "anthropic",
        "--model",
        "claude-sonnet-4-5",
        *TOKEN_FLAGS,
        "--at",
        "2026-11-02",
        "--json",
    )

    assert ran.exit_code == 0
    body = json.loads(ran.stdout)
    assert Decimal(body["total_usd"]) == published_cost(
        provider="anthropic", model="claude-sonnet-4-5", tokens=TOKENS
    )
    assert isinstance(body["total_usd"], str)  # money is a decimal string, never a float
    assert [line["token_type"] for line in body["lines"]] == list(TOKENS)
    assert {line["token_type"]: line["tokens"] for line in body["lines"]} == TOKENS
    rates = {line["token_type"]: Decimal(line["rate_per_mtok"]) for line in body["lines"]}
    assert rates == {
        "uncached_input": Decimal("3"),
        "cache_read": Decimal("0.3"),
        "cache_write_5m": Decimal("3.75"),
        "cache_write_1h": Decimal("6"),
        "output": Decimal("15"),
        "reasoning": Decimal("15"),
    }
    assert sum(Decimal(line["cost_usd"]) for line in body["lines"]) == Decimal(body["total_usd"])


def test_price_with_batch_and_negotiated_discount(db):
    NegotiatedDiscount.objects.create(
        provider="openai", percent=Decimal("10"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )

    ran = run_command(
        "price",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        *TOKEN_FLAGS,
        "--batch",
        "--at",
        "2026-11-02T10:00Z",
        "--json",
    )

    expected = published_cost(provider="openai", model="gpt-4o", tokens=TOKENS) / 2 * Decimal("0.9")
    assert Decimal(json.loads(ran.stdout)["total_usd"]) == expected


def test_price_table_shows_rates_amounts_and_discounts(db):
    NegotiatedDiscount.objects.create(
        provider="", percent=Decimal("5"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
    )

    ran = run_command(
        "price",
        "--provider",
        "openai",
        "--model",
        "gpt-4o",
        "--output",
        "1000000",
        "--batch",
        "--at",
        "2026-11-02",
    )

    assert ran.exit_code == 0
    lines = ran.stdout.splitlines()
    assert any(line.split() == ["output", "1,000,000", "10", "10"] for line in lines), ran.stdout
    assert any(line.split() == ["batch", "discount", "50%", "-5"] for line in lines), ran.stdout
    assert any(line.split() == ["negotiated", "discount", "5%", "-0.25"] for line in lines), ran.stdout
    assert lines[-2].split() == ["total", "4.75"]


def test_price_of_an_older_date_uses_the_price_then(db):
    # o3 cost $10/MTok input until 2025-06-10, $2 after
    before = run_command(
        "price",
        "--provider",
        "openai",
        "--model",
        "o3",
        "--uncached-input",
        "1000000",
        "--at",
        "2025-06-01",
        "--json",
    )
    after = run_command(
        "price",
        "--provider",
        "openai",
        "--model",
        "o3",
        "--uncached-input",
        "1000000",
        "--at",
        "2025-07-01",
        "--json",
    )

    assert Decimal(json.loads(before.stdout)["total_usd"]) == Decimal("10")
    assert Decimal(json.loads(after.stdout)["total_usd"]) == Decimal("2")


def test_unknown_model_says_unpriced_and_exits_2(db):
    human = run_command("price", "--provider", "acme", "--model", "acme-large-2", "--output", "5")
    machine = run_command("price", "--provider", "acme", "--model", "acme-large-2", "--output", "5", "--json")

    assert human.exit_code == machine.exit_code == 2
    assert human.stderr.strip() == UNPRICED
    body = json.loads(machine.stdout)
    assert body["total_usd"] is None
    assert body["lines"] == []


def test_price_as_a_real_process(finops_process):
    done = finops_process(
        "price", "--provider", "anthropic", "--model", "claude-sonnet-4-5", *TOKEN_FLAGS, "--json"
    )
    unpriced = finops_process("price", "--provider", "acme", "--model", "acme-large-2", "--json")

    assert done.returncode == 0, done.stderr
    assert Decimal(json.loads(done.stdout)["total_usd"]) == published_cost(
        provider="anthropic", model="claude-sonnet-4-5", tokens=TOKENS
    )
    assert unpriced.returncode == 2
    assert json.loads(unpriced.stdout)["total_usd"] is None
    assert UNPRICED in unpriced.stderr


def test_price_json_money_is_plain_decimal_text(db):
    ran = run_command(
        "price",
        "--provider",
        "anthropic",
        "--model",
        "claude-sonnet-4-5",
        "--output",
        "310",
        "--batch",
        "--json",
    )

    body = json.loads(ran.stdout)
    texts = [body["total_usd"], *(line[key] for line in body["lines"] for key in ("amount_usd", "cost_usd"))]
    assert not [text for text in texts if "E" in text or "e" in text]
    assert body["total_usd"] == "0.002325"  # 310 × $15/MTok, halved for the batch API
    assert {line["cost_usd"] for line in body["lines"] if line["tokens"] == 0} == {"0"}
