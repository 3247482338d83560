"""Reads of the alerts for the pages and the API, each through `restrict(principal, "view")`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from finops.accounts.selectors import Principal
from finops.alerts.models import (
    Alert,
    AlertChannel,
    AlertRule,
    AlertState,
    DeliveryStatus,
    RuleKind,
    Silence,
)
from finops.alerts.readings import RunningTask

# --- alerts, rules, silences (h-api) --------------------------------------------------------------

OPEN_STATES = (AlertState.PENDING, AlertState.FIRING)


def alerts_visible(*, principal: Principal) -> QuerySet[Alert]:
    """Every alert the principal may see, with what a list shows of it."""
    return Alert.objects.restrict(principal, "view").select_related("rule", "team", "acknowledged_by")


def alerts_open(*, principal: Principal) -> QuerySet[Alert]:
    """Open alerts (firing, then pending), unacknowledged first, newest first within each: what needs
    someone now."""
    return (
        alerts_visible(principal=principal)
        .filter(state__in=OPEN_STATES)
        .annotate(
            firing_first=Case(
                When(state=AlertState.FIRING, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("firing_first", F("acknowledged_at").asc(nulls_first=True), "-started_at", "-id")
    )


def alerts_since(queryset: QuerySet[Alert], *, since: datetime) -> QuerySet[Alert]:
    """The alerts open at some moment at or after `since`: still open, or resolved at or after it."""
    return queryset.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=since))


def alerts_recent(*, principal: Principal, since: datetime | None = None, limit: int = 50) -> list[Alert]:
    """The latest alerts of any state (resolved ones too: the history), newest first; with `since`, only
    those open at some moment since then."""
    queryset = alerts_visible(principal=principal)
    if since is not None:
        queryset = alerts_since(queryset, since=since)
    return list(queryset.order_by("-started_at", "-id")[:limit])


def rules_visible(*, principal: Principal) -> QuerySet[AlertRule]:
    return (
        AlertRule.objects.restrict(principal, "view")
        .select_related("team", "agent")
        .prefetch_related("channels")
    )


def channels_visible(*, principal: Principal) -> QuerySet[AlertChannel]:
    return AlertChannel.objects.restrict(principal, "view").select_related("team")


def silences_active(*, principal: Principal, now: datetime | None = None) -> QuerySet[Silence]:
    """Silences in force now or still to come, soonest ending first."""
    now = now or timezone.now()
    return (
        Silence.objects.restrict(principal, "view")
        .filter(ends_at__gt=now)
        .select_related("team", "agent", "rule", "created_by")
        .order_by("ends_at", "id")
    )


# --- end of h-api's block -------------------------------------------------------------------------


# --- channel health (finops/alerts/delivery.py keeps it) -------------------------------------------------


def channels_failing(*, principal: Principal) -> QuerySet[AlertChannel]:
    """The channels the principal may see whose latest delivery attempt failed (consecutive_failures is
    reset by a success), newest failure first, each with `last_error`, `last_failure_at` and the count of
    its deliveries still retrying (`deliveries_retrying`) and given up (`deliveries_failed`): what the
    alerts page shows so that an alert nobody received is not mistaken for a quiet night."""
    return (
        AlertChannel.objects.restrict(principal, "view")
        .filter(consecutive_failures__gte=1)
        .select_related("team")
        .annotate(
            deliveries_retrying=Count(
                "deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING, deliveries__attempts__gte=1)
            ),
            deliveries_failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
        )
        .order_by("-last_failure_at", "-id")
    )


# --- end of channel health -------------------------------------------------------------------------------


# --- runaway tasks (the sre home) -------------------------------------------------------------------


@dataclass(frozen=True)
class RunawayTask:
    task: RunningTask
    rules: list[AlertRule]  # the runaway_task rules it is past


def runaway_tasks(
    *, principal: Principal, team_ids: frozenset[int] | None, now: datetime | None = None
) -> list[RunawayTask]:
    """The principal's running tasks past an enabled runaway_task rule that covers them: the alert
    evaluator's definition (finops.alerts.evaluate: no outcome, a call within TASK_IDLE_AFTER, past the
    rule's dollars or steps, the rule's team or agent), read now rather than at the last evaluation.
    An org-wide rule (no team) covers every team; its threshold is no team's data. Costliest first."""
    from finops.alerts.evaluate import TASK_IDLE_AFTER
    from finops.alerts.readings import running_tasks
    from finops.ledger.models import Task

    now = now or timezone.now()
    rules = list(
        (
            AlertRule.objects.restrict(principal, "view").filter(team__isnull=False)
            | AlertRule.objects.filter(team__isnull=True)
        ).filter(kind=RuleKind.RUNAWAY_TASK, enabled=True, value__isnull=False)
    )
    if team_ids is not None:
        rules = [rule for rule in rules if rule.team_id is None or rule.team_id in team_ids]
    costs = [rule.value for rule in rules if (rule.metric or "cost_usd") == "cost_usd"]
    steps = [rule.value for rule in rules if rule.metric == "steps"]
    if not costs and not steps:
        return []
    tasks = Task.objects.restrict(principal, "view")
    if team_ids is not None:
        tasks = tasks.filter(team_id__in=team_ids)
    running = running_tasks(
        active_since=now - TASK_IDLE_AFTER,
        over_cost_usd=min(costs) if costs else None,
        over_steps=int(min(steps)) if steps else None,
        tasks=tasks,
    )
    found = []
    for task in running:
        past = [
            rule
            for rule in rules
            if (task.agent_id == rule.agent_id if rule.agent_id else rule.team_id in (None, task.team_id))
            and (Decimal(task.steps) if rule.metric == "steps" else task.cost_usd) > rule.value
        ]
        if past:
            found.append(RunawayTask(task=task, rules=past))
    return sorted(found, key=lambda runaway: (-runaway.task.cost_usd, runaway.task.task_id))
