"""The guard check in one round trip, at a cost that does not grow with the reservations outstanding.

- What the open reservations hold is kept on the allowance's row (`reserved_tokens`, `reserved_usd`,
  columns the model does not declare, so no `Allowance.save()` writes them back stale) by triggers on
  guardrails_reservation: a row counts from its insert until it is released (`released_at`) or deleted.
  The database keeps the sums in the transaction of every change to the rows, whoever makes it, so they
  cannot drift from the rows; before, each check summed every open reservation twice (O(reservations):
  ~0.7 ms at 2,000 outstanding, ~5 ms at 15,000).
- `guardrails_release` releases an allowance's settled and expired reservations; `guardrails_guard` is
  the whole check as one statement: the team (within the teams the principal may send for), agent and task,
  the allowances that apply locked in id order on their own rows (a writer's open transaction on the
  window counters no longer holds a check up), release, the windows from `date_trunc` in the
  organisation's zone (the writer's own expression), the kill switch and the limits, and the reservation.
"""

from importlib import import_module

from django.db import migrations, models

# undoing this migration puts back the functions of 0002 that it replaces
_0002_sql = import_module("finops.guardrails.migrations.0002_guardrails_check_function")

HELD = """
DROP FUNCTION guardrails_check;
DROP FUNCTION guardrails_state;
ALTER TABLE guardrails_allowance
    ADD COLUMN reserved_tokens numeric NOT NULL DEFAULT 0,
    ADD COLUMN reserved_usd numeric NOT NULL DEFAULT 0;
UPDATE guardrails_reservation SET released_at = now() WHERE settled_at IS NOT NULL OR expires_at <= now();
UPDATE guardrails_allowance AS a SET reserved_tokens = held.tokens, reserved_usd = held.usd
FROM (SELECT allowance_id, sum(estimated_tokens) AS tokens, sum(estimated_usd) AS usd
      FROM guardrails_reservation WHERE released_at IS NULL GROUP BY allowance_id) AS held
WHERE held.allowance_id = a.id;

CREATE FUNCTION guardrails_reservation_held() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.released_at IS NULL THEN
        UPDATE guardrails_allowance SET reserved_tokens = reserved_tokens - OLD.estimated_tokens,
            reserved_usd = reserved_usd - OLD.estimated_usd
        WHERE id = OLD.allowance_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.released_at IS NULL THEN
        UPDATE guardrails_allowance SET reserved_tokens = reserved_tokens + NEW.estimated_tokens,
            reserved_usd = reserved_usd + NEW.estimated_usd
        WHERE id = NEW.allowance_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER reservation_held_insert AFTER INSERT ON guardrails_reservation
    FOR EACH ROW WHEN (NEW.released_at IS NULL) EXECUTE FUNCTION guardrails_reservation_held();
CREATE TRIGGER reservation_held_update
    AFTER UPDATE OF released_at, allowance_id, estimated_tokens, estimated_usd ON guardrails_reservation
    FOR EACH ROW WHEN ((OLD.released_at IS NULL OR NEW.released_at IS NULL)
        AND (OLD.released_at, OLD.allowance_id, OLD.estimated_tokens, OLD.estimated_usd)
            IS DISTINCT FROM (NEW.released_at, NEW.allowance_id, NEW.estimated_tokens, NEW.estimated_usd))
    EXECUTE FUNCTION guardrails_reservation_held();
CREATE TRIGGER reservation_held_delete AFTER DELETE ON guardrails_reservation
    FOR EACH ROW WHEN (OLD.released_at IS NULL) EXECUTE FUNCTION guardrails_reservation_held();
"""

# The caller holds the allowances' row locks (taken in id order: the guard check, the purge), so a
# release races no check. The two statements each use one partial index of the held rows. plpgsql, not
# sql: its plans are kept for the session (a multi-statement sql function is planned at every call).
RELEASE = """
CREATE FUNCTION guardrails_release(p_ids bigint[], p_now timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE guardrails_reservation SET released_at = p_now
    WHERE allowance_id = ANY (p_ids) AND released_at IS NULL AND expires_at <= p_now;
    UPDATE guardrails_reservation SET released_at = p_now
    WHERE allowance_id = ANY (p_ids) AND released_at IS NULL AND settled_at IS NOT NULL;
END
$$;
"""

# One row per allowance that applies (the subject's columns on each), or one row with null allowance
# columns when none applies; no row when the team is not one of p_team_ids (null: any team) or does not
# exist. reserved_* are what was held before this check's own reservation. check.py says why in words,
# applying the same rules to these numbers (kill switch: _kill_reason; limits: _passes).
GUARD = """
CREATE FUNCTION guardrails_guard(
    p_team text, p_team_ids bigint[], p_agent text, p_task text, p_tokens bigint, p_usd numeric,
    p_now timestamptz, p_zone text, p_reservation uuid, p_expires timestamptz, p_lock_timeout text
) RETURNS TABLE (
    team_id bigint, agent_id bigint, max_steps integer, max_cost_usd numeric, steps integer,
    cost_usd numeric, task_unpriced_calls integer, status varchar, last_call_at timestamptz,
    allowance_id bigint, allowance_agent_id bigint, "window" varchar, limit_tokens bigint,
    limit_usd numeric, warn_at double precision, action varchar, window_start timestamptz,
    resets_at timestamptz, used_tokens bigint, used_usd numeric, unpriced_calls integer,
    reserved_tokens numeric, reserved_usd numeric, reserved boolean
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    s record;
    killed boolean;
    ids bigint[];
BEGIN
    SELECT team.id AS team_id, agent.id AS agent_id, agent.max_steps, agent.max_cost_usd, task.steps,
        task.cost_usd, task.unpriced_calls, task.status, task.last_call_at INTO s
    FROM accounts_team AS team
    LEFT JOIN ledger_agent AS agent ON agent.team_id = team.id AND agent.name = p_agent
    LEFT JOIN ledger_task AS task ON p_task IS NOT NULL AND task.team_id = team.id AND task.task_id = p_task
    WHERE team.slug = p_team AND (p_team_ids IS NULL OR team.id = ANY (p_team_ids));
    IF NOT FOUND THEN
        RETURN;
    END IF;
    killed := p_task IS NOT NULL AND (s.status = 'killed' OR coalesce(s.steps, 0) >= s.max_steps
        OR coalesce(s.cost_usd, 0) >= s.max_cost_usd
        OR (p_usd > 0 AND coalesce(s.cost_usd, 0) + p_usd > s.max_cost_usd)) IS TRUE;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    ids := ARRAY(
        SELECT a.id FROM guardrails_allowance AS a
        WHERE a.team_id = s.team_id AND (a.agent_id IS NULL OR a.agent_id = s.agent_id)
        ORDER BY a.id FOR NO KEY UPDATE
    );
    IF cardinality(ids) = 0 THEN
        RETURN QUERY SELECT s.team_id, s.agent_id, s.max_steps, s.max_cost_usd, s.steps, s.cost_usd,
            s.unpriced_calls, s.status, s.last_call_at, NULL::bigint, NULL::bigint, NULL::varchar,
            NULL::bigint, NULL::numeric, NULL::double precision, NULL::varchar, NULL::timestamptz,
            NULL::timestamptz, NULL::bigint, NULL::numeric, NULL::integer, NULL::numeric, NULL::numeric, false;
        RETURN;
    END IF;
    PERFORM guardrails_release(ids, p_now);
    -- a new statement, a new snapshot: the locked rows and every release before them are seen
    RETURN QUERY
    WITH state AS MATERIALIZED (
        SELECT a.id, a.agent_id, a."window", a.limit_tokens, a.limit_usd, a.warn_at, a.action,
            -- the next window's start, by the calendar in the zone (date_add(ts, interval, zone) is
            -- PostgreSQL 16's; this is the same on 12 to 15)
            w.start, ((w.start AT TIME ZONE p_zone) + ('1 ' || a."window")::interval) AT TIME ZONE p_zone
                AS resets_at,
            coalesce(u.used_tokens, 0) AS used_tokens, coalesce(u.used_usd, 0) AS used_usd,
            coalesce(u.unpriced_calls, 0) AS unpriced_calls, a.reserved_tokens, a.reserved_usd,
            -- enforced: deny, and throttle for a task that has made no call in this window yet
            (a.action = 'deny' OR (a.action = 'throttle'
                AND NOT (p_task IS NOT NULL AND s.last_call_at IS NOT NULL AND s.last_call_at >= w.start)))
            AND (
                (a.limit_usd IS NOT NULL AND CASE WHEN p_usd > 0
                    THEN coalesce(u.used_usd, 0) + a.reserved_usd + p_usd > a.limit_usd
                    ELSE coalesce(u.used_usd, 0) + a.reserved_usd >= a.limit_usd END)
                OR (a.limit_tokens IS NOT NULL AND CASE WHEN p_tokens > 0
                    THEN coalesce(u.used_tokens, 0) + a.reserved_tokens + p_tokens > a.limit_tokens
                    ELSE coalesce(u.used_tokens, 0) + a.reserved_tokens >= a.limit_tokens END)
            ) AS denies
        FROM guardrails_allowance AS a
        CROSS JOIN LATERAL (SELECT date_trunc(a."window", p_now, p_zone) AS start) AS w
        LEFT JOIN guardrails_allowanceusage AS u ON u.allowance_id = a.id AND u.window_start = w.start
        WHERE a.id = ANY (ids)
    ), decision AS (
        SELECT (p_tokens > 0 OR p_usd > 0) AND NOT killed AND NOT bool_or(state.denies) AS reserve FROM state
    ), held AS (
        INSERT INTO guardrails_reservation (reservation_id, allowance_id, team_id, agent_id, task_id,
            estimated_tokens, estimated_usd, created_at, expires_at)
        SELECT p_reservation, state.id, s.team_id, s.agent_id, p_task, p_tokens, p_usd, p_now, p_expires
        FROM state, decision WHERE decision.reserve
    )
    SELECT s.team_id, s.agent_id, s.max_steps, s.max_cost_usd, s.steps, s.cost_usd, s.unpriced_calls,
        s.status, s.last_call_at, state.id, state.agent_id, state."window", state.limit_tokens,
        state.limit_usd, state.warn_at, state.action, state.start, state.resets_at, state.used_tokens,
        state.used_usd, state.unpriced_calls, state.reserved_tokens, state.reserved_usd, decision.reserve
    FROM state, decision ORDER BY state.id;
END
$$;
"""

UNDO = """
DROP FUNCTION IF EXISTS guardrails_guard;
DROP FUNCTION IF EXISTS guardrails_release;
DROP TRIGGER IF EXISTS reservation_held_insert ON guardrails_reservation;
DROP TRIGGER IF EXISTS reservation_held_update ON guardrails_reservation;
DROP TRIGGER IF EXISTS reservation_held_delete ON guardrails_reservation;
DROP FUNCTION IF EXISTS guardrails_reservation_held;
ALTER TABLE guardrails_allowance DROP COLUMN IF EXISTS reserved_tokens, DROP COLUMN IF EXISTS reserved_usd;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_alter_apitoken_scopes"),
        ("guardrails", "0002_guardrails_check_function"),
        ("ledger", "0004_alter_task_status"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="reservation", name="reservation_open_idx"),
        migrations.AddField(
            model_name="reservation",
            name="released_at",
            field=models.DateTimeField(
                blank=True, help_text="when it stopped counting in its allowance's reserved totals", null=True
            ),
        ),
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("released_at__isnull", True)),
                fields=["allowance", "expires_at"],
                name="reservation_held_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="reservation",
            index=models.Index(
                condition=models.Q(("released_at__isnull", True), ("settled_at__isnull", False)),
                fields=["allowance"],
                name="reservation_settled_held_idx",
            ),
        ),
        migrations.RunSQL(HELD + RELEASE + GUARD, UNDO + _0002_sql.STATE + _0002_sql.CREATE),
    ]
