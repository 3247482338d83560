"""POST /v1/traces over real HTTP: the OpenTelemetry SDK's own OTLP/HTTP exporter against the running server."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from finops.accounts.services import api_token_create
from finops.ledger.models import Call, Task
from ingest.models import QuarantinedRow
from tests.factories import TeamFactory
from tests.ledger.reference import reference_cost

PROTOBUF = {"Content-Type": "application/x-protobuf"}
O3_CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "o3",
    "gen_ai.usage.input_tokens": 12000,  # includes the 10000 cached
    "gen_ai.usage.cache_read.input_tokens": 10000,
    "gen_ai.usage.output_tokens": 1500,  # includes the 1000 reasoning
    "gen_ai.usage.reasoning.output_tokens": 1000,
}
CLAUDE_CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.usage.input_tokens": 1200,  # excludes the cache reads and writes
    "gen_ai.usage.cache_read.input_tokens": 38000,
    "gen_ai.usage.cache_creation.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 310,
}
# canonical usage after normalisation, worked out by hand
O3_USAGE = {"uncached_input": 2000, "cache_read": 10000, "cache_write_5m": 0, "cache_write_1h": 0}
O3_USAGE |= {"output": 500, "reasoning": 1000}
CLAUDE_USAGE = {"uncached_input": 1200, "cache_read": 38000, "cache_write_5m": 2000, "cache_write_1h": 0}
CLAUDE_USAGE |= {"output": 310, "reasoning": 0}
TOKEN_FIELDS = tuple(O3_USAGE)


def exporter(live_server, secret: str, **options) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Bearer {secret}"}, **options
    )


def agent_run(tracer, *, fail: bool = False) -> str:
    """invoke_agent → chat (o3), execute_tool, chat (claude). Returns the trace id in hex."""
    agent_attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "ticket-triage"}
    with tracer.start_as_current_span("invoke_agent ticket-triage", attributes=agent_attributes) as agent:
        with tracer.start_as_current_span("chat o3", attributes=O3_CALL):
            pass
        tool_attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "search_kb",
            "gen_ai.tool.call.arguments": '{"q": "refund"}',
        }
        with tracer.start_as_current_span("execute_tool search_kb", attributes=tool_attributes):
            pass
        with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes=CLAUDE_CALL):
            pass
        if fail:
            agent.set_status(Status(StatusCode.ERROR, "gave up"))
        return format(agent.get_span_context().trace_id, "032x")


def recorded_spans(build, *, team: str | None = "support"):
    """The SDK's finished spans for whatever build(tracer) does, to post by hand."""
    memory = InMemorySpanExporter()
    attributes = {"service.name": "triage-svc", **({"finops.team": team} if team else {})}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("test"))
    return memory.get_finished_spans()


def post_protobuf(live_server, secret: str, spans) -> tuple[int, ExportTraceServiceResponse]:
    response = requests.post(
        f"{live_server.url}/v1/traces",
        data=encode_spans(spans).SerializeToString(),
        headers={**PROTOBUF, "Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.headers["Content-Type"] == "application/x-protobuf"
    return response.status_code, ExportTraceServiceResponse.FromString(response.content)


def tokens(call: Call) -> dict:
    return {field: getattr(call, field) for field in TOKEN_FIELDS}


def reference(provider: str, model: str, usage: dict) -> Decimal:
    return reference_cost({"provider": provider, "model": model, "usage": usage})


def test_an_agent_run_from_the_sdk_exporter_becomes_a_task_with_its_calls_tools_and_cost(
    live_server, secret, make_tracer_provider
):
    provider = make_tracer_provider(BatchSpanProcessor(exporter(live_server, secret)))
    trace_id = agent_run(provider.get_tracer("agent"))
    assert provider.force_flush()

    o3, claude = Call.objects.filter(task_id=f"otlp:{trace_id}").order_by("step")
    assert (o3.step, claude.step) == (1, 2)
    assert (o3.provider, o3.model, claude.provider, claude.model) == (
        "openai",
        "o3",
        "anthropic",
        "claude-sonnet-4-5",
    )
    assert tokens(o3) == O3_USAGE
    assert tokens(claude) == CLAUDE_USAGE
    assert o3.agent.name == claude.agent.name == "ticket-triage"
    assert o3.team.slug == "support"
    assert o3.tool_calls == [
        {"name": "search_kb", "args_hash": hashlib.sha256(b'{"q": "refund"}').hexdigest()}
    ]
    assert claude.tool_calls is None
    # 2000 × $2 + 10000 × $0.50 + 500 × $8 + 1000 × $8 per MTok; 1200 × $3 + 38000 × $0.30 + 2000 × $3.75 + 310 × $15
    assert o3.cost_usd == Decimal("0.021") == reference("openai", "o3", O3_USAGE)
    assert claude.cost_usd == Decimal("0.02715") == reference("anthropic", "claude-sonnet-4-5", CLAUDE_USAGE)
    task = Task.objects.get(task_id=f"otlp:{trace_id}")
    assert (task.status, task.agent.name, task.steps) == ("success", "ticket-triage", 2)
    assert task.cost_usd == Decimal("0.04815")
    assert task.started_at <= o3.timestamp <= claude.timestamp <= task.ended_at


def test_spans_exported_one_by_one_still_make_one_task_and_a_failed_run_fails_it(
    live_server, secret, make_tracer_provider
):
    # SimpleSpanProcessor posts each span when it ends: the calls arrive before their agent span
    provider = make_tracer_provider(SimpleSpanProcessor(exporter(live_server, secret)))
    trace_id = agent_run(provider.get_tracer("agent"), fail=True)

    calls = Call.objects.filter(task_id=f"otlp:{trace_id}")
    assert calls.count() == 2
    task = Task.objects.get(task_id=f"otlp:{trace_id}")
    assert (task.status, task.steps, task.agent.name) == ("failure", 2, "ticket-triage")


def test_gzip_bodies_from_the_exporter_are_read(live_server, secret, make_tracer_provider):
    provider = make_tracer_provider(
        BatchSpanProcessor(exporter(live_server, secret, compression=Compression.Gzip))
    )
    trace_id = agent_run(provider.get_tracer("agent"))
    assert provider.force_flush()
    assert Call.objects.filter(task_id=f"otlp:{trace_id}").count() == 2


def test_otlp_json_with_hex_ids_and_string_int64(live_server, secret):
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "400"}},
        {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": 6000}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "120"}},
        {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.2}},
        {"key": "gen_ai.request.stream", "value": {"boolValue": False}},
        {
            "key": "gen_ai.response.finish_reasons",
            "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
        },
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "finops.team", "value": {"stringValue": "support"}},
                        {"key": "service.name", "value": {"stringValue": "billing-bot"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-written"},
                        "spans": [
                            {
                                "traceId": trace_id.upper(),  # hex ids are case-insensitive
                                "spanId": span_id,
                                "name": "chat claude-haiku-4-5",
                                "kind": 3,
                                "startTimeUnixNano": "1790000000000000000",
                                "endTimeUnixNano": "1790000000850000000",
                                "attributes": attributes,
                                "status": {"code": 2},
                                "someFutureField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = requests.post(
        f"{live_server.url}/v1/traces",
        data=gzip.compress(json.dumps(body).encode()),
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {secret}",
        },
        timeout=30,
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}  # full success: partial_success left unset
    call = Call.objects.get(event_id=f"otlp:{trace_id}:{span_id}")
    assert (call.agent.name, call.status, call.latency_ms) == ("billing-bot", "error", 850)
    assert tokens(call) == {
        "uncached_input": 400,
        "cache_read": 6000,
        "cache_write_5m": 0,
        "cache_write_1h": 0,
        "output": 120,
        "reasoning": 0,
    }
    assert call.timestamp.isoformat() == "2026-09-21T14:13:20+00:00"
    # 400 × $1 + 6000 × $0.10 + 120 × $5 per MTok
    assert call.cost_usd == Decimal("0.0016")


def test_sending_the_same_spans_again_adds_nothing(live_server, secret):
    spans = recorded_spans(agent_run)
    first_status, first = post_protobuf(live_server, secret, spans)
    before = (list(Call.objects.values()), list(Task.objects.values()))

    again_status, again = post_protobuf(live_server, secret, spans)

    assert (first_status, again_status) == (200, 200)
    assert not first.HasField("partial_success") and not again.HasField("partial_success")
    assert (list(Call.objects.values()), list(Task.objects.values())) == before
    assert Call.objects.count() == 2


def test_bad_spans_are_rejected_in_partial_success_and_quarantined_the_others_kept(live_server, secret):
    def build(tracer):
        with tracer.start_as_current_span("chat ok", attributes=O3_CALL):
            pass
        with tracer.start_as_current_span(
            "chat negative", attributes={**O3_CALL, "gen_ai.usage.output_tokens": -5}
        ):
            pass
        no_model = {key: value for key, value in O3_CALL.items() if key != "gen_ai.request.model"}
        with tracer.start_as_current_span("chat no model", attributes=no_model):
            pass
        with tracer.start_as_current_span("GET /health", attributes={"http.request.method": "GET"}):
            pass

    status, response = post_protobuf(live_server, secret, recorded_spans(build))

    assert status == 200
    assert response.partial_success.rejected_spans == 2  # the HTTP span is ignored, not rejected
    assert "must not be negative" in response.partial_success.error_message
    assert "set gen_ai.response.model or gen_ai.request.model" in response.partial_success.error_message
    assert Call.objects.count() == 1
    quarantined = QuarantinedRow.objects.filter(source="otlp")
    assert quarantined.count() == 2
    assert {row.payload["name"] for row in quarantined} == {"chat negative", "chat no model"}


def test_a_team_bound_token_cannot_write_another_teams_spans(live_server, otlp_db):
    support = TeamFactory(slug="support")
    TeamFactory(slug="coding")
    secret = api_token_create(name="support-only", scopes=["ingest"], team=support)[1]

    theirs = recorded_spans(agent_run, team="coding")
    status, response = post_protobuf(live_server, secret, theirs)

    assert status == 200
    assert response.partial_success.rejected_spans == 3  # two calls and the agent run
    assert "this token may only send events for team 'support'" in response.partial_success.error_message
    assert Call.objects.count() == 0
    assert not Task.objects.exists()
    assert QuarantinedRow.objects.filter(source="otlp").count() == 3

    # without a resource team, the token's own team is used
    mine = recorded_spans(agent_run, team=None)
    status, response = post_protobuf(live_server, secret, mine)
    assert not response.HasField("partial_success")
    assert set(Call.objects.values_list("team__slug", flat=True)) == {"support"}


def test_auth_content_type_and_body_errors(live_server, secret, make_tracer_provider):
    url = f"{live_server.url}/v1/traces"
    body = encode_spans(recorded_spans(lambda tracer: tracer.start_span("x").end())).SerializeToString()

    missing = requests.post(url, data=body, headers=PROTOBUF, timeout=30)
    unknown = requests.post(
        url, data=body, headers={**PROTOBUF, "Authorization": "Bearer fo_nope"}, timeout=30
    )
    read_only = api_token_create(name="reader", scopes=["read"])[1]
    forbidden = requests.post(
        url, data=body, headers={**PROTOBUF, "Authorization": f"Bearer {read_only}"}, timeout=30
    )
    auth = {"Authorization": f"Bearer {secret}"}
    wrong_type = requests.post(url, data=body, headers={"Content-Type": "text/plain", **auth}, timeout=30)
    not_protobuf = requests.post(url, data=b"\xff\xff\xff", headers={**PROTOBUF, **auth}, timeout=30)
    not_json = requests.post(
        url, data=b"{nope", headers={"Content-Type": "application/json", **auth}, timeout=30
    )
    bad_gzip = requests.post(
        url, data=b"nope", headers={**PROTOBUF, **auth, "Content-Encoding": "gzip"}, timeout=30
    )

    assert (missing.status_code, unknown.status_code, forbidden.status_code) == (401, 401, 403)
    assert (wrong_type.status_code, not_protobuf.status_code, not_json.status_code) == (415, 400, 400)
    assert bad_gzip.status_code == 400
    assert "Authorization: Bearer" in missing.text
    assert "application/x-protobuf" in wrong_type.json()["message"]
    assert "not JSON" in not_json.json()["message"]
    # the exporter treats 401 as a failed export and keeps nothing
    provider = make_tracer_provider(SimpleSpanProcessor(exporter(live_server, "fo_nope")))
    provider.get_tracer("t").start_span("chat", attributes=O3_CALL).end()
    assert Call.objects.count() == 0


def test_the_readme_example_works_as_written(live_server, secret, monkeypatch):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{live_server.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {secret}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "finops.team=support,service.name=ticket-triage")

    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    namespace["provider"].shutdown()  # closes the exporter's kept-alive connection

    call = Call.objects.get()
    assert (call.team.slug, call.agent.name, call.model) == ("support", "ticket-triage", "gpt-4o")
    assert (call.uncached_input, call.cache_read, call.output) == (200, 1000, 80)
    assert Task.objects.get(task_id=call.task_id).status == "success"


def test_a_rejected_span_with_a_nan_attribute_is_quarantined_and_the_good_span_kept(client, db):
    TeamFactory(slug="support")
    secret = api_token_create(name="otel", scopes=["ingest"])[1]

    def span(span_id: str, *extra: dict) -> dict:
        return {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": span_id,
            "name": "chat",
            "startTimeUnixNano": "1790000000000000000",
            "endTimeUnixNano": "1790000000850000000",
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "400"}},
                {"key": "gen_ai.request.temperature", "value": {"doubleValue": "NaN"}},
                *extra,
            ],
        }

    model = {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}}
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "finops.team", "value": {"stringValue": "support"}},
                        {"key": "service.name", "value": {"stringValue": "bot"}},
                    ]
                },
                "scopeSpans": [{"spans": [span("00000000000000a1"), span("00000000000000a2", model)]}],
            }
        ]
    }

    response = client.post(
        "/v1/traces", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )

    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert Call.objects.filter(event_id__endswith=":00000000000000a2").count() == 1
    quarantined = QuarantinedRow.objects.get(source="otlp")
    assert quarantined.payload["attributes"]["gen_ai.request.temperature"] == "NaN"
