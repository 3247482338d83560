"""POST /api/v1/guard/check as SPEC.md says: allowances (deny, throttle, warn, warn_at), reservations
(held, settled by the event, expired after the TTL), unpriced calls named, the kill switch (a replayed
runaway loop is stopped), the fail mode, and scoping."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from finops.guardrails.models import Allowance, Reservation, ReservedTotal
from finops.guardrails.services import allowance_create
from finops.guardrails.tasks import purge_reservations
from finops.ledger.models import Agent, Task
from tests.factories import AgentFactory, TeamFactory


def event(
    number: int, *, agent="refund-bot", task_id=None, model="gpt-4o", provider="openai", **usage
) -> dict:
    return {
        "event_id": f"e-{number}",
        "timestamp": timezone.now().isoformat(),
        "team": "support",
        "agent": agent,
        "provider": provider,
        "model": model,
        "task_id": task_id,
        "usage": usage or {"uncached_input": 1000},
    }


def check(api, **body):
    response = api.post("/api/v1/guard/check", {"team": "support", "agent": "refund-bot", **body})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def support(db):
    team = TeamFactory(slug="support")
    AgentFactory(team=team, name="refund-bot")
    return team


def test_no_allowance_and_no_kill_switch_is_allow(api, support):
    answer = check(api, task_id="run-1", estimated_cost_usd="0.50")
    assert answer == {
        "decision": "allow",
        "reasons": [],
        "reservation_id": None,
        "allowances": [],
        "task": {
            "task_id": "run-1",
            "steps": 0,
            "cost_usd": "0.000000",
            "unpriced_calls": 0,
            "status": None,
            "max_steps": None,
            "max_cost_usd": None,
        },
    }


def test_estimates_are_reserved_until_the_limit_and_denied_past_it(api, support):
    allowance = allowance_create(
        principal=None, team=support, agent=None, window="day", limit_usd=Decimal("1.00"), warn_at=0.9
    )
    first = check(api, estimated_cost_usd="0.40")
    second = check(api, estimated_cost_usd="0.40")
    third = check(api, estimated_cost_usd="0.40")
    assert [first["decision"], second["decision"], third["decision"]] == ["allow", "allow", "deny"]
    assert first["reservation_id"] and second["reservation_id"] and third["reservation_id"] is None
    assert third["reasons"] == [
        f"allowance {allowance.pk} (support, day): $0.00 of $1.00 used, $0.80 reserved"
    ]
    state = third["allowances"][0]
    assert (state["used_usd"], state["reserved_usd"], state["limit_usd"], state["action"]) == (
        "0.000000",
        "0.800000",
        "1.00",
        "deny",
    )
    # 0.20 still fits, and takes it to its warn_at
    fourth = check(api, estimated_cost_usd="0.20")
    assert fourth["decision"] == "warn"
    assert "past 90% of its limit" in fourth["reasons"][0]


def test_the_event_settles_its_reservation_and_its_actual_cost_lands_in_used(api, support):
    allowance_create(principal=None, team=support, agent=None, window="day", limit_usd=Decimal("1"))
    held = check(api, estimated_cost_usd="0.60")
    assert check(api, estimated_cost_usd="0.60")["decision"] == "deny"
    # gpt-4o input is $2.50 / MTok: 100,000 tokens cost $0.25
    body = {**event(1, uncached_input=100_000), "reservation_id": held["reservation_id"]}
    assert api.post("/api/v1/events", [body]).json()["accepted"] == 1
    answer = check(api, estimated_cost_usd="0.50")  # 0.25 + 0.50: under the limit and its warn_at (0.8)
    assert answer["decision"] == "allow"
    assert answer["allowances"][0]["used_usd"] == "0.250000"
    assert answer["allowances"][0]["reserved_usd"] == "0.000000"  # the settled one no longer counts


def test_an_unsettled_reservation_expires_after_the_ttl(api, support):
    allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=1000)
    with override_settings(FINOPS_RESERVATION_TTL=60):
        assert check(api, estimated_tokens=700)["decision"] == "allow"
        assert check(api, estimated_tokens=700)["decision"] == "deny"
    held = Reservation.objects.get()
    assert held.expires_at - held.created_at == timedelta(seconds=60)
    # past its expiry (the expiry moved back instead of the clock forward)
    Reservation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert check(api, estimated_tokens=700)["decision"] == "allow"


def test_unpriced_calls_count_their_tokens_and_are_named_against_a_dollar_limit(api, support):
    allowance = allowance_create(
        principal=None, team=support, agent=None, window="month", limit_usd=Decimal(5), limit_tokens=50_000
    )
    api.post(
        "/api/v1/events",
        [event(n, provider="acme", model="acme-large-2", uncached_input=20_000) for n in range(2)],
    )
    answer = check(api, estimated_tokens=20_000)
    assert answer["decision"] == "deny"  # 40,000 used + 20,000 > 50,000 tokens
    assert answer["allowances"][0]["used_tokens"] == 40_000
    assert answer["allowances"][0]["used_usd"] == "0.000000"
    assert answer["allowances"][0]["unpriced_calls"] == 2
    assert answer["reasons"] == [
        f"allowance {allowance.pk} (support, month): $0.00 of $5.00 used (and 2 unpriced call(s) whose cost "
        "is unknown, not counted in $); 40,000 of 50,000 tokens used"
    ]


def test_throttle_denies_new_tasks_and_lets_running_ones_finish(api, support):
    allowance_create(
        principal=None, team=support, agent=None, window="day", limit_tokens=1000, action="throttle"
    )
    api.post("/api/v1/events", [event(1, task_id="running", uncached_input=1000)])
    assert check(api, task_id="running")["decision"] == "warn"
    assert check(api, task_id="new")["decision"] == "deny"
    assert check(api)["decision"] == "deny"  # a call in no task is new work


def test_warn_action_never_denies(api, support):
    allowance_create(principal=None, team=support, agent=None, window="hour", limit_tokens=10, action="warn")
    api.post("/api/v1/events", [event(1, uncached_input=50)])
    answer = check(api, estimated_tokens=100)
    assert answer["decision"] == "warn"
    assert answer["reasons"][0].endswith("past its limit (action warn)")


def test_an_agent_allowance_does_not_hold_back_other_agents(api, support):
    other = AgentFactory(team=support, name="other")
    allowance_create(principal=None, team=support, agent=other, window="day", limit_tokens=1)
    api.post("/api/v1/events", [event(1, agent="other", uncached_input=5)])
    assert check(api)["decision"] == "allow"
    assert check(api, agent="other")["decision"] == "deny"


def test_a_runaway_loop_is_killed_before_it_passes_its_max_cost_by_more_than_one_call(api, support):
    """The seeds' incident: each step resends the whole context, which grows by 12K tokens a step."""
    Agent.objects.filter(name="refund-bot").update(max_cost_usd=Decimal("2.00"))
    context, step, spent, denied = 0, 0, Decimal(0), None
    while step < 200:
        answer = check(api, task_id="loop")
        if answer["decision"] == "deny":
            denied = answer
            break
        step += 1
        context += 12_000
        api.post(
            "/api/v1/events",
            [{**event(step, task_id="loop", uncached_input=context, output=300), "step": step}],
        )
        spent += (Decimal(context) * Decimal("2.5") + 300 * Decimal(10)) / 10**6  # gpt-4o: $2.50 in, $10 out
    assert denied is not None
    last_call = (Decimal(context) * Decimal("2.5") + 300 * Decimal(10)) / 10**6
    assert spent >= Decimal("2.00")
    assert spent - last_call < Decimal("2.00")  # it passed the limit only with its last call
    assert denied["task"]["cost_usd"] == str(spent.quantize(Decimal("0.000001")))
    assert denied["reasons"] == [
        f"task loop (support/refund-bot): ${spent:.2f} of $2.00 spent (kill switch: max_cost_usd)"
    ]
    task = Task.objects.get(task_id="loop")
    assert (task.status, task.steps) == ("killed", step)
    assert check(api, task_id="loop")["reasons"] == [
        "task loop (support/refund-bot) was killed by its kill switch"
    ]
    # the agent's own later report does not unkill it, and the KPIs count it
    outcome = {"task_id": "loop", "team": "support", "agent": "refund-bot", "status": "failure"}
    outcome |= {"started_at": timezone.now().isoformat(), "ended_at": timezone.now().isoformat()}
    assert api.post("/api/v1/tasks", [outcome]).status_code == 200
    assert Task.objects.get(task_id="loop").status == "killed"
    assert api.get("/api/v1/kpis", team="support").json()["tasks"]["killed"] == 1


def test_max_steps_and_an_estimate_past_max_cost_deny(api, support):
    Agent.objects.filter(name="refund-bot").update(max_steps=2, max_cost_usd=Decimal("1"))
    api.post("/api/v1/events", [event(1, task_id="t"), event(2, task_id="u")])
    # task t has spent $0.0025 (1,000 gpt-4o input tokens)
    assert check(api, task_id="t", estimated_cost_usd="0.9975")["decision"] == "allow"
    assert check(api, task_id="t", estimated_cost_usd="0.9976")["decision"] == "deny"
    api.post("/api/v1/events", [event(3, task_id="u")])
    answer = check(api, task_id="u")
    assert answer["reasons"] == ["task u (support/refund-bot): 2 of 2 steps (kill switch: max_steps)"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("mode", "decision"), [("open", "allow"), ("closed", "deny")])
def test_counters_it_cannot_reach_answer_the_fail_mode(make_api, mode, decision):
    """Another transaction holds the allowance's row (what checks lock) past the guard's lock timeout."""
    team = TeamFactory(slug="support")
    api = make_api()
    allowance = allowance_create(principal=None, team=team, agent=None, window="day", limit_tokens=10)
    holding, release = threading.Event(), threading.Event()

    def hold_the_counter():
        try:
            with connections["default"].cursor() as cursor:  # this thread's own connection
                cursor.execute("BEGIN")
                cursor.execute(
                    "SELECT * FROM guardrails_allowance WHERE id = %s FOR UPDATE",
                    [allowance.pk],
                )
                holding.set()
                release.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            connections["default"].close()

    holder = threading.Thread(target=hold_the_counter)
    holder.start()
    try:
        assert holding.wait(30)
        with override_settings(FINOPS_GUARD_FAIL_MODE=mode, FINOPS_GUARD_LOCK_TIMEOUT_MS=200):
            answer = check(api, estimated_tokens=1)
    finally:
        release.set()
        holder.join()
    assert answer["decision"] == decision
    assert answer["reasons"][0].startswith(
        "the guard could not reach its counters (canceling statement due to lock timeout)"
    )
    assert f"FINOPS_GUARD_FAIL_MODE={mode}" in answer["reasons"][0]
    assert not Reservation.objects.exists()  # nothing held for a call that was not checked
    assert connection.is_usable()


def test_checks_are_scoped_to_the_teams_the_token_may_send_for(make_api, support):
    search = TeamFactory(slug="search")
    bound = make_api(scopes=["ingest"], team=search)
    response = bound.post("/api/v1/guard/check", {"team": "support", "agent": "refund-bot"})
    assert response.status_code == 404
    read_only = make_api(scopes=["read"])
    assert read_only.post("/api/v1/guard/check", {"team": "support", "agent": "x"}).status_code == 403


def test_bad_input_names_the_field(api, support):
    response = api.post("/api/v1/guard/check", {"team": "support", "agent": "a", "estimated_cost_usd": "-1"})
    assert response.status_code == 400
    assert "estimated_cost_usd" in response.json()["extra"]["fields"]
    response = api.post("/api/v1/guard/check", {"agent": "a"})
    assert response.status_code == 400
    assert "team" in response.json()["extra"]["fields"]


def test_the_check_reads_no_calls_table_in_a_constant_number_of_queries(api, support):
    allowance_create(principal=None, team=support, agent=None, window="day", limit_usd=Decimal(5))
    Agent.objects.filter(name="refund-bot").update(max_steps=100)
    api.post("/api/v1/events", [event(n, task_id="run-1") for n in range(20)])
    check(api, task_id="run-1")  # the token's first use (its last-used time) is not part of the check
    with CaptureQueriesContext(connection) as queries:
        answer = check(api, task_id="run-1", estimated_cost_usd="0.01")
    assert answer["decision"] == "allow" and answer["task"]["steps"] == 20
    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if "ledger_call" in sql]
    # the token, the subject (team, agent, task, allowances) and the locked counters
    assert len(statements) <= 4, statements


def test_settled_and_expired_reservations_are_purged_an_hour_on(api, support):
    allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=10**6)
    open_one, settled, expired = (check(api, estimated_tokens=10)["reservation_id"] for _ in range(3))
    now = timezone.now()
    Reservation.objects.filter(reservation_id=settled).update(settled_at=now - timedelta(minutes=61))
    Reservation.objects.filter(reservation_id=expired).update(expires_at=now - timedelta(minutes=61))
    assert purge_reservations() == 2
    assert [str(held.reservation_id) for held in Reservation.objects.all()] == [open_one]


def held_totals() -> dict[int, tuple[int, Decimal]]:
    """What the database keeps for each allowance: its latest reserved-totals row (none yet: zero)."""
    totals = {
        allowance_id: (0, Decimal(0)) for allowance_id in Allowance.objects.values_list("pk", flat=True)
    }
    for total in ReservedTotal.objects.order_by("allowance_id", "seq"):
        totals[total.allowance_id] = (int(total.tokens), total.usd)
    return totals


def unreleased_sums(allowance_ids) -> dict[int, tuple[int, Decimal]]:
    """The same totals summed over the reservation rows themselves, in Python."""
    sums = {allowance_id: (0, Decimal(0)) for allowance_id in allowance_ids}
    for held in Reservation.objects.filter(released_at__isnull=True):
        tokens, usd = sums[held.allowance_id]
        sums[held.allowance_id] = (tokens + held.estimated_tokens, usd + held.estimated_usd)
    return sums


def test_reserved_totals_stay_the_sum_of_the_unreleased_reservations(api, support):
    """Checks, a settling event, an expiry, the purge, a row made outside the check, and one deleted: the
    totals the triggers keep equal a sum over the rows after every step, and a check answers the
    reservations that still hold (neither settled nor expired) and no others."""
    team_wide = allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=10**9)
    agents = allowance_create(
        principal=None,
        team=support,
        agent=Agent.objects.get(name="refund-bot"),
        window="month",
        limit_usd=Decimal(1000),
    )
    ids = [team_wide.pk, agents.pk]
    made = [
        check(api, estimated_tokens=100 * n, estimated_cost_usd=f"0.00{n}")["reservation_id"]
        for n in range(1, 7)
    ]
    assert (
        held_totals()
        == unreleased_sums(ids)
        == {
            team_wide.pk: (2100, Decimal("0.021")),
            agents.pk: (2100, Decimal("0.021")),
        }
    )
    # the first is settled by its event, the second expires, the third is made by hand (not by a check)
    body = {**event(1, uncached_input=10), "reservation_id": made[0]}
    assert api.post("/api/v1/events", [body]).json()["accepted"] == 1
    Reservation.objects.filter(reservation_id=made[1]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    Reservation.objects.create(
        allowance=team_wide,
        team=support,
        estimated_tokens=5,
        estimated_usd=Decimal("0.5"),
        created_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert held_totals() == unreleased_sums(ids)
    answer = check(api)  # no estimate: releases the settled and the expired, reserves nothing
    assert {state["id"]: state["reserved_tokens"] for state in answer["allowances"]} == {
        team_wide.pk: 2100 - 100 - 200 + 5,
        agents.pk: 2100 - 100 - 200,
    }
    assert held_totals() == unreleased_sums(ids)
    assert Reservation.objects.filter(released_at__isnull=False).count() == 4  # two ids, two allowances
    # one deleted while it holds, and the purge an hour on (it releases what no check has released yet)
    Reservation.objects.filter(reservation_id=made[2], allowance=agents).delete()
    assert held_totals() == unreleased_sums(ids)
    Reservation.objects.filter(reservation_id=made[3]).update(
        settled_at=timezone.now() - timedelta(minutes=61)
    )
    assert purge_reservations() == 2  # made[3], from both allowances
    assert held_totals() == unreleased_sums(ids)
    assert held_totals()[agents.pk] == (500 + 600, Decimal("0.011"))


def test_checks_lock_the_allowance_row_but_write_no_version_of_it(api, support):
    """The reserved totals are rows added, not the allowance's row updated (migration 0005): a row
    updated on every check leaves a version per check that an old transaction keeps alive."""
    allowance = allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=10**6)

    def version() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT xmin::text, ctid::text FROM guardrails_allowance WHERE id = %s", [allowance.pk]
            )
            return cursor.fetchone()

    before = version()
    made = [check(api, estimated_tokens=10 * n)["reservation_id"] for n in range(1, 4)]
    Reservation.objects.filter(reservation_id=made[0]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert check(api)["allowances"][0]["reserved_tokens"] == 20 + 30
    assert version() == before
    assert [
        total.tokens for total in ReservedTotal.objects.filter(allowance_id=allowance.pk).order_by("seq")
    ] == [10, 30, 60, 50]


def test_the_purge_keeps_each_allowances_latest_reserved_totals(api, support):
    kept = allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=10**6)
    gone = allowance_create(principal=None, team=support, agent=None, window="month", limit_tokens=10**6)
    for n in range(1, 4):
        check(api, estimated_tokens=n)
    assert ReservedTotal.objects.filter(allowance_id=kept.pk).count() == 3
    gone.delete()  # its reservations go with it, and its totals are read by no one
    purge_reservations()
    assert [(t.allowance_id, t.tokens) for t in ReservedTotal.objects.all()] == [(kept.pk, 1 + 2 + 3)]
    assert check(api, estimated_tokens=4)["allowances"][0]["reserved_tokens"] == 6


@pytest.mark.parametrize("durable", [False, True])
def test_the_check_sets_its_own_transactions_commit_mode(api, support, durable):
    """FINOPS_GUARD_SYNCHRONOUS_COMMIT sets synchronous_commit for the check's transaction only (the
    test's transaction here, which the check runs inside); the session's own setting is untouched."""
    allowance_create(principal=None, team=support, agent=None, window="day", limit_tokens=10**6)
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        session = cursor.fetchone()[0]
        with override_settings(FINOPS_GUARD_SYNCHRONOUS_COMMIT=durable):
            assert check(api, estimated_tokens=5)["reservation_id"]
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == ("on" if durable else "off")
    assert session == "on"


def test_the_checks_statements_are_planned_once_per_session(api, support):
    """Every statement the check runs inside guardrails_guard (its own, guardrails_release's, and the
    reservation trigger's through guardrails_reserved_add) keeps one plan for the session (migration
    0006), whatever the session's plan_cache_mode: re-planning them was most of a check's database CPU.
    PostgreSQL reports each planning as a PLANNER STATISTICS message, logged here from inside the
    function only (the test's transaction undoes the ALTER)."""
    allowance_create(principal=None, team=support, agent=None, window="day", limit_usd=Decimal("100"))
    planned = []
    raw = connection.connection
    raw.add_notice_handler(lambda notice: planned.append(notice.message_primary))
    with connection.cursor() as cursor:
        cursor.execute("ALTER FUNCTION guardrails_guard SET log_planner_stats = on")
        cursor.execute("SET LOCAL client_min_messages = log")
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")  # the worst a session can ask
        for _ in range(3):  # each statement's one planning
            check(api, task_id="run-1", estimated_cost_usd="0.01")
        planned.clear()
        answers = [check(api, task_id="run-1", estimated_cost_usd="0.01") for _ in range(10)]
    assert [answer["decision"] for answer in answers] == ["allow"] * 10  # reserved each time: the trigger ran
    assert planned == []
