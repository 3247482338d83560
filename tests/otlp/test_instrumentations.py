"""Spans as the instrumentations people use really emit them, posted to /v1/traces: the six token counts
finops stores (worked out by hand from the provider's answer), and one call counted once however many
spans, traces, batches or sources report it.

The spans in tests/otlp/instrumentations/*.json were recorded by capture.py there: the real SDKs and
instrumentations (versions in each file's "_captured_with") called against a local server that answers
with the provider's documented response format. Every call got the same answer:

- Anthropic (Messages API): id msg_01XFDUDYJgAACzvnptvVoYEL, input_tokens 1200 (without the cache),
  cache_read_input_tokens 38000, cache_creation_input_tokens 3000 of which cache_creation
  ephemeral_5m 2000 and ephemeral_1h 1000, output_tokens 310.
- OpenAI (Chat Completions): id chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT, prompt_tokens 2000 of which
  prompt_tokens_details.cached_tokens 1536, completion_tokens 300 of which reasoning_tokens 128.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest

from finops.ledger.models import Call
from tests.imports.conftest import litellm_payload

FIXTURES = Path(__file__).parent / "instrumentations"
ANTHROPIC_RESPONSE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
OPENAI_RESPONSE_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
ANTHROPIC_CALL = (f"resp:{ANTHROPIC_RESPONSE_ID}", "anthropic", "claude-sonnet-4-5-20250929")
OPENAI_CALL = (f"resp:{OPENAI_RESPONSE_ID}", "openai", "gpt-4o-2024-08-06")
TOKEN_FIELDS = ("uncached_input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "reasoning")

# Anthropic's input_tokens already exclude the cache; the writes split by TTL as cache_creation says.
ANTHROPIC_WITH_TTL = {"uncached_input": 1200, "cache_read": 38000, "cache_write_5m": 2000}
ANTHROPIC_WITH_TTL |= {"cache_write_1h": 1000, "output": 310, "reasoning": 0}
ANTHROPIC_WITHOUT_TTL = ANTHROPIC_WITH_TTL | {"cache_write_5m": 3000, "cache_write_1h": 0}
# 2000 − 1536 cached = 464 uncached; 300 − 128 reasoning = 172 visible output
OPENAI_WITH_DETAILS = {"uncached_input": 464, "cache_read": 1536, "cache_write_5m": 0}
OPENAI_WITH_DETAILS |= {"cache_write_1h": 0, "output": 172, "reasoning": 128}


def recorded(name: str) -> dict:
    """The OTLP/JSON export request recorded from one instrumentation."""
    export = json.loads((FIXTURES / f"{name}.json").read_text())
    del export["_captured_with"]
    return export


def spans_of(export: dict) -> list[dict]:
    return [
        span
        for resource in export["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def only(export: dict, span_name: str) -> dict:
    """The export with only the span named span_name (its resource and scope kept)."""
    export = copy.deepcopy(export)
    for resource in export["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            scope["spans"] = [span for span in scope["spans"] if span["name"] == span_name]
    return export


def reversed_spans(export: dict) -> dict:
    """The same spans, in the opposite order within the request."""
    export = copy.deepcopy(export)
    export["resourceSpans"].reverse()
    for resource in export["resourceSpans"]:
        resource["scopeSpans"].reverse()
        for scope in resource["scopeSpans"]:
            scope["spans"].reverse()
    return export


def post_traces(api, export: dict) -> None:
    response = api.post("/v1/traces", export)
    assert response.status_code == 200, response.content
    assert "partialSuccess" not in response.json() or not response.json()["partialSuccess"].get(
        "rejectedSpans"
    )


def stored_call() -> Call:
    assert Call.objects.count() == 1
    return Call.objects.get()


def stored_from(api, export: dict) -> Call:
    post_traces(api, export)
    return stored_call()


def described(call: Call) -> tuple[str, str, str]:
    return call.event_id, call.provider, call.model


def tokens_of(call: Call) -> dict[str, int]:
    return {field: getattr(call, field) for field in TOKEN_FIELDS}


def kpis_around(api, call: Call) -> dict:
    """GET /api/v1/kpis for the support team over a day around the call."""
    window = {"start": call.timestamp - timedelta(hours=12), "end": call.timestamp + timedelta(hours=12)}
    response = api.get(
        "/api/v1/kpis", team="support", **{key: value.isoformat() for key, value in window.items()}
    )
    assert response.status_code == 200, response.content
    return response.json()


# F.17: what each instrumentation's spans are read as


def test_anthropic_sdk_own_span(api, team):
    """The Anthropic SDK's own span (anthropic 2.16.0, src/anthropic/_tracing.py SPAN_ATTRIBUTES
    "anthropic.messages.create" and lib/_tracing/_response.py set_usage_sums): input_tokens is the
    conventions' sum 1200 + 38000 + 3000 = 42200, cache writes are gen_ai.usage.cache_write.input_tokens
    (3000) split by anthropic.usage.cache_creation.ephemeral_1h_input_tokens (1000)."""
    call = stored_from(api, recorded("anthropic_sdk"))
    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert described(call) == ANTHROPIC_CALL


def test_openllmetry_anthropic_and_the_sdk_span_in_another_trace(api, team):
    """OpenLLMetry 0.62.4 (traceloop/openllmetry packages/opentelemetry-instrumentation-anthropic,
    __init__.py _aset_token_usage / _set_token_usage) emits `anthropic.chat` with
    gen_ai.usage.input_tokens 42200 (input + cache read + cache creation), cache_read.input_tokens 38000,
    cache_creation.input_tokens 3000 and no TTL split; the SDK emits its own span of the same call in
    another trace. One call, with the SDK's TTL split."""
    export = recorded("openllmetry_anthropic")
    assert len({span["traceId"] for span in spans_of(export)}) == 2

    call = stored_from(api, export)
    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert call.event_id == f"resp:{ANTHROPIC_RESPONSE_ID}"


def test_openllmetry_anthropic_span_alone_puts_all_cache_writes_at_the_5_minute_rate(api, team):
    """The same `anthropic.chat` span without the SDK's: 3000 cache writes with no TTL split are 5m."""
    assert (
        tokens_of(stored_from(api, only(recorded("openllmetry_anthropic"), "anthropic.chat")))
        == ANTHROPIC_WITHOUT_TTL
    )


def test_openllmetry_0_47_anthropic_older_spellings(api, team):
    """OpenLLMetry 0.47.5, before it moved to the OTel names (opentelemetry-semantic-conventions-ai
    semconv_ai/__init__.py: LLM_USAGE_PROMPT_TOKENS = gen_ai.usage.prompt_tokens,
    LLM_USAGE_CACHE_READ_INPUT_TOKENS = gen_ai.usage.cache_read_input_tokens, …, gen_ai.system =
    "Anthropic"): prompt_tokens 42200 include the cache, as its __init__.py sums them."""
    call = stored_from(api, recorded("openllmetry_0.47_anthropic"))
    assert tokens_of(call) == ANTHROPIC_WITHOUT_TTL
    assert (call.provider, call.event_id) == ("anthropic", f"resp:{ANTHROPIC_RESPONSE_ID}")


def test_openinference_anthropic_around_the_sdk_span(api, team):
    """OpenInference (Arize-ai/openinference openinference-instrumentation-anthropic 3.1.0, _utils.py
    _get_token_counts) writes no gen_ai.* usage: llm.token_count.prompt 42200 (input + cache creation +
    cache read), .completion 310, .prompt_details.cache_read 38000, .prompt_details.cache_write 3000,
    llm.provider/llm.system anthropic, llm.model_name, openinference.span.kind LLM. Its `messages.create`
    is the parent of the SDK's span in one trace: one call, with the SDK's TTL split."""
    export = recorded("openinference_anthropic")
    parent = next(span for span in spans_of(export) if span["name"] == "messages.create")
    child = next(span for span in spans_of(export) if span["name"] == "anthropic.messages.create")
    assert child["parentSpanId"] == parent["spanId"]

    call = stored_from(api, export)
    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert call.event_id == f"resp:{ANTHROPIC_RESPONSE_ID}"


def test_openinference_anthropic_span_alone(api, team):
    """The OpenInference span alone (an SDK without spans of its own): its llm.token_count.* read as
    the prompt including the cache; the call's identity from the response in output.value."""
    call = stored_from(api, only(recorded("openinference_anthropic"), "messages.create"))
    assert tokens_of(call) == ANTHROPIC_WITHOUT_TTL
    assert (call.provider, call.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert call.event_id == f"resp:{ANTHROPIC_RESPONSE_ID}"


def test_openllmetry_openai(api, team):
    """OpenLLMetry 0.62.4 (packages/opentelemetry-instrumentation-openai, shared/__init__.py
    _set_response_attributes): gen_ai.usage.input_tokens 2000 (prompt_tokens, cache included),
    cache_read.input_tokens 1536, output_tokens 300 and the older gen_ai.usage.reasoning_tokens 128."""
    call = stored_from(api, recorded("openllmetry_openai"))
    assert tokens_of(call) == OPENAI_WITH_DETAILS
    assert described(call) == OPENAI_CALL


def test_openllmetry_0_47_openai_older_spellings(api, team):
    """OpenLLMetry 0.47.5: gen_ai.usage.prompt_tokens, completion_tokens, cache_read_input_tokens,
    llm.usage.reasoning_tokens and llm.usage.total_tokens (a sum, not read)."""
    assert tokens_of(stored_from(api, recorded("openllmetry_0.47_openai"))) == OPENAI_WITH_DETAILS


def test_openinference_openai(api, team):
    """OpenInference openinference-instrumentation-openai 0.1.66 (_response_attributes_extractor.py
    _get_attributes_from_completion_usage): llm.token_count.prompt 2000, .completion 300,
    .prompt_details.cache_read 1536, .completion_details.reasoning 128, llm.system openai (no
    llm.provider), llm.model_name."""
    call = stored_from(api, recorded("openinference_openai"))
    assert tokens_of(call) == OPENAI_WITH_DETAILS
    assert described(call) == OPENAI_CALL


def test_contrib_openai_v2(api, team):
    """The OTel contrib opentelemetry-instrumentation-openai-v2 2.4b0 (instrumentation-genai/
    opentelemetry-instrumentation-openai-v2, through opentelemetry-util-genai): a chat span with
    gen_ai.usage.input_tokens 2000 and output_tokens 300 only; it passes on no cached or reasoning
    count, so all 2000 are priced as uncached input and all 300 as output."""
    call = stored_from(api, recorded("contrib_openai_v2"))
    assert tokens_of(call) == {field: 0 for field in TOKEN_FIELDS} | {"uncached_input": 2000, "output": 300}
    assert (call.event_id, call.provider) == (f"resp:{OPENAI_RESPONSE_ID}", "openai")


@pytest.mark.parametrize(
    "recording", ["anthropic_sdk_stream", "openllmetry_anthropic_stream", "openinference_anthropic_stream"]
)
def test_a_streamed_anthropic_call_is_one_call_with_the_sdks_counts(api, team, recording):
    """The same call read as server-sent events (capture.py anthropic_stream): the SDK's span takes the
    counts from message_start and message_delta (anthropic lib/_tracing/_streaming.py); OpenInference's
    span has no output.value then, so only its nesting ties it to the SDK's span."""
    call = stored_from(api, recorded(recording))

    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert described(call) == ANTHROPIC_CALL


def test_openllmetry_alone_on_a_stream_adds_message_starts_placeholder_output_token(api, team):
    """OpenLLMetry 0.62.4's streaming.py sums output_tokens over message_start (a placeholder 1) and
    message_delta (310): its span says 311, and alone it is read as sent."""
    call = stored_from(api, only(recorded("openllmetry_anthropic_stream"), "anthropic.chat"))

    assert tokens_of(call) == ANTHROPIC_WITHOUT_TTL | {"output": 311}


# F.16: one call reported twice counts once


@pytest.mark.parametrize("order", ["sdk span first", "instrumentation span first"])
@pytest.mark.parametrize(
    ("recording", "sdk_span", "instrumentation_span"),
    [
        ("openllmetry_anthropic", "anthropic.messages.create", "anthropic.chat"),
        ("openinference_anthropic", "anthropic.messages.create", "messages.create"),
    ],
)
def test_one_call_in_two_batches_is_one_call_in_either_order(
    api, team, recording, sdk_span, instrumentation_span, order
):
    export = recorded(recording)
    batches = [only(export, sdk_span), only(export, instrumentation_span)]
    if order != "sdk span first":
        batches.reverse()

    for batch in batches:
        call = stored_from(api, batch)  # one call after the first batch, the same one after the second

    assert call.event_id == f"resp:{ANTHROPIC_RESPONSE_ID}"
    # the first report stored is the call: only the SDK's span splits the cache writes by TTL
    first_tokens = ANTHROPIC_WITH_TTL if order == "sdk span first" else ANTHROPIC_WITHOUT_TTL
    assert tokens_of(call) == first_tokens
    kpis = kpis_around(api, call)
    assert kpis["calls"] == 1
    assert kpis["tokens"] == first_tokens


@pytest.mark.parametrize("recording", ["openllmetry_anthropic_in_agent", "openinference_anthropic_in_agent"])
def test_in_an_agent_run_the_two_spans_of_a_call_are_its_one_step(api, team, recording):
    """Inside the application's invoke_agent span, OpenLLMetry's span and the SDK's are siblings in one
    trace, OpenInference's encloses the SDK's: one call, step 1 of the agent's task."""
    export = recorded(recording)
    agent = next(span for span in spans_of(export) if span["name"] == "invoke_agent refunds")

    call = stored_from(api, export)

    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert (call.task_id, call.step, call.agent.name) == (f"otlp:{agent['traceId']}", 1, "refunds")
    kpis = kpis_around(api, call)
    assert (kpis["calls"], kpis["tasks"]["successful"]) == (1, 1)


@pytest.mark.parametrize("recording", ["openllmetry_anthropic", "openinference_anthropic"])
def test_one_call_in_one_batch_is_one_call_in_either_order(api, team, recording):
    call = stored_from(api, reversed_spans(recorded(recording)))
    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert kpis_around(api, call)["calls"] == 1


def test_openinference_with_hidden_outputs_is_still_one_call_with_its_sdk_span(api, team):
    """OPENINFERENCE_HIDE_OUTPUTS drops output.value, so the OpenInference span has no response id: it
    is the same call as the SDK span it encloses."""
    export = recorded("openinference_anthropic")
    for span in spans_of(export):
        span["attributes"] = [item for item in span["attributes"] if item["key"] != "output.value"]

    call = stored_from(api, export)
    assert tokens_of(call) == ANTHROPIC_WITH_TTL
    assert call.event_id == f"resp:{ANTHROPIC_RESPONSE_ID}"


def openai_through_litellm() -> dict:
    """LiteLLM's payload for the same OpenAI call: its id is the response's id (litellm_logging.py
    get_standard_logging_object_payload: response_obj.get("id") or litellm_call_id)."""
    payload = litellm_payload(OPENAI_RESPONSE_ID, model="gpt-4o-2024-08-06", prompt_tokens=2000)
    payload |= {"completion_tokens": 300, "total_tokens": 2300, "litellm_call_id": "5b0c1f3e-litellm-call"}
    payload["metadata"]["usage_object"] = {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 128},
    }
    return payload


@pytest.mark.parametrize("first", ["otlp", "litellm"])
def test_a_call_reported_over_otlp_and_by_litellm_is_one_call(api, team, first):
    reports = {
        "otlp": lambda: post_traces(api, recorded("openllmetry_openai")),
        "litellm": lambda: api.post("/api/v1/litellm", openai_through_litellm()),
    }
    second = "litellm" if first == "otlp" else "otlp"

    reports[first]()
    answer = reports[second]()

    if second == "litellm":
        assert answer.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    call = stored_call()
    assert call.event_id == f"resp:{OPENAI_RESPONSE_ID}"
    assert tokens_of(call) == OPENAI_WITH_DETAILS
    kpis = kpis_around(api, call)
    assert kpis["calls"] == 1
    assert kpis["tokens"] == OPENAI_WITH_DETAILS
