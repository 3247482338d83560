"""The input-token breakdown rollup: where each agent's input tokens go (SPEC.md's `input_breakdown`:
system, tools, history, retrieval, tool_results, user), per UTC day, kept by the bulk writer in the
same statement as the calls (ingest/writer.py includes `breakdown_rollup_cte`), so the Breakdown page
never reads the calls table. The SQL is owned here, beside the model it writes.

What one call adds, per category (`BreakdownRollup.category`):

- each of its breakdown's entries whose value is a number from 0 to MAX_ENTRY_TOKENS (rounded to a
  whole token), under its key when the key is one of SPEC's six, else under "other" (several unknown
  keys of one call make one "other" entry); other entries (text, objects, absurd numbers) are left out;
- a call with no such entry (no breakdown, an empty one, or only entries left out) adds its input
  tokens (the four input token types) under "not_broken_down", so a page can say what share of the
  input carried no breakdown.

`calls` counts the calls that added to a row. The CTE reads only the batch's new rows (the writer's
`rows`), so a re-sent event adds nothing, exactly as the daily rollups.
"""

from __future__ import annotations

from finops.ledger.tokens import INPUT_TOKEN_TYPES

CATEGORIES: tuple[str, ...] = ("system", "tools", "history", "retrieval", "tool_results", "user")
OTHER = "other"
NOT_BROKEN_DOWN = "not_broken_down"
MAX_ENTRY_TOKENS = 1_000_000_000  # no context window comes near; keeps the bigint sums far from overflow

_known = ", ".join(f"'{category}'" for category in CATEGORIES)
_input = " + ".join(f"r.{token_type}" for token_type in INPUT_TOKEN_TYPES)


def breakdown_select_sql(*, rows: str, breakdown: str) -> str:
    """SELECT (day, team_id, agent_id, category, tokens, calls) summed over `rows` (aliased r), where
    `breakdown` is the SQL of a row's breakdown as jsonb (or NULL)."""
    return f"""SELECT (r.ts AT TIME ZONE 'UTC')::date, r.team_id, r.agent_id,
        coalesce(part.category, '{NOT_BROKEN_DOWN}'), sum(coalesce(part.tokens, {_input}))::bigint, count(*)
    FROM {rows} AS r
    LEFT JOIN LATERAL (
        SELECT CASE WHEN entry.key IN ({_known}) THEN entry.key ELSE '{OTHER}' END AS category,
            sum(round(entry.value::numeric)) AS tokens
        FROM jsonb_each({breakdown}) AS entry  -- an object or NULL: the writer's validation sees to it
        -- (CASE: a text value must never reach the cast, whatever order the conditions run in)
        WHERE CASE WHEN jsonb_typeof(entry.value) = 'number'
            THEN entry.value::numeric BETWEEN 0 AND {MAX_ENTRY_TOKENS} ELSE false END
        GROUP BY 1
    ) AS part ON true
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""


_UPSERT = """ON CONFLICT (day, team_id, agent_id, category) DO UPDATE SET
        tokens = ledger_breakdownrollup.tokens + EXCLUDED.tokens,
        calls = ledger_breakdownrollup.calls + EXCLUDED.calls"""


def breakdown_rollup_cte(*, rows: str) -> str:
    """A CTE (followed by a comma) adding the writer's new stage rows `rows` to the breakdown rollup."""
    select = breakdown_select_sql(rows=rows, breakdown="convert_from(r.input_breakdown, 'UTF8')::jsonb")
    return f"""breakdown_rollups AS (
    INSERT INTO ledger_breakdownrollup (day, team_id, agent_id, category, tokens, calls)
    {select}
    {_UPSERT}
), """
