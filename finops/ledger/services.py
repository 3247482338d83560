"""Writes to the ledger that are not the bulk ingest path: partitions, agents, task outcomes, repricing."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection, transaction

from finops.accounts.models import Team
from finops.accounts.selectors import team_role
from finops.audit.services import audit_record
from finops.ledger.models import Agent, Call, DailyRollup, Task, TaskStatus
from finops.ledger.rollups import (
    minute_of,
    prompt_version_days_reprice,
    recent_cutoff,
    recent_rollup_reprice,
)
from finops.ledger.tokens import TOKEN_TYPES

_known_partitions: set[date] = set()
# held by every job that changes stored call costs (this module's calls_reprice, finops/pricing/reprice.py)
# for its transaction: one at a time, so none reads a cost another is about to change
REPRICE_LOCK = "finops reprice"
_PARTITIONS_LOCK = "ledger_call partitions"


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def call_partitions_ensure(*, months: set[date]) -> None:
    """Create the monthly partitions of ledger_call that these months need (idempotent, race-safe).

    In the caller's transaction if it holds one, else in a transaction of its own."""
    missing = {month_start(month) for month in months} - _known_partitions
    if not missing:
        return
    names = {month: f"ledger_call_p{month:%Y_%m}" for month in sorted(missing)}
    own_transaction = nullcontext() if connection.in_atomic_block else transaction.atomic()
    with own_transaction, connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            [list(names.values())],
        )
        absent = {name for (name,) in cursor.fetchall()}
        if absent:
            # creating a partition locks ledger_call itself: one lock for every creator, taken before
            # that, gives all of them one order (a lock per partition, then the parent's, deadlocked
            # two writers needing overlapping months)
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_PARTITIONS_LOCK])
        for month, name in names.items():
            if name in absent:  # IF NOT EXISTS: another creator may have made it before we had the lock
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF ledger_call "
                    f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
                )
    # remembered only once committed: a rolled-back batch rolls back its CREATE TABLE too
    transaction.on_commit(lambda: _known_partitions.update(missing))


def agent_get_or_create(*, team: Team, name: str) -> Agent:
    agent, _ = Agent.objects.get_or_create(team=team, name=name)
    return agent


OUTCOME_FIELDS = ("agent", "status", "started_at", "ended_at")
OPTIONAL_OUTCOME_FIELDS = ("ideal_steps", "task_type", "tags")


@transaction.atomic
def task_outcomes_record(*, outcomes: list[dict]) -> int:
    """Upsert task outcomes (idempotent on team + task_id; a later report updates the earlier one).

    Each outcome is a validated dict with team (Team), agent (Agent), task_id, status, started_at,
    ended_at and optional ideal_steps, task_type, tags; an optional field left out keeps its stored
    value. The call aggregates are left untouched. One INSERT … ON CONFLICT per set of given fields.
    """
    latest: dict[tuple[int, str], dict] = {}
    for outcome in outcomes:  # the last report of a task in the batch wins, as it would one by one
        latest[(outcome["team"].pk, outcome["task_id"])] = outcome
    # a task its kill switch stopped stays killed, whatever the agent reports of it afterwards
    killed = set(
        Task.objects.filter(
            team_id__in={team_id for team_id, _ in latest},
            task_id__in={task_id for _, task_id in latest},
            status=TaskStatus.KILLED,
        ).values_list("team_id", "task_id")
    )
    for key in killed & latest.keys():
        latest[key] = {**latest[key], "status": TaskStatus.KILLED}
    by_fields: dict[tuple[str, ...], list[Task]] = {}
    for (team_id, task_id), outcome in sorted(latest.items()):
        given = tuple(name for name in OPTIONAL_OUTCOME_FIELDS if name in outcome)
        task = Task(
            team_id=team_id, task_id=task_id, **{name: outcome[name] for name in OUTCOME_FIELDS + given}
        )
        by_fields.setdefault(given, []).append(task)
    for given, tasks in by_fields.items():
        Task.objects.bulk_create(
            tasks,
            update_conflicts=True,
            unique_fields=["team", "task_id"],
            update_fields=[*OUTCOME_FIELDS, *given],
        )
    return len(outcomes)


def unpriced_call_models() -> list[tuple[str, str]]:
    return list(Call.objects.filter(cost_usd__isnull=True).values_list("provider", "model").distinct())


@transaction.atomic
def calls_reprice(*, price_book, provider: str, model: str, batch_size: int = 5000) -> int:
    """Price the unpriced calls of one model and move their cost into rollups (daily, recent, per-day
    prompt version) and task aggregates.

    Runs in one transaction per model with row locks, so a concurrent run skips rows already taken and a
    crash leaves nothing half-applied. Returns the number of calls priced.
    """
    columns = ", ".join(
        ["id", "timestamp", "team_id", "agent_id", "task_id", "batch", "prompt_version", *TOKEN_TYPES]
    )
    priced = 0
    recent_from = recent_cutoff()  # calls past it are in the recent rollup (finops/ledger/rollups.py)
    last_id = 0  # walk by id so calls that stay unpriced (before an override starts) are read once
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [REPRICE_LOCK])
        while True:
            cursor.execute(
                f"SELECT {columns} FROM ledger_call WHERE cost_usd IS NULL AND provider = %s AND model = %s "
                f"AND id > %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [provider, model, last_id, batch_size],
            )
            rows = cursor.fetchall()
            if not rows:
                return priced
            last_id = rows[-1][0]
            updates: list[tuple] = []
            rollup_deltas: dict[tuple, list[Decimal]] = {}
            task_deltas: dict[tuple, list] = {}
            recent_deltas: dict[tuple, list] = {}
            version_deltas: dict[tuple, list] = {}
            for row in rows:
                call_id, timestamp, team_id, agent_id, task_id, batch, prompt_version, *counts = row
                result = price_book.price(
                    provider=provider,
                    model=model,
                    tokens=dict(zip(TOKEN_TYPES, counts, strict=True)),
                    at=timestamp,
                    batch=batch,
                )
                if not result.priced:
                    continue
                updates.append((result.total_usd, call_id, timestamp))
                key = (timestamp.astimezone(UTC).date(), team_id, agent_id)
                delta = rollup_deltas.setdefault(key, [Decimal(0)] * (len(TOKEN_TYPES) + 3))
                delta[0] += result.total_usd
                delta[1] += 1  # calls that became priced
                if task_id is None:
                    delta[2] += result.total_usd
                for position, token_type in enumerate(TOKEN_TYPES):
                    delta[3 + position] += result.cost_by_type[token_type]
                if timestamp >= recent_from:
                    recent_delta = recent_deltas.setdefault((minute_of(timestamp), team_id, agent_id), [0, 0])
                    recent_delta[0] += result.total_usd
                    recent_delta[1] += 1
                if prompt_version is not None:
                    version_delta = version_deltas.setdefault(
                        (key[0], agent_id, prompt_version), [Decimal(0), 0, Decimal(0), 0]
                    )
                    version_delta[0] += result.total_usd
                    version_delta[1] += 1
                    if task_id is not None:
                        version_delta[2] += result.total_usd
                        version_delta[3] += 1
                if task_id is not None:
                    task_delta = task_deltas.setdefault((team_id, task_id), [Decimal(0), 0])
                    task_delta[0] += result.total_usd
                    task_delta[1] += 1
            if updates:
                cursor.executemany(
                    "UPDATE ledger_call SET cost_usd = %s WHERE id = %s AND timestamp = %s", updates
                )
            for (day, team_id, agent_id), delta in rollup_deltas.items():
                type_updates = ", ".join(
                    f"cost_{token_type}_usd = cost_{token_type}_usd + %s" for token_type in TOKEN_TYPES
                )
                cursor.execute(
                    f"UPDATE {DailyRollup._meta.db_table} SET cost_usd = cost_usd + %s, "
                    f"unpriced_calls = unpriced_calls - %s, cost_not_in_task_usd = cost_not_in_task_usd + %s, "
                    f"{type_updates} WHERE day = %s AND team_id = %s AND agent_id = %s AND provider = %s "
                    f"AND model = %s",
                    [*delta[:3], *delta[3:], day, team_id, agent_id, provider, model],
                )
            recent_rollup_reprice(cursor=cursor, deltas=recent_deltas)
            prompt_version_days_reprice(cursor=cursor, deltas=version_deltas)
            for (team_id, task_id), (cost, count) in task_deltas.items():
                cursor.execute(
                    f"UPDATE {Task._meta.db_table} SET cost_usd = cost_usd + %s, "
                    f"unpriced_calls = unpriced_calls - %s WHERE team_id = %s AND task_id = %s",
                    [cost, count, team_id, task_id],
                )
            priced += len(updates)
            if len(rows) < batch_size:
                return priced


# Who may change which agent setting (SPEC.md, roles). Org admins may change all of them.
AGENT_SETTING_ROLES: dict[str, set[str]] = {
    "cost_slo_usd": {"pm"},
    "ideal_steps": {"pm", "tech_lead"},
    "max_steps": {"sre", "tech_lead"},
    "max_cost_usd": {"sre", "tech_lead"},
    "target_cache_hit_rate": {"pm", "tech_lead"},
    "target_token_efficiency": {"pm", "tech_lead"},
    "target_step_inflation": {"pm", "tech_lead"},
}


AGENT_SETTING_FIELDS = tuple(AGENT_SETTING_ROLES)


def agent_fields_editable(*, user, agent: Agent) -> frozenset[str]:
    """The settings of `agent` this person may change on a page (AGENT_SETTING_ROLES; admin all)."""
    if not user.is_active:
        return frozenset()
    role = team_role(user=user, team_id=agent.team_id)
    if role == "admin":
        return frozenset(AGENT_SETTING_FIELDS)
    return frozenset(name for name, roles in AGENT_SETTING_ROLES.items() if role in roles)


class SettingNotAllowed(PermissionError):
    pass


@transaction.atomic
def agent_settings_update(*, agent: Agent, role: str | None, changes: dict, principal=None) -> Agent:
    """Apply setting changes the role may make; refuse the whole change naming the fields it may not.
    Each change is in the audit log, by `principal` (the kill switch is a guardrail: SPEC.md)."""
    if role != "admin":
        refused = sorted(name for name in changes if role not in AGENT_SETTING_ROLES.get(name, set()))
        if refused:
            raise SettingNotAllowed(f"role {role or 'none'!r} may not change {', '.join(refused)}")
    before = {name: getattr(agent, name) for name in changes}
    for name, value in changes.items():
        setattr(agent, name, value)
    agent.save(update_fields=list(changes))
    changed = [name for name in changes if before[name] != changes[name]]
    if changed:
        audit_record(
            principal=principal,
            team_id=agent.team_id,
            object_type="agent",
            object_id=agent.pk,
            action="update",
            before={name: before[name] for name in changed},
            after={name: changes[name] for name in changed},
        )
    return agent
