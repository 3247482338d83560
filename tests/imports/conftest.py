"""Helpers for the import tests: canonical events, LiteLLM payloads and files written to tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ingest.adapters.canonical import CSV_COLUMNS

WHEN = "2026-11-02T10:15:00+00:00"
WHEN_EPOCH = 1793614500.0  # 2026-11-02T10:15:00Z


def canonical_event(event_id: str, **overrides) -> dict:
    event = {
        "event_id": event_id,
        "timestamp": WHEN,
        "team": "support",
        "agent": "ticket-triage",
        "task_id": "run-1",
        "step": 1,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "usage": {"uncached_input": 1200, "cache_read": 38000, "output": 310},
    }
    event.update(overrides)
    return event


def litellm_payload(call_id: str, **overrides) -> dict:
    """A StandardLoggingPayload as LiteLLM's generic API logger sends it, for an OpenAI call."""
    payload = {
        "id": call_id,
        "trace_id": "trace-1",
        "call_type": "acompletion",
        "status": "success",
        "custom_llm_provider": "openai",
        "model": "gpt-4o",
        "model_group": "gpt-4o",
        "api_base": "https://api.openai.com/v1",
        "prompt_tokens": 5000,
        "completion_tokens": 800,
        "total_tokens": 5800,
        "response_cost": 0.0123,
        "startTime": WHEN_EPOCH,
        "endTime": WHEN_EPOCH + 2.5,
        "cache_hit": None,
        "request_tags": ["agent:ticket-triage", "feature:refunds"],
        "model_parameters": {"max_tokens": 1024},
        "metadata": {
            "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
            "user_api_key_alias": "support-key",
            "user_api_key_team_id": "0c2a-team-uuid",
            "user_api_key_team_alias": "support",
            "spend_logs_metadata": {"task_id": "run-7", "step": 3},
            "usage_object": {
                "prompt_tokens": 5000,
                "completion_tokens": 800,
                "total_tokens": 5800,
                "prompt_tokens_details": {"cached_tokens": 3000, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 500, "audio_tokens": 0},
            },
        },
        "hidden_params": {"model_id": "dep-1", "litellm_model_name": "openai/gpt-4o", "batch_models": None},
    }
    payload.update(overrides)
    return payload


def write_jsonl(path: Path, rows: list) -> Path:
    with path.open("w") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def write_csv(path: Path, rows: list[dict], columns=CSV_COLUMNS) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


@pytest.fixture
def support(db):
    from tests.factories import TeamFactory

    return TeamFactory(slug="support")
