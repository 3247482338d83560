"""Showback / chargeback of a bill month (SPEC.md, "Bills"): the one reader behind the API
(`GET /api/v1/chargeback`), its CSV and FOCUS exports and the Months page.

Per provider, what the month is charged from (its *basis*):

- `invoice`: the invoice's lines (finops.bills.statements.invoice_lines), when the month has any;
- `statement`: else the provider's cost statement (cost_lines);
- `telemetry`: else finops' own telemetry cost, saying why (only a usage statement, or none at all).

The basis's lines naming a model (token usage) are allocated to teams and agents by their share of the
provider's telemetry cost in the month; lines naming no model (fees, tax, credits, support plans) and,
when the month has no telemetry cost for the provider, the whole amount, are the provider's
*unattributed* row. Adjustments shown in the month (late events and re-pricing of earlier closed
months) are rows of their own, on top of the bases.

Unpriced calls (a model finops has no price for) cost nothing in the telemetry, so they cannot weigh in
a share: they are counted, never taken as $0. Every allocation row carries its team/agent's
`unpriced_calls`; an agent whose calls of the provider are all unpriced still gets a row (amount 0,
share 0) so it is seen, also when the provider has no priced telemetry at all (its whole amount is then
unattributed). A provider's rows' `unpriced_calls` sum to its own.

Rounding: amounts are exact decimals. Each allocation is rounded half-even to 1e-12 USD (the ledger's
precision) and the provider's rounding residue (a few 1e-12 at most) goes to its largest allocation,
so a provider's allocations plus its unattributed row sum exactly to its basis, and every row of the
month sums exactly to `total_usd`. Nothing is rounded to cents; the page only displays cents.

A closed month reads its telemetry from the snapshot taken at the close and its bases as frozen then
(ClosedMonthBasis), and the adjustments shown in it are frozen too: its chargeback never changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from django.db.models import Count, Q, QuerySet, Sum

from finops.bills.adjustments import late_adjustments_materialise
from finops.bills.models import Adjustment, BillMonth, ClosedMonthBasis, MonthState
from finops.bills.statements import cost_lines, invoice_lines, statement_providers, usage_lines
from finops.bills.telemetry import live_rollups, month_rollups
from finops.ledger.models import Agent

PLACES = Decimal("1e-12")
ZERO = Decimal(0)
BASIS_INVOICE, BASIS_STATEMENT, BASIS_TELEMETRY = "invoice", "statement", "telemetry"
ROUNDING = (
    "each allocation is rounded half-even to 1e-12 USD; a provider's rounding residue goes to its "
    "largest allocation, so the rows sum exactly to the total"
)


@dataclass(frozen=True)
class ProviderBasis:
    provider: str
    basis: str  # invoice | statement | telemetry
    basis_note: str
    token_usd: Decimal  # lines naming a model: allocated by telemetry share
    other_usd: Decimal  # lines naming no model: unattributed

    @property
    def total_usd(self) -> Decimal:
        return self.token_usd + self.other_usd


@dataclass(frozen=True)
class ChargebackRow:
    kind: str  # allocation | unattributed | adjustment
    provider: str
    amount_usd: Decimal
    team: str | None = None  # slug
    team_name: str | None = None
    agent: str | None = None
    basis: str | None = None
    telemetry_usd: Decimal | None = None  # the team/agent's telemetry cost of the provider in the month
    share: Decimal | None = None  # of the provider's telemetry cost
    adjusts_month: date | None = None  # adjustments: the closed month whose cost it is
    reason: str | None = None  # adjustments: late_event | reprice
    # the team/agent's calls of the provider in the month with no price, so in no share (0 on the
    # unattributed row, None on adjustments: not counted there)
    unpriced_calls: int | None = None


@dataclass(frozen=True)
class ProviderCharge:
    basis: ProviderBasis
    telemetry_usd: Decimal
    allocated_usd: Decimal
    unattributed_usd: Decimal
    unpriced_calls: int = 0  # the provider's calls in the month with no price: left out of the shares


@dataclass
class Chargeback:
    month: date
    state: str
    closed_at: datetime | None
    providers: list[ProviderCharge] = field(default_factory=list)
    rows: list[ChargebackRow] = field(default_factory=list)

    def _sum(self, kind: str) -> Decimal:
        return sum((row.amount_usd for row in self.rows if row.kind == kind), ZERO)

    @property
    def allocated_usd(self) -> Decimal:
        return self._sum("allocation")

    @property
    def unattributed_usd(self) -> Decimal:
        return self._sum("unattributed")

    @property
    def adjustments_usd(self) -> Decimal:
        return self._sum("adjustment")

    @property
    def total_usd(self) -> Decimal:
        return sum((row.amount_usd for row in self.rows), ZERO)

    @property
    def unpriced_calls(self) -> int:
        return sum(charge.unpriced_calls for charge in self.providers)

    def unpriced_providers(self) -> list[tuple[str, int]]:
        """(provider, unpriced calls) of each provider with any, by name: the page's warning."""
        return [
            (charge.basis.provider, charge.unpriced_calls)
            for charge in self.providers
            if charge.unpriced_calls
        ]

    def by_team(self) -> list[tuple[str, str, Decimal, Decimal]]:
        """(team slug, team name, allocated, adjustments) per team, slug order (showback's summary)."""
        teams: dict[str, list] = {}
        for row in self.rows:
            if row.team is None:
                continue
            entry = teams.setdefault(row.team, [row.team_name or row.team, ZERO, ZERO])
            entry[1 if row.kind == "allocation" else 2] += row.amount_usd
        return [
            (slug, name, allocated, adjusted) for slug, (name, allocated, adjusted) in sorted(teams.items())
        ]


def allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` split in proportion to `weights` (each ≥ 0, their sum > 0): each part rounded half-even to
    1e-12, the residue on the largest part (the first of equals), so the parts sum to `total` exactly."""
    whole = sum(weights, ZERO)
    with localcontext() as context:
        context.prec = 80
        parts = [(total * weight / whole).quantize(PLACES, ROUND_HALF_EVEN) for weight in weights]
    residue = total - sum(parts, ZERO)
    if residue and parts:
        largest = max(range(len(parts)), key=lambda position: (abs(parts[position]), -position))
        parts[largest] += residue
    return parts


def _line_sums(lines: QuerySet) -> dict:
    return lines.aggregate(
        lines=Count("id"),
        token_usd=Sum("amount", filter=~Q(model="")),
        other_usd=Sum("amount", filter=Q(model="")),
        foreign=Count("id", filter=~Q(currency="") & ~Q(currency__iexact="usd")),
    )


def _from_lines(provider: str, basis: str, sums: dict, what: str) -> ProviderBasis:
    note = f"{what}: {sums['lines']} lines"
    if sums["foreign"]:
        note += f"; {sums['foreign']} of them not in USD, summed as given"
    return ProviderBasis(
        provider=provider,
        basis=basis,
        basis_note=note,
        token_usd=sums["token_usd"] or ZERO,
        other_usd=sums["other_usd"] or ZERO,
    )


def provider_bases_live(*, month: date) -> list[ProviderBasis]:
    """Each provider's basis for the month as the statements and the live telemetry are now: every
    provider with a statement line or a telemetry cost in the month, by name."""
    telemetry = {
        row["provider"]: row["usd"] or ZERO
        for row in live_rollups(month=month).values("provider").annotate(usd=Sum("cost_usd"))
    }
    bases = []
    for provider in sorted(statement_providers(month=month) | set(telemetry)):
        invoice = _line_sums(invoice_lines(provider=provider, month=month))
        if invoice["lines"]:
            bases.append(_from_lines(provider, BASIS_INVOICE, invoice, "the invoice"))
            continue
        statement = _line_sums(cost_lines(provider=provider, month=month))
        if statement["lines"]:
            bases.append(_from_lines(provider, BASIS_STATEMENT, statement, "the provider's cost statement"))
            continue
        usage_only = usage_lines(provider=provider, month=month).exists()
        note = (
            "only a usage statement (quantities, no amounts): finops' telemetry cost is charged"
            if usage_only
            else "no invoice or statement for this month: finops' telemetry cost is charged"
        )
        bases.append(
            ProviderBasis(
                provider=provider,
                basis=BASIS_TELEMETRY,
                basis_note=note,
                token_usd=telemetry.get(provider, ZERO),
                other_usd=ZERO,
            )
        )
    return bases


def _bases_frozen(month: date) -> list[ProviderBasis]:
    return [
        ProviderBasis(row.provider, row.basis, row.basis_note, row.token_usd, row.other_usd)
        for row in ClosedMonthBasis.objects.filter(month=month).order_by("provider")
    ]


def chargeback_for_month(*, month: date, materialise: bool = True) -> Chargeback:
    """The month's chargeback. For an open month the late-event adjustments are first brought up to
    date (`materialise`, idempotent), so what the page and the API show includes every late call."""
    bill = BillMonth.objects.filter(month=month).first()
    closed = bill is not None and bill.state == MonthState.CLOSED
    if not closed and materialise:
        late_adjustments_materialise()
    bases = _bases_frozen(month) if closed else provider_bases_live(month=month)
    # grouped by ids first, then named: joining the names onto every day's row costs more than the sum
    sums = list(
        month_rollups(month=month, closed=closed)
        .values("provider", "team_id", "agent_id")
        .annotate(usd=Sum("cost_usd"), unpriced=Sum("unpriced_calls"))
        .order_by()
    )
    agents = Agent.objects.filter(pk__in={row["agent_id"] for row in sums}).select_related("team")
    names = {agent.pk: (agent.team.slug, agent.team.name, agent.name) for agent in agents}
    spend: dict[str, list[dict]] = defaultdict(list)
    for row in sums:
        if row["usd"] or row["unpriced"]:
            slug, team_name, agent_name = names[row["agent_id"]]
            spend[row["provider"]].append(
                {
                    "usd": row["usd"] or ZERO,
                    "unpriced": row["unpriced"] or 0,
                    "team__slug": slug,
                    "team__name": team_name,
                    "agent__name": agent_name,
                }
            )
    for rows in spend.values():
        rows.sort(key=lambda row: (row["team__slug"], row["agent__name"]))

    result = Chargeback(
        month=month,
        state=MonthState.CLOSED if closed else MonthState.OPEN,
        closed_at=bill.closed_at if closed else None,
    )
    for basis in bases:
        agents = [row for row in spend.get(basis.provider, []) if row["usd"] > 0 or row["unpriced"]]
        priced = [row for row in agents if row["usd"] > 0]
        telemetry_usd = sum((row["usd"] for row in priced), ZERO)
        unpriced_calls = sum(row["unpriced"] for row in agents)
        # only priced cost weighs; an agent whose calls are all unpriced gets 0, and with no priced
        # telemetry at all every agent does: its row still says which agent made the unpriced calls
        amounts = iter(allocate(basis.token_usd, [row["usd"] for row in priced]) if telemetry_usd > 0 else ())
        rows = [
            ChargebackRow(
                kind="allocation",
                provider=basis.provider,
                amount_usd=next(amounts) if telemetry_usd > 0 and row["usd"] > 0 else ZERO,
                team=row["team__slug"],
                team_name=row["team__name"],
                agent=row["agent__name"],
                basis=basis.basis,
                telemetry_usd=row["usd"],
                share=row["usd"] / telemetry_usd if telemetry_usd > 0 else ZERO,
                unpriced_calls=row["unpriced"],
            )
            for row in agents
        ]
        allocated = sum((row.amount_usd for row in rows), ZERO)
        unattributed = basis.total_usd - allocated
        if unattributed:
            rows.append(
                ChargebackRow(
                    kind="unattributed",
                    provider=basis.provider,
                    amount_usd=unattributed,
                    basis=basis.basis,
                    unpriced_calls=0,
                )
            )
        result.rows.extend(rows)
        result.providers.append(ProviderCharge(basis, telemetry_usd, allocated, unattributed, unpriced_calls))

    adjustments = (
        Adjustment.objects.filter(shown_in=month)
        .values("month", "reason", "provider", "team__slug", "team__name", "agent__name")
        .annotate(usd=Sum("usd"))
        .order_by("month", "reason", "provider", "team__slug", "agent__name")
    )
    result.rows.extend(
        ChargebackRow(
            kind="adjustment",
            provider=row["provider"],
            amount_usd=row["usd"],
            team=row["team__slug"],
            team_name=row["team__name"],
            agent=row["agent__name"],
            adjusts_month=row["month"],
            reason=row["reason"],
        )
        for row in adjustments
        if row["usd"]
    )
    return result
