"""HTTP clients for the provider report APIs: one page in, statement lines out.

Formats, as the providers document them:

- OpenAI `GET /v1/organization/usage/completions` and `GET /v1/organization/costs`: `Authorization:
  Bearer <admin key>`; `start_time`/`end_time` in Unix seconds, `bucket_width=1d`, repeated `group_by`,
  `limit` (buckets per page), `page`; the answer is `{"object": "page", "data": [{"start_time",
  "end_time", "results": [...]}], "has_more", "next_page"}`. Usage `input_tokens` INCLUDES
  `input_cached_tokens`. Costs give `amount: {"value": <number, dollars>, "currency": "usd"}`.
- Anthropic `GET /v1/organizations/usage_report/messages` and `GET /v1/organizations/cost_report`:
  `x-api-key: <admin key>`, `anthropic-version: 2023-06-01`; `starting_at`/`ending_at` in RFC 3339,
  `group_by[]`, `limit`, `page`; the answer is `{"data": [{"starting_at", "ending_at", "results"}],
  "has_more", "next_page"}`. Usage `uncached_input_tokens` EXCLUDES cache reads and writes. Cost
  `amount` is a decimal string in the currency's lowest unit: "123.45" USD is $1.2345.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ingest.connectors.models import ConnectorKind, Provider, StatementKind

ANTHROPIC_VERSION = "2023-06-01"
BUCKETS_PER_PAGE = 31  # the documented maximum for 1-day buckets on all four endpoints
REQUEST_TIMEOUT_SECONDS = 60
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
LONGEST_WAIT_SECONDS = 300.0

PROVIDER_NAMES = {Provider.OPENAI: "OpenAI", Provider.ANTHROPIC: "Anthropic"}

Sleep = Callable[[float], None]


class ProviderError(Exception):
    pass


class PermanentProviderError(ProviderError):
    """A person must change something (the key, its rights, the base URL) before a retry can work."""


class TransientProviderError(ProviderError):
    """Rate limits, server errors and dropped connections that outlasted every retry: try again later."""


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    lines: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    buckets: list[Bucket]
    next_page: str | None


# --- HTTP ------------------------------------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _error_message(body: bytes) -> str:
    """OpenAI answers {"error": {"message"}}, Anthropic {"type": "error", "error": {"message"}}."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return json.dumps(parsed)[:300]


def _permanent_error(*, provider: str, status: int, detail: str, url: str) -> PermanentProviderError:
    name = PROVIDER_NAMES[provider]
    if status == 401:
        return PermanentProviderError(
            f"{name} rejected the admin key: {status} {detail} — check the key in the connector settings"
        )
    if status == 403:
        return PermanentProviderError(
            f"{name} refused this key access to the report: {status} {detail} — use an organization "
            "admin key (OpenAI: an Admin key; Anthropic: sk-ant-admin…) in the connector settings"
        )
    if status in {404, 405}:
        return PermanentProviderError(
            f"{name} has no report at {url}: {status} {detail} — check the connector's base URL"
        )
    return PermanentProviderError(
        f"{name} rejected the request: {status} {detail} — check the connector's base URL and kind"
    )


def request_json(
    *,
    provider: str,
    url: str,
    headers: dict[str, str],
    sleep: Sleep = time.sleep,
    max_attempts: int = MAX_ATTEMPTS,
) -> dict:
    """GET a JSON document, retrying 429, 5xx and dropped connections with exponential backoff."""
    name = PROVIDER_NAMES[provider]
    last_problem = ""
    for attempt in range(1, max_attempts + 1):
        wait = min(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1), LONGEST_WAIT_SECONDS)
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            detail = _error_message(body)
            if error.code != 429 and error.code < 500:
                raise _permanent_error(provider=provider, status=error.code, detail=detail, url=url) from None
            last_problem = f"{error.code} {detail}"
            told = retry_after_seconds(error.headers.get("Retry-After"))
            if told is not None and told > LONGEST_WAIT_SECONDS:
                # a worker should not sit idle that long: the task's own retry comes back later
                raise TransientProviderError(
                    f"{name} asked to wait {told:.0f} s ({last_problem}); the next pull retries"
                ) from None
            if told is not None:
                wait = told
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
            reason = getattr(error, "reason", None) or error
            last_problem = f"connection failed ({type(error).__name__}: {reason})"
        else:
            try:
                return json.loads(body, parse_float=Decimal)  # exact money: never a binary float
            except ValueError:
                raise PermanentProviderError(
                    f"{name} answered {url} with something that is not JSON — check the connector's base URL"
                ) from None
        if attempt < max_attempts:
            sleep(wait)
    raise TransientProviderError(
        f"{name} did not answer after {max_attempts} attempts (last: {last_problem}); the next pull retries"
    )


# --- report formats --------------------------------------------------------------------------------------


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def _from_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _text(value) -> str:
    return "" if value is None else str(value)


def _count(value) -> int:
    return int(value or 0)


def _usage_line(*, token_type: str = "", line_item: str = "", quantity: int, **dimensions) -> dict:
    return {
        "kind": StatementKind.USAGE,
        "token_type": token_type,
        "line_item": line_item,
        "quantity": quantity,
        "amount": None,
        "currency": "",
        **dimensions,
    }


def openai_usage_lines(result: dict) -> list[dict]:
    dimensions = {
        "model": _text(result.get("model")),
        "project_id": _text(result.get("project_id")),
        "api_key_id": _text(result.get("api_key_id")),
        "batch": bool(result.get("batch")),
        "service_tier": _text(result.get("service_tier")),
    }
    cached = _count(result.get("input_cached_tokens"))
    quantities = [
        # OpenAI's input_tokens includes the cached ones: SPEC's uncached_input is the difference
        ("uncached_input", "", _count(result.get("input_tokens")) - cached),
        ("cache_read", "", cached),
        ("output", "", _count(result.get("output_tokens"))),
        ("", "input_audio_tokens", _count(result.get("input_audio_tokens"))),
        ("", "output_audio_tokens", _count(result.get("output_audio_tokens"))),
        ("", "requests", _count(result.get("num_model_requests"))),
    ]
    return [
        _usage_line(token_type=token_type, line_item=line_item, quantity=quantity, **dimensions)
        for token_type, line_item, quantity in quantities
        if quantity
    ]


# "gpt-4o-2024-08-06, input": the Costs API names model and token type only inside the line item
OPENAI_LINE_ITEM = re.compile(r"^(?P<model>[^,]+), (?P<part>input|cached input|output)$", re.IGNORECASE)
OPENAI_LINE_ITEM_TOKEN_TYPES = {"input": "uncached_input", "cached input": "cache_read", "output": "output"}


def openai_cost_lines(result: dict) -> list[dict]:
    amount = result.get("amount") or {}
    if amount.get("value") is None:
        return []
    line_item = _text(result.get("line_item"))
    parsed = OPENAI_LINE_ITEM.match(line_item)
    return [
        {
            "kind": StatementKind.COST,
            "model": parsed["model"].strip() if parsed else "",
            "token_type": OPENAI_LINE_ITEM_TOKEN_TYPES[parsed["part"].lower()] if parsed else "",
            "line_item": line_item,
            "project_id": _text(result.get("project_id")),
            "api_key_id": _text(result.get("api_key_id")),
            "quantity": int(result["quantity"]) if result.get("quantity") is not None else None,
            "amount": Decimal(str(amount["value"])),  # dollars, not cents
            "currency": _text(amount.get("currency")).upper(),
        }
    ]


def anthropic_usage_lines(result: dict) -> list[dict]:
    service_tier = _text(result.get("service_tier"))
    dimensions = {
        "model": _text(result.get("model")),
        "api_key_id": _text(result.get("api_key_id")),
        "workspace_id": _text(result.get("workspace_id")),
        "service_tier": service_tier,
        "batch": service_tier == "batch",
        "context_window": _text(result.get("context_window")),
    }
    cache_creation = result.get("cache_creation") or {}
    server_tool_use = result.get("server_tool_use") or {}
    quantities = [
        # Anthropic's uncached_input_tokens already excludes cache reads and writes
        ("uncached_input", "", _count(result.get("uncached_input_tokens"))),
        ("cache_read", "", _count(result.get("cache_read_input_tokens"))),
        ("cache_write_5m", "", _count(cache_creation.get("ephemeral_5m_input_tokens"))),
        ("cache_write_1h", "", _count(cache_creation.get("ephemeral_1h_input_tokens"))),
        ("output", "", _count(result.get("output_tokens"))),
        ("", "web_search_requests", _count(server_tool_use.get("web_search_requests"))),
    ]
    return [
        _usage_line(token_type=token_type, line_item=line_item, quantity=quantity, **dimensions)
        for token_type, line_item, quantity in quantities
        if quantity
    ]


ANTHROPIC_COST_TOKEN_TYPES = {
    "uncached_input_tokens": "uncached_input",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
    "output_tokens": "output",
}


def anthropic_cost_lines(result: dict) -> list[dict]:
    if result.get("amount") is None:
        return []
    service_tier = _text(result.get("service_tier"))
    provider_token_type = _text(result.get("token_type"))
    return [
        {
            "kind": StatementKind.COST,
            "model": _text(result.get("model")),
            "token_type": ANTHROPIC_COST_TOKEN_TYPES.get(provider_token_type, ""),
            "line_item": _text(result.get("description")) or _text(result.get("cost_type")),
            "workspace_id": _text(result.get("workspace_id")),
            "service_tier": service_tier,
            "batch": service_tier == "batch",
            "context_window": _text(result.get("context_window")),
            "quantity": None,
            # the lowest currency unit (cents for USD): "123.45" is $1.2345
            "amount": Decimal(str(result["amount"])).scaleb(-2),
            "currency": _text(result.get("currency")).upper(),
        }
    ]


@dataclass(frozen=True)
class ReportFormat:
    provider: str
    path: str
    group_by: tuple[str, ...]
    lines_of_result: Callable[[dict], list[dict]]

    def url(self, *, base_url: str, start: datetime, end: datetime, page: str | None) -> str:
        if self.provider == Provider.OPENAI:
            params = [("start_time", _unix(start)), ("end_time", _unix(end))]
            params += [("group_by", dimension) for dimension in self.group_by]
        else:
            params = [("starting_at", _rfc3339(start)), ("ending_at", _rfc3339(end))]
            params += [("group_by[]", dimension) for dimension in self.group_by]
        params += [("bucket_width", "1d"), ("limit", BUCKETS_PER_PAGE)]
        if page:
            params.append(("page", page))
        return f"{base_url}{self.path}?{urllib.parse.urlencode(params)}"

    def headers(self, *, api_key: str) -> dict[str, str]:
        if self.provider == Provider.OPENAI:
            return {"Authorization": f"Bearer {api_key}"}
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}

    def _bucket(self, raw: dict) -> Bucket:
        if self.provider == Provider.OPENAI:
            start, end = _from_unix(raw["start_time"]), _from_unix(raw["end_time"])
        else:
            start, end = _from_rfc3339(raw["starting_at"]), _from_rfc3339(raw["ending_at"])
        lines = [line for result in raw.get("results") or [] for line in self.lines_of_result(result)]
        return Bucket(start=start, end=end, lines=lines)

    def parse(self, document: dict) -> Page:
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            # a 200 without data must not read as a genuine zero
            raise PermanentProviderError(
                f"{PROVIDER_NAMES[self.provider]} answered without a 'data' list — check the connector's "
                "base URL points at the provider API (or a proxy that passes its reports through)"
            )
        try:
            buckets = [self._bucket(raw) for raw in document["data"]]
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            raise PermanentProviderError(
                f"{PROVIDER_NAMES[self.provider]} answered in a shape this version cannot read "
                f"({type(error).__name__}: {error}) — check the base URL, or report it to the finops maintainers"
            ) from None
        next_page = document.get("next_page") if document.get("has_more") else None
        return Page(buckets=buckets, next_page=next_page or None)


REPORT_FORMATS: dict[str, ReportFormat] = {
    ConnectorKind.OPENAI_USAGE: ReportFormat(
        provider=Provider.OPENAI,
        path="/v1/organization/usage/completions",
        group_by=("model", "project_id", "api_key_id", "batch"),
        lines_of_result=openai_usage_lines,
    ),
    ConnectorKind.OPENAI_COSTS: ReportFormat(
        provider=Provider.OPENAI,
        path="/v1/organization/costs",
        group_by=("project_id", "line_item"),
        lines_of_result=openai_cost_lines,
    ),
    ConnectorKind.ANTHROPIC_USAGE: ReportFormat(
        provider=Provider.ANTHROPIC,
        path="/v1/organizations/usage_report/messages",
        group_by=("model", "workspace_id", "api_key_id", "service_tier", "context_window"),
        lines_of_result=anthropic_usage_lines,
    ),
    ConnectorKind.ANTHROPIC_COST: ReportFormat(
        provider=Provider.ANTHROPIC,
        path="/v1/organizations/cost_report",
        group_by=("workspace_id", "description"),
        lines_of_result=anthropic_cost_lines,
    ),
}


def report_page_fetch(
    *,
    kind: str,
    base_url: str,
    api_key: str,
    start: datetime,
    end: datetime,
    page: str | None,
    sleep: Sleep = time.sleep,
    max_attempts: int = MAX_ATTEMPTS,
) -> Page:
    report = REPORT_FORMATS[kind]
    document = request_json(
        provider=report.provider,
        url=report.url(base_url=base_url, start=start, end=end, page=page),
        headers=report.headers(api_key=api_key),
        sleep=sleep,
        max_attempts=max_attempts,
    )
    return report.parse(document)
