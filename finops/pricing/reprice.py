"""Re-pricing the ledger after a price override or a negotiated discount changed (issue 10, point 5).

A run covers *scopes* (provider or every provider, model or every model, a time range), widened to
whole UTC days. For each month partition of ledger_call it touches:

- an **open** month: one set-based statement prices every call of the targeted (provider, model, day)s
  again from a small rates table (per provider, model, batch flag, UTC day, time range within the day
  and input tier: six rate numerators over one denominator, in picodollars per token, the batch and
  negotiated discounts folded in), writes the calls whose cost changed, sets the day's daily rollups
  to the new sums (per token type too), and moves the changed calls' deltas into tasks (their per-day
  task rollups follow by ledger_task's triggers), the minute rollup and the per-day prompt-version
  rollup;
- a **closed** month: its calls and rollups are not touched; the same prices are computed, and what
  they differ from the stored costs (less the re-pricing adjustments already made for that day) becomes
  bills Adjustment rows, shown in the first open month after it.

The price of each call is exactly PriceBook.price's (finops/pricing/services.py, the reference):
Σ tokens × rate / 10⁶ × (1 − batch discount) × (1 − negotiated discount), rounded half-even to 1e-12
USD per token type, computed here in exact integer arithmetic on numeric. Running a run again changes
nothing: the calls already carry those prices, and the adjustments already hold the difference.

Allowance counters (guardrails) are left as they are: they are the guard's record of what it admitted
in each window, at the prices of the moment; a past window is over, and moving the current one under
an agent mid-window would turn an answer already given (allow, deny) into another without a call.
The next window counts at the new prices.
"""

from __future__ import annotations

import time as clock
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from math import lcm

from django.db import connection, transaction
from django.utils import timezone
from genai_prices.types import TieredPrices, TimeOfDateConstraint

from finops.bills.models import Adjustment, AdjustmentReason
from finops.bills.months import month_is_closed, month_next, months_closed
from finops.ledger.rollups import recent_cutoff
from finops.ledger.services import REPRICE_LOCK
from finops.ledger.tokens import INPUT_TOKEN_TYPES, TOKEN_TYPES
from finops.pricing.catalog import catalog_model
from finops.pricing.models import RepriceDelta, RepriceRun, RepriceStatus
from finops.pricing.services import BATCH_DISCOUNT, DEFAULT_BATCH_DISCOUNT, PriceBook

PICO = "0.000000000001"
WORK_MEM = "256MB"
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class RepriceScope:
    """Calls of `provider` (None: every provider) and `model` (None: every model of it), lower-case
    compared as the price book matches them, with timestamps in [start, end) (end None: no end)."""

    provider: str | None
    model: str | None
    start: datetime
    end: datetime | None = None

    def as_json(self) -> dict:
        return {
            "provider": self.provider,
            "model": self.model,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict) -> RepriceScope:
        return cls(
            provider=data.get("provider"),
            model=data.get("model"),
            start=datetime.fromisoformat(data["start"]),
            end=None if data.get("end") is None else datetime.fromisoformat(data["end"]),
        )

    def covers(self, *, provider: str, model: str, day: date) -> bool:
        if self.provider is not None and self.provider.lower() != provider.lower():
            return False
        if self.model is not None and self.model.lower() != model.lower():
            return False
        first = self.start.astimezone(UTC).date()
        if day < first:
            return False
        if self.end is None:
            return True
        end = self.end.astimezone(UTC)
        last = end.date() if end.timetz() != time(0, tzinfo=UTC) else end.date() - ONE_DAY
        return day <= last


# --- the rates table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateRow:
    provider: str
    model: str
    batch: bool
    day: date
    valid_from: datetime
    valid_to: datetime
    input_above: int  # the row applies to calls whose total input is > input_above …
    input_upto: int | None  # … and <= input_upto (None: no bound)
    numerators: tuple[int, ...] | None  # per token type, picodollars per token × denominator; None: unpriced
    denominator: int


def _utc_time(value: time) -> time:
    if value.tzinfo is None:
        return value
    return datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()


def _change_points(book: PriceBook, provider: str, model: str, start: datetime, end: datetime) -> set:
    """The instants inside [start, end) where this model's rates or discounts may change."""
    points = {override.effective_from for override in book.overrides_for(provider, model)}
    for discount in book.discounts_for(provider):
        points.add(discount.effective_from)
        if discount.effective_to:
            points.add(discount.effective_to)
    entry = catalog_model(provider.lower(), model)
    if entry is not None and isinstance(entry.info.prices, list):
        for conditional in entry.info.prices:  # a start date changes prices at a UTC midnight: a day edge
            if isinstance(conditional.constraint, TimeOfDateConstraint):
                for moment in (conditional.constraint.start_time, conditional.constraint.end_time):
                    points.add(datetime.combine(start.date(), _utc_time(moment), tzinfo=UTC))
    return {point for point in points if start < point < end}


def _tier_thresholds(book: PriceBook, provider: str, model: str, at: datetime) -> tuple[int, ...]:
    if book.override_at(provider, model, at) is not None:
        return ()
    entry = catalog_model(provider.lower(), model)
    if entry is None:
        return ()
    price = entry.info.get_prices(at)
    starts = {
        tier.start
        for value in vars(price).values()
        if isinstance(value, TieredPrices)
        for tier in value.tiers
    }
    return tuple(sorted(starts))


def _multiplier(book: PriceBook, provider: str, at: datetime, batch: bool) -> Decimal:
    batch_discount = BATCH_DISCOUNT.get(provider.lower(), DEFAULT_BATCH_DISCOUNT) if batch else Decimal(0)
    return (1 - batch_discount) * (1 - book.discount_percent(provider, at) / 100)


def day_rate_rows(book: PriceBook, *, provider: str, model: str, day: date) -> list[RateRow]:
    """The rates of one model's UTC day, as PriceBook.price would apply them: a row per stretch of the
    day with constant rates and discounts, batch flag and input tier."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    end = start + ONE_DAY
    edges = [start, *sorted(_change_points(book, provider, model, start, end)), end]
    rows = []
    for valid_from, valid_to in zip(edges, edges[1:], strict=False):
        thresholds = _tier_thresholds(book, provider, model, valid_from)
        bounds = list(zip((-1, *thresholds), (*thresholds, None), strict=True))
        for batch in (False, True):
            multiplier = Fraction(_multiplier(book, provider, valid_from, batch))
            for input_above, input_upto in bounds:
                found = book.rates(provider, model, valid_from, input_above + 1)
                numerators, denominator = None, 1
                if found is not None:
                    rates, _ = found
                    exact = [
                        Fraction(rates[token_type]) * 1_000_000 * multiplier for token_type in TOKEN_TYPES
                    ]
                    denominator = lcm(*(value.denominator for value in exact))
                    numerators = tuple(int(value * denominator) for value in exact)
                rows.append(
                    RateRow(
                        provider, model, batch, day, valid_from, valid_to, input_above, input_upto,
                        numerators, denominator,
                    )
                )  # fmt: skip
    return rows


_TYPES = range(len(TOKEN_TYPES))
INT8_MAX = 2**63 - 1
# per token type: n (the numerator, bigint), s (the most tokens whose product with n fits in bigint: past
# it, or when n or den does not fit, the numeric columns m and dm are used), then the denominator
_RATES_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS reprice_rates (provider text, model text, batch bool, day date, "
    "valid_from timestamptz, valid_to timestamptz, input_above bigint, input_upto bigint, "
    + ", ".join(f"n{i} bigint, s{i} bigint, m{i} numeric" for i in _TYPES)
    + ", den bigint, dm numeric) ON COMMIT DELETE ROWS"
)
_RATES_INSERT = (
    "INSERT INTO reprice_rates SELECT * FROM unnest(%s::text[], %s::text[], %s::bool[], %s::date[], "
    "%s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::bigint[], "
    + ", ".join("%s::bigint[], %s::bigint[], %s::numeric[]" for _ in _TYPES)
    + ", %s::bigint[], %s::numeric[])"
)


def _rate_values(row: RateRow) -> list:
    values = [
        row.provider, row.model, row.batch, row.day, row.valid_from, row.valid_to, row.input_above,
        row.input_upto,
    ]  # fmt: skip
    if row.numerators is None:
        return [*values, *([None] * (3 * len(TOKEN_TYPES))), None, None]
    small = row.denominator <= INT8_MAX // 2
    for numerator in row.numerators:
        fits = small and numerator <= INT8_MAX
        values += [
            numerator if fits else None,
            (INT8_MAX // max(numerator, 1)) if fits else 0,
            numerator,
        ]
    return [*values, row.denominator if small else None, row.denominator]


def _rates_load(cursor, rows: list[RateRow]) -> None:
    cursor.execute(_RATES_DDL)
    cursor.execute("TRUNCATE reprice_rates")
    columns: list[list] = [[] for _ in range(8 + 3 * len(TOKEN_TYPES) + 2)]
    for row in rows:
        for column, value in zip(columns, _rate_values(row), strict=True):
            column.append(value)
    cursor.execute(_RATES_INSERT, columns)
    cursor.execute("ANALYZE reprice_rates")


# --- the statements --------------------------------------------------------------------------------

_total_input = " + ".join(f"c.{token_type}" for token_type in INPUT_TOKEN_TYPES)


def _half_even(product: str, denominator: str) -> str:
    quotient = f"({product} / {denominator})"
    twice_remainder = f"(2 * ({product} %% {denominator}))"  # %%: the statement takes parameters
    return (
        f"{quotient} + CASE WHEN {twice_remainder} > {denominator} OR ({twice_remainder} = {denominator} "
        f"AND {quotient} %% 2 = 1) THEN 1 ELSE 0 END"
    )


def _type_cost(position: int, token_type: str) -> str:
    """Picodollars of one token type: tokens × numerator ÷ denominator, rounded half-even (as Decimal's
    quantize does), exact: in bigint while the product fits (always, for real prices), else numeric."""
    tokens = f"c.{token_type}"
    product = f"({tokens} * r.n{position})"
    wide = f"({tokens}::numeric * r.m{position})"
    wide_quotient = f"div({wide}, r.dm)"
    wide_twice_remainder = f"(2 * mod({wide}, r.dm))"
    return (
        f"CASE WHEN {tokens} = 0 THEN 0::bigint "
        f"WHEN {tokens} <= r.s{position} THEN CASE WHEN r.den = 1 THEN {product} "
        f"ELSE {_half_even(product, 'r.den')} END "
        f"ELSE ({wide_quotient} + CASE WHEN {wide_twice_remainder} > r.dm OR ({wide_twice_remainder} = r.dm "
        f"AND mod({wide_quotient}, 2) = 1) THEN 1 ELSE 0 END)::bigint END"
    )


def _priced_ctes(partition: str) -> str:
    costs = ",\n        ".join(
        f"{_type_cost(position, token_type)} AS p{position}"
        for position, token_type in enumerate(TOKEN_TYPES)
    )
    total = " + ".join(f"p{position}" for position in range(len(TOKEN_TYPES)))
    return f"""computed AS (
    SELECT c.ctid AS row_id, c.timestamp AS ts, c.team_id, c.agent_id, c.task_id, c.prompt_version,
        c.provider, c.model, r.day, (c.cost_usd * 1000000000000)::bigint AS before, r.dm IS NULL AS unpriced,
        {costs}
    FROM {partition} AS c JOIN reprice_rates AS r
        ON r.provider = c.provider AND r.model = c.model AND r.batch = c.batch
        AND r.day = (c.timestamp AT TIME ZONE 'UTC')::date
        AND c.timestamp >= r.valid_from AND c.timestamp < r.valid_to
        AND {_total_input} > r.input_above AND (r.input_upto IS NULL OR {_total_input} <= r.input_upto)
    WHERE c.timestamp >= %(start)s AND c.timestamp < %(end)s
), priced AS MATERIALIZED (
    SELECT *, CASE WHEN unpriced THEN NULL ELSE {total} END AS after FROM computed
)"""


_type_sums = ",\n        ".join(
    f"coalesce(sum(p{position}) FILTER (WHERE NOT unpriced), 0) * {PICO} AS cost_{token_type}_usd"
    for position, token_type in enumerate(TOKEN_TYPES)
)
_ROLLUP_COLUMNS = (
    "cost_usd",
    "unpriced_calls",
    "cost_not_in_task_usd",
    *(f"cost_{token_type}_usd" for token_type in TOKEN_TYPES),
)
_rollup_moves = ", ".join(f"{column} = d.{column} + (g.{column} - s.{column})" for column in _ROLLUP_COLUMNS)

# One pass over the priced calls sums them for every rollup at once (GROUPING SETS), instead of one
# scan of them per rollup: at 10M calls they are a tuplestore of gigabytes. The sets, by name:
_GROUPED = ("day", "team_id", "agent_id", "provider", "model", "minute", "prompt_version")
_SETS = {
    "daily": ("day", "team_id", "agent_id", "provider", "model"),  # all the day's calls: absolute sums
    # the rest: the changed calls' deltas (tasks apart, below: a set of a million tasks would make every
    # other set's wide aggregate state that many times over)
    "minutes": ("minute", "team_id", "agent_id"),
    "versions": ("day", "agent_id", "prompt_version"),
    "deltas": ("team_id", "provider", "model", "day"),
    "totals": (),
}


def _set_mask(name: str) -> int:
    """GROUPING(…_GROUPED)'s value for a set: a bit (first argument highest) per column not grouped."""
    return sum(
        1 << (len(_GROUPED) - 1 - index) for index, column in enumerate(_GROUPED) if column not in _SETS[name]
    )


def _open_month_sql(partition: str) -> str:
    grouping_sets = ", ".join(f"({', '.join(columns)})" for columns in _SETS.values())
    mask = {name: _set_mask(name) for name in _SETS}
    return f"""
WITH {_priced_ctes(partition)}, updated AS (
    UPDATE {partition} AS c SET cost_usd = p.after * {PICO} FROM priced AS p
    WHERE c.ctid = p.row_id AND p.after IS DISTINCT FROM p.before
    RETURNING 1
), marked AS NOT MATERIALIZED (
    SELECT *, after IS DISTINCT FROM before AS changed, coalesce(after, 0) - coalesce(before, 0) AS delta,
        (before IS NULL)::int - (after IS NULL)::int AS newly_priced,
        CASE WHEN ts >= %(recent_from)s THEN date_trunc('minute', ts) END AS minute
    FROM priced
), groups AS MATERIALIZED (
    SELECT GROUPING({", ".join(_GROUPED)}) AS grouping_set, {", ".join(_GROUPED)},
        coalesce(sum(after), 0) * {PICO} AS cost_usd, count(*) FILTER (WHERE after IS NULL) AS unpriced_calls,
        coalesce(sum(after) FILTER (WHERE task_id IS NULL), 0) * {PICO} AS cost_not_in_task_usd,
        {_type_sums},
        coalesce(sum(delta) FILTER (WHERE changed), 0) * {PICO} AS delta,
        coalesce(sum(newly_priced) FILTER (WHERE changed), 0) AS newly_priced,
        coalesce(sum(delta) FILTER (WHERE changed AND task_id IS NOT NULL), 0) * {PICO} AS delta_in_tasks,
        coalesce(sum(newly_priced) FILTER (WHERE changed AND task_id IS NOT NULL), 0) AS newly_priced_in_tasks,
        coalesce(sum(before) FILTER (WHERE changed), 0) * {PICO} AS before_usd,
        coalesce(sum(after) FILTER (WHERE changed), 0) * {PICO} AS after_usd,
        count(*) FILTER (WHERE changed) AS calls_changed, count(*) AS calls,
        count(*) FILTER (WHERE changed AND newly_priced > 0) AS calls_newly_priced,
        count(*) FILTER (WHERE changed AND newly_priced < 0) AS calls_newly_unpriced
    FROM marked GROUP BY GROUPING SETS ({grouping_sets})
), rollups_before AS MATERIALIZED (
    -- the day rollups as this statement's snapshot has them: consistent with the calls it priced
    SELECT d.* FROM ledger_dailyrollup AS d
    JOIN (SELECT DISTINCT provider, model, day FROM reprice_rates) AS t
        ON t.provider = d.provider AND t.model = d.model AND t.day = d.day
), daily AS (
    -- moved by (new sums − the snapshot's), not set to the new sums: a writer's calls committed since
    -- the snapshot (not priced here) keep what they added, with no lock held while the month is priced
    UPDATE ledger_dailyrollup AS d SET {_rollup_moves}
    FROM groups AS g JOIN rollups_before AS s ON s.day = g.day AND s.team_id = g.team_id
        AND s.agent_id = g.agent_id AND s.provider = g.provider AND s.model = g.model
    WHERE g.grouping_set = {mask["daily"]} AND d.id = s.id
        AND ({", ".join(f"s.{column}" for column in _ROLLUP_COLUMNS)})
        IS DISTINCT FROM ({", ".join(f"g.{column}" for column in _ROLLUP_COLUMNS)})
    RETURNING 1
), tasks AS (
    UPDATE ledger_task AS t SET cost_usd = t.cost_usd + g.delta, unpriced_calls = t.unpriced_calls - g.newly_priced
    FROM (
        SELECT team_id, task_id, sum(delta) * {PICO} AS delta, sum(newly_priced) AS newly_priced
        FROM marked WHERE changed AND task_id IS NOT NULL GROUP BY 1, 2
    ) AS g
    WHERE t.team_id = g.team_id AND t.task_id = g.task_id
    RETURNING 1
), recent AS (
    UPDATE ledger_recentrollup AS m SET cost_usd = m.cost_usd + g.delta,
        unpriced_calls = m.unpriced_calls - g.newly_priced
    FROM groups AS g
    WHERE g.grouping_set = {mask["minutes"]} AND g.calls_changed > 0 AND m.minute = g.minute
        AND m.team_id = g.team_id AND m.agent_id = g.agent_id
    RETURNING 1
), versions AS (
    UPDATE ledger_promptversiondailyrollup AS v SET cost_usd = v.cost_usd + g.delta,
        unpriced_calls = v.unpriced_calls - g.newly_priced,
        cost_in_tasks_usd = v.cost_in_tasks_usd + g.delta_in_tasks,
        unpriced_calls_in_tasks = v.unpriced_calls_in_tasks - g.newly_priced_in_tasks
    FROM groups AS g
    WHERE g.grouping_set = {mask["versions"]} AND g.calls_changed > 0 AND v.day = g.day
        AND v.agent_id = g.agent_id AND v.prompt_version = g.prompt_version
    RETURNING 1
), deltas AS (
    INSERT INTO {RepriceDelta._meta.db_table} (run_id, team_id, provider, model, day, adjusted, before_usd,
        after_usd, calls)
    SELECT %(run_id)s, team_id, provider, model, day, false, before_usd, after_usd, calls_changed
    FROM groups WHERE grouping_set = {mask["deltas"]} AND calls_changed > 0
    RETURNING 1
)
SELECT g.calls, (SELECT count(*) FROM updated), g.calls_newly_priced, g.calls_newly_unpriced,
    (SELECT count(*) FROM daily), (SELECT count(*) FROM tasks), (SELECT count(*) FROM recent),
    (SELECT count(*) FROM versions), (SELECT count(*) FROM deltas)
FROM groups AS g WHERE g.grouping_set = {mask["totals"]}
"""


def _closed_month_sql(partition: str) -> str:
    return f"""
WITH {_priced_ctes(partition)}
SELECT team_id, agent_id, provider, model, day,
    coalesce(sum(before) FILTER (WHERE after IS NOT NULL), 0) * {PICO}, coalesce(sum(after), 0) * {PICO},
    count(*) FILTER (WHERE after IS NOT NULL AND after IS DISTINCT FROM before), count(*)
FROM priced GROUP BY 1, 2, 3, 4, 5 ORDER BY 5, 1, 2, 3, 4
"""


# --- a run -----------------------------------------------------------------------------------------


@dataclass
class MonthResult:
    month: date
    closed: bool
    calls_scanned: int = 0
    calls_repriced: int = 0
    calls_newly_priced: int = 0
    calls_newly_unpriced: int = 0
    adjustments_usd: Decimal = Decimal(0)


def call_partition_months() -> list[date]:
    """The months ledger_call has a partition for, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT child.relname FROM pg_inherits JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid "
            "JOIN pg_class AS parent ON parent.oid = pg_inherits.inhparent WHERE parent.relname = 'ledger_call'"
        )
        names = [name for (name,) in cursor.fetchall()]
    months = []
    for name in names:
        try:
            months.append(datetime.strptime(name, "ledger_call_p%Y_%m").date())
        except ValueError:
            continue  # a partition not made by call_partitions_ensure: not ours to walk
    return sorted(months)


def _month_targets(*, month: date, scopes: list[RepriceScope]) -> list[tuple[str, str, date]]:
    """The (provider, model, UTC day)s of the month that have calls (daily rollups) and a scope covers."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT provider, model, day FROM ledger_dailyrollup WHERE day >= %s AND day < %s",
            [month, month_next(month)],
        )
        found = cursor.fetchall()
    return sorted(
        (provider, model, day)
        for provider, model, day in found
        if any(scope.covers(provider=provider, model=model, day=day) for scope in scopes)
    )


def _first_open_after(month: date, closed: set[date]) -> date:
    shown_in = month_next(month)
    while shown_in in closed:
        shown_in = month_next(shown_in)
    return shown_in


def _reprice_adjustments_settle(
    *, run: RepriceRun, month: date, targets: list[tuple[str, str, date]], closed: set[date]
) -> None:
    """An open month's calls now carry today's prices: re-pricing adjustments made for it while it was
    closed are settled, for the (provider, model, day)s just re-priced. Rows shown in an open month
    go; rows shown in a closed month stay, frozen with it, and are reversed here, in this month, so a
    reopened month's price change is charged once."""
    covered = set(targets)
    rows = [
        row
        for row in Adjustment.objects.filter(reason=AdjustmentReason.REPRICE, month=month)
        if (row.provider, row.model, row.day) in covered
    ]
    # the reversals already shown in this month count: each frozen row is reversed once
    Adjustment.objects.filter(
        pk__in=[row.pk for row in rows if row.shown_in not in closed and row.shown_in != month]
    ).delete()
    owed: dict[tuple, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row.shown_in in closed or row.shown_in == month:
            owed[row.team_id, row.agent_id, row.provider, row.model, row.day] -= row.usd
    Adjustment.objects.bulk_create(
        Adjustment(
            month=month, shown_in=month, reason=AdjustmentReason.REPRICE, team_id=team_id, agent_id=agent_id,
            provider=provider, model=model, day=day, usd=usd,
            note=f"reprice run {run.pk}: reverses what a closed month charged before this month was reopened",
        )
        for (team_id, agent_id, provider, model, day), usd in owed.items()
        if usd
    )  # fmt: skip


def _month_reprice(
    *, run: RepriceRun, book: PriceBook, month: date, scopes: list[RepriceScope], closed: set[date]
) -> MonthResult | None:
    targets = _month_targets(month=month, scopes=scopes)
    if not targets:
        return None
    rows = [
        rate
        for provider, model, day in targets
        for rate in day_rate_rows(book, provider=provider, model=model, day=day)
    ]
    days = sorted({day for _, _, day in targets})
    params = {
        "start": datetime.combine(days[0], time(0), tzinfo=UTC),
        "end": datetime.combine(days[-1] + ONE_DAY, time(0), tzinfo=UTC),
        "recent_from": recent_cutoff(),
        "run_id": run.pk,
    }
    partition = f"ledger_call_p{month:%Y_%m}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [REPRICE_LOCK])
        # asked again in the month's transaction: a month closed since the run started is not re-priced
        result = MonthResult(month=month, closed=month_is_closed(month))
        # the sums per day, minute and prompt version of a month's calls in memory, not spilled to disk
        cursor.execute("SET LOCAL work_mem = %s", [WORK_MEM])
        _rates_load(cursor, rows)
        if not result.closed:
            cursor.execute(_open_month_sql(partition), params)
            counts = cursor.fetchone()
            result.calls_scanned, result.calls_repriced, result.calls_newly_priced = counts[:3]
            result.calls_newly_unpriced = counts[3]
            _reprice_adjustments_settle(run=run, month=month, targets=targets, closed=months_closed())
            _run_month_record(run, result)
            return result
        cursor.execute(_closed_month_sql(partition), params)
        groups = cursor.fetchall()
        result.calls_scanned = sum(group[8] for group in groups)
        made = defaultdict(Decimal)
        for team_id, agent_id, provider, model, day, usd in Adjustment.objects.filter(
            reason=AdjustmentReason.REPRICE, month=month
        ).values_list("team_id", "agent_id", "provider", "model", "day", "usd"):
            made[team_id, agent_id, provider, model, day] += usd
        shown_in = _first_open_after(month, closed)
        adjustments, deltas = [], []
        for team_id, agent_id, provider, model, day, before, after, changed, _ in groups:
            before += made[team_id, agent_id, provider, model, day]
            difference = after - before
            if not difference:
                continue
            adjustments.append(
                Adjustment(
                    month=month, shown_in=shown_in, reason=AdjustmentReason.REPRICE, team_id=team_id,
                    agent_id=agent_id, provider=provider, model=model, day=day, usd=difference,
                    note=f"reprice run {run.pk}: {run.trigger}"[:512],
                )
            )  # fmt: skip
            deltas.append((team_id, provider, model, day, before, after, changed))
            result.calls_repriced += changed
            result.adjustments_usd += difference
        Adjustment.objects.bulk_create(adjustments)
        merged: dict[tuple, list] = {}
        for team_id, provider, model, day, before, after, changed in deltas:  # agents summed per team
            entry = merged.setdefault((team_id, provider, model, day), [Decimal(0), Decimal(0), 0])
            entry[0] += before
            entry[1] += after
            entry[2] += changed
        RepriceDelta.objects.bulk_create(
            RepriceDelta(
                run=run, team_id=team_id, provider=provider, model=model, day=day, adjusted=True,
                before_usd=before, after_usd=after, calls=changed,
            )
            for (team_id, provider, model, day), (before, after, changed) in merged.items()
        )  # fmt: skip
        _run_month_record(run, result)
    return result


def _run_month_record(run: RepriceRun, result: MonthResult) -> None:
    """Add a month's figures to its run, in the month's transaction: a run retried after a failure
    skips the months it has done and keeps their before/after."""
    (run.months_adjusted if result.closed else run.months_repriced).append(f"{result.month:%Y-%m}")
    run.calls_scanned += result.calls_scanned
    run.calls_repriced += result.calls_repriced
    run.calls_newly_priced += result.calls_newly_priced
    run.calls_newly_unpriced += result.calls_newly_unpriced
    run.adjustments_usd += result.adjustments_usd
    run.save(update_fields=[*_RUN_FIGURES, "months_repriced", "months_adjusted"])


_RUN_FIGURES = (
    "calls_scanned",
    "calls_repriced",
    "calls_newly_priced",
    "calls_newly_unpriced",
    "adjustments_usd",
)


def reprice_run_execute(*, run_id: int) -> RepriceRun:
    """Carry out a queued (or failed) run; one running or done is left as it is (a retried task, the
    sweep finding a run the worker has started)."""
    # claimed by one executor only (the worker, beat's sweep, a retry): the others leave it
    claimed = RepriceRun.objects.filter(
        pk=run_id, status__in=[RepriceStatus.QUEUED, RepriceStatus.FAILED]
    ).update(status=RepriceStatus.RUNNING, started_at=timezone.now(), error="")
    run = RepriceRun.objects.get(pk=run_id)
    if not claimed:
        return run
    started = clock.perf_counter()
    try:
        book = PriceBook.load()
        scopes = [RepriceScope.from_json(scope) for scope in run.scopes]
        closed = months_closed()
        done = {*run.months_repriced, *run.months_adjusted}  # by an earlier, failed attempt
        for month in call_partition_months():
            month_start = datetime.combine(month, time(0), tzinfo=UTC)
            month_end = datetime.combine(month_next(month), time(0), tzinfo=UTC)
            live = [
                scope
                for scope in scopes
                if (scope.end is None or scope.end > month_start) and scope.start < month_end
            ]
            if live and f"{month:%Y-%m}" not in done:
                _month_reprice(run=run, book=book, month=month, scopes=live, closed=closed)
    except Exception as error:
        run.status, run.finished_at, run.error = RepriceStatus.FAILED, timezone.now(), repr(error)[:4000]
        run.save(update_fields=["status", "finished_at", "error"])
        raise
    elapsed = clock.perf_counter() - started
    run.status = RepriceStatus.DONE
    run.finished_at = run.started_at + timedelta(seconds=elapsed)
    run.save(update_fields=["status", "finished_at"])
    return run


def reprice_run_create(
    *, trigger: str, scopes: list[RepriceScope], principal=None, object_type: str = "", object_id=""
) -> RepriceRun:
    """A queued run (the caller enqueues it, on commit, or executes it)."""
    from finops.accounts.selectors import principal_is_authenticated, principal_is_token

    user = principal if principal_is_authenticated(principal) and not principal_is_token(principal) else None
    return RepriceRun.objects.create(
        trigger=trigger[:256],
        object_type=object_type,
        object_id=str(object_id or ""),
        requested_by=user,
        requested_by_name=user.get_username()
        if user
        else ("system" if principal is None else str(principal)),
        scopes=[scope.as_json() for scope in scopes],
    )
