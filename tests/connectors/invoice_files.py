"""Provider cost exports as the tests build them, and the mappings that read them.

Column names, from what could be found of the providers' documentation and of files people published:

- Anthropic Console, Cost page, "Export" (claude_api_cost_<dates>.csv): one row per day, model and token
  type, with `usage_date_utc`, the model, the workspace and API key, `token_type`, `cost_usd` and
  `list_price_usd` (the long format of the Admin API cost report, whose token types are
  uncached_input_tokens, cache_read_input_tokens, cache_creation.ephemeral_5m/1h_input_tokens,
  output_tokens). The console's exact header was not found in a documentation page; the columns
  `usage_type` (standard/batch) and `context_window` are taken from its usage export, which shares
  `usage_date_utc`, `model_version`, `api_key`, `workspace`. So the header below is plausible, not
  verbatim: the mapping, not this module, is what has to fit a real file.
- OpenAI platform, Usage, Cost view, "Export": `start_time,end_time,start_time_iso,end_time_iso,
  amount_value,amount_currency,line_item,project_id,organization_id,organization_name` (the Costs API's
  bucket fields flattened; line items such as "gpt-4o-2024-08-06, input"), as seen in a published file.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from ingest.connectors.invoice_csv import InvoiceMappingSpec

ANTHROPIC_HEADER = (
    "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,list_price_usd"
)
# (row, cost_usd): the rows of November's first two days
ANTHROPIC_ROWS = [
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,input_no_cache,4.512300,4.512300",
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,input_cache_read,1.050075,1.050075",
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,input_cache_write_5m,2.812500,2.812500",
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,input_cache_write_1h,0.600000,0.600000",
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,11.482500,11.482500",
    "2026-11-01,claude-haiku-4-5-20251001,Research,research-batch,batch,≤ 200k,input_no_cache,0.250000,0.500000",
    "2026-11-01,claude-haiku-4-5-20251001,Research,research-batch,batch,≤ 200k,output,0.625000,1.250000",
    "2026-11-01,claude-sonnet-4-5-20250929,Support,support-prod,standard,,web_search,0.130000,0.130000",
    "2026-11-02,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,input_no_cache,3.900900,3.900900",
    "2026-11-02,claude-sonnet-4-5-20250929,Support,support-prod,standard,> 200k,input_no_cache,0.720000,0.720000",
    "2026-11-02,claude-sonnet-4-5-20250929,Support,support-prod,standard,≤ 200k,output,9.000015,9.000015",
]
ANTHROPIC_COSTS = [row.split(",")[7] for row in ANTHROPIC_ROWS]
ANTHROPIC_MAPPING = InvoiceMappingSpec(
    columns={
        "period_start": "usage_date_utc",
        "amount": "cost_usd",
        "model": "model",
        "token_type": "token_type",
        "workspace_id": "workspace",
        "api_key_id": "api_key",
        "service_tier": "usage_type",
        "context_window": "context_window",
    },
    currency="USD",
    provider="Anthropic",
    date_format="iso",
)

OPENAI_HEADER = (
    "start_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,line_item,project_id,"
    "organization_id,organization_name"
)
DAY_3, DAY_4, DAY_5 = 1793664000, 1793750400, 1793836800  # 2026-11-03, -04, -05 00:00 UTC
OPENAI_ROWS = [
    f"{DAY_3},{DAY_4},2026-11-03T00:00:00+00:00,2026-11-04T00:00:00+00:00,2.5012500000000000,usd,"
    '"gpt-4o-2024-08-06, input",proj_support,org-walk,Walk Inc',
    f"{DAY_3},{DAY_4},2026-11-03T00:00:00+00:00,2026-11-04T00:00:00+00:00,0.6250000000000000,usd,"
    '"gpt-4o-2024-08-06, cached input",proj_support,org-walk,Walk Inc',
    f"{DAY_3},{DAY_4},2026-11-03T00:00:00+00:00,2026-11-04T00:00:00+00:00,7.120000,usd,"
    '"gpt-4o-2024-08-06, output",proj_support,org-walk,Walk Inc',
    f"{DAY_3},{DAY_4},2026-11-03T00:00:00+00:00,2026-11-04T00:00:00+00:00,0.0731250000000000,usd,"
    '"gpt-4o-mini-2024-07-18, batch input",proj_batch,org-walk,Walk Inc',
    f"{DAY_4},{DAY_5},2026-11-04T00:00:00+00:00,2026-11-05T00:00:00+00:00,3.3300000000000000,usd,"
    '"o3-2025-04-16, output",proj_research,org-walk,Walk Inc',
    f"{DAY_4},{DAY_5},2026-11-04T00:00:00+00:00,2026-11-05T00:00:00+00:00,0.0200000000000000,usd,"
    "file search tool calls,proj_research,org-walk,Walk Inc",
]
OPENAI_AMOUNTS = [
    "2.5012500000000000",
    "0.6250000000000000",
    "7.120000",
    "0.0731250000000000",
    "3.33",
    "0.02",
]
OPENAI_MAPPING = InvoiceMappingSpec(
    columns={
        "period_start": "start_time_iso",
        "period_end": "end_time_iso",
        "amount": "amount_value",
        "currency": "amount_currency",
        "line_item": "line_item",
        "project_id": "project_id",
    },
    provider="openai",
    date_format="iso",
)


def total(amounts: list[str]) -> Decimal:
    return sum((Decimal(amount) for amount in amounts), Decimal(0))


def write_csv(folder: Path, name: str, header: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
