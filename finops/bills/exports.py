"""A month's chargeback as files: a plain CSV of its rows, and FOCUS 1.2 (the FinOps Open Cost and Usage
Specification's columns, github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec) plus `x_team`,
`x_agent` and `x_unpriced_calls` (calls with no price, in no share: their cost is unknown, never $0),
which FinOps tools load as a cost dataset. Amounts are the chargeback's exact decimals; text
that a spreadsheet would run as a formula (=, +, -, @, tab, return first) is prefixed with a quote, as
the dashboard's CSVs are (dashboard/tables.py csv_value: the domain cannot import the dashboard).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

from finops.bills.chargeback import Chargeback, ChargebackRow
from finops.bills.months import month_bounds

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

CSV_COLUMNS = (
    "month",
    "kind",
    "provider",
    "team",
    "agent",
    "basis",
    "telemetry_usd",
    "share",
    "amount_usd",
    "adjusts_month",
    "reason",
    "unpriced_calls",
)

# FOCUS 1.2's columns (its column library, in alphabetical order), then this export's own
FOCUS_12_COLUMNS = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)
FOCUS_COLUMNS = (*FOCUS_12_COLUMNS, "x_team", "x_agent", "x_unpriced_calls")
PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google"}


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _write(header: tuple[str, ...], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


def share_text(share: Decimal | None) -> Decimal | None:
    return None if share is None else share.quantize(Decimal("1e-12"))


def chargeback_csv(chargeback: Chargeback) -> str:
    month = f"{chargeback.month:%Y-%m}"
    return _write(
        CSV_COLUMNS,
        (
            [
                month,
                row.kind,
                row.provider,
                row.team,
                row.agent,
                row.basis,
                row.telemetry_usd,
                share_text(row.share),
                row.amount_usd,
                f"{row.adjusts_month:%Y-%m}" if row.adjusts_month else None,
                row.reason,
                row.unpriced_calls,
            ]
            for row in chargeback.rows
        ),
    )


def _description(row: ChargebackRow, month: date) -> str:
    if row.kind == "allocation":
        return (
            f"{row.provider} {row.basis} for {month:%Y-%m} allocated to {row.team}/{row.agent} by its share "
            "of telemetry cost"
        )
    if row.kind == "unattributed":
        return f"{row.provider} {row.basis} for {month:%Y-%m} not attributed to a team (no telemetry, or no model)"
    what = "late events" if row.reason == "late_event" else "re-pricing"
    return f"{row.provider} {what} of {row.adjusts_month:%Y-%m} (closed), charged in {month:%Y-%m}"


def _focus_row(row: ChargebackRow, chargeback: Chargeback) -> dict:
    billing_start, billing_end = month_bounds(chargeback.month)
    charge_start, charge_end = (
        month_bounds(row.adjusts_month) if row.adjusts_month else (billing_start, billing_end)
    )
    provider_name = PROVIDER_NAMES.get(row.provider, row.provider)
    tags = {key: value for key, value in (("team", row.team), ("agent", row.agent)) if value}
    return {
        "BilledCost": row.amount_usd,
        "BillingAccountId": row.provider,
        "BillingAccountName": provider_name,
        "BillingCurrency": "USD",
        "BillingPeriodStart": billing_start,
        "BillingPeriodEnd": billing_end,
        # a late call or a new price of a closed month corrects a period already invoiced
        "ChargeCategory": "Adjustment" if row.kind == "adjustment" else "Usage",
        "ChargeClass": "Correction" if row.kind == "adjustment" else None,
        "ChargeDescription": _description(row, chargeback.month),
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": charge_start,
        "ChargePeriodEnd": charge_end,
        "ContractedCost": row.amount_usd,
        "EffectiveCost": row.amount_usd,
        "InvoiceIssuerName": provider_name,
        "ListCost": row.amount_usd,
        "ProviderName": provider_name,
        "PublisherName": provider_name,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": f"{provider_name} API",
        "ServiceSubcategory": "Generative AI",
        "SubAccountId": row.team,
        "SubAccountName": row.team_name,
        "SubAccountType": "Team" if row.team else None,
        "Tags": json.dumps(tags, sort_keys=True) if tags else None,
        "x_team": row.team,
        "x_agent": row.agent,
        "x_unpriced_calls": row.unpriced_calls,
    }


def chargeback_focus(chargeback: Chargeback) -> str:
    return _write(
        FOCUS_COLUMNS,
        (
            [values.get(column) for column in FOCUS_COLUMNS]
            for values in (_focus_row(row, chargeback) for row in chargeback.rows)
        ),
    )
