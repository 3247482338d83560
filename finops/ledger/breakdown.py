"""The input-token breakdown rollup: where each agent's input tokens go (SPEC.md's `input_breakdown`:
system, tools, history, retrieval, tool_results, user), per UTC day, kept by the bulk writer in the
same statement as the calls (ingest/writer.py includes `breakdown_rollup_cte`), so the Breakdown page
never reads the calls table. The rules and the SQL are owned here, beside the model they write.

What one call adds, per part of the prompt (`BreakdownRollup.<part>_tokens`, and 1 to `<part>_calls`):

- each of its breakdown's entries whose value is a number from 0 to MAX_ENTRY_TOKENS (rounded to a
  whole token, halves away from zero), under its key when the key is one of SPEC's six, else under
  "other" (several unknown keys of one call make one "other" entry); other entries (text, objects,
  absurd numbers) are left out;
- a call with no such entry (no breakdown, an empty one, or only entries left out) adds its input
  tokens (the four input token types) under "not_broken_down", so a page can say what share of the
  input carried no breakdown.

The writer works out each call's parts in Python while it builds the batch's stage rows
(`breakdown_stage_values`: the JSON is decoded there in a few microseconds, where parsing it again in
PostgreSQL and expanding it per row halved the writer's rate), and the CTE only sums those stage
columns over the batch's new rows, one rollup row per day and agent, so a re-sent event adds nothing,
exactly as the daily rollups. Migration 0006 backfilled the stored calls by the same rules in SQL.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import msgspec

CATEGORIES: tuple[str, ...] = ("system", "tools", "history", "retrieval", "tool_results", "user")
OTHER = "other"
NOT_BROKEN_DOWN = "not_broken_down"
MAX_ENTRY_TOKENS = 1_000_000_000  # no context window comes near; keeps the bigint sums far from overflow

PARTS: tuple[str, ...] = (*CATEGORIES, OTHER, NOT_BROKEN_DOWN)  # BreakdownRollup's <part>_tokens, _calls
ROLLUP_COLUMNS = ", ".join(f"{part}_tokens, {part}_calls" for part in PARTS)
# the writer's stage columns (int8, NULL: the call adds nothing there), in this order
STAGE_COLUMNS: tuple[tuple[str, str], ...] = tuple((f"breakdown_{part}", "int8") for part in PARTS)
_INDEX = {category: position for position, category in enumerate(CATEGORIES)}
_OTHER_INDEX = len(CATEGORIES)
_NOTHING = (None,) * (len(CATEGORIES) + 1)
_decode = msgspec.json.Decoder(float_hook=Decimal).decode  # exact, as PostgreSQL's numeric reads it
_WHOLE = Decimal(1)


def breakdown_stage_values(breakdown: bytes | msgspec.Raw | None, *, input_tokens: int) -> tuple:
    """One call's stage values (STAGE_COLUMNS' order) from its `input_breakdown` as received (JSON, an
    object: the writer's validation sees to it) and its input tokens."""
    if breakdown is None:
        return (*_NOTHING, input_tokens)
    try:
        entries = _decode(breakdown)
    except msgspec.DecodeError:
        return (*_NOTHING, input_tokens)
    parts: list[int | None] = [None] * (len(CATEGORIES) + 1)
    for key, value in entries.items() if isinstance(entries, dict) else ():
        kind = type(value)
        if (kind is not int and kind is not Decimal) or not 0 <= value <= MAX_ENTRY_TOKENS:
            continue  # text, true, an object, a negative or absurd count
        tokens = value if kind is int else int(value.quantize(_WHOLE, rounding=ROUND_HALF_UP))
        position = _INDEX.get(key, _OTHER_INDEX)
        parts[position] = tokens if parts[position] is None else parts[position] + tokens
    if parts == [None] * len(parts):
        return (*_NOTHING, input_tokens)
    return (*parts, None)


def breakdown_rollup_cte(*, rows: str) -> str:
    """A CTE (followed by a comma) adding the writer's new stage rows `rows` to the breakdown rollup."""
    sums = ", ".join(f"coalesce(sum({column}), 0), count({column})" for column, _ in STAGE_COLUMNS)
    add = ",\n        ".join(
        f"{part}_{what} = ledger_breakdownrollup.{part}_{what} + EXCLUDED.{part}_{what}"
        for part in PARTS
        for what in ("tokens", "calls")
    )
    return f"""breakdown_rollups AS (
    INSERT INTO ledger_breakdownrollup (day, team_id, agent_id, {ROLLUP_COLUMNS})
    SELECT (ts AT TIME ZONE 'UTC')::date, team_id, agent_id, {sums}
    FROM {rows} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, team_id, agent_id) DO UPDATE SET
        {add}
), """
