"""Record the spans that real instrumentations emit for one LLM call, as OTLP/JSON fixtures for the tests.

Not part of the test run: it needs the instrumented SDKs, which finops does not depend on. To refresh the
fixtures, in a throwaway virtualenv:

    pip install anthropic openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-common \
        opentelemetry-instrumentation-anthropic opentelemetry-instrumentation-openai \
        openinference-instrumentation-anthropic openinference-instrumentation-openai \
        opentelemetry-instrumentation-openai-v2 httpx 'opentelemetry-util-genai==1.1b0'
    python tests/otlp/instrumentations/capture.py            # writes tests/otlp/instrumentations/*.json

(openai-v2 2.4b0 imports httpx, which openai 3.x no longer installs, and util-genai's `instruments`
module, which 1.2b0 renamed.) The `openllmetry_0.47_*` fixtures come from the last OpenLLMetry release
before it moved to the OTel GenAI names (0.47.5, with anthropic==0.69.0, openai==1.109.1 — which emit no
spans of their own — and opentelemetry-sdk==1.38.0, the last with the `_events` API it imports):

    python tests/otlp/instrumentations/capture.py openllmetry_anthropic openllmetry_0.47_anthropic
    python tests/otlp/instrumentations/capture.py openllmetry_openai openllmetry_0.47_openai

Each scenario runs in its own process (instrumentors patch the SDKs globally) against a local HTTP server
that answers in the provider's documented response format (Anthropic Messages API, as JSON or as a
stream of server-sent events, and OpenAI Chat Completions), with the usage numbers below; nothing leaves
the machine. `*_in_agent` makes the call inside an application's invoke_agent span.
"""

from __future__ import annotations

import base64
import importlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).parent

# Anthropic Messages API response (https://docs.anthropic.com/en/api/messages): input_tokens EXCLUDES
# the cache reads and writes; cache_creation splits the writes by TTL; output_tokens include thinking.
ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Refund approved."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 1200,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 38000,
        "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 310,
        "service_tier": "standard",
    },
}

# OpenAI Chat Completions response (https://platform.openai.com/docs/api-reference/chat/object):
# prompt_tokens INCLUDE cached_tokens; completion_tokens include reasoning_tokens.
OPENAI_COMPLETION = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Refund approved.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 128,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_f9f4fb6dbf",
}


def anthropic_stream() -> bytes:
    """The same message as server-sent events (https://docs.anthropic.com/en/api/messages-streaming):
    message_start carries the input and cache counts, message_delta the final output count."""
    start = {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}
    start["usage"] = {**ANTHROPIC_MESSAGE["usage"], "output_tokens": 1}
    text = ANTHROPIC_MESSAGE["content"][0]["text"]
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC_MESSAGE["usage"]["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


SCENARIOS = {
    # the Anthropic SDK's own spans, no instrumentation
    "anthropic_sdk": ("anthropic", None),
    # OpenLLMetry (traceloop) beside the SDK's own spans
    "openllmetry_anthropic": ("anthropic", "openllmetry"),
    # OpenInference (Arize Phoenix) beside the SDK's own spans
    "openinference_anthropic": ("anthropic", "openinference"),
    "openllmetry_openai": ("openai", "openllmetry"),
    # the same Anthropic call read as a stream
    "anthropic_sdk_stream": ("anthropic", None),
    "openllmetry_anthropic_stream": ("anthropic", "openllmetry"),
    "openinference_anthropic_stream": ("anthropic", "openinference"),
    # the call made inside an agent run (an invoke_agent span of the application's)
    "openllmetry_anthropic_in_agent": ("anthropic", "openllmetry"),
    "openinference_anthropic_in_agent": ("anthropic", "openinference"),
    "openinference_openai": ("openai", "openinference"),
    "contrib_openai_v2": ("openai", "openai-v2"),
}

# (SDK, instrumentation) → (module holding its AnthropicInstrumentor or OpenAIInstrumentor, package)
INSTRUMENTORS = {
    ("anthropic", "openllmetry"): (
        "opentelemetry.instrumentation.anthropic",
        "opentelemetry-instrumentation-anthropic",
    ),
    ("anthropic", "openinference"): (
        "openinference.instrumentation.anthropic",
        "openinference-instrumentation-anthropic",
    ),
    ("openai", "openllmetry"): (
        "opentelemetry.instrumentation.openai",
        "opentelemetry-instrumentation-openai",
    ),
    ("openai", "openinference"): (
        "openinference.instrumentation.openai",
        "openinference-instrumentation-openai",
    ),
    ("openai", "openai-v2"): (
        "opentelemetry.instrumentation.openai_v2",
        "opentelemetry-instrumentation-openai-v2",
    ),
}


class _Provider(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        body = ANTHROPIC_MESSAGE if self.path.endswith("/messages") else OPENAI_COMPLETION
        streamed = request.get("stream") is True
        data = anthropic_stream() if streamed else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if streamed else "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def _run(name: str, output: str) -> None:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    sdk, instrumentation = SCENARIOS[name]
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "ticket-triage", "finops.team": "support"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"

    packages = [sdk]
    if instrumentation is not None:
        module, package = INSTRUMENTORS[(sdk, instrumentation)]
        instrumentor = "AnthropicInstrumentor" if sdk == "anthropic" else "OpenAIInstrumentor"
        getattr(importlib.import_module(module), instrumentor)().instrument()
        packages.append(package)
    agent_run = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "refunds"}
    if name.endswith("_in_agent"):
        with trace.get_tracer("my-agent").start_as_current_span("invoke_agent refunds", attributes=agent_run):
            _call(sdk, base_url, stream=False)
    else:
        _call(sdk, base_url, stream=name.endswith("_stream"))
    provider.force_flush()
    server.shutdown()
    export = MessageToDict(encode_spans(exporter.get_finished_spans()))
    for resource_spans in export["resourceSpans"]:  # OTLP/JSON writes ids as hex, not proto3's base64
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    export["_captured_with"] = {package: version(package) for package in packages}
    (HERE / f"{output}.json").write_text(json.dumps(export, indent=1, sort_keys=True) + "\n")


def _call(sdk: str, base_url: str, *, stream: bool) -> None:
    question = [{"role": "user", "content": "Can ticket 42 be refunded?"}]
    if sdk == "anthropic":
        import anthropic

        client = anthropic.Anthropic(api_key="sk-ant-test", base_url=base_url)
        answer = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=1024, messages=question, stream=stream
        )
        if stream:
            for _event in answer:
                pass
    else:
        import openai

        client = openai.OpenAI(api_key="sk-test", base_url=f"{base_url}/v1")
        client.chat.completions.create(model="gpt-4o", max_tokens=1024, messages=question)


if __name__ == "__main__":
    if len(sys.argv) > 1:  # one scenario, optionally to another file name: SCENARIO [OUTPUT]
        _run(sys.argv[1], sys.argv[-1])
    else:
        for scenario in SCENARIOS:
            subprocess.run([sys.executable, __file__, scenario], check=True)
