"""The one writer every source goes through: validate → price → COPY → dedupe → calls + rollups + tasks.

A batch is one transaction. Rows are COPYed into a temporary staging table, then one SQL statement
inserts the idempotency keys (ON CONFLICT DO NOTHING), and from exactly the keys that were new, the
calls, the daily rollups and the task aggregates. A retried batch therefore changes nothing, and two
concurrent batches carrying the same event count it once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction

from finops.accounts.models import ApiToken, Membership, OrgRole, Team, TeamRole, TokenScope, User
from finops.ledger.models import Agent
from finops.ledger.services import call_partitions_ensure
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.services import PriceBook
from ingest.models import QuarantinedRow
from ingest.validation import Event, event_validate

STAGE_COLUMNS = (
    "ord",
    "event_id",
    "ts",
    "team_id",
    "agent_id",
    "task_id",
    "step",
    "provider",
    "model",
    *TOKEN_TYPES,
    "input_breakdown",
    "batch",
    "latency_ms",
    "status",
    "prompt_version",
    "max_tokens",
    "tool_calls",
    "reported_cost_usd",
    "tags",
    "cost_usd",
    *(f"cost_{token_type}" for token_type in TOKEN_TYPES),
)

_STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
    ord integer, event_id text, ts timestamptz, team_id bigint, agent_id bigint, task_id text,
    step integer, provider text, model text,
    {", ".join(f"{token_type} bigint" for token_type in TOKEN_TYPES)},
    input_breakdown jsonb, batch boolean, latency_ms integer, status text, prompt_version text,
    max_tokens integer, tool_calls jsonb, reported_cost_usd numeric, tags jsonb, cost_usd numeric,
    {", ".join(f"cost_{token_type} numeric" for token_type in TOKEN_TYPES)}
) ON COMMIT DELETE ROWS
"""

_tokens = ", ".join(TOKEN_TYPES)
_sum_tokens = ", ".join(f"sum({token_type})" for token_type in TOKEN_TYPES)
_add_tokens = lambda table: ", ".join(  # noqa: E731
    f"{token_type} = {table}.{token_type} + EXCLUDED.{token_type}" for token_type in TOKEN_TYPES
)
_type_costs = ", ".join(f"cost_{token_type}_usd" for token_type in TOKEN_TYPES)
_sum_type_costs = ", ".join(f"coalesce(sum(cost_{token_type}), 0)" for token_type in TOKEN_TYPES)
_add_type_costs = ", ".join(
    f"cost_{token_type}_usd = ledger_dailyrollup.cost_{token_type}_usd + EXCLUDED.cost_{token_type}_usd"
    for token_type in TOKEN_TYPES
)

_WRITE_SQL = f"""
WITH dedup AS (
    SELECT DISTINCT ON (team_id, event_id) * FROM ingest_stage ORDER BY team_id, event_id, ord
), new_keys AS (
    INSERT INTO ledger_eventkey (team_id, event_id, timestamp)
    SELECT team_id, event_id, ts FROM dedup ORDER BY team_id, event_id
    ON CONFLICT DO NOTHING
    RETURNING team_id, event_id
), new_rows AS (
    SELECT dedup.* FROM dedup JOIN new_keys USING (team_id, event_id)
), calls AS (
    INSERT INTO ledger_call (timestamp, team_id, agent_id, event_id, task_id, step, provider, model,
        {_tokens}, input_breakdown, batch, latency_ms, status, prompt_version, max_tokens, tool_calls,
        reported_cost_usd, tags, cost_usd, ingested_at)
    SELECT ts, team_id, agent_id, event_id, task_id, step, provider, model, {_tokens}, input_breakdown,
        batch, latency_ms, status, prompt_version, max_tokens, tool_calls, reported_cost_usd, tags,
        cost_usd, now()
    FROM new_rows
), rollups AS (
    INSERT INTO ledger_dailyrollup (day, team_id, agent_id, provider, model, calls, unpriced_calls,
        batch_calls, calls_not_in_task, cost_usd, cost_not_in_task_usd, {_tokens}, {_type_costs})
    SELECT (ts AT TIME ZONE 'UTC')::date, team_id, agent_id, provider, model, count(*),
        count(*) FILTER (WHERE cost_usd IS NULL), count(*) FILTER (WHERE batch),
        count(*) FILTER (WHERE task_id IS NULL), coalesce(sum(cost_usd), 0),
        coalesce(sum(cost_usd) FILTER (WHERE task_id IS NULL), 0), {_sum_tokens}, {_sum_type_costs}
    FROM new_rows GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (day, team_id, agent_id, provider, model) DO UPDATE SET
        calls = ledger_dailyrollup.calls + EXCLUDED.calls,
        unpriced_calls = ledger_dailyrollup.unpriced_calls + EXCLUDED.unpriced_calls,
        batch_calls = ledger_dailyrollup.batch_calls + EXCLUDED.batch_calls,
        calls_not_in_task = ledger_dailyrollup.calls_not_in_task + EXCLUDED.calls_not_in_task,
        cost_usd = ledger_dailyrollup.cost_usd + EXCLUDED.cost_usd,
        cost_not_in_task_usd = ledger_dailyrollup.cost_not_in_task_usd + EXCLUDED.cost_not_in_task_usd,
        {_add_tokens("ledger_dailyrollup")}, {_add_type_costs}
), tasks AS (
    INSERT INTO ledger_task (team_id, task_id, agent_id, status, task_type, tags, steps, cost_usd,
        unpriced_calls, first_call_at, last_call_at, {_tokens})
    SELECT team_id, task_id, min(agent_id), NULL, '', '{{}}'::jsonb, count(*), coalesce(sum(cost_usd), 0),
        count(*) FILTER (WHERE cost_usd IS NULL), min(ts), max(ts), {_sum_tokens}
    FROM new_rows WHERE task_id IS NOT NULL GROUP BY team_id, task_id ORDER BY team_id, task_id
    ON CONFLICT (team_id, task_id) DO UPDATE SET
        steps = ledger_task.steps + EXCLUDED.steps,
        cost_usd = ledger_task.cost_usd + EXCLUDED.cost_usd,
        unpriced_calls = ledger_task.unpriced_calls + EXCLUDED.unpriced_calls,
        first_call_at = least(ledger_task.first_call_at, EXCLUDED.first_call_at),
        last_call_at = greatest(ledger_task.last_call_at, EXCLUDED.last_call_at),
        {_add_tokens("ledger_task")}
)
SELECT count(*) FROM new_rows
"""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)


class TeamPolicy:
    """Which teams a principal may send events for, and whether unknown teams are created on sight."""

    def __init__(self, principal: User | ApiToken | None) -> None:
        self.allowed_ids: set[int] | None = None  # None: every team
        self.bound_slug: str | None = None
        self.may_create = False
        if principal is None:  # the local operator: finops import, finops demo
            self.may_create = True
        elif isinstance(principal, ApiToken):
            if principal.team_id is None:
                self.may_create = True
            else:
                self.allowed_ids = {principal.team_id}
                self.bound_slug = principal.team.slug
        elif principal.is_superuser or principal.org_role == OrgRole.ADMIN:
            self.may_create = True
        elif principal.org_role == OrgRole.FINOPS:
            pass
        else:
            self.allowed_ids = set(
                Membership.objects.filter(user=principal)
                .exclude(role=TeamRole.VIEWER)
                .values_list("team_id", flat=True)
            )


class Resolver:
    """Team slugs and agent names to ids, with the few queries a batch needs (cached across batches)."""

    def __init__(self, policy: TeamPolicy) -> None:
        self.policy = policy
        self.team_ids: dict[str, int | None] = {}
        self.agent_ids: dict[tuple[int, str], int] = {}

    def team_id(self, slug: str) -> tuple[int | None, str | None]:
        if slug not in self.team_ids:
            team = Team.objects.filter(slug=slug).first()
            if team is None and self.policy.may_create:
                team = Team.objects.get_or_create(slug=slug, defaults={"name": slug})[0]
            self.team_ids[slug] = team.pk if team else None
        team_id = self.team_ids[slug]
        if self.policy.allowed_ids is not None and team_id not in self.policy.allowed_ids:
            if self.policy.bound_slug:
                return None, f"this token may only send events for team {self.policy.bound_slug!r}"
            return None, f"you may not send events for team {slug!r}"
        if team_id is None:
            return None, f"unknown team {slug!r}; an admin or an org-wide token can create it"
        return team_id, None

    def team(self, team_id: int) -> Team:
        return Team.objects.get(pk=team_id)

    def agent(self, team_id: int, name: str) -> Agent:
        return Agent.objects.get(pk=self.agent_id(team_id, name))

    def agent_id(self, team_id: int, name: str) -> int:
        key = (team_id, name)
        if key not in self.agent_ids:
            self.agent_ids[key] = Agent.objects.get_or_create(team_id=team_id, name=name)[0].pk
        return self.agent_ids[key]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def events_ingest(
    *,
    raw_events: Iterable[Any],
    principal: User | ApiToken | None,
    source: str,
    resolver: Resolver | None = None,
    price_book: PriceBook | None = None,
    first_index: int = 0,
) -> IngestResult:
    """Validate, price and write one batch. Good rows are kept even when others are bad; bad rows are
    quarantined with their reason. The caller may pass a resolver and price book reused across batches."""
    if isinstance(principal, ApiToken) and TokenScope.INGEST not in principal.scopes:
        raise PermissionError("this token lacks the 'ingest' scope")
    resolver = resolver or Resolver(TeamPolicy(principal))
    price_book = price_book or PriceBook.load()
    now = datetime.now(UTC)
    result = IngestResult()
    good: list[tuple[Event, int, int]] = []
    quarantine: list[QuarantinedRow] = []
    for index, raw in enumerate(raw_events, start=first_index):
        event, errors = event_validate(raw, now=now)
        team_id = None
        if event is not None:
            team_id, team_error = resolver.team_id(event.team)
            if team_error:
                errors = {"team": [team_error]}
        if errors:
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            result.rejected.append({"index": index, "event_id": event_id, "errors": errors})
            quarantine.append(
                QuarantinedRow(
                    source=source,
                    position=str(index),
                    event_id=str(event_id or "")[:256],
                    payload=raw,
                    errors=errors,
                    team_id=team_id,
                )
            )
            continue
        good.append((event, team_id, resolver.agent_id(team_id, event.agent)))
    with transaction.atomic():
        if quarantine:
            QuarantinedRow.objects.bulk_create(quarantine)
        result.accepted = events_write(events=good, price_book=price_book)
    result.duplicates = len(good) - result.accepted
    return result


def events_write(*, events: list[tuple[Event, int, int]], price_book: PriceBook) -> int:
    """Write validated events (with their team and agent ids). Returns how many were new."""
    if not events:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        call_partitions_ensure(months={event.timestamp.date() for event, _, _ in events})
        cursor.execute(_STAGE_DDL)
        with cursor.copy(f"COPY ingest_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
            for ordinal, (event, team_id, agent_id) in enumerate(events):
                priced = price_book.price(
                    provider=event.provider,
                    model=event.model,
                    tokens=dict(zip(TOKEN_TYPES, event.tokens, strict=True)),
                    at=event.timestamp,
                    batch=event.batch,
                )
                type_costs = (
                    [priced.cost_by_type[token_type] for token_type in TOKEN_TYPES]
                    if priced.priced
                    else [None] * len(TOKEN_TYPES)
                )
                copy.write_row(
                    (
                        ordinal,
                        event.event_id,
                        event.timestamp,
                        team_id,
                        agent_id,
                        event.task_id,
                        event.step,
                        event.provider,
                        event.model,
                        *event.tokens,
                        _json(event.input_breakdown),
                        event.batch,
                        event.latency_ms,
                        event.status,
                        event.prompt_version,
                        event.max_tokens,
                        _json(event.tool_calls),
                        event.reported_cost_usd,
                        _json(event.tags),
                        priced.total_usd,
                        *type_costs,
                    )
                )
        cursor.execute(_WRITE_SQL)
        accepted = cursor.fetchone()[0]
        cursor.execute("TRUNCATE ingest_stage")  # ON COMMIT DELETE ROWS would too, but not inside tests
    return accepted
