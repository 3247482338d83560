"""The one writer every source goes through: validate → price → COPY → dedupe → calls + rollups + tasks.

A batch is one transaction. Rows are COPYed into a temporary staging table; their idempotency keys go
into ledger_eventkey, and from exactly the keys that were new, one SQL statement writes the calls, the
daily rollups and the task aggregates. A retried batch therefore changes nothing, and two concurrent
batches carrying the same event count it once. A first delivery (every key new, the usual case) takes
a plain INSERT of its keys; the INSERT … ON CONFLICT DO NOTHING that sorts out known and repeated keys
runs only when that fails, because the conflict check costs a third of the write.
"""

from __future__ import annotations

import functools
import gc
import operator
import queue
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from django.core.validators import slug_re
from django.db import IntegrityError, connection, transaction
from psycopg import pq
from psycopg.adapt import AdaptersMap, PyFormat, Transformer
from psycopg.types.string import BytesBinaryDumper

from finops.accounts.models import ApiToken, Team, TokenScope, User
from finops.accounts.selectors import (
    principal_has_scope,
    principal_is_token,
    principal_may_create_teams,
    principal_token_team_id,
    writable_team_ids,
)
from finops.guardrails.sql import WRITER_LOCK_SQL, guard_ctes, guard_params
from finops.ledger.breakdown import STAGE_COLUMNS as BREAKDOWN_STAGE_COLUMNS
from finops.ledger.breakdown import breakdown_rollup_cte, breakdown_stage_values
from finops.ledger.models import Agent
from finops.ledger.rollups import rollup_ctes, rollup_params
from finops.ledger.services import call_partitions_ensure
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.fast import PicoPricer
from finops.pricing.services import PriceBook
from ingest.models import QuarantinedRow
from ingest.validation import NULL, Rejected, WireEvent, received_payload, wire_events_decode

STAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ord", "int4"),
    ("event_id", "text"),
    ("ts", "timestamptz"),
    ("team_id", "int8"),
    ("agent_id", "int8"),
    ("task_id", "text"),
    ("step", "int4"),
    ("provider", "text"),
    ("model", "text"),
    *((token_type, "int8") for token_type in TOKEN_TYPES),
    ("input_breakdown", "bytea"),
    ("batch", "bool"),
    ("latency_ms", "int4"),
    ("status", "text"),
    ("prompt_version", "text"),
    ("max_tokens", "int4"),
    ("tool_calls", "bytea"),
    ("reported_cost_usd", "text"),
    ("tags", "bytea"),
    ("cost_pico", "int8"),
    *((f"cost_{token_type}_pico", "int8") for token_type in TOKEN_TYPES),
    ("reservation_id", "uuid"),  # guardrails: the guard check's reservation this call settles
    *BREAKDOWN_STAGE_COLUMNS,  # the call's input tokens by part of the prompt (finops/ledger/breakdown.py)
)

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage ("
    + ", ".join(
        f"{name} {kind}" + (' COLLATE "C"' if kind == "text" else "")  # byte-order sorts and joins
        for name, kind in STAGE_COLUMNS
    )
    + ") ON COMMIT DELETE ROWS"
)
_COPY_SQL = f"COPY ingest_stage ({', '.join(name for name, _ in STAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = [kind for _, kind in STAGE_COLUMNS]
# the stage rows are encoded to binary COPY data where they are built (a pipeline's caller thread), so
# the writer thread only sends bytes: PostgreSQL's binary COPY format (header, rows, trailer)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = b"\xff\xff"
_COPY_OIDS = [psycopg.adapters.types.get_oid(kind) for kind in _COPY_TYPES]
# bytea by oid would take psycopg's DB-API Binary dumper, written in Python; the JSON values are plain
# buffers (bytes, msgspec.Raw), which its bytes dumper (C, with psycopg[binary]) writes ~4x faster
_COPY_ADAPTERS = AdaptersMap(psycopg.adapters)
_COPY_ADAPTERS.register_dumper(bytes, BytesBinaryDumper)


def copy_transformer() -> Transformer:
    """A transformer that encodes stage rows (STAGE_COLUMNS, in order) for binary COPY."""
    transformer = Transformer(_COPY_ADAPTERS)
    transformer.set_dumper_types(_COPY_OIDS, pq.Format.BINARY)
    return transformer


def _format_row_binary(row: tuple, transformer: Transformer, out: bytearray) -> None:
    values = transformer.dump_sequence(row, [PyFormat.BINARY] * len(row))
    out += struct.pack("!h", len(row))
    for value in values:
        out += b"\xff\xff\xff\xff" if value is None else struct.pack("!i", len(value)) + value


try:  # psycopg's own row encoder (C, with psycopg[binary]); else the same thing in Python
    from psycopg._copy_base import format_row_binary as _format_row
except ImportError:  # pragma: no cover
    _format_row = _format_row_binary

_tokens = ", ".join(TOKEN_TYPES)
_sum_tokens = ", ".join(f"sum({token_type})" for token_type in TOKEN_TYPES)
_add_tokens = lambda table: ", ".join(  # noqa: E731
    f"{token_type} = {table}.{token_type} + EXCLUDED.{token_type}" for token_type in TOKEN_TYPES
)
_type_costs = ", ".join(f"cost_{token_type}_usd" for token_type in TOKEN_TYPES)
_PICO = "0.000000000001"  # numeric multiplication is exact: picodollars to dollars
_sum_type_costs = ", ".join(
    f"coalesce(sum(cost_{token_type}_pico), 0) * {_PICO}" for token_type in TOKEN_TYPES
)
_add_type_costs = ", ".join(
    f"cost_{token_type}_usd = ledger_dailyrollup.cost_{token_type}_usd + EXCLUDED.cost_{token_type}_usd"
    for token_type in TOKEN_TYPES
)


def _write_sql(*, rows: str, ctes: str = "") -> str:
    """Writes the calls, daily rollups and task aggregates of the stage rows named by `rows` (a table
    or one of the `ctes` before them) and answers how many rows that was. The guardrails' CTEs
    (allowance counters, reservations settled) and the alert rollups' (recent minutes, prompt
    versions) take the parameters of _write_params(); the breakdown rollup's take none."""
    return f"""
WITH {ctes}{guard_ctes(rows=rows)}{rollup_ctes(rows=rows)}{breakdown_rollup_cte(rows=rows)}calls AS (
    INSERT INTO ledger_call (timestamp, team_id, agent_id, event_id, task_id, step, provider, model,
        {_tokens}, input_breakdown, batch, latency_ms, status, prompt_version, max_tokens, tool_calls,
        reported_cost_usd, tags, cost_usd, ingested_at)
    SELECT ts, team_id, agent_id, event_id, task_id, step, provider, model, {_tokens},
        convert_from(input_breakdown, 'UTF8')::jsonb, batch, latency_ms, status, prompt_version, max_tokens,
        convert_from(tool_calls, 'UTF8')::jsonb, reported_cost_usd::numeric, convert_from(tags, 'UTF8')::jsonb,
        cost_pico * {_PICO}, now()
    FROM {rows}
), rollups AS (
    INSERT INTO ledger_dailyrollup (day, team_id, agent_id, provider, model, calls, unpriced_calls,
        batch_calls, calls_not_in_task, cost_usd, cost_not_in_task_usd, {_tokens}, {_type_costs})
    SELECT (ts AT TIME ZONE 'UTC')::date, team_id, agent_id, provider, model, count(*),
        count(*) FILTER (WHERE cost_pico IS NULL), count(*) FILTER (WHERE batch),
        count(*) FILTER (WHERE task_id IS NULL), coalesce(sum(cost_pico), 0) * {_PICO},
        coalesce(sum(cost_pico) FILTER (WHERE task_id IS NULL), 0) * {_PICO}, {_sum_tokens}, {_sum_type_costs}
    FROM {rows} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
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
    SELECT team_id, task_id, min(agent_id), NULL, '', '{{}}'::jsonb, count(*),
        coalesce(sum(cost_pico), 0) * {_PICO}, count(*) FILTER (WHERE cost_pico IS NULL), min(ts), max(ts),
        {_sum_tokens}
    FROM {rows} WHERE task_id IS NOT NULL GROUP BY team_id, task_id ORDER BY team_id, task_id
    ON CONFLICT (team_id, task_id) DO UPDATE SET
        -- calls naming several agents for one task: the smallest id, whatever order they came in,
        -- unless the task's outcome (POST /tasks) has named its agent
        agent_id = CASE WHEN ledger_task.status IS NULL
            THEN least(ledger_task.agent_id, EXCLUDED.agent_id) ELSE ledger_task.agent_id END,
        steps = ledger_task.steps + EXCLUDED.steps,
        cost_usd = ledger_task.cost_usd + EXCLUDED.cost_usd,
        unpriced_calls = ledger_task.unpriced_calls + EXCLUDED.unpriced_calls,
        first_call_at = least(ledger_task.first_call_at, EXCLUDED.first_call_at),
        last_call_at = greatest(ledger_task.last_call_at, EXCLUDED.last_call_at),
        {_add_tokens("ledger_task")}
)
SELECT count(*) FROM {rows}
"""


# The stage holds the rows in key order (the writer sorts them), so concurrent writers take the unique-
# index locks of overlapping batches in the same order and cannot deadlock.
#
# Fast path: every key is new (a first delivery), so the keys go in with a plain INSERT, which fails
# at the first key already stored (or repeated in the batch), and the stage rows are the new rows.
def _write_params() -> list:
    return [*guard_params(), *rollup_params()]


_KEYS_INSERT_SQL = "INSERT INTO ledger_eventkey (team_id, event_id, timestamp) SELECT team_id, event_id, ts FROM ingest_stage"
_WRITE_ALL_SQL = _write_sql(rows="ingest_stage")
# Otherwise (a re-delivery, or an event repeated within the batch): the first stage row of each key,
# inserted ON CONFLICT DO NOTHING, and exactly the keys that were new are written.
_WRITE_NEW_SQL = _write_sql(
    rows="new_rows",
    ctes="""first_rows AS (
    SELECT DISTINCT ON (team_id, event_id) * FROM ingest_stage ORDER BY team_id, event_id, ord
), new_keys AS (
    INSERT INTO ledger_eventkey (team_id, event_id, timestamp)
    SELECT team_id, event_id, ts FROM first_rows
    ON CONFLICT DO NOTHING
    RETURNING team_id, event_id
), new_rows AS (
    SELECT first_rows.* FROM first_rows JOIN new_keys USING (team_id, event_id)
), """,
)


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
            return
        self.allowed_ids = writable_team_ids(principal=principal)
        self.may_create = principal_may_create_teams(principal)
        if principal_token_team_id(principal) is not None:
            self.bound_slug = principal.team.slug


_PREFETCH_SQL = f"""
SELECT wanted.slug, wanted.agent, team.id, agent.id
FROM unnest(%s::text[], %s::text[]) AS wanted (slug, agent)
JOIN {Team._meta.db_table} AS team ON team.slug = wanted.slug
LEFT JOIN {Agent._meta.db_table} AS agent ON agent.team_id = team.id AND agent.name = wanted.agent
"""


_AGENT_IDS_SQL = f"""
SELECT agent.team_id, agent.name, agent.id
FROM unnest(%s::int8[], %s::text[]) AS wanted (team_id, name)
JOIN {Agent._meta.db_table} AS agent ON agent.team_id = wanted.team_id AND agent.name = wanted.name
"""


class Resolver:
    """Team slugs and agent names to ids, with the few queries a batch needs (cached across batches)."""

    def __init__(self, policy: TeamPolicy) -> None:
        self.policy = policy
        self.team_ids: dict[str, int | None] = {}
        self.agent_ids: dict[tuple[int, str], int] = {}

    def team_id(self, slug: str) -> tuple[int | None, str | None]:
        if not slug_re.match(slug):  # a slug is what a team's pages and URLs are named by
            return None, f"{slug!r} is not a valid team name: use letters, digits, - and _"
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

    def existing_team_ids(self, *, names: Iterable[Any]) -> dict[str, int]:
        """Of these team names (anything a refused row holds), the teams that exist and the principal
        may write to, by name, in at most one query; nothing is created. A refused row is filed under
        its team, so whoever sent it sees and replays it."""
        wanted = {name for name in names if isinstance(name, str) and slug_re.match(name)}
        unseen = wanted - self.team_ids.keys()
        if unseen:  # only teams found are cached: team_id may still create a missing one
            self.team_ids.update(Team.objects.filter(slug__in=unseen).values_list("slug", "id"))
        allowed = self.policy.allowed_ids
        return {
            name: team_id
            for name in wanted
            if (team_id := self.team_ids.get(name)) is not None and (allowed is None or team_id in allowed)
        }

    def prefetch(self, *, names: set[tuple[str, str]]) -> None:
        """Look up a batch's (team slug, agent name) pairs not cached yet, in one query rather than one
        or two per pair (or two ORM queries a batch, which cost more than the SQL on the HTTP path);
        what is not found is left to `team_id` and `agent_id` (which create it or say why not)."""
        wanted = [
            (slug, agent)
            for slug, agent in names
            if slug not in self.team_ids or (self.team_ids[slug], agent) not in self.agent_ids
        ]
        if not wanted:
            return
        with connection.cursor() as cursor:
            cursor.execute(_PREFETCH_SQL, [[slug for slug, _ in wanted], [agent for _, agent in wanted]])
            for slug, agent, team_id, agent_id in cursor.fetchall():
                if team_id is None:
                    continue
                self.team_ids[slug] = team_id
                if agent_id is not None:
                    self.agent_ids[(team_id, agent)] = agent_id

    def resolve(
        self, *, names: set[tuple[str, str]]
    ) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[tuple[str, str], tuple[int | None, str]]]:
        """A batch's (team, agent) names as (team id, agent id), creating missing agents (and teams,
        where the principal may) in a few queries whatever the batch's size; and the names refused,
        with the team id where it is known and why."""
        self.prefetch(names=names)
        ids, refused, missing = {}, {}, []
        for team, agent in names:
            team_id, team_error = self.team_id(team)
            if team_error:
                refused[team, agent] = (team_id, team_error)
            elif (team_id, agent) in self.agent_ids:
                ids[team, agent] = (team_id, self.agent_ids[team_id, agent])
            else:
                missing.append((team_id, agent, team))
        if missing:
            missing.sort()  # concurrent batches insert shared agents in one order: no deadlock
            self._agents_create(keys=[(team_id, agent) for team_id, agent, _ in missing])
            for team_id, agent, team in missing:
                ids[team, agent] = (team_id, self.agent_ids[team_id, agent])
        return ids, refused

    def _agents_create(self, *, keys: list[tuple[int, str]]) -> None:
        Agent.objects.bulk_create(
            [Agent(team_id=team_id, name=name) for team_id, name in keys], ignore_conflicts=True
        )
        with connection.cursor() as cursor:  # the ids of the new ones and of any a concurrent batch made
            cursor.execute(_AGENT_IDS_SQL, [[team_id for team_id, _ in keys], [name for _, name in keys]])
            for team_id, name, agent_id in cursor.fetchall():
                self.agent_ids[(team_id, name)] = agent_id

    def team(self, team_id: int) -> Team:
        return Team.objects.get(pk=team_id)

    def agent(self, team_id: int, name: str) -> Agent:
        return Agent.objects.get(pk=self.agent_id(team_id, name))

    def agent_id(self, team_id: int, name: str) -> int:
        key = (team_id, name)
        if key not in self.agent_ids:
            self.agent_ids[key] = Agent.objects.get_or_create(team_id=team_id, name=name)[0].pk
        return self.agent_ids[key]


@dataclass(slots=True)
class Refusal:
    """A row of a batch the writer refused: its index in the batch, why, the row as received (for the
    quarantine) and its team where that was known."""

    index: int
    errors: dict[str, list[str]]
    payload: Any
    team_id: int | None = None

    @property
    def event_id(self) -> str | None:
        return self.payload.get("event_id") if isinstance(self.payload, dict) else None


def events_ingest(
    *,
    raw_events: Iterable[bytes | dict],
    principal: User | ApiToken | None,
    source: str,
    resolver: Resolver | None = None,
    price_book: PriceBook | None = None,
    first_index: int = 0,
    positions: Sequence[str] | None = None,
) -> IngestResult:
    """Validate, price and write one batch. Good rows are kept even when others are bad; bad rows are
    quarantined with their reason. Rows are JSON bytes (one event each) or dicts built by an adapter.
    Callers streaming many batches pass one resolver and price book for all of them; `positions` names
    each row's place in the source (e.g. "line 12") for the quarantine, else its index is used."""
    result = IngestResult()
    with transaction.atomic():
        accepted, written, refusals = events_ingest_unquarantined(
            raw_events=raw_events if isinstance(raw_events, Sequence) else list(raw_events),
            principal=principal,
            resolver=resolver,
            price_book=price_book,
        )
        result.accepted, result.duplicates = accepted, written - accepted
        for refusal in refusals:
            index = refusal.index + first_index
            result.rejected.append({"index": index, "event_id": refusal.event_id, "errors": refusal.errors})
        if refusals:
            QuarantinedRow.objects.bulk_create(
                QuarantinedRow.of(
                    source=source,
                    position=positions[refusal.index] if positions else str(refusal.index + first_index),
                    event_id=refusal.event_id and str(refusal.event_id),
                    payload=refusal.payload,
                    errors=refusal.errors,
                    team_id=refusal.team_id,
                )
                for refusal in refusals
            )
    return result


def events_ingest_unquarantined(
    *,
    raw_events: Sequence[bytes | dict],
    principal: User | ApiToken | None,
    resolver: Resolver | None = None,
    price_book: PriceBook | None = None,
) -> tuple[int, int, list[Refusal]]:
    """Validate, price and write one batch, and leave the refused rows to the caller: returns how many
    rows were new, how many were handed to the writer (new or duplicate) and the refusals. Inside a
    `WritePipeline` the rows are written by its thread and counted there (0 new is returned)."""
    if principal_is_token(principal) and not principal_has_scope(
        principal=principal, scope=TokenScope.INGEST
    ):
        raise PermissionError("this token lacks the 'ingest' scope")
    with heap_frozen():
        resolver = resolver or Resolver(TeamPolicy(principal))
        price_book = price_book or PriceBook.current()
        decoded = wire_events_decode(raw_events, now=datetime.now(UTC))
        events = [row for row in decoded if type(row) is WireEvent]
        refusals = []
        if len(events) < len(decoded):
            refusals = [
                Refusal(index, row.errors, row.payload)
                for index, row in enumerate(decoded)
                if type(row) is Rejected
            ]
        # (team, agent) → (team id, agent id); the few pairs of a batch cover all of its rows
        ids, refused_names = resolver.resolve(names={(event.team, event.agent) for event in events})
        if refusals:  # filed under the team they name, once the batch's new teams exist
            team_ids = resolver.existing_team_ids(names=map(_team_named, refusals))
            for refusal in refusals:
                refusal.team_id = team_ids.get(_team_named(refusal))
        if refused_names:
            events = []
            for index, row in enumerate(decoded):
                if type(row) is not WireEvent:
                    continue
                refused = refused_names.get((row.team, row.agent))
                if refused is None:
                    events.append(row)
                else:
                    refusals.append(
                        Refusal(
                            index, {"team": [refused[1]]}, received_payload(raw_events[index]), refused[0]
                        )
                    )
            refusals.sort(key=_refusal_index)
        accepted = events_write(events=events, ids=ids, pricer=_pricer_for(price_book))
    return accepted, len(events), refusals


_refusal_index = operator.attrgetter("index")


def _team_named(refusal: Refusal) -> Any:
    return refusal.payload.get("team") if isinstance(refusal.payload, dict) else None


_frozen_depth = 0
_frozen_lock = threading.Lock()  # also guards the switch interval below


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Leave the objects that exist now (Django, the app, caches) out of cyclic garbage collection
    until the block ends. A batch keeps thousands of objects alive while it is decoded and priced,
    which triggers full collections, and each would walk the whole heap (measured: a third of the
    per-event Python time). Freezing and unfreezing are O(1); nested and concurrent blocks share one
    freeze. Nothing is lost: after the block the frozen objects are collectable again."""
    global _frozen_depth
    with _frozen_lock:
        _frozen_depth += 1
        if _frozen_depth == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0:
                gc.unfreeze()


def _pricer_for(price_book: PriceBook) -> PicoPricer:
    # one integer pricer per price book, so its per-day rate cache lives as long as the book
    pricer = getattr(price_book, "_pico_pricer", None)
    if pricer is None:
        pricer = price_book._pico_pricer = PicoPricer(price_book)
    return pricer


def events_write(
    *, events: list[WireEvent], ids: dict[tuple[str, str], tuple[int, int]], pricer: PicoPricer
) -> int:
    """Write validated events, given the (team id, agent id) of each (team, agent) they name. Returns
    how many were new.

    Inside `WritePipeline` (the caller's thread only), the priced rows are handed to the pipeline's
    writer threads instead and 0 is returned; the pipeline counts what was new. They are handed over
    once the caller's transaction has committed: the batch's new teams and agents were inserted in it,
    and a writer's connection sees only committed rows (its foreign keys, checked at its commit, would
    otherwise fail whenever it commits first)."""
    if not events:
        return 0
    stage = _stage_build(events=events, ids=ids, pricer=pricer)
    pipeline = _pipeline.get()
    if pipeline is not None:
        transaction.on_commit(functools.partial(pipeline.submit, stage=stage, events=len(events)))
        return 0
    return _stage_write(stage=stage)


@dataclass(slots=True)
class StageData:
    """A batch ready for the database: its stage rows as binary COPY data, priced and in key order
    (see _KEYS_INSERT_SQL), and the months whose call partitions they need."""

    data: bytearray
    rows: int
    months: set[date]


def _stage_build(
    *, events: list[WireEvent], ids: dict[tuple[str, str], tuple[int, int]], pricer: PicoPricer
) -> StageData:
    months = set()
    rows = []
    price = pricer.price
    append = rows.append
    utc, null = UTC, NULL
    for ordinal, event in enumerate(events):
        team_id, agent_id = ids[event.team, event.agent]
        usage = event.usage
        tokens = (
            usage.uncached_input,
            usage.cache_read,
            usage.cache_write_5m,
            usage.cache_write_1h,
            usage.output,
            usage.reasoning,
        )
        timestamp = event.timestamp
        if timestamp.tzinfo is not utc:  # an offset other than Z: the UTC instant (month, day) counts
            timestamp = timestamp.astimezone(utc)
        months.add(timestamp.year * 12 + timestamp.month - 1)
        provider = event.provider.lower()
        batch = event.batch is True
        costs = price(provider=provider, model=event.model, tokens=tokens, at=timestamp, batch=batch)
        input_breakdown, tool_calls, tags = event.input_breakdown, event.tool_calls, event.tags
        input_breakdown = None if input_breakdown == null else input_breakdown
        append(
            (
                ordinal,
                event.event_id,
                timestamp,
                team_id,
                agent_id,
                event.task_id or None,
                event.step,
                provider,
                event.model,
                *tokens,
                # JSON values go to COPY as the bytes they came as (msgspec.Raw is a buffer)
                input_breakdown,
                batch,
                event.latency_ms,
                event.status or "ok",
                event.prompt_version or None,
                event.max_tokens,
                None if tool_calls == null else tool_calls,
                event.reported_cost_usd,
                None if tags == null else tags,
                *(costs or UNPRICED_COSTS),
                event.reservation_id,
                *breakdown_stage_values(input_breakdown, input_tokens=sum(tokens[:4])),
            )
        )
    # in key order (team, event id); a key repeated within the batch is left to the write statement,
    # which keeps its first occurrence (lowest ordinal)
    rows.sort(key=_stage_key)
    transformer = copy_transformer()
    data = bytearray(_COPY_HEADER)
    format_row = _format_row
    for row in rows:
        format_row(row, transformer, data)
    data += _COPY_TRAILER
    return StageData(
        data=data, rows=len(rows), months={date(month // 12, month % 12 + 1, 1) for month in months}
    )


_stage_key = operator.itemgetter(3, 1)  # team_id, event_id


def _stage_write(
    *, stage: StageData, durable: bool = True, keys_turn: Callable[[], AbstractContextManager] = nullcontext
) -> int:
    """COPY the batch into the stage and write its new rows, in one transaction; returns how many.

    durable=False commits without waiting for the WAL to reach the disk: for a caller that waits for
    it once, at the end (`_earlier_commits_flushed`), as a file import does. The keys are inserted
    inside `keys_turn()`, with which concurrent writers take turns in their batches' order."""
    # before the batch's transaction when there is no caller's one: a writer waiting for its keys' turn
    # then holds no lock on a shared table (a new partition's) that another could wait for
    call_partitions_ensure(months=stage.months)
    # inside a caller's transaction no savepoint of its own: an error here fails the caller's batch too
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if not durable:
            cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(_STAGE_DDL)  # every time: behind a transaction-mode pooler, sessions change
        if getattr(connection, _STAGE_DIRTY, False):
            # an earlier batch of this still-open transaction (or of one rolled back) left its rows; a
            # commit empties the stage (ON COMMIT DELETE ROWS), far cheaper than a TRUNCATE per batch
            cursor.execute("TRUNCATE ingest_stage")
        with cursor.copy(_COPY_SQL) as copy:
            copy.write(stage.data)
        setattr(connection, _STAGE_DIRTY, True)
        transaction.on_commit(_stage_emptied)
        cursor.execute(WRITER_LOCK_SQL)  # guardrails: an allowance created now waits for this commit
        with keys_turn():
            try:
                with transaction.atomic():  # a savepoint: a key already stored undoes only the key insert
                    cursor.execute(_KEYS_INSERT_SQL)
            except IntegrityError:
                cursor.execute(_WRITE_NEW_SQL, _write_params())
                return cursor.fetchone()[0]
        cursor.execute(_WRITE_ALL_SQL, _write_params())
        return cursor.fetchone()[0]


_STAGE_DIRTY = "finops_ingest_stage_dirty"


def _earlier_commits_flushed() -> None:
    """Return once the WAL of every commit made so far is on disk: a transaction that holds an id
    commits (synchronously) only when its WAL record, and so every record before it, is flushed."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()")


def _stage_emptied() -> None:
    setattr(connection, _STAGE_DIRTY, False)


class WritePipeline:
    """Overlaps the database work of batches with the Python work (decode, price) of the next.

    Used as a context manager around a stream of `events_ingest` calls (a file import): while it is
    open, `events_write` in this thread hands its priced rows to `writers` writer threads, each of
    which writes a batch exactly as `events_write` would (same statements, its own transaction) on a
    database connection of its own. Two writers let the database use a second core while a batch
    waits on locks, I/O or the commit: overlapping batches cannot deadlock (every writer takes its key,
    rollup and task locks in one order, see _KEYS_INSERT_SQL) and cannot count an event twice (the
    key insert), and of an event sent twice in the file its first occurrence is kept, as a serial
    import keeps it: the writers insert their batches' keys in turn, in file order, so a later batch
    meets the keys of every earlier one (and waits for that batch's commit). At most `depth` batches
    wait, so memory stays flat. An error in a writer thread is raised in the caller's thread, at its
    next batch or on leaving the block; the other writer stops taking batches.

    Its batches commit without waiting for their WAL to reach the disk (synchronous_commit off, about
    5 ms a batch); leaving the block waits once for all of them. A server crash during the import can
    lose its last committed batches, but the import then fails, and running it again (idempotent)
    writes exactly what is missing.

    Only for callers in autocommit mode: the writers' connections cannot see, nor join, a transaction
    the caller holds open (`WritePipeline.usable()` says whether it can be used here)."""

    def __init__(self, *, depth: int = 2, writers: int = 2) -> None:
        self.accepted = 0
        self.duplicates = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._counts_lock = threading.Lock()
        self._submitted = 0
        self._keys_turns = threading.Condition()
        self._keys_next = 0  # the batch whose keys go in next
        self._threads = [
            threading.Thread(target=self._run, name=f"finops-writer-{number}", daemon=True)
            for number in range(1, writers + 1)
        ]
        self._token = None

    @staticmethod
    def usable() -> bool:
        return not connection.in_atomic_block

    def __enter__(self) -> WritePipeline:
        if not self.usable():
            raise RuntimeError("WritePipeline needs autocommit: the caller is inside a transaction")
        self._restore = ExitStack()
        self._restore.enter_context(_switch_interval_short())
        for thread in self._threads:
            thread.start()
        self._token = _pipeline.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        _pipeline.reset(self._token)
        for _ in self._threads:  # one stop for each writer still running (after the batches queued)
            while any(thread.is_alive() for thread in self._threads):
                try:
                    self._queue.put(_STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for thread in self._threads:
            thread.join()
        self._restore.close()
        if error is None and self._error is not None:
            raise self._error

    def submit(self, *, stage: StageData, events: int) -> None:
        self._put((self._submitted, stage, events), raise_error=True)
        self._submitted += 1

    @contextmanager
    def _keys_turn(self, number: int) -> Iterator[None]:
        with self._keys_turns:
            self._keys_turns.wait_for(lambda: self._keys_next >= number or self._error is not None)
        try:
            yield
        finally:
            self._keys_done(number)

    def _keys_done(self, number: int) -> None:
        with self._keys_turns:
            self._keys_next = max(self._keys_next, number + 1)
            self._keys_turns.notify_all()

    def _put(self, item: object, *, raise_error: bool) -> None:
        while True:
            if self._error is not None:
                if raise_error:
                    raise self._error
                return
            if not all(thread.is_alive() for thread in self._threads):
                if raise_error:
                    raise RuntimeError("a writer thread has stopped")
                return
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    _earlier_commits_flushed()  # the import is durable once it says it is done
                    return
                if self._error is not None:  # another writer failed: the import is failing
                    continue  # (taking batches still, so the caller's put cannot wait forever)
                number, stage, events = item
                try:
                    accepted = _stage_write(
                        stage=stage, durable=False, keys_turn=functools.partial(self._keys_turn, number)
                    )
                finally:
                    self._keys_done(number)  # also when it failed before its turn: the next may go
                with self._counts_lock:
                    self.accepted += accepted
                    self.duplicates += events - accepted
        except BaseException as error:  # noqa: BLE001 — handed to the caller's thread
            self._error = error
            with self._keys_turns:  # a writer waiting for its turn gives up
                self._keys_turns.notify_all()
        finally:
            connection.close()  # this thread's own connection


_STOP = object()
_SWITCH_INTERVAL = 0.0002  # seconds
_switch_interval_users = 0
_switch_interval_saved = 0.0


@contextmanager
def _switch_interval_short() -> Iterator[None]:
    """A writer thread mostly waits on the database, and each time it wakes it needs the GIL from the
    busy decoding thread, which by default yields it only every 5 ms: a shorter switch interval keeps
    the database busy (measured: ~10% more events/s). Nested and concurrent users share it; the last
    one out restores the interval the first one found."""
    global _switch_interval_users, _switch_interval_saved
    with _frozen_lock:
        _switch_interval_users += 1
        if _switch_interval_users == 1:
            _switch_interval_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_interval_saved, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        with _frozen_lock:
            _switch_interval_users -= 1
            if _switch_interval_users == 0:
                sys.setswitchinterval(_switch_interval_saved)


_pipeline: ContextVar[WritePipeline | None] = ContextVar("finops_write_pipeline", default=None)


UNPRICED_COSTS = (None,) * (1 + len(TOKEN_TYPES))
