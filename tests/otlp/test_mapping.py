"""GenAI spans → canonical events: the token normalisation per provider, pinned by hand-computed numbers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from ingest.adapters.otlp_span import event_from_otlp_span
from ingest.otlp.mapping import SpanRecord, spans_map

TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z in nanoseconds


def span(span_id: str, *, parent: str = "", start: int = 0, resource: dict | None = None, **attributes):
    return SpanRecord(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        name=str(attributes.get("gen_ai.operation.name", "span")),
        start_time_unix_nano=T0 + start * 1_000_000,
        end_time_unix_nano=T0 + start * 1_000_000 + 1_500_000_000,
        is_error=attributes.pop("error", False),
        attributes=attributes,
        resource_attributes={"service.name": "triage-svc", "finops.team": "support", **(resource or {})},
    )


def chat(span_id: str = "00000000000000a1", **attributes) -> SpanRecord:
    return span(span_id, **{"gen_ai.operation.name": "chat", **attributes})


def only_event(*spans: SpanRecord, default_team: str | None = None) -> dict:
    mapped = spans_map(spans=list(spans), default_team=default_team)
    assert mapped.rejected == []
    assert len(mapped.events) == 1
    return mapped.events[0]


def test_openai_input_includes_cache_reads_and_output_includes_reasoning():
    event = only_event(
        chat(
            **{
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "o3",
                "gen_ai.usage.input_tokens": 12000,
                "gen_ai.usage.cache_read.input_tokens": 10000,
                "gen_ai.usage.output_tokens": 1500,
                "gen_ai.usage.reasoning.output_tokens": 1000,
            }
        )
    )
    assert event["usage"] == {
        "uncached_input": 2000,  # 12000 − 10000 cached
        "cache_read": 10000,
        "cache_write_5m": 0,
        "cache_write_1h": 0,
        "output": 500,  # 1500 − 1000 reasoning
        "reasoning": 1000,
    }
    assert event["provider"] == "openai"
    assert event["event_id"] == f"otlp:{TRACE}:00000000000000a1"
    assert event["timestamp"] == "2026-09-21T14:13:20+00:00"
    assert event["latency_ms"] == 1500
    assert event["status"] == "ok"


def test_anthropic_input_excludes_cache_reads_and_writes():
    event = only_event(
        chat(
            **{
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                "gen_ai.usage.input_tokens": 50,
                "gen_ai.usage.cache_read.input_tokens": 900,
                "gen_ai.usage.cache_creation.input_tokens": 4100,
                "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens": 1000,
                "gen_ai.usage.output_tokens": 300,
            }
        )
    )
    assert event["usage"] == {
        "uncached_input": 50,  # Anthropic's input_tokens is already the uncached part
        "cache_read": 900,
        "cache_write_5m": 3100,  # 4100 written, 1000 of them with a 1-hour TTL
        "cache_write_1h": 1000,
        "output": 300,
        "reasoning": 0,
    }
    assert event["model"] == "claude-sonnet-4-5-20250929"  # the response's model wins


def test_a_sender_that_adds_cache_tokens_to_anthropic_input_says_so_on_the_resource():
    event = only_event(
        chat(
            resource={"finops.usage.input_includes_cache": True},
            **{
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 5050,  # 50 + 900 + 4100, as the newest conventions ask
                "gen_ai.usage.cache_read.input_tokens": 900,
                "gen_ai.usage.cache_creation.input_tokens": 4100,
                "gen_ai.usage.output_tokens": 300,
            },
        )
    )
    assert (event["usage"]["uncached_input"], event["usage"]["cache_write_5m"]) == (50, 4100)


def test_anthropic_input_that_already_holds_the_cache_tokens_is_read_as_the_convention_says():
    def anthropic(input_tokens: int, **resource) -> dict:
        return only_event(
            chat(
                resource=resource or None,
                **{
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-5",
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.cache_read.input_tokens": 900,
                    "gen_ai.usage.cache_creation.input_tokens": 4100,
                    "gen_ai.usage.output_tokens": 300,
                },
            )
        )["usage"]

    # 5050 ≥ 900 + 4100: the sum the current conventions require, so 50 were uncached
    assert anthropic(5050)["uncached_input"] == 50
    # the resource attribute settles a sender that reports the raw API number above its cache tokens
    assert anthropic(5050, **{"finops.usage.input_includes_cache": False})["uncached_input"] == 5050


def test_older_attribute_names_and_provider_names_are_read():
    event = only_event(
        chat(
            **{
                "gen_ai.system": "gcp.vertex_ai",
                "gen_ai.request.model": "gemini-2.5-flash",
                "gen_ai.usage.prompt_tokens": 700,
                "gen_ai.usage.cache_read_input_tokens": 200,
                "gen_ai.usage.completion_tokens": "90",
                "gen_ai.usage.reasoning_tokens": 40,
                "gen_ai.request.max_tokens": 1024,
            }
        )
    )
    assert event["provider"] == "google"
    assert event["usage"]["uncached_input"] == 500
    assert (event["usage"]["output"], event["usage"]["reasoning"]) == (50, 40)
    assert event["max_tokens"] == 1024


def test_an_error_status_marks_the_call_as_an_error():
    event = only_event(
        chat(error=True, **{"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"})
    )
    assert event["status"] == "error"
    assert event["usage"]["uncached_input"] == 0


def test_spans_that_are_not_llm_calls_are_ignored_and_not_rejected():
    mapped = spans_map(
        spans=[
            span("00000000000000b1", **{"http.request.method": "GET"}),
            span("00000000000000b2", **{"gen_ai.operation.name": "create_agent"}),
            # an agent span repeating its calls' usage is not a call itself
            span(
                "00000000000000b3",
                **{"gen_ai.operation.name": "invoke_workflow", "gen_ai.usage.input_tokens": 10},
            ),
        ],
        default_team=None,
    )
    assert (mapped.events, mapped.outcomes, mapped.rejected) == ([], [], [])


def test_bad_spans_are_rejected_with_a_reason_that_names_the_fix():
    mapped = spans_map(
        spans=[
            chat("00000000000000c1", **{"gen_ai.provider.name": "openai"}),
            chat(
                "00000000000000c2",
                **{
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.output_tokens": -3,
                },
            ),
            chat(
                "00000000000000c3",
                **{
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.usage.cache_read.input_tokens": 400,
                },
            ),
            chat(
                "00000000000000c4",
                resource={"finops.team": ""},
                **{"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
            ),
        ],
        default_team=None,
    )
    errors = {rejected.span.span_id: rejected.errors for rejected in mapped.rejected}
    assert "gen_ai.request.model" in errors["00000000000000c1"]["model"][0]
    assert "must not be negative" in errors["00000000000000c2"]["attributes.gen_ai.usage.output_tokens"][0]
    assert "finops.usage.input_includes_cache=false" in errors["00000000000000c3"]["usage.uncached_input"][0]
    assert "OTEL_RESOURCE_ATTRIBUTES=finops.team=<team>" in errors["00000000000000c4"]["team"][0]
    assert mapped.events == []


def test_a_team_bound_token_names_the_team_when_the_resource_does_not():
    event = only_event(
        chat(
            resource={"finops.team": None}, **{"gen_ai.provider.name": "openai", "gen_ai.request.model": "x"}
        ),
        default_team="coding",
    )
    assert event["team"] == "coding"


def test_an_agent_run_is_one_task_with_numbered_steps_and_tool_calls():
    agent = span(
        "00000000000000d0",
        start=0,
        **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "ticket-triage"},
    )
    model = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    first = chat("00000000000000d1", parent="00000000000000d0", start=10, **model)
    tool = span(
        "00000000000000d2",
        parent="00000000000000d0",
        start=20,
        **{
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "search_kb",
            "gen_ai.tool.call.arguments": '{"q": "refund"}',
        },
    )
    second = chat("00000000000000d3", parent="00000000000000d0", start=30, **model)
    outside = chat("00000000000000e1", start=40, **model)  # a root call: no agent, no task

    mapped = spans_map(spans=[second, tool, outside, first, agent], default_team=None)

    events = {event["event_id"].rsplit(":", 1)[1]: event for event in mapped.events}
    assert events["00000000000000d1"]["task_id"] == f"otlp:{TRACE}"
    assert (events["00000000000000d1"]["step"], events["00000000000000d3"]["step"]) == (1, 2)
    assert events["00000000000000d1"]["agent"] == "ticket-triage"
    assert events["00000000000000d1"]["tool_calls"] == [
        {"name": "search_kb", "args_hash": hashlib.sha256(b'{"q": "refund"}').hexdigest()}
    ]
    assert events["00000000000000d3"]["tool_calls"] is None
    assert "task_id" not in events["00000000000000e1"]
    assert events["00000000000000e1"]["agent"] == "triage-svc"  # service.name when no agent name
    [outcome] = mapped.outcomes
    assert (outcome["task_id"], outcome["team"], outcome["agent"], outcome["status"]) == (
        f"otlp:{TRACE}",
        "support",
        "ticket-triage",
        "success",
    )


def test_a_call_whose_agent_span_comes_in_another_export_still_joins_the_task():
    call = chat(
        "00000000000000f1",
        parent="00000000000000f0",
        **{"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
    )
    event = only_event(call)
    assert event["task_id"] == f"otlp:{TRACE}"
    assert "step" not in event


def test_a_failed_agent_run_is_a_failed_task_and_a_sub_agent_reports_no_outcome_of_its_own():
    outer = span(
        "0000000000000010",
        error=True,
        **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"},
    )
    inner = span(
        "0000000000000011",
        parent="0000000000000010",
        **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"},
    )
    mapped = spans_map(spans=[inner, outer], default_team=None)
    [outcome] = mapped.outcomes
    assert (outcome["agent"], outcome["status"]) == ("planner", "failure")


# One call reported by several spans (issue 7, F.16)

ANTHROPIC_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
CLAUDE_MODEL = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5"}
SDK_USAGE = {
    "gen_ai.usage.input_tokens": 42200,  # 1200 + 38000 read + 3000 written
    "gen_ai.usage.cache_read.input_tokens": 38000,
    "gen_ai.usage.cache_write.input_tokens": 3000,
    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 1000,
    "gen_ai.usage.output_tokens": 310,
}
WITH_TTL = {"uncached_input": 1200, "cache_read": 38000, "cache_write_5m": 2000, "cache_write_1h": 1000}
WITH_TTL |= {"output": 310, "reasoning": 0}


def openinference_llm(span_id: str, *, parent: str = "", **attributes) -> SpanRecord:
    return span(
        span_id,
        parent=parent,
        **{
            "openinference.span.kind": "LLM",
            "llm.provider": "anthropic",
            "llm.model_name": "claude-sonnet-4-5",
        },
        **attributes,
    )


def test_an_openinference_span_without_usage_around_the_sdk_span_is_one_call_with_the_sdks_usage():
    # a stream read without usage: the wrapper has no token counts, the SDK's span has them
    event = only_event(
        openinference_llm("00000000000000b1"),
        chat("00000000000000b2", parent="00000000000000b1", **CLAUDE_MODEL, **SDK_USAGE),
    )

    assert event["usage"] == WITH_TTL
    assert event["event_id"] == f"otlp:{TRACE}:00000000000000b2"  # no response id: the reporting span's


def test_a_span_with_usage_around_a_child_without_usage_is_one_call_with_the_parents_usage():
    event = only_event(
        openinference_llm(
            "00000000000000b1",
            **{"llm.token_count.prompt": 500, "llm.token_count.completion": 40},
        ),
        chat("00000000000000b2", parent="00000000000000b1", **CLAUDE_MODEL),
    )

    assert event["usage"] == {**dict.fromkeys(WITH_TTL, 0), "uncached_input": 500, "output": 40}


def test_a_wrapper_around_two_attempts_with_their_own_response_ids_is_two_calls():
    # a retry or a fallback inside one framework span: each attempt is a call the provider billed
    mapped = spans_map(
        spans=[
            openinference_llm("00000000000000b1", **{"llm.token_count.prompt": 100}),
            chat(
                "00000000000000b2",
                parent="00000000000000b1",
                **CLAUDE_MODEL,
                **{"gen_ai.response.id": "msg_01AAAAAAAAAAAAAAAAAAAAAA", "gen_ai.usage.input_tokens": 100},
            ),
            chat(
                "00000000000000b3",
                parent="00000000000000b1",
                **CLAUDE_MODEL,
                **{"gen_ai.response.id": "msg_01BBBBBBBBBBBBBBBBBBBBBB", "gen_ai.usage.input_tokens": 100},
            ),
        ],
        default_team=None,
    )

    assert sorted(event["event_id"] for event in mapped.events) == [
        "resp:msg_01AAAAAAAAAAAAAAAAAAAAAA",
        "resp:msg_01BBBBBBBBBBBBBBBBBBBBBB",
    ]


def test_two_traces_reporting_one_response_keep_the_task_and_agent_of_the_one_under_an_agent():
    # the SDK's span (its own trace, most detailed) and an instrumentation's span under invoke_agent
    agent = span(
        "00000000000000c1", **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "refunds"}
    )
    instrumented = chat(
        "00000000000000c2",
        parent="00000000000000c1",
        **CLAUDE_MODEL,
        **{"gen_ai.response.id": ANTHROPIC_ID, "gen_ai.usage.input_tokens": 42200},
    )
    sdk = replace(
        instrumented,
        trace_id="1bf7651916cd43dd8448eb211c80319d",
        span_id="00000000000000d1",
        parent_span_id="",
        attributes={"gen_ai.operation.name": "chat", **CLAUDE_MODEL, "gen_ai.response.id": ANTHROPIC_ID}
        | SDK_USAGE,
    )

    for order in ([sdk, agent, instrumented], [agent, instrumented, sdk]):
        event = only_event(*order)
        assert event["usage"] == WITH_TTL
        assert event["event_id"] == f"resp:{ANTHROPIC_ID}"
        assert (event["task_id"], event["step"], event["agent"]) == (f"otlp:{TRACE}", 1, "refunds")


def test_a_response_id_too_short_to_be_unique_is_not_an_identity():
    # Ollama numbers its answers chatcmpl-0 … chatcmpl-998: two calls may share one
    first = chat(**CLAUDE_MODEL, **{"gen_ai.response.id": "chatcmpl-538"})
    second = replace(first, span_id="00000000000000a2")

    mapped = spans_map(spans=[first, second], default_team=None)

    assert [event["event_id"] for event in mapped.events] == [
        f"otlp:{TRACE}:00000000000000a1",
        f"otlp:{TRACE}:00000000000000a2",
    ]


def test_openinference_spans_that_wrap_calls_are_not_calls():
    mapped = spans_map(
        spans=[
            span("00000000000000e1", **{"openinference.span.kind": "AGENT", "llm.token_count.prompt": 900}),
            span("00000000000000e2", **{"openinference.span.kind": "CHAIN", "llm.token_count.prompt": 900}),
        ],
        default_team=None,
    )

    assert (mapped.events, mapped.rejected) == ([], [])


def test_openinference_provider_and_model_names():
    event = only_event(
        span(
            "00000000000000f1",
            **{
                "openinference.span.kind": "LLM",
                "llm.system": "mistralai",
                "llm.model_name": "mistral-large-latest",
                "llm.token_count.prompt": 10,
            },
        )
    )

    assert (event["provider"], event["model"]) == ("mistral", "mistral-large-latest")


def test_a_quarantined_span_replays_with_its_calls_identity():
    # so a call another report wrote meanwhile comes back as a duplicate, not a second call
    quarantined = chat(**CLAUDE_MODEL, **SDK_USAGE, **{"gen_ai.response.id": ANTHROPIC_ID}).as_payload()

    event = event_from_otlp_span(json.loads(json.dumps(quarantined)))

    assert (event["event_id"], event["usage"]) == (f"resp:{ANTHROPIC_ID}", WITH_TTL)


def test_an_openinference_embedding_span_is_a_call_named_by_its_embedding_model():
    # openinference-instrumentation-openai _response_attributes_extractor.py: embedding.model_name
    event = only_event(
        span(
            "00000000000000f2",
            **{
                "openinference.span.kind": "EMBEDDING",
                "llm.system": "openai",
                "embedding.model_name": "text-embedding-3-small",
                "llm.token_count.prompt": 812,
                "llm.token_count.total": 812,
            },
        )
    )

    assert (event["provider"], event["model"], event["usage"]["uncached_input"]) == (
        "openai",
        "text-embedding-3-small",
        812,
    )
