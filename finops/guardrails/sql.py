"""The guardrails' part of the bulk writer's statement (ingest/writer.py includes these CTEs): the
allowance counters and the reservations settled, from exactly the new calls of a batch, in the same
transaction as the calls. The SQL is owned here, beside the models it writes.

`rows` names the writer's new stage rows (team_id, agent_id, ts, the six token counts, cost_pico (null:
unpriced), reservation_id). The statement takes one parameter: the organisation's time zone."""

from __future__ import annotations

from django.conf import settings

from finops.ledger.tokens import TOKEN_TYPES

# serialises allowance creation (which seeds its counter from the calls) against writers: a writer holds
# it shared from before its write statement to its commit, so a new allowance sees every call exactly once
ALLOWANCE_SEED_LOCK = 7_318_021_461
WRITER_LOCK_SQL = f"SELECT pg_advisory_xact_lock_shared({ALLOWANCE_SEED_LOCK})"

_PICO = "0.000000000001"
_all_tokens = " + ".join(f"s.{token_type}" for token_type in TOKEN_TYPES)


def guard_ctes(*, rows: str) -> str:
    """CTEs (each followed by a comma) that count the new rows against the allowances they fall under
    and settle the reservations they carry."""
    return f"""allowance_usage AS (
    INSERT INTO guardrails_allowanceusage (allowance_id, window_start, used_tokens, used_usd,
        unpriced_calls, calls)
    SELECT a.id, date_trunc(a."window", s.ts, %s::text), sum({_all_tokens}),
        coalesce(sum(s.cost_pico), 0) * {_PICO}, count(*) FILTER (WHERE s.cost_pico IS NULL), count(*)
    FROM {rows} AS s
    JOIN guardrails_allowance AS a ON a.team_id = s.team_id AND (a.agent_id IS NULL OR a.agent_id = s.agent_id)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (allowance_id, window_start) DO UPDATE SET
        used_tokens = guardrails_allowanceusage.used_tokens + EXCLUDED.used_tokens,
        used_usd = guardrails_allowanceusage.used_usd + EXCLUDED.used_usd,
        unpriced_calls = guardrails_allowanceusage.unpriced_calls + EXCLUDED.unpriced_calls,
        calls = guardrails_allowanceusage.calls + EXCLUDED.calls
), reservations_settled AS (
    UPDATE guardrails_reservation AS r SET settled_at = now()
    FROM {rows} AS s
    WHERE s.reservation_id IS NOT NULL AND r.reservation_id = s.reservation_id AND r.team_id = s.team_id
        AND r.settled_at IS NULL
), """


def guard_params() -> list[str]:
    """The parameters guard_ctes' SQL takes, in order."""
    return [settings.FINOPS_TIME_ZONE]
