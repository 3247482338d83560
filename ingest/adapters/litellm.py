"""LiteLLM's StandardLoggingPayload (what its generic API logger posts) → a canonical usage event.

Fields read (LiteLLM docs/my-website/docs/proxy/logging_spec.md and litellm/types/utils.py,
StandardLoggingPayload / StandardLoggingMetadata / StandardLoggingHiddenParams):

- event_id ← id. LiteLLM sets it to the response's id (`response_obj.get("id") or litellm_call_id`,
  litellm_core_utils/litellm_logging.py, get_standard_logging_object_payload): the provider's response
  id for OpenAI-style providers (`chatcmpl-…`), LiteLLM's own `chatcmpl-<uuid>` where the provider's
  answer is translated (Anthropic through `completion`). Either is what the caller — and an OTLP span
  of the caller's SDK — saw as the response id, so a usable one becomes `resp:<id>`
  (ingest.adapters.response_event_id), the identity an OTLP span reporting the same call also gets.
  Not for a failed call (id = litellm_call_id) nor a LiteLLM cache hit (id "<id>_cache_hit<time>").
- timestamp ← startTime (epoch seconds); latency_ms ← endTime − startTime
- provider ← custom_llm_provider; model ← model (a "provider/" prefix is dropped)
- team ← spend_logs_metadata.team, else the team of a team-bound ingest token, else
  metadata.user_api_key_team_alias / team_alias / user_api_key_team_id / team_id, as a slug
- agent ← spend_logs_metadata.agent, else a request tag "agent:<name>", else metadata.user_api_key_alias
- task_id, step, prompt_version ← spend_logs_metadata (callers set it per request:
  `metadata={"spend_logs_metadata": {"agent": ..., "task_id": ..., "step": ...}}`)
- reported_cost_usd ← response_cost, as the decimal string of the float LiteLLM sent
- status ← status ("success" → "ok", "failure" → "error"); batch ← hidden_params.batch_models set

Tokens. LiteLLM hands every provider's usage over in OpenAI's shape, so one rule fits all:
prompt_tokens INCLUDES cached tokens — for OpenAI because OpenAI's prompt_tokens do, for Anthropic because
LiteLLM's Anthropic transformation (llms/anthropic/chat/transformation.py, calculate_usage) adds
cache_read_input_tokens and cache_creation_input_tokens into prompt_tokens; and completion_tokens
INCLUDE reasoning tokens (completion_tokens_details.reasoning_tokens). So:

    cache_read      = cache_read_input_tokens, else prompt_tokens_details.cached_tokens
    cache_write     = cache_creation_input_tokens, else prompt_tokens_details.cache_creation_tokens
                      (split by cache_creation_token_details.ephemeral_1h_input_tokens; the rest is 5m)
    uncached_input  = prompt_tokens − cache_read − cache_write
    reasoning       = completion_tokens_details.reasoning_tokens
    output          = completion_tokens − reasoning

The detailed usage is read from metadata.usage_object, else hidden_params.usage_object, else
response.usage; prompt_tokens and completion_tokens from the payload's top level when present.
A LiteLLM cache hit (cache_hit: true) made no provider call, so its tokens are recorded as 0.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.text import slugify

from ingest.adapters import AdapterError, response_event_id
from ingest.validation import json_kind

AGENT_TAG_PREFIX = "agent:"
_SPEND_METADATA_FIELDS = {"team", "agent", "task_id", "step", "prompt_version"}


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, ""):
            return value
    return None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value: Any, *, name: str, errors: dict[str, list[str]]) -> int:
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errors.setdefault(name, []).append(f"must be a non-negative whole number, got {value!r}")
        return 0
    return value


def _team_slug(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return slugify(str(value))[:64] or None


def _tags(payload: dict, metadata: dict) -> list[str]:
    tags = payload.get("request_tags") or metadata.get("tags") or []
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def event_from_litellm_payload(payload: Any, *, default_team: str | None = None) -> dict[str, Any]:
    """One StandardLoggingPayload as a canonical event dict; AdapterError names what is missing and how
    to send it. `default_team` is the team of a team-bound ingest token (see the module docstring)."""
    if not isinstance(payload, dict):
        raise AdapterError({"non_field_errors": [f"{json_kind(payload)}, not a LiteLLM log object"]})
    errors: dict[str, list[str]] = {}
    metadata = _dict(payload.get("metadata"))
    spend_metadata = _dict(metadata.get("spend_logs_metadata"))
    hidden_params = _dict(payload.get("hidden_params"))
    tags = _tags(payload, metadata)

    team = _team_slug(spend_metadata.get("team")) or default_team
    team = team or _team_slug(
        _first(
            metadata.get("user_api_key_team_alias"),
            metadata.get("team_alias"),
            metadata.get("user_api_key_team_id"),
            metadata.get("team_id"),
        )
    )
    if not team:
        errors["team"] = [
            "no team: use a LiteLLM key that belongs to a team, or set "
            "metadata.spend_logs_metadata.team, or send with a team-bound finops token"
        ]
    agent = _first(
        spend_metadata.get("agent"),
        next((tag[len(AGENT_TAG_PREFIX) :] for tag in tags if tag.startswith(AGENT_TAG_PREFIX)), None),
        metadata.get("user_api_key_alias"),
    )
    if not agent:
        errors["agent"] = [
            "no agent: set metadata.spend_logs_metadata.agent, or a request tag 'agent:<name>', "
            "or give the LiteLLM key an alias"
        ]

    event_id = payload.get("id")
    if not event_id:
        errors["event_id"] = ["LiteLLM's call id ('id') is missing"]

    started = payload.get("startTime")
    ended = payload.get("endTime")
    timestamp: str | None = None
    latency_ms: int | None = None
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        try:
            timestamp = datetime.fromtimestamp(started, UTC).isoformat()
        except (OverflowError, OSError, ValueError):  # past year 9999, or NaN
            errors["timestamp"] = [f"startTime {started!r} is not a time in epoch seconds"]
        finite_end = isinstance(ended, (int, float)) and not isinstance(ended, bool) and math.isfinite(ended)
        if timestamp and finite_end and ended >= started:
            latency_ms = round((ended - started) * 1000)
    elif isinstance(started, str) and started:
        timestamp = started  # some loggers send ISO 8601 text; the writer validates it
    else:
        errors["timestamp"] = [f"startTime must be epoch seconds, got {started!r}"]

    provider = payload.get("custom_llm_provider")
    model = _first(payload.get("model"), hidden_params.get("litellm_model_name"))
    for name, value in (("provider", provider), ("model", model)):
        if value is not None and not isinstance(value, str):
            errors[name] = [f"must be text, got {value!r}"]
    provider = provider if isinstance(provider, str) else None
    model = model if isinstance(model, str) else None
    if not provider and isinstance(model, str) and "/" in model:
        provider = model.split("/", 1)[0]
    if not provider:
        errors.setdefault(
            "provider", ["custom_llm_provider is missing; LiteLLM sets it on every call it routes"]
        )
    if not model:
        errors.setdefault("model", ["model is missing"])
    elif provider and model.lower().startswith(f"{provider.lower()}/"):
        model = model[len(provider) + 1 :]

    usage = _dict(
        _first(
            _dict(metadata.get("usage_object")) or None,
            _dict(hidden_params.get("usage_object")) or None,
            _dict(_dict(payload.get("response")).get("usage")) or None,
        )
    )
    prompt_details = _dict(usage.get("prompt_tokens_details"))
    completion_details = _dict(usage.get("completion_tokens_details"))
    prompt = _count(
        _first(payload.get("prompt_tokens"), usage.get("prompt_tokens")), name="prompt_tokens", errors=errors
    )
    completion = _count(
        _first(payload.get("completion_tokens"), usage.get("completion_tokens")),
        name="completion_tokens",
        errors=errors,
    )
    cache_read = _count(
        _first(usage.get("cache_read_input_tokens"), prompt_details.get("cached_tokens")),
        name="cache_read_input_tokens",
        errors=errors,
    )
    cache_write = _count(
        _first(usage.get("cache_creation_input_tokens"), prompt_details.get("cache_creation_tokens")),
        name="cache_creation_input_tokens",
        errors=errors,
    )
    write_details = _dict(
        _first(prompt_details.get("cache_creation_token_details"), usage.get("cache_creation"))
    )
    cache_write_1h = _count(
        write_details.get("ephemeral_1h_input_tokens"), name="ephemeral_1h_input_tokens", errors=errors
    )
    reasoning = _count(completion_details.get("reasoning_tokens"), name="reasoning_tokens", errors=errors)
    uncached_input = prompt - cache_read - cache_write
    if uncached_input < 0:
        errors.setdefault("prompt_tokens", []).append(
            f"prompt_tokens {prompt} is less than its cached tokens (read {cache_read} + write "
            f"{cache_write}); LiteLLM counts cached tokens inside prompt_tokens — upgrade a LiteLLM "
            "that leaves cache writes out"
        )
    if cache_write_1h > cache_write:
        errors.setdefault("ephemeral_1h_input_tokens", []).append(
            f"{cache_write_1h} is more than all cache writes ({cache_write})"
        )
    if reasoning > completion:
        errors.setdefault("reasoning_tokens", []).append(
            f"{reasoning} is more than completion_tokens ({completion}), which include them"
        )

    step = spend_metadata.get("step")
    if isinstance(step, str) and step.strip().isdigit():
        step = int(step)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        errors.setdefault("step", []).append(f"spend_logs_metadata.step must be a whole number, got {step!r}")

    if errors:
        raise AdapterError(errors, team=team)

    cost = payload.get("response_cost")
    reported_cost_usd = None
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        reported_cost_usd = str(Decimal(repr(cost)))  # the float's shortest text: no binary noise
    elif isinstance(cost, str) and cost:
        reported_cost_usd = cost

    cache_hit = payload.get("cache_hit") is True
    usage_counts = {
        "uncached_input": uncached_input,
        "cache_read": cache_read,
        "cache_write_5m": cache_write - cache_write_1h,
        "cache_write_1h": cache_write_1h,
        "output": completion - reasoning,
        "reasoning": reasoning,
    }
    if cache_hit:
        usage_counts = dict.fromkeys(usage_counts, 0)

    event_tags: dict[str, Any] = {}
    for tag in tags:
        if ":" in tag and not tag.startswith(AGENT_TAG_PREFIX):
            key, value = tag.split(":", 1)
            event_tags[key] = value
    for key, value in spend_metadata.items():
        if key not in _SPEND_METADATA_FIELDS and isinstance(value, (str, int, float, bool)):
            event_tags[key] = value
    for key, value in (
        ("litellm_model_group", payload.get("model_group")),
        ("litellm_call_type", payload.get("call_type")),
        ("litellm_key_alias", metadata.get("user_api_key_alias")),
        ("litellm_cache_hit", True if cache_hit else None),
    ):
        if value not in (None, ""):
            event_tags[key] = value

    model_parameters = _dict(payload.get("model_parameters"))
    max_tokens = _first(model_parameters.get("max_tokens"), model_parameters.get("max_completion_tokens"))
    is_response_id = payload.get("litellm_call_id") != event_id and not cache_hit
    event: dict[str, Any] = {
        "event_id": (is_response_id and response_event_id(event_id)) or str(event_id),
        "timestamp": timestamp,
        "team": team,
        "agent": str(agent),
        "provider": str(provider).lower(),
        "model": model,
        "usage": usage_counts,
        "batch": bool(hidden_params.get("batch_models")),
        "status": "error" if payload.get("status") == "failure" else "ok",
        "tags": event_tags or None,
    }
    optional = {
        "task_id": None if spend_metadata.get("task_id") in (None, "") else str(spend_metadata["task_id"]),
        "step": step,
        "prompt_version": spend_metadata.get("prompt_version") or None,
        "latency_ms": latency_ms,
        "max_tokens": max_tokens if isinstance(max_tokens, int) else None,
        "reported_cost_usd": reported_cost_usd,
    }
    event.update({key: value for key, value in optional.items() if value is not None})
    return event
