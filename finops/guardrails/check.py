"""The guard check (SPEC.md, "Guardrails"): may this agent make its next LLM call?

It reads no calls table: the agent's kill switch against the task's aggregates (ledger_task, kept by the
writer), and the allowances against their counters (AllowanceUsage, kept by the writer) plus what their
open reservations hold (kept on the allowance's row by the database, models.py). The whole check is one
statement, the SQL function guardrails_guard (migration 0003): one round trip, and its locks held for no
client round trip. Racing checks on one allowance are serialised by a row lock on the allowance, taken
in id order, so their allowed estimates never add up past a limit. Python then says why, applying the same
rules to the numbers the function returns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from finops.guardrails.models import AllowanceAction
from finops.guardrails.services import task_kill
from finops.ledger.models import TaskStatus

ZERO = Decimal(0)

_GUARD_SQL = """
SELECT * FROM guardrails_guard(%(team)s, %(team_ids)s, %(agent)s, %(task)s, %(tokens)s, %(usd)s, %(now)s,
    %(zone)s, %(reservation)s, %(expires)s, %(lock_timeout)s, %(synchronous_commit)s)
"""

# The same check for the bearer of an API token, the token looked up in the same statement: a live
# token holding `scope` checks for its own team (an org-wide token: any team), as
# finops.accounts.selectors.writable_team_ids says; the function runs once per token row, so for no
# token (unknown, revoked, or without the scope) it never runs and nothing is reserved. Prepared on
# the server: an agent sends it before every call.
_GUARD_FOR_BEARER_SQL = """
SELECT token.id, token.last_used_at, guard.*
FROM accounts_apitoken AS token
CROSS JOIN LATERAL guardrails_guard(%(team)s,
    CASE WHEN token.team_id IS NULL THEN NULL ELSE ARRAY[token.team_id] END, %(agent)s, %(task)s,
    %(tokens)s, %(usd)s, %(now)s, %(zone)s, %(reservation)s, %(expires)s, %(lock_timeout)s,
    %(synchronous_commit)s) AS guard
WHERE token.digest = %(digest)s AND token.revoked_at IS NULL AND %(scope)s = ANY(token.scopes)
"""


class TeamNotFound(LookupError):
    """No team of that slug that the principal may check calls for."""


@dataclass
class AllowanceState:
    id: int
    scope: str
    window: str
    limit_tokens: int | None
    limit_usd: Decimal | None
    warn_at: float
    action: str
    window_start: datetime
    resets_at: datetime
    used_tokens: int = 0
    used_usd: Decimal = ZERO
    unpriced_calls: int = 0
    reserved_tokens: int = 0
    reserved_usd: Decimal = ZERO


@dataclass
class TaskState:
    task_id: str
    steps: int = 0
    cost_usd: Decimal = ZERO
    unpriced_calls: int = 0
    status: str | None = None
    max_steps: int | None = None
    max_cost_usd: Decimal | None = None


@dataclass
class GuardDecision:
    decision: str = "allow"  # allow | warn | deny
    reasons: list[str] = field(default_factory=list)
    reservation_id: uuid.UUID | None = None
    allowances: list[AllowanceState] = field(default_factory=list)
    task: TaskState | None = None

    def escalate(self, decision: str, reason: str) -> None:
        order = ("allow", "warn", "deny")
        if order.index(decision) > order.index(self.decision):
            self.decision = decision
        self.reasons.append(reason)


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}" if abs(amount) >= Decimal("0.01") or amount == 0 else f"${amount:.6f}"


def _passes(*, used, reserved, estimate, limit) -> bool:
    """Whether a call would take the allowance past its limit: with an estimate, when used + reserved +
    estimate is over it; without one (its cost is unknown), when nothing is left."""
    if estimate:
        return used + reserved + estimate > limit
    return used + reserved >= limit


def _allowance_reasons(
    state: AllowanceState, *, tokens: int, usd: Decimal, task: TaskState | None, last_call_at
) -> tuple[str, str] | None:
    """(decision, reason) for one allowance, or None when it has nothing to say."""
    label = f"allowance {state.id} ({state.scope}, {state.window})"
    parts, over, near = [], False, False
    if state.limit_usd is not None:
        over_usd = _passes(
            used=state.used_usd, reserved=state.reserved_usd, estimate=usd, limit=state.limit_usd
        )
        over = over or over_usd
        near = (
            near or state.used_usd + state.reserved_usd + usd >= Decimal(str(state.warn_at)) * state.limit_usd
        )
        text = f"{_usd(state.used_usd)} of {_usd(state.limit_usd)} used"
        if state.reserved_usd:
            text += f", {_usd(state.reserved_usd)} reserved"
        if state.unpriced_calls:
            text += f" (and {state.unpriced_calls} unpriced call(s) whose cost is unknown, not counted in $)"
        parts.append(text)
    if state.limit_tokens is not None:
        over_tokens = _passes(
            used=state.used_tokens, reserved=state.reserved_tokens, estimate=tokens, limit=state.limit_tokens
        )
        over = over or over_tokens
        near = (
            near or state.used_tokens + state.reserved_tokens + tokens >= state.warn_at * state.limit_tokens
        )
        text = f"{state.used_tokens:,} of {state.limit_tokens:,} tokens used"
        if state.reserved_tokens:
            text += f", {state.reserved_tokens:,} reserved"
        if state.unpriced_calls and state.limit_usd is None:
            text += f" (incl. {state.unpriced_calls} unpriced call(s))"
        parts.append(text)
    reason = f"{label}: {'; '.join(parts)}"
    if over:
        if state.action == AllowanceAction.DENY:
            return "deny", reason
        if state.action == AllowanceAction.THROTTLE:
            if not _running(task and task.task_id, last_call_at, state):
                return "deny", f"{reason}; throttled: only tasks already running in this window may continue"
            return "warn", f"{reason}; throttled, but task {task.task_id} is running and may finish"
        return "warn", f"{reason}; past its limit (action warn)"
    if near:
        return "warn", f"{reason}; past {state.warn_at:.0%} of its limit"
    if state.unpriced_calls and state.limit_usd is not None:
        return "allow", reason
    return None


def guard_check(
    *,
    team_slug: str,
    team_ids: set[int] | None,
    agent: str,
    task_id: str | None = None,
    estimated_tokens: int | None = None,
    estimated_cost_usd: Decimal | None = None,
    now: datetime | None = None,
) -> GuardDecision:
    """Decide, and reserve an allowed call's estimate, for a call of a team among `team_ids` (None: any
    team); else TeamNotFound. When the counters cannot be read (a database error, a lock held too long)
    the answer is FINOPS_GUARD_FAIL_MODE's, with a reason that says so."""
    try:
        return _guard_check(
            team_slug=team_slug,
            team_ids=team_ids,
            agent=agent,
            task_id=task_id,
            estimated_tokens=estimated_tokens or 0,
            estimated_usd=estimated_cost_usd or ZERO,
            now=now or timezone.now(),
        )
    except DatabaseError as error:
        return _unreachable(error)


def _unreachable(error: DatabaseError) -> GuardDecision:
    """FINOPS_GUARD_FAIL_MODE's answer, when the counters could not be read."""
    fail_open = settings.FINOPS_GUARD_FAIL_MODE == "open"
    what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return GuardDecision(
        decision="allow" if fail_open else "deny",
        reasons=[
            f"the guard could not reach its counters ({what}); "
            f"FINOPS_GUARD_FAIL_MODE={settings.FINOPS_GUARD_FAIL_MODE}: "
            f"{'allowed' if fail_open else 'denied'} without checking"
        ],
    )


def _guard_params(
    *, team_slug: str, agent: str, task_id: str | None, estimated_tokens: int, estimated_usd: Decimal, now
) -> dict:
    return {
        "team": team_slug,
        "agent": agent,
        "task": task_id,
        "tokens": estimated_tokens,
        "usd": estimated_usd,
        "now": now,
        "zone": settings.FINOPS_TIME_ZONE,
        "reservation": uuid.uuid4(),
        "expires": now + timedelta(seconds=settings.FINOPS_RESERVATION_TTL),
        "lock_timeout": f"{int(settings.FINOPS_GUARD_LOCK_TIMEOUT_MS)}ms",
        "synchronous_commit": "on" if settings.FINOPS_GUARD_SYNCHRONOUS_COMMIT else "off",
    }


def _guard_check(
    *,
    team_slug: str,
    team_ids: set[int] | None,
    agent: str,
    task_id: str | None,
    estimated_tokens: int,
    estimated_usd: Decimal,
    now: datetime,
) -> GuardDecision:
    params = _guard_params(
        team_slug=team_slug,
        agent=agent,
        task_id=task_id,
        estimated_tokens=estimated_tokens,
        estimated_usd=estimated_usd,
        now=now,
    )
    params["team_ids"] = None if team_ids is None else sorted(team_ids)
    with connection.cursor() as cursor:
        cursor.execute(_GUARD_SQL, params)
        rows = cursor.fetchall()
    if not rows:
        raise TeamNotFound(team_slug)
    return _decision(
        rows,
        team_slug=team_slug,
        agent=agent,
        task_id=task_id,
        estimated_tokens=estimated_tokens,
        estimated_usd=estimated_usd,
        reservation_id=params["reservation"],
    )


@dataclass(frozen=True)
class TokenGuard:
    """A guard check answered for a token's bearer (guard_check_for_token)."""

    token_id: int
    token_last_used_at: datetime | None
    decision: GuardDecision


def guard_check_for_token(
    *,
    token_digest: str,
    scope: str,
    team_slug: str,
    agent: str,
    task_id: str | None = None,
    estimated_tokens: int | None = None,
    estimated_cost_usd: Decimal | None = None,
    now: datetime | None = None,
) -> TokenGuard | None:
    """guard_check for the bearer of the token with this digest, the token read in the same statement:
    None when there is no answer to give here (no live token with `scope`, or no team of that slug
    for it, or the database could not be reached: the API's full path answers those, with its 401,
    403 or 404, or FINOPS_GUARD_FAIL_MODE's answer). Otherwise the same answers as guard_check."""
    estimated_tokens, estimated_usd = estimated_tokens or 0, estimated_cost_usd or ZERO
    params = _guard_params(
        team_slug=team_slug,
        agent=agent,
        task_id=task_id,
        estimated_tokens=estimated_tokens,
        estimated_usd=estimated_usd,
        now=now or timezone.now(),
    )
    params |= {"digest": token_digest, "scope": scope}
    try:
        connection.ensure_connection()
        connection.close_if_health_check_failed()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_GUARD_FOR_BEARER_SQL, params, prepare=True)
            rows = cursor.fetchall()
    except DatabaseError:
        # the token is unread, so no answer is given for it here: the full path reads it first (a
        # connection lost meanwhile is replaced there) and answers as it always has
        return None
    if not rows:
        return None
    token_id, last_used_at = rows[0][:2]
    rows = [row[2:] for row in rows]
    decision = _decision(
        rows,
        team_slug=team_slug,
        agent=agent,
        task_id=task_id,
        estimated_tokens=estimated_tokens,
        estimated_usd=estimated_usd,
        reservation_id=params["reservation"],
    )
    return TokenGuard(token_id, last_used_at, decision)


def _decision(
    rows: list[tuple],
    *,
    team_slug: str,
    agent: str,
    task_id: str | None,
    estimated_tokens: int,
    estimated_usd: Decimal,
    reservation_id: uuid.UUID,
) -> GuardDecision:
    """The answer, from guardrails_guard's rows (at least one: the team was found)."""
    result = GuardDecision()
    (team_id, _, max_steps, max_cost, steps, cost, unpriced, status, last_call_at) = rows[0][:9]
    kill = None
    if task_id is not None:
        result.task = task = TaskState(
            task_id=task_id,
            steps=steps or 0,
            cost_usd=cost if cost is not None else ZERO,
            unpriced_calls=unpriced or 0,
            status=status,
            max_steps=max_steps,
            max_cost_usd=max_cost,
        )
        kill = _kill_reason(task, agent=f"{team_slug}/{agent}", estimated_usd=estimated_usd)
        if kill:
            result.escalate("deny", kill)
    for row in rows:
        if row[9] is None:  # no allowance applies
            break
        (allowance_id, allowance_agent_id, window, limit_tokens, limit_usd, warn_at, action, start, end) = (
            row[9:18]
        )
        state = AllowanceState(
            id=allowance_id,
            scope=f"{team_slug}/{agent}" if allowance_agent_id else team_slug,
            window=window,
            limit_tokens=limit_tokens,
            limit_usd=limit_usd,
            warn_at=warn_at,
            action=action,
            window_start=start,
            resets_at=end,
            used_tokens=row[18],
            used_usd=row[19],
            unpriced_calls=row[20],
            reserved_tokens=int(row[21]),
            reserved_usd=row[22],
        )
        result.allowances.append(state)
        said = _allowance_reasons(
            state, tokens=estimated_tokens, usd=estimated_usd, task=result.task, last_call_at=last_call_at
        )
        if said:
            result.escalate(*said)
    if rows[0][23]:  # reserved (the same on every row)
        result.reservation_id = reservation_id
    if kill and status != TaskStatus.KILLED:
        task_kill(team_id=team_id, task_id=task_id)
        result.task.status = TaskStatus.KILLED
    return result


def _kill_reason(task: TaskState, *, agent: str, estimated_usd: Decimal) -> str | None:
    label = f"task {task.task_id} ({agent})"
    if task.status == TaskStatus.KILLED:
        return f"{label} was killed by its kill switch"
    if task.max_steps is not None and task.steps >= task.max_steps:
        return f"{label}: {task.steps} of {task.max_steps} steps (kill switch: max_steps)"
    if task.max_cost_usd is not None and (
        task.cost_usd >= task.max_cost_usd
        or (estimated_usd and task.cost_usd + estimated_usd > task.max_cost_usd)
    ):
        text = f"{label}: {_usd(task.cost_usd)} of {_usd(task.max_cost_usd)} spent"
        if estimated_usd:
            text += f", this call's estimate {_usd(estimated_usd)}"
        return text + " (kill switch: max_cost_usd)"
    return None


def _running(task_id: str | None, last_call_at, state: AllowanceState) -> bool:
    """Whether the task has made a call in the allowance's current window (throttle lets it finish)."""
    return task_id is not None and last_call_at is not None and last_call_at >= state.window_start
