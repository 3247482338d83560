"""100 concurrent guard checks through real HTTP against real server processes (granian workers, and
two separate servers): the allowed estimates never add up past the limit, and exactly as many are
allowed as fit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from finops.accounts.services import api_token_create
from finops.client import FinopsClient
from finops.guardrails.models import Reservation
from finops.guardrails.services import allowance_create
from tests.factories import AgentFactory, TeamFactory

CHECKS = 100
LIMIT_USD = Decimal("1.00")
ESTIMATE_USD = Decimal("0.03")  # 33 fit: $0.99


def race(clients: list[FinopsClient]) -> list[dict]:
    """CHECKS checks at once, spread over the clients' servers; a barrier releases them together."""
    barrier = threading.Barrier(CHECKS)

    def one(number: int) -> dict:
        client = clients[number % len(clients)]
        barrier.wait(timeout=60)
        return client.check("support", "refund-bot", task_id=f"run-{number}", estimated_cost_usd=ESTIMATE_USD)

    with ThreadPoolExecutor(max_workers=CHECKS) as pool:
        return list(pool.map(one, range(CHECKS)))


@pytest.fixture
def allowance(transactional_db):
    team = TeamFactory(slug="support")
    AgentFactory(team=team, name="refund-bot")
    return allowance_create(principal=None, team=team, agent=None, window="day", limit_usd=LIMIT_USD)


def assert_exactly_what_fits(answers: list[dict], allowance) -> None:
    allowed = [answer for answer in answers if answer["decision"] != "deny"]
    fit = int(LIMIT_USD // ESTIMATE_USD)
    assert len(allowed) == fit, [answer["reasons"] for answer in answers[:3]]
    assert all(answer["reservation_id"] for answer in allowed)
    reserved = Reservation.objects.filter(allowance=allowance, settled_at__isnull=True)
    assert reserved.count() == fit
    assert sum(held.estimated_usd for held in reserved) <= LIMIT_USD
    assert {str(held.reservation_id) for held in reserved} == {answer["reservation_id"] for answer in allowed}
    denied = [answer for answer in answers if answer["decision"] == "deny"]
    assert all(
        answer["reasons"][0].startswith(f"allowance {allowance.pk} (support, day)") for answer in denied
    )


def test_100_concurrent_checks_on_one_server_never_pass_the_limit(start_server, allowance):
    server = start_server(workers=4, threads=4)
    secret = api_token_create(name="race", scopes=["ingest"])[1]
    answers = race([FinopsClient(server.url, secret, timeout=60)])
    assert_exactly_what_fits(answers, allowance)


def test_100_concurrent_checks_across_two_servers_never_pass_the_limit(start_server, allowance):
    first, second = start_server(workers=2, threads=4), start_server(workers=2, threads=4)
    secret = api_token_create(name="race", scopes=["ingest"])[1]
    answers = race(
        [FinopsClient(first.url, secret, timeout=60), FinopsClient(second.url, secret, timeout=60)]
    )
    assert_exactly_what_fits(answers, allowance)
