"""The alert rollups' part of the bulk writer's statement (ingest/writer.py includes these CTEs), their
retention and their purge. The SQL is owned here, beside the models it writes.

`RecentRollup` (per minute x team x agent) holds only the calls whose timestamp is past
`recent_cutoff(now)` when they are written, so a historical import does not pay for it:

- the last `RECENT_DAYS` days, enough for the trailing windows of alert rules (7 days) and the one
  before them an anomaly baseline needs (a 1-day window's 7 previous days reach 8 days back);
- and, when the organisation's calendar month does not start at a UTC midnight (`FINOPS_TIME_ZONE`
  not UTC), from the UTC midnight before the month's start: the daily rollups are per UTC day, so the
  month's first partial UTC day is summed from minutes.

The cutoff never moves back as time passes, so a call past the cutoff now was past it when it was
written, hence counted: whatever is read past the cutoff is complete. `PromptVersionRollup` takes every
call with a prompt version (one small row per version, any age): a version's first call decides which
version is the newest, whatever order the calls were imported in. `PromptVersionDailyRollup` takes the
same calls per UTC day, with their cost: what the pages read of a version over a window.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from finops.guardrails.windows import window_bounds
from finops.ledger.models import PromptVersionDailyRollup, RecentRollup
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES

RECENT_DAYS = 8

_PICO = "0.000000000001"
_tokens = ", ".join(TOKEN_TYPES)
_sum_tokens = ", ".join(f"sum({token_type})" for token_type in TOKEN_TYPES)
_add_tokens = ", ".join(
    f"{token_type} = ledger_recentrollup.{token_type} + EXCLUDED.{token_type}" for token_type in TOKEN_TYPES
)
_input = " + ".join(INPUT_TOKEN_TYPES)


def recent_cutoff(*, now: datetime | None = None) -> datetime:
    """The oldest instant RecentRollup holds at `now` (see the module's docstring)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=RECENT_DAYS)
    month_start = window_bounds(window="month", at=now)[0]
    utc_midnight = datetime.combine(month_start.astimezone(UTC).date(), time(0), tzinfo=UTC)
    if month_start != utc_midnight:
        cutoff = min(cutoff, utc_midnight)
    return cutoff


def rollup_ctes(*, rows: str) -> str:
    """CTEs (each followed by a comma) that add the new rows to the recent (minute) rollup, those past
    the cutoff parameter only, and to the prompt-version rollups (all-time and per day). One parameter:
    rollup_params()."""
    return f"""recent_rollups AS (
    INSERT INTO ledger_recentrollup (minute, team_id, agent_id, calls, unpriced_calls, calls_not_in_task,
        cost_usd, {_tokens})
    SELECT date_trunc('minute', ts), team_id, agent_id, count(*), count(*) FILTER (WHERE cost_pico IS NULL),
        count(*) FILTER (WHERE task_id IS NULL), coalesce(sum(cost_pico), 0) * {_PICO}, {_sum_tokens}
    FROM {rows} WHERE ts >= %s::timestamptz GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (minute, team_id, agent_id) DO UPDATE SET
        calls = ledger_recentrollup.calls + EXCLUDED.calls,
        unpriced_calls = ledger_recentrollup.unpriced_calls + EXCLUDED.unpriced_calls,
        calls_not_in_task = ledger_recentrollup.calls_not_in_task + EXCLUDED.calls_not_in_task,
        cost_usd = ledger_recentrollup.cost_usd + EXCLUDED.cost_usd,
        {_add_tokens}
), prompt_versions AS (
    INSERT INTO ledger_promptversionrollup (team_id, agent_id, prompt_version, first_call_at, last_call_at,
        calls, cache_read, input_tokens)
    SELECT team_id, agent_id, prompt_version, min(ts), max(ts), count(*), sum(cache_read), sum({_input})
    FROM {rows} WHERE prompt_version IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 2, 3
    ON CONFLICT (agent_id, prompt_version) DO UPDATE SET
        first_call_at = least(ledger_promptversionrollup.first_call_at, EXCLUDED.first_call_at),
        last_call_at = greatest(ledger_promptversionrollup.last_call_at, EXCLUDED.last_call_at),
        calls = ledger_promptversionrollup.calls + EXCLUDED.calls,
        cache_read = ledger_promptversionrollup.cache_read + EXCLUDED.cache_read,
        input_tokens = ledger_promptversionrollup.input_tokens + EXCLUDED.input_tokens
), prompt_version_days AS (
    INSERT INTO ledger_promptversiondailyrollup (day, team_id, agent_id, prompt_version, first_call_at,
        last_call_at, calls, cache_read, input_tokens, cost_usd, unpriced_calls, calls_in_tasks,
        unpriced_calls_in_tasks, cost_in_tasks_usd)
    SELECT (ts AT TIME ZONE 'UTC')::date, team_id, agent_id, prompt_version, min(ts), max(ts), count(*),
        sum(cache_read), sum({_input}), coalesce(sum(cost_pico), 0) * {_PICO},
        count(*) FILTER (WHERE cost_pico IS NULL), count(*) FILTER (WHERE task_id IS NOT NULL),
        count(*) FILTER (WHERE task_id IS NOT NULL AND cost_pico IS NULL),
        coalesce(sum(cost_pico) FILTER (WHERE task_id IS NOT NULL), 0) * {_PICO}
    FROM {rows} WHERE prompt_version IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 3, 4
    ON CONFLICT (day, agent_id, prompt_version) DO UPDATE SET
        first_call_at = least(ledger_promptversiondailyrollup.first_call_at, EXCLUDED.first_call_at),
        last_call_at = greatest(ledger_promptversiondailyrollup.last_call_at, EXCLUDED.last_call_at),
        calls = ledger_promptversiondailyrollup.calls + EXCLUDED.calls,
        cache_read = ledger_promptversiondailyrollup.cache_read + EXCLUDED.cache_read,
        input_tokens = ledger_promptversiondailyrollup.input_tokens + EXCLUDED.input_tokens,
        cost_usd = ledger_promptversiondailyrollup.cost_usd + EXCLUDED.cost_usd,
        unpriced_calls = ledger_promptversiondailyrollup.unpriced_calls + EXCLUDED.unpriced_calls,
        calls_in_tasks = ledger_promptversiondailyrollup.calls_in_tasks + EXCLUDED.calls_in_tasks,
        unpriced_calls_in_tasks = ledger_promptversiondailyrollup.unpriced_calls_in_tasks
            + EXCLUDED.unpriced_calls_in_tasks,
        cost_in_tasks_usd = ledger_promptversiondailyrollup.cost_in_tasks_usd + EXCLUDED.cost_in_tasks_usd
), """


def rollup_params() -> list:
    """The parameters rollup_ctes' SQL takes, in order."""
    return [recent_cutoff()]


def recent_rollups_purge(*, now: datetime | None = None) -> int:
    """Delete the minutes past the retention (nothing reads them); answers how many rows went."""
    with transaction.atomic():
        deleted, _ = RecentRollup.objects.filter(minute__lt=recent_cutoff(now=now)).delete()
    return deleted


def recent_rollup_reprice(*, cursor, deltas: dict[tuple, list]) -> None:
    """Move repriced calls' cost into the recent rollup: `deltas` maps (minute, team_id, agent_id) to
    [cost added, calls that became priced], summed over calls past recent_cutoff() only (the caller
    takes the cutoff once, before it reads the calls: a call past it was counted when written)."""
    for (minute, team_id, agent_id), (cost, count) in deltas.items():
        cursor.execute(
            f"UPDATE {RecentRollup._meta.db_table} SET cost_usd = cost_usd + %s, "
            "unpriced_calls = unpriced_calls - %s WHERE minute = %s AND team_id = %s AND agent_id = %s",
            [cost, count, minute, team_id, agent_id],
        )


def prompt_version_days_reprice(*, cursor, deltas: dict[tuple, list]) -> None:
    """Move repriced calls' cost into the per-day prompt-version rollup: `deltas` maps (day, agent_id,
    prompt_version) to [cost added, calls that became priced, cost added in tasks, calls in tasks that
    became priced]."""
    for (day, agent_id, prompt_version), (cost, count, cost_in_tasks, count_in_tasks) in deltas.items():
        cursor.execute(
            f"UPDATE {PromptVersionDailyRollup._meta.db_table} SET cost_usd = cost_usd + %s, "
            "unpriced_calls = unpriced_calls - %s, cost_in_tasks_usd = cost_in_tasks_usd + %s, "
            "unpriced_calls_in_tasks = unpriced_calls_in_tasks - %s "
            "WHERE day = %s AND agent_id = %s AND prompt_version = %s",
            [cost, count, cost_in_tasks, count_in_tasks, day, agent_id, prompt_version],
        )


def minute_of(moment: datetime) -> datetime:
    """The minute bucket of an instant, as the writer's date_trunc('minute', ts) makes it."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)
