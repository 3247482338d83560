"""The guard check's critical section as one server-side function: its counter rows locked in
allowance-id order, used and reserved read after the lock, the estimate reserved unless a limit denies
it. Called as one statement, it holds the locks for no client round trip (see finops/guardrails/check.py)."""

from django.db import migrations

# Each statement of a plpgsql function takes a fresh snapshot: the reads after the locking PERFORM see
# every reservation committed by whoever held the locks before.
CREATE = """
CREATE OR REPLACE FUNCTION guardrails_check(
    p_ids bigint[], p_starts timestamptz[], p_enforced bigint[], p_now timestamptz, p_tokens bigint,
    p_usd numeric, p_reserve boolean, p_reservation uuid, p_team bigint, p_agent bigint, p_task text,
    p_expires timestamptz, p_lock_timeout text
) RETURNS TABLE (
    allowance_id bigint, used_tokens bigint, used_usd numeric, unpriced_calls integer,
    reserved_tokens numeric, reserved_usd numeric, reserved boolean
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    denied boolean;
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    INSERT INTO guardrails_allowanceusage AS u (allowance_id, window_start, used_tokens, used_usd, unpriced_calls, calls)
    SELECT w.id, w.start, 0, 0, 0, 0 FROM unnest(p_ids, p_starts) AS w (id, start)
    ON CONFLICT ON CONSTRAINT allowance_usage_window_unique DO NOTHING;
    PERFORM 1 FROM unnest(p_ids, p_starts) AS w (id, start)
        JOIN guardrails_allowanceusage AS u ON u.allowance_id = w.id AND u.window_start = w.start
        ORDER BY u.allowance_id FOR UPDATE OF u;
    SELECT coalesce(bool_or(
        (a.limit_usd IS NOT NULL AND CASE WHEN p_usd > 0
            THEN s.used_usd + s.held_usd + p_usd > a.limit_usd ELSE s.used_usd + s.held_usd >= a.limit_usd END)
        OR (a.limit_tokens IS NOT NULL AND CASE WHEN p_tokens > 0
            THEN s.used_tokens + s.held_tokens + p_tokens > a.limit_tokens
            ELSE s.used_tokens + s.held_tokens >= a.limit_tokens END)
    ), false) INTO denied
    FROM guardrails_state(p_ids, p_starts, p_now) AS s
    JOIN guardrails_allowance AS a ON a.id = s.id
    WHERE s.id = ANY (p_enforced);
    IF p_reserve AND NOT denied THEN
        INSERT INTO guardrails_reservation (reservation_id, allowance_id, team_id, agent_id, task_id,
            estimated_tokens, estimated_usd, created_at, expires_at)
        SELECT p_reservation, id, p_team, p_agent, p_task, p_tokens, p_usd, p_now, p_expires FROM unnest(p_ids) AS id;
    END IF;
    RETURN QUERY SELECT s.id, s.used_tokens, s.used_usd, s.unpriced_calls, s.held_tokens - CASE WHEN p_reserve AND NOT denied THEN p_tokens ELSE 0 END,
        s.held_usd - CASE WHEN p_reserve AND NOT denied THEN p_usd ELSE 0 END, p_reserve AND NOT denied
    FROM guardrails_state(p_ids, p_starts, p_now) AS s ORDER BY s.id;
END
$$;
"""
STATE = """
CREATE OR REPLACE FUNCTION guardrails_state(p_ids bigint[], p_starts timestamptz[], p_now timestamptz)
RETURNS TABLE (id bigint, used_tokens bigint, used_usd numeric, unpriced_calls integer, held_tokens numeric,
    held_usd numeric)
LANGUAGE sql VOLATILE AS $$
    SELECT u.allowance_id, u.used_tokens, u.used_usd, u.unpriced_calls, held.tokens, held.usd
    FROM unnest(p_ids, p_starts) AS w (id, start)
    JOIN guardrails_allowanceusage AS u ON u.allowance_id = w.id AND u.window_start = w.start
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(r.estimated_tokens), 0) AS tokens, coalesce(sum(r.estimated_usd), 0) AS usd
        FROM guardrails_reservation AS r
        WHERE r.allowance_id = u.allowance_id AND r.settled_at IS NULL AND r.expires_at > p_now
    ) AS held
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0001_initial")]

    operations = [
        migrations.RunSQL(
            STATE + CREATE,
            "DROP FUNCTION IF EXISTS guardrails_check; DROP FUNCTION IF EXISTS guardrails_state;",
        )
    ]
