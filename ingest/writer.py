"""The one writer every source goes through: validate → price → COPY → dedupe → calls + rollups + tasks.

A batch is one transaction. Rows are COPYed into a temporary staging table, then one SQL statement
inserts the idempotency keys (ON CONFLICT DO NOTHING), and from exactly the keys that were new, the
calls, the daily rollups and the task aggregates. A retried batch therefore changes nothing, and two
concurrent batches carrying the same event count it once.
"""

from __future__ import annotations

import gc
import json
import operator
import queue
import struct
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

from finops.accounts.models import ApiToken, Membership, OrgRole, Team, TeamRole, TokenScope, User
from finops.ledger.models import Agent
from finops.ledger.services import call_partitions_ensure
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.fast import PicoPricer
from finops.pricing.services import PriceBook
from ingest.models import QuarantinedRow
from ingest.validation import NULL, WireEvent, wire_event_decode

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

_WRITE_SQL = f"""
WITH new_keys AS (
    -- the stage holds one row per key, in key order (the writer sorts it): concurrent writers then take
    -- the unique-index locks of overlapping batches in the same order and cannot deadlock
    INSERT INTO ledger_eventkey (team_id, event_id, timestamp)
    SELECT team_id, event_id, ts FROM ingest_stage
    ON CONFLICT DO NOTHING
    RETURNING team_id, event_id
), new_rows AS (
    SELECT ingest_stage.*, cost_pico * {_PICO} AS cost_usd
    FROM ingest_stage JOIN new_keys USING (team_id, event_id)
), calls AS (
    INSERT INTO ledger_call (timestamp, team_id, agent_id, event_id, task_id, step, provider, model,
        {_tokens}, input_breakdown, batch, latency_ms, status, prompt_version, max_tokens, tool_calls,
        reported_cost_usd, tags, cost_usd, ingested_at)
    SELECT ts, team_id, agent_id, event_id, task_id, step, provider, model, {_tokens},
        convert_from(input_breakdown, 'UTF8')::jsonb, batch, latency_ms, status, prompt_version, max_tokens,
        convert_from(tool_calls, 'UTF8')::jsonb, reported_cost_usd::numeric, convert_from(tags, 'UTF8')::jsonb,
        cost_usd, now()
    FROM new_rows
), rollups AS (
    INSERT INTO ledger_dailyrollup (day, team_id, agent_id, provider, model, calls, unpriced_calls,
        batch_calls, calls_not_in_task, cost_usd, cost_not_in_task_usd, {_tokens}, {_type_costs})
    SELECT (ts AT TIME ZONE 'UTC')::date, team_id, agent_id, provider, model, count(*),
        count(*) FILTER (WHERE cost_pico IS NULL), count(*) FILTER (WHERE batch),
        count(*) FILTER (WHERE task_id IS NULL), coalesce(sum(cost_pico), 0) * {_PICO},
        coalesce(sum(cost_pico) FILTER (WHERE task_id IS NULL), 0) * {_PICO}, {_sum_tokens}, {_sum_type_costs}
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
    SELECT team_id, task_id, min(agent_id), NULL, '', '{{}}'::jsonb, count(*),
        coalesce(sum(cost_pico), 0) * {_PICO}, count(*) FILTER (WHERE cost_pico IS NULL), min(ts), max(ts),
        {_sum_tokens}
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

    def prefetch(self, *, names: set[tuple[str, str]]) -> None:
        """Look up a batch's (team slug, agent name) pairs not cached yet in two queries, rather than
        one or two per pair; what is not found is left to `team_id` and `agent_id` (which create it
        or say why not)."""
        slugs = {slug for slug, _ in names} - self.team_ids.keys()
        if slugs:
            for slug, team_id in Team.objects.filter(slug__in=slugs).values_list("slug", "id"):
                self.team_ids[slug] = team_id
        wanted = {
            (self.team_ids[slug], agent) for slug, agent in names if self.team_ids.get(slug) is not None
        } - self.agent_ids.keys()
        if wanted:
            found = Agent.objects.filter(
                team_id__in={team_id for team_id, _ in wanted}, name__in={agent for _, agent in wanted}
            ).values_list("team_id", "name", "id")
            for team_id, name, agent_id in found:
                if (team_id, name) in wanted:
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


def events_ingest(
    *,
    raw_events: Iterable[bytes | dict],
    principal: User | ApiToken | None,
    source: str,
    resolver: Resolver | None = None,
    price_book: PriceBook | None = None,
    first_index: int = 0,
    positions: list[str] | None = None,
) -> IngestResult:
    """Validate, price and write one batch. Good rows are kept even when others are bad; bad rows are
    quarantined with their reason. Rows are JSON bytes (one event each) or dicts built by an adapter.
    Callers streaming many batches pass one resolver and price book for all of them; `positions` names
    each row's place in the source (e.g. "line 12") for the quarantine, else its index is used."""
    if isinstance(principal, ApiToken) and TokenScope.INGEST not in principal.scopes:
        raise PermissionError("this token lacks the 'ingest' scope")
    with heap_frozen():
        resolver = resolver or Resolver(TeamPolicy(principal))
        price_book = price_book or PriceBook.load()
        now = datetime.now(UTC)
        result = IngestResult()
        good: list[tuple[WireEvent, int, int]] = []
        quarantine: list[QuarantinedRow] = []
        decoded = [
            (index, raw, *wire_event_decode(raw, now=now))
            for index, raw in enumerate(raw_events, first_index)
        ]
        resolver.prefetch(
            names={(event.team, event.agent) for _, _, event, _, _ in decoded if event is not None}
        )
        # (team, agent) → (team id, team error, agent id), for this batch: a few pairs cover most rows
        resolved: dict[tuple[str, str], tuple[int | None, str | None, int | None]] = {}
        for index, raw, event, errors, payload in decoded:
            team_id = None
            if event is not None:
                names = (event.team, event.agent)
                ids = resolved.get(names)
                if ids is None:
                    team_id, team_error = resolver.team_id(event.team)
                    agent_id = None if team_error else resolver.agent_id(team_id, event.agent)
                    ids = resolved[names] = (team_id, team_error, agent_id)
                team_id, team_error, agent_id = ids
                if team_error:
                    errors, payload = {"team": [team_error]}, _payload(raw)
            if errors:
                event_id = payload.get("event_id") if isinstance(payload, dict) else None
                result.rejected.append({"index": index, "event_id": event_id, "errors": errors})
                quarantine.append(
                    QuarantinedRow(
                        source=source,
                        position=positions[index - first_index] if positions else str(index),
                        event_id=str(event_id or "")[:256],
                        payload=payload,
                        errors=errors,
                        team_id=team_id,
                    )
                )
                continue
            good.append((event, team_id, agent_id))
        with transaction.atomic():
            if quarantine:
                QuarantinedRow.objects.bulk_create(quarantine)
            result.accepted = events_write(events=good, pricer=_pricer_for(price_book))
        result.duplicates = len(good) - result.accepted
    return result


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


def _payload(raw: bytes | dict) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return bytes(raw).decode("utf-8", "replace")


def _pricer_for(price_book: PriceBook) -> PicoPricer:
    # one integer pricer per price book, so its per-day rate cache lives as long as the book
    pricer = getattr(price_book, "_pico_pricer", None)
    if pricer is None:
        pricer = price_book._pico_pricer = PicoPricer(price_book)
    return pricer


def events_write(*, events: list[tuple[WireEvent, int, int]], pricer: PicoPricer) -> int:
    """Write validated events (with their team and agent ids). Returns how many were new.

    Inside `WritePipeline` (the caller's thread only), the priced rows are handed to the pipeline's
    writer thread instead and 0 is returned; the pipeline counts what was new."""
    if not events:
        return 0
    stage = _stage_build(events=events, pricer=pricer)
    pipeline = _pipeline.get()
    if pipeline is not None:
        pipeline.submit(stage=stage, events=len(events))
        return 0
    return _stage_write(stage=stage)


@dataclass(slots=True)
class StageData:
    """A batch ready for the database: its stage rows as binary COPY data, priced, one row per key
    and in key order (see _WRITE_SQL), and the months whose call partitions they need."""

    data: bytearray
    rows: int
    months: set[date]


def _stage_build(*, events: list[tuple[WireEvent, int, int]], pricer: PicoPricer) -> StageData:
    months = set()
    rows = []
    price = pricer.price
    append = rows.append
    utc = UTC
    for ordinal, (event, team_id, agent_id) in enumerate(events):
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
        batch = bool(event.batch)
        costs = price(provider=provider, model=event.model, tokens=tokens, at=timestamp, batch=batch)
        input_breakdown, tool_calls, tags = event.input_breakdown, event.tool_calls, event.tags
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
                None if input_breakdown == NULL else bytes(input_breakdown),
                batch,
                event.latency_ms,
                event.status or "ok",
                event.prompt_version or None,
                event.max_tokens,
                None if tool_calls == NULL else bytes(tool_calls),
                event.reported_cost_usd,
                None if tags == NULL else bytes(tags),
                *(costs or UNPRICED_COSTS),
            )
        )
    # in key order (team, event id); the sort is stable, so of a key repeated within the batch the
    # first occurrence comes first, and is the one written (the others are duplicates)
    rows.sort(key=_stage_key)
    transformer = Transformer()
    transformer.set_dumper_types(_COPY_OIDS, pq.Format.BINARY)
    data = bytearray(_COPY_HEADER)
    written, previous = 0, None
    for row in rows:
        key = (row[3], row[1])
        if key != previous:
            _format_row(row, transformer, data)
            written += 1
            previous = key
    data += _COPY_TRAILER
    return StageData(
        data=data, rows=written, months={date(month // 12, month % 12 + 1, 1) for month in months}
    )


_stage_key = operator.itemgetter(3, 1)  # team_id, event_id


def _stage_write(*, stage: StageData) -> int:
    """COPY the batch into the stage and run the write statement, in one transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        call_partitions_ensure(months=stage.months)
        cursor.execute(_STAGE_DDL)  # every time: behind a transaction-mode pooler, sessions change
        if getattr(connection, _STAGE_DIRTY, False):
            # an earlier batch of this still-open transaction (or of one rolled back) left its rows; a
            # commit empties the stage (ON COMMIT DELETE ROWS), far cheaper than a TRUNCATE per batch
            cursor.execute("TRUNCATE ingest_stage")
        with cursor.copy(_COPY_SQL) as copy:
            copy.write(stage.data)
        cursor.execute(_WRITE_SQL)
        accepted = cursor.fetchone()[0]
        setattr(connection, _STAGE_DIRTY, True)
        transaction.on_commit(_stage_emptied)
    return accepted


_STAGE_DIRTY = "finops_ingest_stage_dirty"


def _stage_emptied() -> None:
    setattr(connection, _STAGE_DIRTY, False)


class WritePipeline:
    """Overlaps the database work of one batch with the Python work (decode, price) of the next.

    Used as a context manager around a stream of `events_ingest` calls (a file import): while it is
    open, `events_write` in this thread hands its priced rows to a writer thread, which writes each
    batch exactly as `events_write` would (same statement, its own transaction) on a database
    connection of its own. At most `depth` batches wait, so memory stays flat. An error in the writer
    thread is raised in the caller's thread, at its next batch or on leaving the block.

    Only for callers in autocommit mode: the writer's connection cannot see, nor join, a transaction
    the caller holds open (`WritePipeline.usable()` says whether it can be used here)."""

    def __init__(self, *, depth: int = 2) -> None:
        self.accepted = 0
        self.duplicates = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="finops-writer", daemon=True)
        self._token = None

    @staticmethod
    def usable() -> bool:
        return not connection.in_atomic_block

    def __enter__(self) -> WritePipeline:
        if not self.usable():
            raise RuntimeError("WritePipeline needs autocommit: the caller is inside a transaction")
        self._restore = ExitStack()
        self._restore.enter_context(_switch_interval_short())
        self._thread.start()
        self._token = _pipeline.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        _pipeline.reset(self._token)
        self._put(_STOP, raise_error=False)
        self._thread.join()
        self._restore.close()
        if error is None and self._error is not None:
            raise self._error

    def submit(self, *, stage: StageData, events: int) -> None:
        self._put((stage, events), raise_error=True)

    def _put(self, item: object, *, raise_error: bool) -> None:
        while True:
            if self._error is not None:
                if raise_error:
                    raise self._error
                return
            if not self._thread.is_alive():
                if raise_error:
                    raise RuntimeError("the writer thread has stopped")
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
                    return
                stage, events = item
                accepted = _stage_write(stage=stage)
                self.accepted += accepted
                self.duplicates += events - accepted
        except BaseException as error:  # noqa: BLE001 — handed to the caller's thread
            self._error = error
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


ZERO = timedelta(0)
UNPRICED_COSTS = (None,) * (1 + len(TOKEN_TYPES))


def _utc_month(moment: datetime) -> tuple[int, int]:
    utc = moment.astimezone(UTC)
    return utc.year, utc.month
