"""Rows from outside sources on their way to the writer, and the quarantine of the ones it refuses.

A source row keeps its position ("line 12", or the index in a posted batch), its payload as received
and the name of the adapter that translates it. `source_rows_ingest` writes a batch of them through the
one writer and quarantines each refused row with that payload and adapter (not the translated event),
so `quarantined_rows_replay` can run it through the current adapter and writer after a fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from finops.accounts.selectors import Principal, principal_token_team_id
from finops.pricing.services import PriceBook
from ingest.adapters import AdapterError, adapter_for
from ingest.models import QuarantinedRow
from ingest.validation import received_payload
from ingest.writer import Resolver, TeamPolicy, events_ingest_unquarantined


class QuarantinedRowsNotFound(LookupError):
    """None of the ids asked for is a quarantined row of a team the principal may write (missing and
    another team's look the same: nothing tells whether a foreign id exists)."""

    def __init__(self, row_ids: list[int]) -> None:
        self.row_ids = row_ids
        super().__init__(
            "none of the ids asked for is a quarantined row you may replay; nothing was replayed"
        )


@dataclass(slots=True)
class SourceRow:
    position: str
    payload: Any  # as received; JSON bytes of a canonical line are parsed only if it is quarantined
    adapter: str
    event: dict[str, Any] | bytes | None = None
    errors: dict[str, list[str]] | None = None
    team_hint: str | None = None  # the team the row names, for scoping its quarantined copy


class LinePositions(Sequence[str]):
    """ "line N" for each row of a batch, made only for the rows that are quarantined."""

    def __init__(self, numbers: Sequence[int]) -> None:
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [f"line {number}" for number in self.numbers[index]]
        return f"line {self.numbers[index]}"


def nonblank_lines(lines: list[bytes], *, first_number: int = 1) -> tuple[list[bytes], LinePositions]:
    """The lines that are not blank (line ends may be kept), and each one's position, counting the
    blank ones too. Blank lines are rare: finding none costs two passes in C, not one in Python."""
    if b"" not in lines and not any(map(bytes.isspace, lines)):
        return lines, LinePositions(range(first_number, first_number + len(lines)))
    kept = [(number, line) for number, line in enumerate(lines, first_number) if line.strip()]
    return [line for _, line in kept], LinePositions([number for number, _ in kept])


@dataclass(slots=True)
class EventLines:
    """A batch of canonical event lines as read (JSON bytes, line ends included) and their positions.
    The writer decodes the bytes itself; a SourceRow is made only for a refused line."""

    lines: list[bytes]
    positions: Sequence[str]

    def __len__(self) -> int:
        return len(self.lines)

    def row(self, index: int) -> SourceRow:
        line = self.lines[index].rstrip(b"\r\n")
        return SourceRow(position=self.positions[index], payload=line, adapter="events", event=line)


@dataclass
class RowsOutcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"position", "event_id", "errors"}


def principal_default_team(*, principal: Principal) -> str | None:
    """A team-bound token's team: rows that name no team belong to it."""
    if principal_token_team_id(principal) is not None:
        return principal.team.slug
    return None


def source_row_translate(
    *, position: str, payload: Any, adapter: str, default_team: str | None = None
) -> SourceRow:
    row = SourceRow(position=position, payload=payload, adapter=adapter)
    try:
        row.event = adapter_for(name=adapter)(payload, default_team=default_team)
    except AdapterError as error:
        row.errors, row.team_hint = error.errors, error.team
    return row


def _event_id_of(row: SourceRow) -> str | None:
    for candidate in (row.event, row.payload):
        if isinstance(candidate, dict) and candidate.get("event_id"):
            return str(candidate["event_id"])
    if isinstance(row.payload, dict) and row.payload.get("id"):  # LiteLLM's call id
        return str(row.payload["id"])
    return None


def _team_hint(row: SourceRow) -> str | None:
    if row.team_hint:
        return row.team_hint
    team = row.event.get("team") if isinstance(row.event, dict) else None
    return team if isinstance(team, str) else None


def _write(
    *, rows: list[SourceRow] | EventLines, principal: Principal, resolver: Resolver, price_book: PriceBook
) -> tuple[int, int, dict[int, tuple[dict, int | None]]]:
    """Write the translated rows; returns accepted, duplicates and, per refused row's index in `rows`,
    its errors and the team the writer resolved (the caller quarantines the payload as received)."""
    if isinstance(rows, EventLines):
        translated, raw_events = range(len(rows)), rows.lines
    else:
        translated = [index for index, row in enumerate(rows) if row.event is not None]
        raw_events = [rows[index].event for index in translated]
    accepted, written, refusals = events_ingest_unquarantined(
        raw_events=raw_events,
        principal=principal,
        resolver=resolver,
        price_book=price_book,
    )
    refused = {translated[refusal.index]: (refusal.errors, refusal.team_id) for refusal in refusals}
    return accepted, written - accepted, refused


def source_rows_ingest(
    *,
    rows: list[SourceRow] | EventLines,
    principal: Principal,
    source: str,
    resolver: Resolver,
    price_book: PriceBook,
    positions_are_stable: bool = False,
) -> RowsOutcome:
    """Write one batch of source rows; quarantine the refused ones under `source` with their payload.

    With positions_are_stable (a file's line numbers), a row already waiting in quarantine at the same
    source and position with the same payload gets its errors refreshed instead of a second copy, so
    importing the same file again does not grow the quarantine."""
    outcome = RowsOutcome()
    with transaction.atomic():
        outcome.accepted, outcome.duplicates, refused = _write(
            rows=rows, principal=principal, resolver=resolver, price_book=price_book
        )
        if isinstance(rows, EventLines):
            refused_rows = [(rows.row(index), *refused[index]) for index in sorted(refused)]
        else:
            refused_rows = [
                (row, *refused.get(index, (row.errors, None)))
                for index, row in enumerate(rows)
                if row.event is None or index in refused
            ]
        quarantine: list[QuarantinedRow] = []
        team_ids = resolver.existing_team_ids(names=(_team_hint(row) for row, _, _ in refused_rows))
        for row, errors, team_id in refused_rows:
            row.payload = received_payload(row.payload)
            if isinstance(row.event, bytes):
                row.event = row.payload if isinstance(row.payload, dict) else None
            event_id = _event_id_of(row)
            outcome.rejected.append({"position": row.position, "event_id": event_id, "errors": errors})
            quarantine.append(
                QuarantinedRow.of(
                    source=source,
                    position=row.position[:128],
                    event_id=event_id,
                    payload=row.payload,
                    errors=errors,
                    team_id=team_id or team_ids.get(_team_hint(row)),
                    adapter=row.adapter,
                )
            )
        if positions_are_stable and quarantine:
            waiting = {
                existing.position: existing
                for existing in QuarantinedRow.objects.filter(
                    source=source,
                    replayed_at__isnull=True,
                    position__in=[row.position for row in quarantine],
                )
            }
            refreshed = []
            for row in list(quarantine):
                existing = waiting.get(row.position)
                if existing is not None and existing.payload == row.payload:
                    existing.errors, existing.team_id = row.errors, row.team_id
                    refreshed.append(existing)
                    quarantine.remove(row)
            QuarantinedRow.objects.bulk_update(refreshed, ["errors", "team_id"])
        QuarantinedRow.objects.bulk_create(quarantine)
    return outcome


def quarantined_rows_visible(*, principal: Principal, source: str | None = None) -> QuerySet[QuarantinedRow]:
    """The quarantined rows a user or token may see: org-wide principals see all (also rows of no
    team), everyone else only the rows of their teams."""
    rows = QuarantinedRow.objects.restrict(principal).select_related("team").order_by("-created_at", "-id")
    if source:
        # Postgres text cannot hold NUL, so no stored source has one (and the query would fail)
        rows = rows.none() if "\x00" in source else rows.filter(source=source)
    return rows


def quarantine_sources(*, principal: Principal) -> list[str]:
    rows = quarantined_rows_visible(principal=principal).order_by()
    return sorted(rows.values_list("source", flat=True).distinct())


@dataclass
class ReplayOutcome:
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    still_rejected: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "still_rejected": self.still_rejected,
        }


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def quarantined_rows_replay(
    *,
    principal: Principal,
    row_ids: list[int] | None = None,
    source: str | None = None,
    batch_size: int = 1000,
) -> ReplayOutcome:
    """Run quarantined rows through their adapter and the writer again (after a price, mapping, team
    or data fix). Rows that pass are written once (event_id idempotency) and get replayed_at; rows that
    still fail get their new errors. Given ids, exactly those rows are replayed (a replayed row again
    comes back as a duplicate); given a source, its rows not yet replayed. Only rows of teams the
    principal may send events for are taken: a viewer's rows are seen, not replayed; ids none of which is
    such a row raise QuarantinedRowsNotFound."""
    if row_ids is None and not source:
        raise ValueError('say which rows to replay: {"ids": [...]} or {"source": "..."}')
    resolver = Resolver(TeamPolicy(principal))
    # "change": seeing a team's rows (a viewer) is not writing for it
    rows = QuarantinedRow.objects.restrict(principal, "change").order_by("id")
    if row_ids is not None:
        rows = rows.filter(id__in=row_ids)
        if not rows.exists():  # none replayable; else those that are are replayed, the others skipped
            raise QuarantinedRowsNotFound(row_ids)
    else:
        rows = rows.filter(source=source, replayed_at__isnull=True)
    price_book = PriceBook.load()
    default_team = principal_default_team(principal=principal)
    outcome = ReplayOutcome()
    row_ids_in_order = list(rows.values_list("id", flat=True))
    for id_chunk in _chunks(row_ids_in_order, batch_size):
        chunk = list(QuarantinedRow.objects.filter(id__in=id_chunk).order_by("id"))
        translated = [
            source_row_translate(
                position=row.position, payload=row.payload, adapter=row.adapter, default_team=default_team
            )
            for row in chunk
        ]
        now = timezone.now()
        with transaction.atomic():
            accepted, duplicates, refused = _write(
                rows=translated, principal=principal, resolver=resolver, price_book=price_book
            )
            for index, (row, replayed) in enumerate(zip(chunk, translated, strict=True)):
                if replayed.event is not None and index not in refused:
                    row.replayed_at = row.replayed_at or now
                else:
                    row.errors = refused[index][0] if index in refused else replayed.errors
                    outcome.still_rejected += 1
            QuarantinedRow.objects.bulk_update(chunk, ["replayed_at", "errors"])
        outcome.rows += len(chunk)
        outcome.accepted += accepted
        outcome.duplicates += duplicates
    return outcome
