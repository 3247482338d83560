"""LiteLLM's StandardLoggingPayload → canonical events, pinned per provider, and POST /api/v1/litellm."""

from __future__ import annotations

from decimal import Decimal

import pytest

from finops.ledger.models import Call
from ingest.adapters import AdapterError
from ingest.adapters.litellm import event_from_litellm_payload
from ingest.imports import file_import
from ingest.models import QuarantinedRow
from tests.factories import TeamFactory
from tests.imports.conftest import WHEN, WHEN_EPOCH, litellm_payload, write_jsonl


def test_openai_cached_tokens_are_inside_prompt_tokens_and_reasoning_inside_completion_tokens():
    # prompt_tokens 5000 of which 3000 cached; completion_tokens 800 of which 500 reasoning
    event = event_from_litellm_payload(litellm_payload("call-1"))

    assert event["usage"] == {
        "uncached_input": 2000,
        "cache_read": 3000,
        "cache_write_5m": 0,
        "cache_write_1h": 0,
        "output": 300,
        "reasoning": 500,
    }
    assert event["event_id"] == "call-1"
    assert event["timestamp"] == WHEN
    assert event["latency_ms"] == 2500
    assert (event["provider"], event["model"]) == ("openai", "gpt-4o")
    assert (event["team"], event["agent"]) == ("support", "ticket-triage")
    assert (event["task_id"], event["step"]) == ("run-7", 3)
    assert event["reported_cost_usd"] == "0.0123"
    assert event["max_tokens"] == 1024
    assert event["status"] == "ok"
    assert event["tags"]["feature"] == "refunds"
    assert event["tags"]["litellm_key_alias"] == "support-key"


def test_anthropic_through_litellm_has_cache_reads_and_writes_added_into_prompt_tokens():
    # Anthropic said input_tokens 1200, cache_read_input_tokens 38000, cache_creation_input_tokens
    # 2500 (of which 500 with the 1-hour TTL), output_tokens 310. LiteLLM's calculate_usage reports
    # prompt_tokens = 1200 + 38000 + 2500 = 41700 and copies the cache counts beside it.
    payload = litellm_payload(
        "call-2",
        custom_llm_provider="anthropic",
        model="claude-sonnet-4-5",
        prompt_tokens=41700,
        completion_tokens=310,
        total_tokens=42010,
        response_cost=0.02805,
    )
    payload["metadata"]["usage_object"] = {
        "prompt_tokens": 41700,
        "completion_tokens": 310,
        "total_tokens": 42010,
        "prompt_tokens_details": {
            "cached_tokens": 38000,
            "cache_creation_tokens": 2500,
            "cache_creation_token_details": {
                "ephemeral_5m_input_tokens": 2000,
                "ephemeral_1h_input_tokens": 500,
            },
        },
        "completion_tokens_details": None,
        "cache_read_input_tokens": 38000,
        "cache_creation_input_tokens": 2500,
    }

    event = event_from_litellm_payload(payload)

    assert event["usage"] == {
        "uncached_input": 1200,
        "cache_read": 38000,
        "cache_write_5m": 2000,
        "cache_write_1h": 500,
        "output": 310,
        "reasoning": 0,
    }
    assert (event["provider"], event["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert event["reported_cost_usd"] == "0.02805"


def test_cache_details_are_read_from_the_response_when_metadata_has_no_usage_object():
    payload = litellm_payload("call-3", prompt_tokens=None, completion_tokens=None)
    usage = payload["metadata"].pop("usage_object")
    payload["response"] = {"id": "chatcmpl-1", "usage": usage}

    assert event_from_litellm_payload(payload)["usage"]["cache_read"] == 3000
    assert event_from_litellm_payload(payload)["usage"]["uncached_input"] == 2000


def test_team_agent_and_task_choices():
    payload = litellm_payload("call-4", request_tags=[])
    payload["metadata"]["spend_logs_metadata"] = {"team": "Research Ops", "agent": "planner"}
    event = event_from_litellm_payload(payload, default_team="support")
    assert (event["team"], event["agent"]) == ("research-ops", "planner")  # explicit wins, slugified
    assert "task_id" not in event

    payload = litellm_payload("call-5", request_tags=[])
    payload["metadata"]["spend_logs_metadata"] = None
    event = event_from_litellm_payload(payload, default_team="billing")
    # a team-bound token's team wins over LiteLLM's own team names; the key alias names the agent
    assert (event["team"], event["agent"]) == ("billing", "support-key")


def test_a_payload_that_cannot_be_attributed_says_how_to_fix_it():
    payload = litellm_payload("call-6", request_tags=[])
    payload["metadata"] = {}
    with pytest.raises(AdapterError) as raised:
        event_from_litellm_payload(payload)
    assert "spend_logs_metadata.team" in raised.value.errors["team"][0]
    assert "agent:<name>" in raised.value.errors["agent"][0]


def test_prompt_tokens_smaller_than_the_cached_tokens_is_an_error_not_a_negative_count():
    payload = litellm_payload("call-7", prompt_tokens=100)
    with pytest.raises(AdapterError) as raised:
        event_from_litellm_payload(payload)
    assert "less than its cached tokens" in raised.value.errors["prompt_tokens"][0]


def test_the_response_id_litellm_logs_is_the_calls_identity_as_on_an_otlp_span():
    # litellm_logging.py: id = response_obj.get("id") or litellm_call_id
    event = event_from_litellm_payload(
        litellm_payload("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", litellm_call_id="7f0c2b1e-9d1a")
    )

    assert event["event_id"] == "resp:chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


@pytest.mark.parametrize(
    "overrides",
    [
        # a failed call has no response: its id is LiteLLM's call id
        {
            "id": "9b2f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            "litellm_call_id": "9b2f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        },
        # a cache hit made no provider call
        {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT_cache_hit1793614500.1", "cache_hit": True},
        # too short to be unique (Ollama's chatcmpl-0 … chatcmpl-998)
        {"id": "chatcmpl-538"},
    ],
)
def test_ids_that_are_no_response_id_stay_as_sent(overrides):
    event = event_from_litellm_payload(litellm_payload("unused", **overrides))

    assert event["event_id"] == overrides["id"]


def test_a_litellm_cache_hit_made_no_provider_call_and_costs_no_tokens():
    event = event_from_litellm_payload(litellm_payload("call-8", cache_hit=True, response_cost=0.0))
    assert set(event["usage"].values()) == {0}
    assert event["tags"]["litellm_cache_hit"] is True


def test_failure_payloads_are_calls_with_status_error():
    event = event_from_litellm_payload(
        litellm_payload("call-9", status="failure", prompt_tokens=0, completion_tokens=0, response_cost=0.0)
        | {"metadata": {"user_api_key_team_alias": "support", "user_api_key_alias": "k"}}
    )
    assert event["status"] == "error"
    assert event["reported_cost_usd"] == "0.0"


def test_the_generic_logger_batch_is_written_and_bad_payloads_are_quarantined_as_received(api, support):
    bad = litellm_payload("call-bad", startTime="yesterday")
    unattributed = litellm_payload("call-nobody", request_tags=[], metadata={})
    body = [
        litellm_payload("call-a"),
        bad,
        litellm_payload("call-b"),
        unattributed,
        litellm_payload("call-a"),
    ]

    response = api.post("/api/v1/litellm", body)

    assert response.status_code == 200
    result = response.json()
    assert (result["accepted"], result["duplicates"]) == (2, 1)
    rejected = {row["index"]: row for row in result["rejected"]}
    assert sorted(rejected) == [1, 3]
    assert rejected[1]["event_id"] == "call-bad"
    assert "timestamp" in rejected[1]["errors"]
    assert set(rejected[3]["errors"]) == {"team", "agent"}

    call = Call.objects.get(event_id="call-a")
    assert (call.uncached_input, call.cache_read, call.output, call.reasoning) == (2000, 3000, 300, 500)
    assert call.reported_cost_usd == Decimal("0.0123")
    assert call.task_id == "run-7"

    quarantined = {row.position: row for row in QuarantinedRow.objects.filter(source="litellm")}
    assert sorted(quarantined) == ["1", "3"]
    assert quarantined["1"].payload == bad  # the LiteLLM payload, not a translated event
    assert quarantined["1"].adapter == "litellm"
    assert quarantined["1"].team_id == support.pk
    assert quarantined["3"].team_id is None


def test_a_team_bound_token_writes_for_its_team_whatever_litellm_calls_it(make_api):
    billing = TeamFactory(slug="billing")
    api = make_api(scopes=["ingest"], team=billing)

    payload = litellm_payload("call-c")
    payload["metadata"]["user_api_key_team_alias"] = "Some LiteLLM Team"
    result = api.post("/api/v1/litellm", payload).json()

    assert result == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Call.objects.get(event_id="call-c").team_id == billing.pk


def test_the_endpoint_needs_the_ingest_scope_and_json(make_api, support):
    assert make_api(scopes=["read"]).post("/api/v1/litellm", [litellm_payload("x")]).status_code == 403
    response = make_api().post("/api/v1/litellm", "not json", content_type="application/json")
    assert response.status_code == 400
    assert "not JSON" in response.json()["message"]


def test_ndjson_bodies_are_accepted(api, support):
    import json

    body = "\n".join(json.dumps(litellm_payload(call_id)) for call_id in ("n-1", "n-2"))
    response = api.post("/api/v1/litellm", body, content_type="application/x-ndjson")
    assert response.json()["accepted"] == 2


def test_when_epoch_matches():
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(WHEN_EPOCH, UTC).isoformat() == WHEN


@pytest.mark.parametrize("start_time", [1e20, -1e20])
def test_a_start_time_outside_the_calendar_is_rejected_with_the_rest_of_the_batch_kept(
    api, support, start_time
):
    body = [litellm_payload("call-far", startTime=start_time), litellm_payload("call-ok")]

    response = api.post("/api/v1/litellm", body)

    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == 1
    assert [(row["index"], list(row["errors"])) for row in result["rejected"]] == [(0, ["timestamp"])]
    assert Call.objects.filter(event_id="call-ok").exists()


def test_nan_is_not_json_and_the_body_is_a_400(api, support):
    body = b'[{"id": "call-nan", "startTime": NaN}]'

    response = api.post("/api/v1/litellm", body)

    assert response.status_code == 400
    assert "not JSON" in response.json()["message"]


def test_a_model_or_provider_that_is_not_text_is_named_not_a_crash():
    payload = litellm_payload("call-types", model=4, custom_llm_provider=["openai"])
    with pytest.raises(AdapterError) as raised:
        event_from_litellm_payload(payload)
    assert raised.value.errors["model"] == ["must be text, got 4"]
    assert raised.value.errors["provider"] == ["must be text, got ['openai']"]


def test_an_end_time_of_infinity_leaves_the_latency_unknown():
    event = event_from_litellm_payload(litellm_payload("call-inf", endTime=float("inf")))
    assert "latency_ms" not in event  # left out, so unknown


def test_a_dump_line_holding_nan_is_quarantined_and_the_file_goes_on(db, tmp_path):
    # Python's json reads NaN, which PostgreSQL's jsonb cannot hold: the quarantine keeps the line's JSON text
    bad = litellm_payload("call-nan")
    bad["metadata"]["spend_logs_metadata"]["agent"] = "triage"
    bad["model_parameters"] = {"temperature": float("nan")}
    bad["prompt_tokens"] = -3
    path = write_jsonl(tmp_path / "litellm.jsonl", [bad, litellm_payload("call-ok")])

    summary = file_import(path=path, file_format="litellm")

    assert (summary.accepted, summary.rejected) == (1, 1)
    quarantined = QuarantinedRow.objects.get()
    assert "prompt_tokens" in quarantined.errors
    assert '"temperature": NaN' in quarantined.payload
