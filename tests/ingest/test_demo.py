"""`finops demo`: the data set tells its story in the KPIs, loads idempotently, and its logins work.

The seven-day data set is loaded once for the module inside a transaction that is rolled back at the end,
so the other test modules never see it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce

from finops.accounts.models import Membership, OrgRole, Team, TeamRole, User
from finops.alerts.models import Alert, AlertRule, AlertState
from finops.audit.models import AuditEntry
from finops.bills.reconcile import reconciliation
from finops.guardrails.check import guard_check
from finops.guardrails.models import Allowance, AllowanceUsage
from finops.kpis.selectors import Scope, kpis_for_scope
from finops.ledger.models import Agent, Call, DailyRollup, Task, TaskStatus
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.services import call_price
from ingest.connectors.models import StatementLine
from ingest.demo import DEMO_LOGINS, TEAM_ROLE_LOGINS, DemoTask, demo_load, demo_story, demo_traffic

DAYS = 7
SEED = 42


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    end = datetime.now(UTC).replace(microsecond=0)
    with django_db_blocker.unblock(), transaction.atomic():
        yield demo_load(days=DAYS, seed=SEED, end=end)
        transaction.set_rollback(True)


def agent_scope(team: str, agent: str) -> Scope:
    found = Agent.objects.get(team__slug=team, name=agent)
    return Scope(team_ids=frozenset({found.team_id}), agent_ids=frozenset({found.pk}))


def day_window(day) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def whole_days(story):
    day = story.start.date() + timedelta(days=1)
    while day < story.end.date():
        yield day
        day += timedelta(days=1)


_traffic: dict[tuple, dict[str, DemoTask]] = {}


def traffic(story) -> dict[str, DemoTask]:
    """The runaway agent's runs as the demo generates them, before any guard: by task id."""
    key = (story.start, story.end)
    if key not in _traffic:
        _traffic[key] = {
            run.outcome["task_id"]: run
            for run in demo_traffic(story=story, seed=SEED)
            if run.outcome
            and (run.outcome["team"], run.outcome["agent"]) == (story.runaway_team, story.runaway_agent)
        }
    return _traffic[key]


def input_tokens(calls) -> int:
    return sum(calls.aggregate(**{name: Coalesce(Sum(name), 0) for name in INPUT_TOKEN_TYPES}).values())


def test_runaway_days_inflate_steps_and_cost_per_successful_task(demo, db):
    story = demo.story
    scope = agent_scope(story.runaway_team, story.runaway_agent)
    agent = Agent.objects.get(pk=next(iter(scope.agent_ids)))
    inflation = {}
    cost_per_success = {}
    for day in whole_days(story):
        start, end = day_window(day)
        kpis = kpis_for_scope(scope=scope, start=start, end=end)
        if kpis.tasks_ended == 0:
            continue
        # the same ratio, from the task rows themselves
        tasks = Task.objects.filter(agent=agent, ended_at__gte=start, ended_at__lt=end)
        totals = tasks.aggregate(
            steps=Sum("steps"), ideal=Sum(Coalesce("ideal_steps", F("agent__ideal_steps")))
        )
        assert kpis.step_inflation_ratio == pytest.approx(totals["steps"] / totals["ideal"])
        inflation[day] = kpis.step_inflation_ratio
        cost_per_success[day] = kpis.cost_per_successful_task_usd

    ordinary_days = [day for day in inflation if day not in story.runaway_days]
    assert ordinary_days and set(story.runaway_days) <= set(inflation)
    assert max(inflation[day] for day in ordinary_days) < float(agent.target_step_inflation)
    assert min(inflation[day] for day in story.runaway_days) > float(agent.target_step_inflation)
    runaway_start = day_window(story.runaway_days[0])[0]
    runaway_end = day_window(story.runaway_days[-1])[1]
    runaway = kpis_for_scope(scope=scope, start=runaway_start, end=runaway_end)
    assert runaway.step_inflation_ratio > max(inflation[day] for day in ordinary_days)
    assert runaway.cost_per_successful_task_usd > 2 * max(cost_per_success[day] for day in ordinary_days)
    assert runaway.cost_per_successful_task_usd > agent.cost_slo_usd
    # the loops tried to make more than twice the ordinary days' steps; the kill switch and the team's
    # allowance cut that short, so the ledger holds fewer
    ended = Task.objects.filter(agent=agent, ended_at__gte=runaway_start, ended_at__lt=runaway_end)
    attempted_steps = {run.outcome["task_id"]: len(run.events) for run in traffic(story).values()}
    ideal = sum(task.ideal_steps or agent.ideal_steps for task in ended)
    attempted = sum(attempted_steps[task.task_id] for task in ended) / ideal
    assert attempted > 2 * max(inflation[day] for day in ordinary_days)
    assert runaway.step_inflation_ratio < attempted
    # the spinning runs are the ones that ran 40 steps or more: killed, or abandoned by whoever watched
    spun = Task.objects.filter(agent=agent, steps__gte=40)
    assert spun.exists()
    assert set(spun.values_list("status", flat=True)) <= {TaskStatus.KILLED, TaskStatus.ABANDONED}
    assert {task.first_call_at.date() for task in spun} <= set(story.runaway_days)


def test_prompt_change_collapses_the_cache_hit_rate(demo, db):
    story = demo.story
    scope = agent_scope(story.prompt_change_team, story.prompt_change_agent)
    before = kpis_for_scope(scope=scope, start=story.start, end=story.prompt_change_at)
    after = kpis_for_scope(scope=scope, start=story.prompt_change_at, end=story.end)
    assert before.cache_hit_rate > 0.75
    assert after.cache_hit_rate < before.cache_hit_rate / 3
    assert after.tokens["uncached_input"] / after.calls > 3 * before.tokens["uncached_input"] / before.calls

    # independently, per prompt version, from the calls
    calls = Call.objects.filter(agent_id__in=scope.agent_ids)
    old = calls.filter(prompt_version=story.prompt_version_before)
    new = calls.filter(prompt_version=story.prompt_version_after)
    assert new.filter(timestamp__lt=story.prompt_change_at).count() == 0
    old_rate = old.aggregate(read=Sum("cache_read"))["read"] / input_tokens(old)
    new_rate = new.aggregate(read=Sum("cache_read"))["read"] / input_tokens(new)
    assert new_rate < old_rate / 3


def test_unpriced_model_is_counted_never_zero(demo, db):
    story = demo.story
    everything = Scope(
        team_ids=frozenset(Team.objects.filter(slug__in=demo.teams).values_list("pk", flat=True))
    )
    kpis = kpis_for_scope(scope=everything, start=story.start, end=story.end)
    unpriced = Call.objects.filter(cost_usd__isnull=True, timestamp__gte=story.start, timestamp__lt=story.end)
    assert kpis.unpriced_calls > 0
    assert kpis.unpriced_calls == unpriced.count()
    assert set(unpriced.values_list("provider", "model").distinct()) == {
        (story.unpriced_provider, story.unpriced_model)
    }
    assert not Call.objects.filter(model=story.unpriced_model, cost_usd__isnull=False).exists()
    assert kpis.unpriced_calls == demo.unpriced_calls


def test_batch_calls_cost_half_of_the_same_tokens_unbatched(demo, db):
    story = demo.story
    batch_calls = Call.objects.filter(batch=True)
    assert batch_calls.exists()
    assert set(batch_calls.values_list("agent__name", flat=True).distinct()) == {story.batch_agent}
    for call in batch_calls.order_by("id")[:25]:
        tokens = {name: getattr(call, name) for name in TOKEN_TYPES}
        standard = call_price(provider=call.provider, model=call.model, tokens=tokens, at=call.timestamp)
        assert call.cost_usd > 0
        assert abs(call.cost_usd - standard.total_usd / 2) <= Decimal("1e-11")


def test_calls_not_in_a_task_are_counted(demo, db):
    story = demo.story
    everything = Scope(
        team_ids=frozenset(Team.objects.filter(slug__in=demo.teams).values_list("pk", flat=True))
    )
    kpis = kpis_for_scope(scope=everything, start=story.start, end=story.end)
    loose = Call.objects.filter(task_id__isnull=True, timestamp__gte=story.start, timestamp__lt=story.end)
    assert kpis.calls_not_in_task > 0
    assert kpis.calls_not_in_task == loose.count()
    assert kpis.cost_not_in_task_usd == loose.aggregate(total=Sum("cost_usd"))["total"]


def test_tasks_have_outcomes_steps_and_growing_cached_context(demo, db):
    tasks = Task.objects.filter(task_id__startswith=f"demo{SEED}-")
    counts = tasks.aggregate(
        all=Count("id"),
        without_outcome=Count("id", filter=Q(status__isnull=True)),
        successful=Count("id", filter=Q(status=TaskStatus.SUCCESS)),
    )
    assert counts["all"] == demo.tasks_recorded
    assert counts["without_outcome"] == 0
    assert counts["successful"] > 0.75 * counts["all"]
    assert tasks.filter(ideal_steps__isnull=False).exists()
    assert tasks.filter(ideal_steps__isnull=True).exists()

    task = tasks.filter(agent__name="ticket-triage", steps__gte=4).order_by("task_id").first()
    calls = list(Call.objects.filter(team_id=task.team_id, task_id=task.task_id).order_by("step"))
    assert [call.step for call in calls] == list(range(1, task.steps + 1))
    assert task.started_at <= calls[0].timestamp and calls[-1].timestamp <= task.ended_at
    totals = [sum(getattr(call, name) for name in INPUT_TOKEN_TYPES) for call in calls]
    assert totals == sorted(totals) and totals[-1] > totals[0]
    if calls[0].prompt_version == demo.story.prompt_version_before:
        assert calls[0].cache_write_5m > 0
        assert all(call.cache_read > call.uncached_input for call in calls[1:])
    assert all(sum(call.input_breakdown.values()) == total for call, total in zip(calls, totals, strict=True))
    assert any(call.tool_calls for call in calls)


def test_loading_again_with_the_same_seed_adds_nothing(demo, db):
    calls_before = Call.objects.count()
    tasks_before = Task.objects.count()

    again = demo_load(days=DAYS, seed=SEED, end=demo.story.end)

    assert Call.objects.count() == calls_before
    assert Task.objects.count() == tasks_before
    assert again.ingest.accepted == 0
    assert again.ingest.duplicates == demo.ingest.accepted
    assert again.cost_usd == demo.cost_usd
    assert again.tasks_recorded == 0
    assert again.tasks_in_window == demo.tasks_in_window
    assert (Allowance.objects.count(), AlertRule.objects.count(), Alert.objects.count()) == (1, 2, 1)
    assert again.guarded.killed == demo.guarded.killed and again.guarded.denied == demo.guarded.denied


def test_traffic_is_deterministic_per_seed():
    story = demo_story(days=4, end=datetime(2026, 11, 22, 12, tzinfo=UTC))

    first = [event for run in demo_traffic(story=story, seed=1) for event in run.events]
    second = [event for run in demo_traffic(story=story, seed=1) for event in run.events]
    other_seed = [event["event_id"] for run in demo_traffic(story=story, seed=2) for event in run.events]

    assert first == second
    assert len({event["event_id"] for event in first}) == len(first)
    assert not {event["event_id"] for event in first} & set(other_seed)


def test_demo_logins_exist_with_their_roles_and_can_log_in(demo, db, client):
    for username, password, _ in DEMO_LOGINS:
        assert client.login(username=username, password=password), username
        client.logout()
    admin = User.objects.get(username="admin")
    assert (admin.org_role, admin.is_staff, admin.is_superuser) == (OrgRole.ADMIN, True, True)
    finops = User.objects.get(username="finops")
    assert (finops.org_role, finops.is_staff, finops.is_superuser) == (OrgRole.FINOPS, True, False)
    # every team role of SPEC's table has a login in every team
    assert {role for _, role in TEAM_ROLE_LOGINS} == set(TeamRole.values)
    for slug in demo.teams:
        for role_name, role in TEAM_ROLE_LOGINS:
            membership = Membership.objects.get(user__username=f"{slug}-{role_name}", team__slug=slug)
            assert membership.role == role
            assert not membership.user.is_staff
            assert Membership.objects.filter(user=membership.user).count() == 1


def test_command_prints_progress_and_summary(db):
    out = StringIO()

    call_command("demo", days=4, seed=3, stdout=out)

    output = out.getvalue()
    calls = Call.objects.filter(event_id__startswith="demo3-").count()
    assert calls > 0
    assert "batch 1:" in output
    assert "guardrails    kill switch coding/code-review (40 steps or $6.00 a task): " in output
    assert f"{calls:,} calls accepted" in output
    assert "admin / admin" in output
    with pytest.raises(CommandError):
        call_command("demo", days=2, stdout=StringIO())


def days_before_the_last(story):
    """The window's UTC days but the end's own, worked out here rather than taken from the story."""
    day = story.start.date()
    while day < story.end.date():
        yield day
        day += timedelta(days=1)


def test_the_bill_equals_telemetry_except_the_named_variance(demo, db):
    story = demo.story
    days = list(days_before_the_last(story))
    assert days == list(story.bill_days) and len(days) == DAYS
    agents = Agent.objects.filter(team__slug__in=demo.teams)
    telemetry: dict[tuple, tuple[int, Decimal]] = {}
    for row in DailyRollup.objects.filter(provider="anthropic", agent__in=agents, day__in=days):
        for name in TOKEN_TYPES:
            key = (row.day, row.model, name)
            tokens, cost = telemetry.get(key, (0, Decimal(0)))
            telemetry[key] = (tokens + getattr(row, name), cost + getattr(row, f"cost_{name}_usd"))
    telemetry = {key: value for key, value in telemetry.items() if value[0]}
    bill: dict[tuple, tuple[int, Decimal]] = {}
    for line in StatementLine.objects.filter(source="demo-bill"):
        key = (line.period_start.date(), line.model, line.token_type)
        tokens, amount = bill.get(key, (0, Decimal(0)))
        bill[key] = (tokens + line.quantity, amount + line.amount)
    lines = StatementLine.objects.filter(source="demo-bill")
    assert {(line.provider, line.currency, line.kind) for line in lines} == {("anthropic", "USD", "cost")}
    assert all(line.period_end - line.period_start == timedelta(days=1) for line in lines)

    assert set(bill) == set(telemetry)
    differing = {key for key in bill if bill[key] != telemetry[key]}
    variance_key = (story.prompt_change_at.date(), "claude-sonnet-4-5", "uncached_input")
    assert differing == {variance_key}
    assert (
        story.bill_variance_day,
        story.bill_variance_model,
        story.bill_variance_token_type,
    ) == variance_key
    (billed_tokens, billed_cost), (reported_tokens, reported_cost) = (
        bill[variance_key],
        telemetry[variance_key],
    )
    assert billed_tokens - reported_tokens == round(reported_tokens * 4 / 100) > 0
    assert billed_cost - reported_cost == (reported_cost * Decimal("0.04")).quantize(Decimal("1e-12"))
    assert (demo.bill_variance_tokens, demo.bill_variance_usd) == (
        billed_tokens - reported_tokens,
        billed_cost - reported_cost,
    )
    assert demo.bill_amount_usd == sum(amount for _, amount in bill.values())
    assert "4% more uncached_input tokens of claude-sonnet-4-5" in demo.bill_summary
    # the variance is a line of its own, from a workspace none of the agents' lines is in
    unseen = lines.exclude(workspace_id="wrkspc_agents")
    assert [(line.workspace_id, line.quantity, line.amount) for line in unseen] == [
        ("wrkspc_notebooks", billed_tokens - reported_tokens, billed_cost - reported_cost)
    ]
    assert (unseen[0].period_start.date(), unseen[0].model, unseen[0].token_type) == variance_key


def test_every_dollar_of_the_bills_variance_has_a_cause(demo, db):
    """As a finops user reconciling the demo's months finds it: the notebook workspace's calls on the
    prompt-change day, and the day the provider's report has not been pulled for yet; nothing else."""
    story = demo.story
    months = sorted({date(day.year, day.month, 1) for day in (story.start.date(), story.end.date())})
    causes: dict[str, Decimal] = {}
    for month in months:
        result = reconciliation(provider="anthropic", month=month)
        assert result.without_cause_usd == 0, [
            (line.key, line.status) for line in result.lines if line.status != "matched" and not line.cause
        ]
        for line in result.lines:
            if line.status != "matched":
                causes[line.cause] = causes.get(line.cause, Decimal(0)) + abs(line.variance_usd)
                if line.cause == "unseen_key":
                    assert line.key == (story.bill_variance_day, "claude-sonnet-4-5", "uncached_input", "")
                    assert "wrkspc_notebooks" in line.note_of_cause
                if line.cause == "day_missing_from_pull":
                    assert line.day == story.end.date()
    assert causes["unseen_key"] == demo.bill_variance_usd
    today = DailyRollup.objects.filter(provider="anthropic", day=story.end.date()).aggregate(Sum("cost_usd"))
    assert causes.get("day_missing_from_pull", Decimal(0)) == (today["cost_usd__sum"] or Decimal(0))
    assert set(causes) <= {"unseen_key", "day_missing_from_pull"}


def test_loading_again_leaves_the_bill_as_it_was(demo, db):
    before = {line.pk: (line.quantity, line.amount, line.pulled_at) for line in StatementLine.objects.all()}

    again = demo_load(days=DAYS, seed=SEED, end=demo.story.end)

    after = {line.pk: (line.quantity, line.amount, line.pulled_at) for line in StatementLine.objects.all()}
    assert after == before
    assert (again.bill.created, again.bill.updated, again.bill.removed) == (0, 0, 0)
    assert again.bill.unchanged == demo.bill.created == len(before)
    assert again.bill_amount_usd == demo.bill_amount_usd


def event_price(event: dict) -> Decimal:
    at = datetime.fromisoformat(event["timestamp"])
    return call_price(
        provider=event["provider"], model=event["model"], tokens=event["usage"], at=at
    ).total_usd


def test_the_kill_switch_stops_the_runaway_loops_where_the_guard_check_denies(demo, db):
    story = demo.story
    agent = Agent.objects.get(team__slug=story.runaway_team, name=story.runaway_agent)
    assert (agent.max_steps, agent.max_cost_usd) == (40, Decimal("6.00"))
    set_by = AuditEntry.objects.get(object_type="agent", object_id=str(agent.pk))
    assert (set_by.who, set_by.after) == ("coding-sre", {"max_steps": 40, "max_cost_usd": "6.00"})
    runs = traffic(story)
    killed = list(Task.objects.filter(agent=agent, status=TaskStatus.KILLED))
    assert killed
    assert {task.first_call_at.date() for task in killed} <= set(story.runaway_days)
    stopped_by = {"max_steps": [], "max_cost_usd": []}
    for task in killed:
        attempted = runs[task.task_id].events
        calls = list(Call.objects.filter(team_id=task.team_id, task_id=task.task_id).order_by("step"))
        # it made its first calls exactly as the loop generated them, and not one more
        assert [call.event_id for call in calls] == [event["event_id"] for event in attempted[: task.steps]]
        spent = sum(call.cost_usd for call in calls)
        assert spent == task.cost_usd <= agent.max_cost_usd
        # the call it was denied: at max_steps, or its cost would have taken the task past max_cost_usd
        denied = attempted[task.steps]
        assert task.ended_at == datetime.fromisoformat(denied["timestamp"])
        if task.steps == agent.max_steps:
            stopped_by["max_steps"].append(task)
        else:
            assert spent + event_price(denied) > agent.max_cost_usd
            stopped_by["max_cost_usd"].append(task)
    assert stopped_by["max_steps"] and stopped_by["max_cost_usd"]
    # no run of an ordinary day comes near it
    ordinary = Task.objects.filter(agent=agent).exclude(first_call_at__date__in=story.runaway_days)
    assert ordinary.exists()
    assert all(task.steps < agent.max_steps and task.cost_usd < agent.max_cost_usd for task in ordinary)
    assert kpis_for_scope(
        scope=agent_scope(story.runaway_team, story.runaway_agent), start=story.start, end=story.end
    ).tasks_killed == len(killed)

    # the guard check itself answers so: for each kind, the task as it stood before its denied call
    # (not yet killed) is denied that call, and as it stood before its last call was allowed that one
    for reason, tasks in stopped_by.items():
        task = tasks[0]
        attempted = runs[task.task_id].events
        last, denied = attempted[task.steps - 1], attempted[task.steps]
        Task.objects.filter(pk=task.pk).update(status=None)
        answer = guard_check(
            team_slug=story.runaway_team,
            team_ids=None,
            agent=story.runaway_agent,
            task_id=task.task_id,
            estimated_cost_usd=event_price(denied),
            now=datetime.fromisoformat(denied["timestamp"]),
        )
        assert answer.decision == "deny"
        assert answer.reasons[0].startswith(
            f"task {task.task_id} ({story.runaway_team}/{story.runaway_agent}): "
        )
        assert answer.reasons[0].endswith(f"(kill switch: {reason})")
        assert Task.objects.get(pk=task.pk).status == TaskStatus.KILLED
        Task.objects.filter(pk=task.pk).update(
            status=None, steps=task.steps - 1, cost_usd=task.cost_usd - event_price(last)
        )
        before = guard_check(
            team_slug=story.runaway_team,
            team_ids=None,
            agent=story.runaway_agent,
            task_id=task.task_id,
            estimated_cost_usd=event_price(last),
            now=datetime.fromisoformat(last["timestamp"]),
        )
        assert not any("kill switch" in text for text in before.reasons)


def test_the_team_allowance_holds_the_runaway_days_near_its_limit(demo, db):
    story = demo.story
    team = Team.objects.get(slug=story.runaway_team)
    allowance = Allowance.objects.get(team=team)
    assert (allowance.agent, allowance.window, allowance.action, allowance.limit_usd) == (
        None,
        "day",
        "deny",
        Decimal("85.00"),
    )
    assert allowance.created_by.username == "coding-sre"
    created = AuditEntry.objects.get(object_type="allowance", object_id=str(allowance.pk))
    assert (created.who, created.action) == ("coding-sre", "create")
    runs = traffic(story)
    tasks = {task.task_id: task for task in Task.objects.filter(team=team)}
    # a task the allowance stopped made fewer calls than its loop generated, and did not get killed
    stopped = [
        task
        for task in tasks.values()
        if task.status == TaskStatus.FAILURE and len(runs[task.task_id].events) > task.steps
    ]
    denied_days = {task.ended_at.date() for task in stopped}
    assert denied_days and denied_days <= set(story.runaway_days)
    for day in denied_days:
        start, end = day_window(day)
        used = Call.objects.filter(team=team, timestamp__gte=start, timestamp__lt=end).aggregate(
            total=Sum("cost_usd")
        )["total"]
        counter = AllowanceUsage.objects.get(allowance=allowance, window_start=start)
        assert counter.used_usd == used <= allowance.limit_usd
        # near its limit: what is left is less than any call it denied that day
        denied = [
            event_price(runs[task.task_id].events[task.steps])
            for task in stopped
            if task.ended_at.date() == day
        ]
        assert allowance.limit_usd - used < min(denied)
    # on the other days every run of the team made every call its loop generated
    for task_id, run in runs.items():
        if run.started_at.date() not in story.runaway_days:
            assert tasks[task_id].steps == len(run.events)


def test_the_runaway_alert_rule_is_there_for_the_alert_engine(demo, db):
    story = demo.story
    rule = AlertRule.objects.get(kind="runaway_task")
    agent = Agent.objects.get(team__slug=story.runaway_team, name=story.runaway_agent)
    assert (rule.team_id, rule.agent_id, rule.metric, rule.value) == (
        agent.team_id,
        agent.pk,
        "cost_usd",
        agent.max_cost_usd / 2,
    )
    assert not rule.channels.exists()


def test_the_prompt_change_has_fired_its_cache_collapse_alert(demo, db):
    """The demo's rules are judged once it is loaded: the prompt change that collapsed the cache hit
    rate is a firing alert a new user finds on first start, its numbers those of the rollups."""
    story = demo.story
    agent = Agent.objects.get(team__slug=story.prompt_change_team, name=story.prompt_change_agent)
    alert = Alert.objects.get(rule__kind="cache_collapse")
    assert (alert.state, alert.subject) == (
        AlertState.FIRING,
        f"agent:{story.prompt_change_team}/{story.prompt_change_agent}",
    )
    rates = {}
    for version in (story.prompt_version_before, story.prompt_version_after):
        calls = Call.objects.filter(agent=agent, prompt_version=version)
        sums = calls.aggregate(
            read=Sum("cache_read"),
            sent=Sum(F("uncached_input") + F("cache_read") + F("cache_write_5m") + F("cache_write_1h")),
        )
        rates[version] = Decimal(sums["read"]) / Decimal(sums["sent"])
    drop = rates[story.prompt_version_before] - rates[story.prompt_version_after]
    assert drop > Decimal("0.2") and abs(alert.value - drop) < Decimal("1e-9")
    assert [alert.pk for alert in demo.alerts.fired] == [alert.pk]


def test_each_team_has_a_monthly_budget_from_its_spend_and_the_runaways_team_a_tight_one(demo, db):
    story = demo.story
    days = Decimal((story.end - story.start).total_seconds()) / 86400
    for team in Team.objects.all():
        spent = sum(
            (call.cost_usd for call in Call.objects.filter(team=team, timestamp__gte=story.start,
                                                            timestamp__lt=story.end, cost_usd__isnull=False)),
            Decimal(0),
        )  # fmt: skip
        factor = Decimal("0.85") if team.slug == story.runaway_team else Decimal("1.25")
        expected = max(Decimal(50), (spent * 30 / days * factor / 50).to_integral_value(ROUND_CEILING) * 50)
        assert team.monthly_budget_usd == expected, team.slug
    assert AuditEntry.objects.filter(object_type="team", action="update").count() == Team.objects.count()
