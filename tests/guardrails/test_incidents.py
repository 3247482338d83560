"""The seeds' runaway incidents, replayed through finops.client against a real server (granian).

A runaway agent appends 12K tokens of context per step and resends the whole context each time, so step
n sends 12,000·n input tokens and the cost of each step grows with n (claude-sonnet-4-5 also switches to
its long-context rates past 200K input tokens). Before each step the loop asks POST /api/v1/guard/check,
then reports the call as a usage event carrying its reservation. The expected cost of every step comes
from genai-prices' own calculator (the catalog finops prices from, not finops' pricing code), and the
step at which each guard must stop the loop is worked out from those costs before the loop runs.

- $87,000 in 11 days, an agent re-invoking itself on a failing tool: the agent's kill switch
  (max_cost_usd, and separately max_steps) stops the task and records it `killed`; without an estimate
  it passes its max cost by at most its last call, with one never.
- A day allowance with action deny stops the same loop: the allowance's used + reserved never passes
  its limit, whatever the loop reserved.
- $10,000 in 45 minutes, an agent reviewing its own reviews: two agents feeding each other's output
  back, each below any per-agent setting, stopped together by their team's allowance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import pytest
from django.db.models import Sum
from django.utils import timezone
from genai_prices import Usage, calc_price

from finops.accounts.services import api_token_create
from finops.client import FinopsClient
from finops.guardrails.models import AllowanceUsage, Reservation
from finops.guardrails.services import allowance_create
from finops.ledger.models import Agent, Call, Task, TaskStatus
from tests.factories import AgentFactory, TeamFactory

PROVIDER, MODEL = "anthropic", "claude-sonnet-4-5"
CONTEXT_PER_STEP = 12_000
OUTPUT_TOKENS = 500  # what each step writes
MAX_TOKENS = 1024  # the output a careful caller budgets for in its estimate
MAX_LOOP = 300  # a runaway the guard failed to stop ends the test here, not never
MICRO = Decimal("0.000001")  # the API's money strings have six places


def step_usage(step: int) -> tuple[int, int]:
    return CONTEXT_PER_STEP * step, OUTPUT_TOKENS


def catalog_cost(*, input_tokens: int, output_tokens: int) -> Decimal:
    """What the catalog says the call costs, by genai-prices' own calculator."""
    return calc_price(
        Usage(input_tokens=input_tokens, output_tokens=output_tokens), model_ref=MODEL, provider_id=PROVIDER
    ).total_price


@cache  # the $10,000 story sums over 500 steps again and again
def step_cost(step: int) -> Decimal:
    input_tokens, output_tokens = step_usage(step)
    return catalog_cost(input_tokens=input_tokens, output_tokens=output_tokens)


def cumulative(steps: int) -> Decimal:
    return sum((step_cost(step) for step in range(1, steps + 1)), Decimal(0))


@dataclass
class Replay:
    steps: int  # calls made (allowed and reported)
    spent: Decimal
    denied: dict | None  # the answer that stopped it
    answers: list[dict]


def replay(
    client: FinopsClient,
    *,
    team: str,
    agents: tuple[str, ...],
    task_ids: tuple[str, ...],
    estimate: str | None,
    after_check=None,
) -> Replay:
    """Run the loop until the guard denies a step. With several agents they take turns (each reads the
    whole shared transcript); estimate: None, "exact" (the step's own cost) or "max_tokens" (its input
    at the catalog's rates plus a full MAX_TOKENS of output, at least the step's cost)."""
    spent, answers = Decimal(0), []
    for step in range(1, MAX_LOOP + 1):
        turn = (step - 1) % len(agents)
        agent, task_id = agents[turn], task_ids[turn]
        input_tokens, output_tokens = step_usage(step)
        estimated = {
            None: None,
            "exact": step_cost(step),
            "max_tokens": catalog_cost(input_tokens=input_tokens, output_tokens=MAX_TOKENS),
        }[estimate]
        answer = client.check(team, agent, task_id=task_id, estimated_cost_usd=estimated)
        answers.append(answer)
        if after_check:
            after_check(answer)
        if answer["decision"] == "deny":
            return Replay(step - 1, spent, answer, answers)
        event = {
            "event_id": f"{task_id}:step-{step}",
            "timestamp": timezone.now().isoformat(),
            "team": team,
            "agent": agent,
            "task_id": task_id,
            "step": step,
            "provider": PROVIDER,
            "model": MODEL,
            "usage": {"uncached_input": input_tokens, "output": output_tokens},
            "reservation_id": answer["reservation_id"],
        }
        assert client.send_events([event]) == {"accepted": 1, "duplicates": 0, "rejected": []}
        spent += step_cost(step)
    return Replay(MAX_LOOP, spent, None, answers)


@pytest.fixture
def coding(transactional_db):
    team = TeamFactory(slug="coding")
    AgentFactory(team=team, name="code-review")
    return team


@pytest.fixture
def client(start_server, coding):
    server = start_server(workers=1, threads=2)
    return FinopsClient(server.url, api_token_create(name="loop", scopes=["ingest", "read"])[1], timeout=60)


def test_the_catalog_prices_the_loop_and_its_long_context_tier_as_the_ledger_does():
    # step 16 sends 192K input tokens, step 17 204K: past 200K the whole call is at the long-context rates
    assert step_cost(16) == (Decimal(192_000) * 3 + Decimal(OUTPUT_TOKENS) * 15) / 10**6
    assert step_cost(17) == (Decimal(204_000) * 6 + Decimal(OUTPUT_TOKENS) * Decimal("22.5")) / 10**6


@pytest.mark.parametrize(
    ("estimate", "max_cost"),
    [(None, Decimal("10.00")), ("exact", Decimal("10.00")), ("max_tokens", Decimal("5.00"))],
)
def test_the_kill_switch_stops_a_runaway_loop_at_its_max_cost(client, estimate, max_cost):
    Agent.objects.filter(name="code-review").update(max_cost_usd=max_cost)
    estimated = None
    if estimate is None:
        # no estimate: it may make a call while it has spent less than max_cost, so it stops after the
        # first step that takes it to max_cost or past: past it by its last call at most
        expected_steps = next(n for n in range(1, MAX_LOOP) if cumulative(n) >= max_cost)
    else:
        # with an estimate: denied the first step whose estimate would take it past max_cost
        estimated = (
            step_cost
            if estimate == "exact"
            else lambda n: catalog_cost(input_tokens=CONTEXT_PER_STEP * n, output_tokens=MAX_TOKENS)
        )
        expected_steps = next(n for n in range(MAX_LOOP) if cumulative(n) + estimated(n + 1) > max_cost)

    run = replay(client, team="coding", agents=("code-review",), task_ids=("loop",), estimate=estimate)

    assert run.denied is not None and run.steps == expected_steps
    assert run.spent == cumulative(expected_steps)
    if estimate is None:
        assert run.spent - step_cost(expected_steps) < max_cost <= run.spent  # over by one call, not two
    else:
        assert run.spent <= max_cost
    reason = f"task loop (coding/code-review): ${run.spent:,.2f} of ${max_cost:,.2f} spent"
    if estimated:
        reason += f", this call's estimate ${estimated(expected_steps + 1):,.2f}"
    assert run.denied["reasons"] == [reason + " (kill switch: max_cost_usd)"]
    assert run.denied["task"]["cost_usd"] == str(run.spent.quantize(MICRO))
    assert all(answer["decision"] == "allow" for answer in run.answers[:-1])
    task = Task.objects.get(task_id="loop")
    assert (task.status, task.steps, task.cost_usd) == (TaskStatus.KILLED, expected_steps, run.spent)
    # the ledger priced every step as the catalog's calculator does
    costs = list(Call.objects.filter(task_id="loop").order_by("step").values_list("cost_usd", flat=True))
    assert costs == [step_cost(n) for n in range(1, expected_steps + 1)]
    # and the killed task stays denied, also for a call that would have been cheap
    again = client.check("coding", "code-review", task_id="loop", estimated_cost_usd="0.000001")
    assert again["reasons"] == ["task loop (coding/code-review) was killed by its kill switch"]


def test_the_kill_switch_stops_a_runaway_loop_at_its_max_steps(client):
    Agent.objects.filter(name="code-review").update(max_steps=25)

    run = replay(client, team="coding", agents=("code-review",), task_ids=("loop",), estimate="exact")

    assert run.steps == 25 and run.spent == cumulative(25)
    assert run.denied["reasons"] == [
        "task loop (coding/code-review): 25 of 25 steps (kill switch: max_steps)"
    ]
    task = Task.objects.get(task_id="loop")
    assert (task.status, task.steps) == (TaskStatus.KILLED, 25)


def test_a_day_allowance_with_action_deny_stops_the_loop_and_never_passes_its_limit(client, coding):
    limit = Decimal("10.00")
    allowance = allowance_create(
        principal=None, team=coding, agent=None, window="day", limit_usd=limit, action="deny"
    )
    # each step is reserved at its input plus a full MAX_TOKENS of output, and settled at its actual cost
    estimated = {
        n: catalog_cost(input_tokens=CONTEXT_PER_STEP * n, output_tokens=MAX_TOKENS) for n in range(1, 40)
    }
    expected_steps = next(n for n in range(40) if cumulative(n) + estimated[n + 1] > limit)
    held: list[Decimal] = []

    def used_plus_reserved(answer: dict) -> None:
        used = AllowanceUsage.objects.filter(allowance=allowance).aggregate(usd=Sum("used_usd"))["usd"]
        reserved = Reservation.objects.filter(
            allowance=allowance, settled_at__isnull=True, expires_at__gt=timezone.now()
        ).aggregate(usd=Sum("estimated_usd"))["usd"]
        held.append((used or 0) + (reserved or 0))

    run = replay(
        client,
        team="coding",
        agents=("code-review",),
        task_ids=("loop",),
        estimate="max_tokens",
        after_check=used_plus_reserved,
    )

    assert run.steps == expected_steps and run.spent == cumulative(expected_steps)
    assert max(held) <= limit
    # right after each allowed check: what was used before it plus its own estimate, exactly
    assert held[:-1] == [cumulative(n - 1) + estimated[n] for n in range(1, expected_steps + 1)]
    assert run.denied["reasons"] == [
        f"allowance {allowance.pk} (coding, day): ${run.spent:,.2f} of $10.00 used"
    ]
    assert run.denied["reservation_id"] is None
    state = run.denied["allowances"][0]
    assert (state["used_usd"], state["reserved_usd"]) == (str(run.spent.quantize(MICRO)), "0.000000")
    # every reservation was settled by its event: none is left holding part of the limit
    assert not Reservation.objects.filter(settled_at__isnull=True).exists()
    # an allowance is not a kill switch: the task is not killed, and the agent may report how it ended
    assert Task.objects.get(task_id="loop").status is None


def test_two_agents_reviewing_each_others_reviews_are_stopped_by_their_team_allowance(client, coding):
    """The $10,000-in-45-minutes story: a reviewer and an author feed each other's output back, each
    turn resending the whole thread. Neither agent has a kill switch of its own; the team's day
    allowance stops them both once their sum reaches it."""
    AgentFactory(team=coding, name="review-responder")
    limit = Decimal("25.00")
    allowance = allowance_create(
        principal=None, team=coding, agent=None, window="day", limit_usd=limit, action="deny"
    )
    expected_calls = next(n for n in range(MAX_LOOP) if cumulative(n) + step_cost(n + 1) > limit)
    # left alone, the same thread reaches $10,000 after this many turns: at ~5 s a turn, 45 minutes
    runaway_turns = next(n for n in range(1, 2000) if cumulative(n) >= 10_000)
    assert 500 < runaway_turns < 560

    run = replay(
        client,
        team="coding",
        agents=("code-review", "review-responder"),
        task_ids=("pr-7-review", "pr-7-response"),
        estimate="exact",
    )

    assert run.steps == expected_calls and run.spent == cumulative(expected_calls) <= limit
    assert run.denied["reasons"][0].startswith(f"allowance {allowance.pk} (coding, day): ${run.spent:,.2f}")
    by_agent = dict(Call.objects.values_list("agent__name").annotate(cost=Sum("cost_usd")))
    assert by_agent == {
        "code-review": sum(step_cost(n) for n in range(1, expected_calls + 1, 2)),
        "review-responder": sum(step_cost(n) for n in range(2, expected_calls + 1, 2)),
    }
    # the other agent's next turn is denied as well: the allowance is the team's
    other = ("code-review", "review-responder")[(expected_calls + 1) % 2]
    next_turn = client.check(
        "coding", other, task_id="pr-7-x", estimated_cost_usd=step_cost(expected_calls + 2)
    )
    assert next_turn["decision"] == "deny"
    assert {task.status for task in Task.objects.all()} == {None}  # stopped, not killed
