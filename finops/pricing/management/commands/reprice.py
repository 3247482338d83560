"""`finops reprice [--since YYYY-MM]`: re-price every call from a month on with today's prices and
discounts, now, in this process (what the worker does after a price changes; finops/pricing/reprice.py).
Open months' calls and rollups are re-priced; a closed month's difference becomes adjustments."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.core.management.base import BaseCommand, CommandError

from finops.bills.months import MonthError, month_parse, months_closed
from finops.pricing.reprice import (
    RepriceScope,
    call_partition_months,
    reprice_run_create,
    reprice_run_execute,
)


class Command(BaseCommand):
    help = "Re-price the ledger's calls with the current prices and discounts (open months; closed ones adjusted)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--since",
            metavar="YYYY-MM",
            help="the first month to re-price (default: the oldest open month with calls)",
        )

    def handle(self, *args, since: str | None = None, **options) -> None:
        if since:
            try:
                first = month_parse(since)
            except MonthError as error:
                raise CommandError(f"--since: {error}") from None
        else:
            closed = months_closed()
            open_months = [month for month in call_partition_months() if month not in closed]
            if not open_months:
                self.stdout.write("no open month has calls: nothing to re-price")
                return
            first = open_months[0]
        scope = RepriceScope(provider=None, model=None, start=datetime.combine(first, time(0), tzinfo=UTC))
        run = reprice_run_create(trigger=f"finops reprice --since {first:%Y-%m}", scopes=[scope])
        run = reprice_run_execute(run_id=run.pk)
        self.stdout.write(
            f"run {run.pk}: {run.calls_scanned:,} calls priced again, {run.calls_repriced:,} changed "
            f"({run.calls_newly_priced:,} newly priced, {run.calls_newly_unpriced:,} newly unpriced) "
            f"in {run.duration_seconds:.1f} s ({run.calls_per_second or 0:,.0f} calls/s)"
        )
        self.stdout.write(f"months re-priced: {', '.join(run.months_repriced) or 'none'}")
        self.stdout.write(
            f"closed months adjusted: {', '.join(run.months_adjusted) or 'none'}"
            + (f" (${run.adjustments_usd.normalize():f} in adjustments)" if run.months_adjusted else "")
        )
