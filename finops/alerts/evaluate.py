"""Alert evaluation (SPEC.md, "Alerts"): every enabled rule, every minute (beat) and on demand
(`finops alerts evaluate`), from rollups and aggregates, never the calls table.

Subjects. A rule with an agent judges that agent ("agent:team/name"); with a team and no agent, the
team as a whole ("team:slug"); with neither, each team on its own. `runaway_task` judges each task
("task:team/task_id"), `cache_collapse` each agent, `allowance` each allowance's scope (its team or
agent; several allowances of one scope make one alert, valued at the worst of them).

Kinds:
- threshold: `metric` (any number of GET /api/v1/kpis: `cost_usd`, `calls`, `unpriced_calls`,
  `calls_not_in_task`, `cache_hit_rate`, `cost_per_successful_task_usd`, `token_efficiency_index`,
  `step_inflation_ratio`, `tasks.ended`, …, `tokens.output`, …, and `tokens`, all six types) `op`
  `value` over `window`: 15m, 1h, 1d, 7d trailing, or `month`, the calendar month so far in
  FINOPS_TIME_ZONE (the default, as GET /kpis defaults to the month). A trailing window ends with the
  current minute (included so far) and starts its length before that minute's end. A metric with no
  value (a rate with nothing to divide) does not hold.
- forecast: month-to-date cost_usd + the trailing 7 days' daily average × the days left in the month,
  `op` (gt by default) `value`: finops.kpis.forecast.month_end_forecast, which the Forecast page
  shows too (with its uncertainty band, which the alert names in its message but does not judge).
- anomaly: spend over `window` (1h by default) > `value` × the scope's baseline: for 15m and 1h the
  mean of the same window on each of the 7 previous days (so a daily rhythm is not an anomaly); for 1d
  the mean of the 7 previous days; for 7d the 7 whole UTC days before the window's first day. No
  spend in the baseline: no judgement (a new scope is not an anomaly; runaway_task covers it).
- runaway_task: a task with no outcome whose last call is within TASK_IDLE_AFTER, past `value`
  dollars (`metric` cost_usd, the default) or steps (`metric` steps).
- cache_collapse: of an agent's prompt versions called within VERSION_IN_USE, the newest (by first
  call) has a cache hit rate below the version first called before it by more than `value` (a
  difference of rates: 0.2 is 20 points), both with at least CACHE_MIN_CALLS calls.
- allowance: an allowance's current window used (tokens or dollars, reservations aside) at or past
  its warn_at (or `value`, when the rule sets one) of its limit.

States: a breach opens an alert `pending`, or `firing` at once when for_minutes is 0; a pending alert
fires once the condition has held for_minutes, and is deleted if it stops holding first (it never
notified anyone); a firing alert resolves when the condition stops holding (or its rule is disabled).
Notifications (one Delivery per channel of the rule, handed to finops.alerts.delivery after commit):
on firing, again every repeat_minutes (0: never) while firing and not acknowledged, and on resolving
if a firing notification went out. A silence covering the alert suppresses notifications, never state
changes; a firing alert whose notification a silence held back is notified when the silence ends.

Concurrency: the whole evaluation is one transaction holding a transaction-level advisory lock
(EVALUATE_LOCK), so beat and the command evaluating at once run one after the other, the second
seeing what the first committed: one alert per (rule, subject), one notification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from finops.accounts.models import Team
from finops.alerts.models import (
    Alert,
    AlertRule,
    AlertState,
    Delivery,
    DeliveryEvent,
    RuleKind,
    RuleOp,
    RuleWindow,
    Silence,
)
from finops.alerts.readings import (
    AgentKey,
    Range,
    call_sums_by_agent,
    call_sums_empty,
    prompt_versions_in_use,
    running_tasks,
    sums_add,
    task_sums_by_agent,
    task_sums_empty,
)
from finops.guardrails.models import Allowance
from finops.guardrails.selectors import allowance_used_fraction, allowances_live
from finops.guardrails.windows import window_bounds
from finops.kpis.forecast import forecast_from_sums, forecast_window
from finops.kpis.selectors import Kpis, kpis_from_totals
from finops.ledger.models import Agent, Task
from finops.ledger.rollups import minute_of
from finops.ledger.tokens import TOKEN_TYPES

logger = logging.getLogger(__name__)

EVALUATE_LOCK = 7_318_021_462  # pg_advisory_xact_lock key: one evaluation at a time
TASK_IDLE_AFTER = timedelta(minutes=15)  # a task with no outcome and no call for this long is not running
VERSION_IN_USE = timedelta(days=7)
CACHE_MIN_CALLS = 20  # fewer calls say little: a new version's first call writes the cache, reads none
TRAILING = {
    RuleWindow.MIN15: timedelta(minutes=15),
    RuleWindow.HOUR: timedelta(hours=1),
    RuleWindow.DAY: timedelta(days=1),
    RuleWindow.WEEK: timedelta(days=7),
}
ANOMALY_WINDOWS = tuple(TRAILING)
DEFAULT_WINDOW = {RuleKind.THRESHOLD: RuleWindow.MONTH, RuleKind.ANOMALY: RuleWindow.HOUR}
STORED_PLACES = Decimal("1e-12")  # Alert.value and threshold: 12 decimal places


def _tokens_total(kpis: Kpis) -> int:
    return sum(kpis.tokens.values())


# metric name (as GET /api/v1/kpis names the number) → (needs task sums, reader)
METRICS: dict[str, tuple[bool, Callable[[Kpis], object]]] = {
    "cost_usd": (False, lambda kpis: kpis.cost_usd),
    "calls": (False, lambda kpis: kpis.calls),
    "unpriced_calls": (False, lambda kpis: kpis.unpriced_calls),
    "calls_not_in_task": (False, lambda kpis: kpis.calls_not_in_task),
    "cache_hit_rate": (False, lambda kpis: kpis.cache_hit_rate),
    "tokens": (False, _tokens_total),
    **{f"tokens.{name}": (False, lambda kpis, name=name: kpis.tokens[name]) for name in TOKEN_TYPES},
    "cost_per_successful_task_usd": (True, lambda kpis: kpis.cost_per_successful_task_usd),
    "token_efficiency_index": (True, lambda kpis: kpis.token_efficiency_index),
    "step_inflation_ratio": (True, lambda kpis: kpis.step_inflation_ratio),
    "tasks.ended": (True, lambda kpis: kpis.tasks_ended),
    "tasks.successful": (True, lambda kpis: kpis.tasks_successful),
    "tasks.failed": (True, lambda kpis: kpis.tasks_failed),
    "tasks.abandoned": (True, lambda kpis: kpis.tasks_abandoned),
    "tasks.killed": (True, lambda kpis: kpis.tasks_killed),
    "tasks.unpriced_calls": (True, lambda kpis: kpis.tasks_unpriced_calls),
}
RUNAWAY_METRICS = ("cost_usd", "steps")


class RuleError(ValueError):
    """A rule that cannot be judged as written (its open alerts are left as they are)."""


@dataclass
class Breach:
    subject: str
    team_id: int | None
    agent_id: int | None
    value: Decimal | None
    threshold: Decimal | None
    summary: str


@dataclass
class Summary:
    at: datetime
    rules: int = 0
    breaches: int = 0
    opened: list[Alert] = field(default_factory=list)  # new alerts, pending or firing
    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    pending: list[Alert] = field(default_factory=list)  # still pending after this evaluation
    cleared: list[str] = field(default_factory=list)  # pending alerts whose condition stopped holding
    deliveries: list[int] = field(default_factory=list)
    silenced: int = 0  # notifications a silence held back
    errors: dict[int, str] = field(default_factory=dict)  # rule id → why it was not judged


def decimal(number) -> Decimal | None:
    if number is None:
        return None
    if isinstance(number, float):
        return Decimal(repr(number))
    return Decimal(number)


def stored(number: Decimal | None) -> Decimal | None:
    return None if number is None else number.quantize(STORED_PLACES, rounding=ROUND_HALF_EVEN)


def holds(op: str, value: Decimal | None, threshold: Decimal) -> bool:
    if value is None:
        return False
    return value < threshold if op == RuleOp.LT else value > threshold


class Evaluation:
    """One evaluation's reads, shared by its rules: call and task sums per window are read once, for
    every rule that needs them, grouped by team and agent; each rule adds up its own scope."""

    def __init__(self, *, now: datetime, rules: list[AlertRule]) -> None:
        self.now = now
        self.end = minute_of(now) + timedelta(minutes=1)  # the current minute, so far, is in
        self.rules = rules
        self.teams = {team.pk: team for team in Team.objects.all()}
        self.agents = {agent.pk: agent for agent in Agent.objects.all()}
        self.agent_ids_by_name = {(agent.team_id, agent.name): agent.pk for agent in self.agents.values()}
        self._call_ranges: dict[Range, int] = {}
        self._task_ranges: dict[Range, int] = {}
        self._call_sums: list[dict[AgentKey, dict]] = []
        self._task_sums: list[dict[AgentKey, dict]] = []

    # --- windows and reads -------------------------------------------------------------------------
    def window(self, name: str) -> Range:
        if name == RuleWindow.MONTH:
            return window_bounds(window="month", at=self.now)[0], self.end
        return self.end - TRAILING[name], self.end

    def anomaly_baseline_ranges(self, window: str) -> tuple[list[Range], int]:
        """The ranges whose spend, summed and divided by the count, is the baseline of a window."""
        start, end = self.window(window)
        if window in (RuleWindow.MIN15, RuleWindow.HOUR):
            return [(start - timedelta(days=k), end - timedelta(days=k)) for k in range(1, 8)], 7
        if window == RuleWindow.DAY:
            return [(start - timedelta(days=7), start)], 7
        first_day = datetime(start.year, start.month, start.day, tzinfo=UTC)
        return [(first_day - timedelta(days=7), first_day)], 1

    def plan(self, rule: AlertRule) -> None:
        """Note the windows a rule will read, so that all of them are read in one go."""
        kind = rule.kind
        if kind == RuleKind.THRESHOLD:
            window = rule.window or DEFAULT_WINDOW[kind]
            self._call_ranges.setdefault(self.window(window), len(self._call_ranges))
            if METRICS.get(rule.metric, (False,))[0]:
                self._task_ranges.setdefault(self.window(window), len(self._task_ranges))
        elif kind == RuleKind.FORECAST:
            for span in forecast_window(now=self.now).ranges():
                self._call_ranges.setdefault(span, len(self._call_ranges))
        elif kind == RuleKind.ANOMALY:
            window = rule.window or DEFAULT_WINDOW[kind]
            if window in ANOMALY_WINDOWS:
                for span in [self.window(window), *self.anomaly_baseline_ranges(window)[0]]:
                    self._call_ranges.setdefault(span, len(self._call_ranges))

    def read(self) -> None:
        self._call_sums = call_sums_by_agent(ranges=list(self._call_ranges))
        team_ids = self.scope_team_ids()
        self._task_sums = task_sums_by_agent(ranges=list(self._task_ranges), team_ids=team_ids)

    def scope_team_ids(self) -> list[int] | None:
        team_ids = set()
        for rule in self.rules:
            if rule.team_id is None and rule.agent_id is None:
                return None
            team_ids.add(rule.team_id or self.agents[rule.agent_id].team_id)
        return sorted(team_ids)

    def call_sums(self, span: Range, *, team_id: int, agent_id: int | None) -> dict:
        return self._scope_sums(
            self._call_sums[self._call_ranges[span]], call_sums_empty(), team_id, agent_id
        )

    def task_sums(self, span: Range, *, team_id: int, agent_id: int | None) -> dict:
        return self._scope_sums(
            self._task_sums[self._task_ranges[span]], task_sums_empty(), team_id, agent_id
        )

    @staticmethod
    def _scope_sums(by_agent: dict[AgentKey, dict], total: dict, team_id: int, agent_id: int | None) -> dict:
        for (row_team_id, row_agent_id), sums in by_agent.items():
            if row_team_id == team_id and agent_id in (None, row_agent_id):
                sums_add(total, sums)
        return total

    # --- subjects ----------------------------------------------------------------------------------
    def team_subject(self, team_id: int) -> str:
        return f"team:{self.teams[team_id].slug}"

    def agent_subject(self, agent_id: int) -> str:
        agent = self.agents[agent_id]
        return f"agent:{self.teams[agent.team_id].slug}/{agent.name}"

    def scope_subjects(self, rule: AlertRule) -> list[tuple[str, int, int | None]]:
        """(subject, team_id, agent_id) of each scope a team-or-agent rule judges."""
        if rule.agent_id:
            return [(self.agent_subject(rule.agent_id), self.agents[rule.agent_id].team_id, rule.agent_id)]
        team_ids = [rule.team_id] if rule.team_id else sorted(self.teams)
        return [(self.team_subject(team_id), team_id, None) for team_id in team_ids]

    def in_scope(self, rule: AlertRule, *, team_id: int, agent_id: int | None) -> bool:
        if rule.agent_id:
            return agent_id == rule.agent_id
        return rule.team_id is None or team_id == rule.team_id

    def subject_agent_id(self, alert: Alert) -> int | None:
        """The agent an open alert is about, if any (for silences naming an agent)."""
        kind, _, key = alert.subject.partition(":")
        if kind == "agent":
            slug, _, name = key.partition("/")
            team = next((team for team in self.teams.values() if team.slug == slug), None)
            return team and self.agent_ids_by_name.get((team.pk, name))
        if kind == "task":
            if alert.rule.agent_id:
                return alert.rule.agent_id
            _, _, task_id = key.partition("/")
            return (
                Task.objects.filter(team_id=alert.team_id, task_id=task_id)
                .values_list("agent_id", flat=True)
                .first()
            )
        return None

    # --- kinds -------------------------------------------------------------------------------------
    def breaches(self, rule: AlertRule, shared: dict) -> list[Breach]:
        judge = {
            RuleKind.THRESHOLD: self.threshold,
            RuleKind.FORECAST: self.forecast,
            RuleKind.ANOMALY: self.anomaly,
            RuleKind.RUNAWAY_TASK: partial(self.runaway_task, running=shared["running"]),
            RuleKind.CACHE_COLLAPSE: partial(self.cache_collapse, versions=shared["versions"]),
            RuleKind.ALLOWANCE: partial(self.allowance, allowances=shared["allowances"]),
        }.get(rule.kind)
        if judge is None:
            raise RuleError(f"unknown kind {rule.kind!r}")
        return judge(rule)

    @staticmethod
    def needs_value(rule: AlertRule) -> Decimal:
        if rule.value is None:
            raise RuleError(f"a {rule.kind} rule needs a value")
        return rule.value

    def threshold(self, rule: AlertRule) -> list[Breach]:
        if rule.metric not in METRICS:
            raise RuleError(f"unknown metric {rule.metric!r}; one of {', '.join(METRICS)}")
        threshold = self.needs_value(rule)
        window = rule.window or DEFAULT_WINDOW[RuleKind.THRESHOLD]
        span = self.window(window)
        needs_tasks, reader = METRICS[rule.metric]
        breaches = []
        for subject, team_id, agent_id in self.scope_subjects(rule):
            calls = self.call_sums(span, team_id=team_id, agent_id=agent_id)
            tasks = (
                self.task_sums(span, team_id=team_id, agent_id=agent_id) if needs_tasks else task_sums_empty()
            )
            value = decimal(reader(kpis_from_totals(start=span[0], end=span[1], calls=calls, tasks=tasks)))
            if holds(rule.op, value, threshold):
                word = "below" if rule.op == RuleOp.LT else "above"
                breaches.append(
                    Breach(
                        subject,
                        team_id,
                        agent_id,
                        value,
                        threshold,
                        f"{rule.metric} over {window} is {value}, {word} {threshold}",
                    )
                )
        return breaches

    def forecast(self, rule: AlertRule) -> list[Breach]:
        threshold = self.needs_value(rule)
        window = forecast_window(now=self.now)
        breaches = []
        for subject, team_id, agent_id in self.scope_subjects(rule):
            forecast = forecast_from_sums(
                window,
                {
                    span: self.call_sums(span, team_id=team_id, agent_id=agent_id)["cost_usd"]
                    for span in window.ranges()
                },
            )
            projected = forecast.projected_usd
            if holds(rule.op, projected, threshold):
                breaches.append(
                    Breach(
                        subject,
                        team_id,
                        agent_id,
                        projected,
                        threshold,
                        f"month-end spend projected at ${projected:.2f} (${forecast.to_date_usd:.2f} so far, "
                        f"${forecast.daily_rate_usd:.2f}/day over the last 7 days; likely between "
                        f"${forecast.low_usd:.2f} and ${forecast.high_usd:.2f}), threshold ${threshold:.2f}",
                    )
                )
        return breaches

    def anomaly(self, rule: AlertRule) -> list[Breach]:
        factor = self.needs_value(rule)
        window = rule.window or DEFAULT_WINDOW[RuleKind.ANOMALY]
        if window not in ANOMALY_WINDOWS:
            raise RuleError(
                f"an anomaly rule's window is one of {', '.join(ANOMALY_WINDOWS)}, not {window!r}"
            )
        span = self.window(window)
        baseline_ranges, divisor = self.anomaly_baseline_ranges(window)
        breaches = []
        for subject, team_id, agent_id in self.scope_subjects(rule):
            spend = self.call_sums(span, team_id=team_id, agent_id=agent_id)["cost_usd"]
            baseline = (
                sum(
                    (
                        self.call_sums(past, team_id=team_id, agent_id=agent_id)["cost_usd"]
                        for past in baseline_ranges
                    ),
                    Decimal(0),
                )
                / divisor
            )
            if baseline > 0 and spend > factor * baseline:
                breaches.append(
                    Breach(
                        subject,
                        team_id,
                        agent_id,
                        spend,
                        factor * baseline,
                        f"spend over {window} ${spend:.6f} is {spend / baseline:.1f}x its baseline "
                        f"${baseline:.6f} (threshold {factor}x)",
                    )
                )
        return breaches

    def runaway_task(self, rule: AlertRule, *, running) -> list[Breach]:
        threshold = self.needs_value(rule)
        metric = rule.metric or "cost_usd"
        if metric not in RUNAWAY_METRICS:
            raise RuleError(f"a runaway_task rule's metric is cost_usd or steps, not {metric!r}")
        breaches = []
        for task in running:
            if not self.in_scope(rule, team_id=task.team_id, agent_id=task.agent_id):
                continue
            value = Decimal(task.steps) if metric == "steps" else task.cost_usd
            if value > threshold:
                unit = f"{task.steps} steps" if metric == "steps" else f"${task.cost_usd:.6f}"
                breaches.append(
                    Breach(
                        f"task:{self.teams[task.team_id].slug}/{task.task_id}",
                        task.team_id,
                        task.agent_id,
                        value,
                        threshold,
                        f"task {task.task_id} of {self.agent_subject(task.agent_id)[6:]} still running at "
                        f"{unit} (last call {task.last_call_at:%Y-%m-%d %H:%M:%S} UTC), over {threshold}",
                    )
                )
        return breaches

    def cache_collapse(self, rule: AlertRule, *, versions) -> list[Breach]:
        drop_allowed = self.needs_value(rule)
        breaches = []
        for agent_id, agent_versions in versions.items():
            agent = self.agents.get(agent_id)
            if agent is None or not self.in_scope(rule, team_id=agent.team_id, agent_id=agent_id):
                continue
            in_use = [v for v in agent_versions if v.last_call_at >= self.now - VERSION_IN_USE]
            newest = in_use[0]  # newest first by first call
            older = [v for v in agent_versions if v.first_call_at < newest.first_call_at]
            if not older:
                continue
            previous = older[0]
            if min(newest.calls, previous.calls) < CACHE_MIN_CALLS or not (
                newest.input_tokens and previous.input_tokens
            ):
                continue
            newest_rate = Decimal(newest.cache_read) / Decimal(newest.input_tokens)
            previous_rate = Decimal(previous.cache_read) / Decimal(previous.input_tokens)
            drop = previous_rate - newest_rate
            if drop > drop_allowed:
                breaches.append(
                    Breach(
                        self.agent_subject(agent_id),
                        agent.team_id,
                        agent_id,
                        drop,
                        drop_allowed,
                        f"cache hit rate of prompt version {newest.prompt_version} is {newest_rate:.1%}, "
                        f"{drop * 100:.1f} points below {previous.prompt_version}'s {previous_rate:.1%}",
                    )
                )
        return breaches

    def allowance(self, rule: AlertRule, *, allowances) -> list[Breach]:
        worst: dict[str, Breach] = {}
        for allowance, live in allowances:
            if rule.agent_id and allowance.agent_id != rule.agent_id:
                continue
            if rule.team_id and allowance.team_id != rule.team_id:
                continue
            warn_at = rule.value if rule.value is not None else decimal(allowance.warn_at)
            fraction = allowance_used_fraction(allowance=allowance, live=live)
            if fraction < warn_at:
                continue
            subject = (
                self.agent_subject(allowance.agent_id)
                if allowance.agent_id
                else self.team_subject(allowance.team_id)
            )
            used = (
                f"${live.used_usd:.2f} of ${allowance.limit_usd:.2f}"
                if allowance.limit_usd is not None
                else ""
            )
            if allowance.limit_tokens is not None:
                used += (", " if used else "") + f"{live.used_tokens:,} of {allowance.limit_tokens:,} tokens"
            breach = Breach(
                subject,
                allowance.team_id,
                allowance.agent_id,
                fraction,
                warn_at,
                f"allowance {allowance.pk} ({allowance.scope_name}, {allowance.window}) at {fraction:.0%}: "
                f"{used}, resets {live.resets_at:%Y-%m-%d %H:%M} UTC",
            )
            if subject not in worst or fraction > worst[subject].value:
                worst[subject] = breach
        return list(worst.values())


def _shared_reads(evaluation: Evaluation, rules: list[AlertRule]) -> dict:
    """Reads of the kinds that look at rows rather than windows, once for all their rules."""
    kinds = {rule.kind for rule in rules}
    shared: dict = {"running": [], "versions": {}, "allowances": []}
    runaway = [rule for rule in rules if rule.kind == RuleKind.RUNAWAY_TASK and rule.value is not None]
    if runaway:
        costs = [rule.value for rule in runaway if (rule.metric or "cost_usd") == "cost_usd"]
        steps = [rule.value for rule in runaway if rule.metric == "steps"]
        shared["running"] = running_tasks(
            active_since=evaluation.now - TASK_IDLE_AFTER,
            over_cost_usd=min(costs) if costs else None,
            over_steps=int(min(steps)) if steps else None,
        )
    if RuleKind.CACHE_COLLAPSE in kinds:
        shared["versions"] = prompt_versions_in_use(used_since=evaluation.now - VERSION_IN_USE)
    if RuleKind.ALLOWANCE in kinds:
        allowances = list(Allowance.objects.select_related("team", "agent"))
        live = allowances_live(allowances=allowances, now=evaluation.now)
        shared["allowances"] = [(allowance, live[allowance.pk]) for allowance in allowances]
    return shared


# --- notifications -------------------------------------------------------------------------------------
def _instant(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(number: Decimal | None) -> str | None:
    return None if number is None else str(number)


def alert_url(alert: Alert) -> str:
    return f"{settings.FINOPS_BASE_URL.rstrip('/')}/alerts/{alert.pk}/"


def alert_payload(*, alert: Alert, rule: AlertRule, event: str, channel_ids: list[int]) -> dict:
    """The webhook body of SPEC.md ("Alerts"): what every channel is sent."""
    return {
        "type": event,
        "alert": {
            "id": alert.pk,
            "rule": rule.pk,
            "state": alert.state,
            "value": _number(alert.value),
            "threshold": _number(alert.threshold),
            "started_at": _instant(alert.started_at),
            "fired_at": _instant(alert.fired_at),
            "resolved_at": _instant(alert.resolved_at),
            "acknowledged_by": alert.acknowledged_by.username if alert.acknowledged_by_id else None,
            "subject": alert.subject,
        },
        "rule": {
            "id": rule.pk,
            "name": rule.name,
            "team": rule.team.slug if rule.team_id else None,
            "agent": rule.agent.name if rule.agent_id else None,
            "kind": rule.kind,
            "metric": rule.metric,
            "op": rule.op,
            "value": _number(rule.value),
            "window": rule.window,
            "for_minutes": rule.for_minutes,
            "repeat_minutes": rule.repeat_minutes,
            "channels": channel_ids,
            "enabled": rule.enabled,
        },
        "url": alert_url(alert),
    }


def _silenced(
    silences: list[Silence], *, rule_id: int, team_id: int | None, agent_id: Callable[[], int | None]
) -> bool:
    """Whether a silence covers the alert: every part it names (rule, team, agent) matches; naming
    none, it covers everything."""
    for silence in silences:
        if silence.rule_id is not None and silence.rule_id != rule_id:
            continue
        if silence.team_id is not None and silence.team_id != team_id:
            continue
        if silence.agent_id is not None and silence.agent_id != agent_id():
            continue
        return True
    return False


# --- the evaluation --------------------------------------------------------------------------------------
def alerts_evaluate(*, now: datetime | None = None) -> Summary:
    """Evaluate every enabled rule now (see the module's docstring) and answer what happened."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EVALUATE_LOCK])
        now = now or timezone.now()  # taken after the lock: a waiting evaluation judges the present
        return _evaluate(now=now)


def _evaluate(*, now: datetime) -> Summary:
    summary = Summary(at=now)
    open_states = [AlertState.PENDING, AlertState.FIRING]
    rules = list(
        AlertRule.objects.filter(Q(enabled=True) | Q(alerts__state__in=open_states))
        .distinct()
        .select_related("team", "agent")
        .prefetch_related("channels")
        .order_by("id")
    )
    enabled = [rule for rule in rules if rule.enabled]
    summary.rules = len(enabled)
    evaluation = Evaluation(now=now, rules=enabled)
    judged: dict[int, dict[str, Breach]] = {}
    for rule in enabled:
        try:
            evaluation.plan(rule)
        except KeyError as error:
            summary.errors[rule.pk] = f"unknown window {error.args[0]!r}"
    evaluation.read()
    shared = _shared_reads(evaluation, enabled)
    for rule in enabled:
        if rule.pk in summary.errors:
            continue
        try:
            breaches = evaluation.breaches(rule, shared)
        except RuleError as error:
            summary.errors[rule.pk] = str(error)
            continue
        judged[rule.pk] = {breach.subject: breach for breach in breaches}
        summary.breaches += len(breaches)

    open_alerts = list(
        Alert.objects.filter(state__in=open_states).select_related("acknowledged_by").order_by("id")
    )
    silences = list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))
    rules_by_id = {rule.pk: rule for rule in rules}
    notify: list[tuple[Alert, str]] = []
    changed: list[Alert] = []
    cleared: list[int] = []

    def silenced(alert: Alert, breach: Breach | None) -> bool:
        agent_id = (lambda: breach.agent_id) if breach else (lambda: evaluation.subject_agent_id(alert))
        if _silenced(silences, rule_id=alert.rule_id, team_id=alert.team_id, agent_id=agent_id):
            summary.silenced += 1
            return True
        return False

    def fire_if_due(alert: Alert, breach: Breach) -> None:
        """A firing alert, notified now if it never was (or a silence held it back) or is due again."""
        if alert.acknowledged_by_id or alert.acknowledged_at:
            return
        rule = rules_by_id[alert.rule_id]
        due = alert.last_notified_at is None or (
            rule.repeat_minutes and now - alert.last_notified_at >= timedelta(minutes=rule.repeat_minutes)
        )
        if due and not silenced(alert, breach):
            alert.last_notified_at = now
            notify.append((alert, DeliveryEvent.FIRING))

    seen: set[tuple[int, str]] = set()
    for alert in open_alerts:
        alert.rule = rules_by_id[alert.rule_id]
        key = (alert.rule_id, alert.subject)
        seen.add(key)
        if alert.rule_id in summary.errors:
            continue
        breach = judged.get(alert.rule_id, {}).get(alert.subject)
        if breach is None:  # the condition no longer holds, or the rule was disabled
            if alert.state == AlertState.PENDING:
                cleared.append(alert.pk)
                summary.cleared.append(alert.subject)
                continue
            alert.state, alert.resolved_at, alert.last_evaluated_at = AlertState.RESOLVED, now, now
            if not alert.rule.enabled:
                alert.summary = f"{alert.summary} (resolved: rule disabled)"
            if alert.last_notified_at is not None and not silenced(alert, None):
                notify.append((alert, DeliveryEvent.RESOLVED))
            summary.resolved.append(alert)
            changed.append(alert)
            continue
        alert.value, alert.threshold = stored(breach.value), stored(breach.threshold)
        alert.summary, alert.last_evaluated_at = breach.summary, now
        if alert.state == AlertState.PENDING:
            if now - alert.started_at >= timedelta(minutes=alert.rule.for_minutes):
                alert.state, alert.fired_at = AlertState.FIRING, now
                summary.fired.append(alert)
                fire_if_due(alert, breach)
            else:
                summary.pending.append(alert)
        else:
            fire_if_due(alert, breach)
        changed.append(alert)

    new_alerts: list[tuple[Alert, Breach]] = []
    for rule in enabled:
        for subject, breach in judged.get(rule.pk, {}).items():
            if (rule.pk, subject) in seen:
                continue
            firing = rule.for_minutes == 0
            alert = Alert(
                rule=rule,
                team_id=breach.team_id,
                subject=subject,
                state=AlertState.FIRING if firing else AlertState.PENDING,
                value=stored(breach.value),
                threshold=stored(breach.threshold),
                summary=breach.summary,
                started_at=now,
                fired_at=now if firing else None,
                last_evaluated_at=now,
            )
            new_alerts.append((alert, breach))

    if cleared:
        Alert.objects.filter(pk__in=cleared, state=AlertState.PENDING).delete()
    _alerts_update(changed)
    for alert, breach in new_alerts:
        summary.opened.append(alert)
        if alert.state == AlertState.FIRING:
            summary.fired.append(alert)
            fire_if_due(alert, breach)
        else:
            summary.pending.append(alert)
    # the partial unique index keeps one open alert per (rule, subject); under the lock no concurrent
    # evaluation can race this insert, so a conflict would be a bug, and fails loudly
    Alert.objects.bulk_create([alert for alert, _ in new_alerts])
    summary.deliveries = _deliveries_create(notify=notify)
    return summary


_UPDATE_FIELDS = (
    ("state", "text"),
    ("value", "numeric"),
    ("threshold", "numeric"),
    ("summary", "text"),
    ("fired_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
    ("last_notified_at", "timestamptz"),
    ("last_evaluated_at", "timestamptz"),
)
_UPDATE_SQL = f"""
UPDATE {Alert._meta.db_table} AS alert SET {", ".join(f"{name} = new.{name}" for name, _ in _UPDATE_FIELDS)}
FROM unnest(%s::int8[], {", ".join(f"%s::{kind}[]" for _, kind in _UPDATE_FIELDS)})
    AS new (id, {", ".join(name for name, _ in _UPDATE_FIELDS)})
WHERE alert.id = new.id
"""


def _alerts_update(alerts: list[Alert]) -> None:
    """The evaluated fields of these alerts, in one statement (the ORM's bulk_update builds a CASE per
    field and row, which took seconds of Python for a few hundred alerts)."""
    if not alerts:
        return
    columns = [[alert.pk for alert in alerts]]
    columns += [[getattr(alert, name) for alert in alerts] for name, _ in _UPDATE_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_SQL, columns)


def _deliveries_create(*, notify: list[tuple[Alert, str]]) -> list[int]:
    """One Delivery per channel of the alert's rule, handed to the channel transport after commit."""
    deliveries = []
    for alert, event in notify:
        rule = alert.rule
        channels = sorted(rule.channels.all(), key=lambda channel: channel.pk)
        payload = alert_payload(alert=alert, rule=rule, event=event, channel_ids=[c.pk for c in channels])
        deliveries.extend(
            Delivery(alert=alert, channel=channel, team_id=alert.team_id, event=event, payload=payload)
            for channel in channels
        )
    if not deliveries:
        return []
    created = Delivery.objects.bulk_create(deliveries)
    delivery_ids = [delivery.pk for delivery in created]
    transaction.on_commit(partial(_dispatch, delivery_ids))
    return delivery_ids


def _dispatch(delivery_ids: list[int]) -> None:
    from finops.alerts.delivery import deliveries_dispatch

    deliveries_dispatch(delivery_ids)
