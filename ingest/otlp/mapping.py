"""OpenTelemetry GenAI spans → canonical usage events and task outcomes. Pure: no database, no request.

Attributes read: the OpenTelemetry GenAI semantic conventions (`open-telemetry/semantic-conventions-genai`
`model/gen-ai/registry.yaml`), then the names other instrumentations emit, each read only when the
names before it are absent: the Anthropic SDK's own spans (anthropic `_tracing.py`), OpenLLMetry's older
`semconv_ai` names (`gen_ai.usage.prompt_tokens`, `llm.usage.*`, `gen_ai.system`), and OpenInference's
(`openinference-semantic-conventions` semconv/trace: `llm.token_count.*`, `llm.provider`,
`llm.model_name`, `openinference.span.kind`). The lists are the constants below; README.md has the table.

- kind of span: `gen_ai.operation.name` — `chat`, `text_completion`, `generate_content` (or any other
  operation carrying token counts, e.g. `embeddings`) is one LLM call; `invoke_agent` is one agent run;
  `execute_tool` (with `gen_ai.tool.name`, `gen_ai.tool.call.arguments`) is a tool call. OpenInference's
  span kind `LLM` is a call; its AGENT, CHAIN, TOOL, … spans never are (they may repeat their
  children's counts). Spans without GenAI attributes (HTTP, DB, …) are ignored, not rejected.
- provider: PROVIDER_ATTRIBUTES; `gcp.gemini`, `gcp.vertex_ai`, `gcp.gen_ai` → `google`,
  `azure.ai.openai`/`azure.ai.inference` → `azure`, `x_ai` → `x-ai`, `mistral_ai` → `mistral` (and
  OpenInference's `vertexai`, `xai`, `mistralai`); others lower-cased as sent (`aws.bedrock` stays).
- model: MODEL_ATTRIBUTES. `gen_ai.request.max_tokens` → max_tokens.
- tokens: TOKEN_COUNTS. Totals are sums of these and are not read. OpenInference's
  `prompt_details.cache_input` is not a cache count (its LiteLLM instrumentor puts text tokens there).
- identity: `gen_ai.response.id`, else the id leading OpenInference's JSON `output.value`.
- agent: `gen_ai.agent.name`, else the resource's `service.name`.
- team: the resource attribute `finops.team`, else the team of a team-bound token. `service.namespace` is
  deliberately not read: it usually names a deployment namespace, and an org-wide token would create a
  finops team for every namespace it saw.

Token normalisation (SPEC.md "Token types and cost"):

- The conventions say `input_tokens` SHOULD include cache reads and writes and `output_tokens` SHOULD
  include reasoning. That is how OpenAI-style providers report, so by default
  uncached_input = input − cache_read − cache_creation and output = output_tokens − reasoning.
- Anthropic and AWS Bedrock report `input_tokens` *excluding* cache reads and writes, and older
  instrumentations copy the provider's number, while the current Anthropic conventions require the
  cache tokens to be added in. For `anthropic` and `aws.bedrock` an input count below the cache tokens
  is read as exclusive (uncached_input = input_tokens), else as inclusive like every other provider.
  The resource attribute `finops.usage.input_includes_cache=true|false` settles it for a sender.
- cache_creation → cache_write_5m, minus the 1-hour part when the 1h attribute is present.

Tasks: an `invoke_agent` span is a task run. task_id = "otlp:<traceId>", so a call and its agent span
agree on the task without having to arrive in the same export request (children end, and are
exported, before their parent). An LLM span is in that task when an `invoke_agent` span is among its
ancestors in the request, or when its parent is not in the request (it is a child span of a trace
whose other spans come in another export); a root LLM span, or one whose ancestors in the request
include no agent span, is not in a task. Steps are numbered in start-time order among the calls whose
agent span is in the same request; otherwise left empty. The outermost agent span of a request reports
the outcome: ERROR status → failure, else success.

One call, one event (issue 7): the SDK's own span and an instrumentation's report the same call, in two
traces (OpenLLMetry) or nested (OpenInference). Spans with the same response id, and an LLM span with
the LLM span it encloses (unless their response ids differ), are one call (_calls_reported): the tokens
of the report with the most token types, the task, agent and tool calls of any. A call with a response
id has the event_id `resp:<id>` (ingest.adapters.response_event_id, as LiteLLM's has), so reports in
later exports, or from LiteLLM, are duplicates for the writer; otherwise `otlp:<traceId>:<spanId>`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from ingest.adapters import response_event_id

OPERATION = "gen_ai.operation.name"
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
AGENT_OPERATION = "invoke_agent"
TOOL_OPERATION = "execute_tool"
NEVER_A_CALL = frozenset({AGENT_OPERATION, TOOL_OPERATION, "create_agent", "invoke_workflow"})
# OpenInference (Arize Phoenix): openinference-semantic-conventions, semconv/trace/__init__.py
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_LLM = "LLM"
# kinds that wrap calls (and may repeat their usage) or are no model call at all
OPENINFERENCE_NEVER_A_CALL = frozenset(
    {"AGENT", "CHAIN", "TOOL", "RETRIEVER", "RERANKER", "GUARDRAIL", "EVALUATOR", "PROMPT"}
)

PROVIDER_ATTRIBUTES = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_ATTRIBUTES = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model_name",
    "llm.model_name",
    "llm.request.model_name",
    "embedding.model_name",  # OpenInference's EMBEDDING spans
)
# Each token count as the OTel GenAI conventions name it, then older OpenLLMetry names, then OpenInference's.
INPUT_TOKENS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_CREATION_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
CACHE_CREATION_1H_TOKENS = (
    "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens",
    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
TOKEN_COUNTS = {
    "input": INPUT_TOKENS,
    "output": OUTPUT_TOKENS,
    "cache_read": CACHE_READ_TOKENS,
    "cache_creation": CACHE_CREATION_TOKENS,
    "cache_creation_1h": CACHE_CREATION_1H_TOKENS,
    "reasoning": REASONING_TOKENS,
}
USAGE_ATTRIBUTES = tuple(name for names in TOKEN_COUNTS.values() for name in names)
RESPONSE_ID = "gen_ai.response.id"
OPENINFERENCE_OUTPUT = "output.value"
OPENINFERENCE_OUTPUT_MIME_TYPE = "output.mime_type"
# OpenInference puts no response id attribute on a span, but its output.value is the response body as
# JSON, and the SDKs' models serialise their id first: {"id":"msg_…", …}. Read without parsing the body.
_LEADING_ID = re.compile(r'\s*\{\s*"id"\s*:\s*"([^"\\]{1,200})"')
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
MAX_TOKENS = "gen_ai.request.max_tokens"
TEAM_RESOURCE_ATTRIBUTE = "finops.team"
INPUT_INCLUDES_CACHE_RESOURCE_ATTRIBUTE = "finops.usage.input_includes_cache"
SERVICE_NAME = "service.name"

PROVIDER_ALIASES = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "vertexai": "google",
}
# providers whose own usage numbers report input_tokens without the cache reads and writes
INPUT_EXCLUDES_CACHE_PROVIDERS = frozenset({"anthropic", "aws.bedrock"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span with its resource's attributes, ids as lower-case hex as in OTLP/JSON."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    is_error: bool
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]

    @property
    def event_id(self) -> str:
        return f"otlp:{self.trace_id}:{self.span_id}"

    @property
    def operation(self) -> str | None:
        operation = self.attributes.get(OPERATION)
        return operation if isinstance(operation, str) else None

    def as_payload(self) -> dict[str, Any]:
        """The span as JSON, for the quarantine."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "start_time_unix_nano": str(self.start_time_unix_nano),
            "end_time_unix_nano": str(self.end_time_unix_nano),
            "is_error": self.is_error,
            "attributes": self.attributes,
            "resource_attributes": self.resource_attributes,
        }


@dataclass(slots=True)
class RejectedSpan:
    span: SpanRecord
    errors: dict[str, list[str]]


@dataclass(slots=True)
class MappedSpans:
    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # team and agent as slug and name
    rejected: list[RejectedSpan] = field(default_factory=list)


def spans_read(*, request: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Flatten an export request into spans carrying their resource's attributes."""
    spans: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource_attributes = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        is_error=span.status.code == Status.STATUS_CODE_ERROR,
                        attributes=_attributes(span.attributes),
                        resource_attributes=resource_attributes,
                    )
                )
    return spans


class _Request:
    """The spans of one export request, indexed, and walks up their ancestry that remember what they found
    for every span they passed: a trace thousands of spans deep must not cost a walk to its root per span."""

    def __init__(self, spans: list[SpanRecord]) -> None:
        self.by_id = {(span.trace_id, span.span_id): span for span in spans}
        self.children: dict[tuple[str, str], list[SpanRecord]] = {}
        for span in spans:
            self.children.setdefault((span.trace_id, span.parent_span_id), []).append(span)
        for siblings in self.children.values():
            siblings.sort(key=lambda sibling: sibling.start_time_unix_nano)
        self.position = {
            id(span): at for siblings in self.children.values() for at, span in enumerate(siblings)
        }
        self._agents: dict[tuple[str, str], tuple[SpanRecord | None, bool]] = {}
        self._calls: dict[tuple[str, str], tuple[SpanRecord | None, bool]] = {}

    def nearest_agent(self, span: SpanRecord) -> tuple[SpanRecord | None, bool]:
        """(the nearest invoke_agent ancestor in the request, whether the ancestry leaves the request)."""
        return self._walk_up(span, self._agents, lambda parent: parent.operation == AGENT_OPERATION or None)

    def enclosing_call(self, span: SpanRecord) -> SpanRecord | None:
        """The nearest LLM-call ancestor in the request, looking no further up than an agent or a tool."""

        def verdict(parent: SpanRecord) -> bool | None:
            if _is_llm_call(parent):
                return True
            kind = parent.attributes.get(OPENINFERENCE_SPAN_KIND)
            return False if parent.operation in NEVER_A_CALL or kind in ("AGENT", "TOOL") else None

        return self._walk_up(span, self._calls, verdict)[0]

    def _walk_up(
        self,
        span: SpanRecord,
        memo: dict[tuple[str, str], tuple[SpanRecord | None, bool]],
        verdict: Callable[[SpanRecord], bool | None],
    ) -> tuple[SpanRecord | None, bool]:
        """(the first ancestor verdict accepts (True) before one it stops at (False), whether the ancestry
        leaves the request). Every span passed on the way has the same answer, so it is kept for them."""
        passed: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        current = span
        while True:
            key = (current.trace_id, current.span_id)
            if key in memo:
                found = memo[key]
                break
            passed.append(key)
            seen.add(key)
            parent_key = (current.trace_id, current.parent_span_id)
            parent = self.by_id.get(parent_key)
            if not current.parent_span_id or parent_key in seen:  # a root, or a malformed trace's cycle
                found = (None, False)
                break
            if parent is None:
                found = (None, True)
                break
            accepted = verdict(parent)
            if accepted is not None:
                found = (parent if accepted else None, False)
                break
            current = parent
        for key in passed:
            memo[key] = found
        return found

    def tool_calls(self, span: SpanRecord) -> list[dict[str, str]]:
        """Tool spans under this call, or after it (before the next call) under the same parent."""
        tools = [child for child in self.children.get((span.trace_id, span.span_id), []) if _is_tool(child)]
        if span.parent_span_id:
            siblings = self.children[(span.trace_id, span.parent_span_id)]
            for at in range(self.position[id(span)] + 1, len(siblings)):
                if _is_llm_call(siblings[at]):
                    break
                if _is_tool(siblings[at]):
                    tools.append(siblings[at])
        entries = []
        for tool in sorted(tools, key=lambda tool: tool.start_time_unix_nano):
            entry = {"name": tool.attributes[TOOL_NAME]}
            arguments = tool.attributes.get(TOOL_ARGUMENTS)
            if arguments is not None:
                text = arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)
                entry["args_hash"] = hashlib.sha256(text.encode()).hexdigest()
            entries.append(entry)
        return entries


def spans_map(*, spans: list[SpanRecord], default_team: str | None) -> MappedSpans:
    """Map spans to canonical events (one per LLM call) and task outcomes (one per agent run).

    default_team is the team of a team-bound token, used when a resource names no team.
    """
    request = _Request(spans)
    result = MappedSpans()
    llm_spans: list[SpanRecord] = []
    for span in spans:
        if span.operation == AGENT_OPERATION:
            _agent_span_map(span=span, request=request, default_team=default_team, result=result)
        elif _is_llm_call(span):
            llm_spans.append(span)
    calls: list[tuple[SpanRecord, dict[str, Any], SpanRecord | None]] = []
    for reports in _calls_reported(spans=llm_spans, request=request):
        call = _call_event(reports=reports, request=request, default_team=default_team)
        if isinstance(call, RejectedSpan):
            result.rejected.append(call)
        else:
            calls.append(call)
    steps: dict[str, int] = {}
    for _span, event, agent_span in sorted(calls, key=lambda call: call[0].start_time_unix_nano):
        if agent_span is not None:
            steps[event["task_id"]] = steps.get(event["task_id"], 0) + 1
            event["step"] = steps[event["task_id"]]
        result.events.append(event)
    return result


def _is_llm_call(span: SpanRecord) -> bool:
    if span.operation in LLM_OPERATIONS or span.attributes.get(OPENINFERENCE_SPAN_KIND) == OPENINFERENCE_LLM:
        return True
    if span.operation in NEVER_A_CALL:  # agent and workflow spans may repeat their calls' usage
        return False
    if span.attributes.get(OPENINFERENCE_SPAN_KIND) in OPENINFERENCE_NEVER_A_CALL:
        return False
    return any(name in span.attributes for name in USAGE_ATTRIBUTES)


def _response_id(span: SpanRecord) -> str | None:
    """The provider's id of the response this span reports, when it carries one."""
    value = span.attributes.get(RESPONSE_ID)
    if value is None and span.attributes.get(OPENINFERENCE_OUTPUT_MIME_TYPE) == "application/json":
        output = span.attributes.get(OPENINFERENCE_OUTPUT)
        match = _LEADING_ID.match(output) if isinstance(output, str) else None
        value = match.group(1) if match else None
    return value if response_event_id(value) else None


def _calls_reported(*, spans: list[SpanRecord], request: _Request) -> list[list[SpanRecord]]:
    """The LLM-call spans grouped by the call they report, each group's most detailed report first.

    Two spans report one call when they carry the same response id (OpenLLMetry's span and the Anthropic
    SDK's own, even in two traces), or when one encloses the other and their response ids do not differ
    (OpenInference's span around the SDK's). A group never holds two response ids, so a wrapper span
    around two attempts (a retry, a fallback) stays with one of them and the other is a call of its own.
    """
    group_of = [[index] for index in range(len(spans))]  # span index → the indices of its group
    identities = [_response_id(span) for span in spans]
    group_identity = {id(group): identity for group, identity in zip(group_of, identities, strict=True)}
    index_of = {(span.trace_id, span.span_id): index for index, span in enumerate(spans)}

    def join(one: int, other: int) -> None:
        first, second = group_of[one], group_of[other]
        first_id, second_id = group_identity[id(first)], group_identity[id(second)]
        if first is second or (first_id and second_id and first_id != second_id):
            return
        if len(first) < len(second):  # move the smaller group: a deep chain of wrappers stays linear
            first, second = second, first
        first.extend(second)
        group_identity[id(first)] = first_id or second_id
        for index in second:
            group_of[index] = first

    first_with: dict[str, int] = {}
    for index, identity in enumerate(identities):
        if identity is not None:
            join(first_with.setdefault(identity, index), index)
    for index, span in enumerate(spans):
        enclosing = request.enclosing_call(span)
        if enclosing is not None:
            join(index_of[(enclosing.trace_id, enclosing.span_id)], index)
    groups = {id(group): group for group in group_of}.values()
    return [sorted((spans[index] for index in group), key=_usage_detail, reverse=True) for group in groups]


def _usage_detail(span: SpanRecord) -> int:
    """How many of the six token counts the span reports: the Anthropic SDK's own span, which splits cache
    writes by TTL, tells more than the instrumentations' spans of the same call."""
    return sum(any(name in span.attributes for name in names) for names in TOKEN_COUNTS.values())


def _call_event(
    *,
    reports: list[SpanRecord],
    request: _Request,
    default_team: str | None,
) -> tuple[SpanRecord, dict[str, Any], SpanRecord | None] | RejectedSpan:
    """One call from the spans that report it: tokens from the most detailed one that maps, the task,
    agent and tool calls from whichever report has them."""
    first_errors: dict[str, list[str]] = {}
    for span in reports:
        event, errors = _llm_span_event(span=span, default_team=default_team)
        if not errors:
            break
        first_errors = first_errors or errors
    else:
        return RejectedSpan(span=reports[0], errors=first_errors)
    identity = next(filter(None, map(_response_id, reports)), None)
    if identity is not None:
        event["event_id"] = response_event_id(identity)
    reports = [span, *(report for report in reports if report is not span)]
    ancestry = [(report, *request.nearest_agent(report)) for report in reports]
    agent_span = next((agent for _, agent, _ in ancestry if agent is not None), None)
    # a report under an agent span names the task; else one whose parent is in another export
    in_task = next((report for report, agent, _ in ancestry if agent), None) or next(
        (report for report, _, parent_missing in ancestry if parent_missing), None
    )
    if in_task is not None:
        event["task_id"] = _task_id(in_task)
    agent_names = [agent_span] if agent_span is not None else []
    agent_names += reports
    event["agent"] = next(
        filter(None, (_first_text(named.attributes, (AGENT_NAME,)) for named in agent_names)), event["agent"]
    )
    tool_calls = (request.tool_calls(report) for report in reports)
    event["tool_calls"] = next(filter(None, tool_calls), None)
    max_tokens = next(filter(None, map(_max_tokens, reports)), None)
    if max_tokens is not None:
        event["max_tokens"] = max_tokens
    return span, event, agent_span


def _task_id(span: SpanRecord) -> str:
    return f"otlp:{span.trace_id}"


def _is_tool(span: SpanRecord) -> bool:
    return span.operation == TOOL_OPERATION and isinstance(span.attributes.get(TOOL_NAME), str)


def _agent_span_map(
    *,
    span: SpanRecord,
    request: _Request,
    default_team: str | None,
    result: MappedSpans,
) -> None:
    enclosing_agent, _ = request.nearest_agent(span)
    if enclosing_agent is not None:  # a sub-agent: its run is part of the outer agent's task
        return
    errors: dict[str, list[str]] = {}
    team = _team(span=span, default_team=default_team, errors=errors)
    agent = _agent_name(span=span, errors=errors)
    if errors:
        result.rejected.append(RejectedSpan(span=span, errors=errors))
        return
    result.outcomes.append(
        {
            "task_id": _task_id(span),
            "team": team,
            "agent": agent,
            "status": "failure" if span.is_error else "success",
            "started_at": _timestamp(span.start_time_unix_nano),
            "ended_at": _timestamp(max(span.end_time_unix_nano, span.start_time_unix_nano)),
            "span": span,
        }
    )


def _llm_span_event(
    *, span: SpanRecord, default_team: str | None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    team = _team(span=span, default_team=default_team, errors=errors)
    agent = _agent_name(span=span, errors=errors)
    provider = _first_text(span.attributes, PROVIDER_ATTRIBUTES)
    if provider is None:
        errors["provider"] = [
            "no provider: set gen_ai.provider.name (or llm.provider), e.g. openai, anthropic"
        ]
    else:
        provider = PROVIDER_ALIASES.get(provider.lower(), provider.lower())
    model = _first_text(span.attributes, MODEL_ATTRIBUTES)
    if model is None:
        errors["model"] = ["no model: set gen_ai.response.model or gen_ai.request.model (or llm.model_name)"]
    usage = _usage(span=span, provider=provider or "", errors=errors)
    if errors:
        return {}, errors
    event: dict[str, Any] = {
        "event_id": span.event_id,
        "timestamp": _timestamp(span.start_time_unix_nano).isoformat(),
        "team": team,
        "agent": agent,
        "provider": provider,
        "model": model,
        "usage": usage,
        "status": "error" if span.is_error else "ok",
    }
    if span.end_time_unix_nano >= span.start_time_unix_nano > 0:
        event["latency_ms"] = round((span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000)
    return event, {}


def _max_tokens(span: SpanRecord) -> int | None:
    max_tokens = span.attributes.get(MAX_TOKENS)
    return max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None


def _usage(*, span: SpanRecord, provider: str, errors: dict[str, list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    read: dict[str, str] = {}  # label → the attribute it was read from, to name it in errors
    for label, names in TOKEN_COUNTS.items():
        name, value = _first_present(span.attributes, names)
        read[label] = name or names[0]
        if name is None:
            counts[label] = 0
            continue
        try:
            counts[label] = _token_count(value)
        except ValueError as error:
            errors.setdefault(f"attributes.{name}", []).append(str(error))
    if errors:
        return {}
    cached = counts["cache_read"] + counts["cache_creation"]
    input_includes_cache = span.resource_attributes.get(INPUT_INCLUDES_CACHE_RESOURCE_ATTRIBUTE)
    if not isinstance(input_includes_cache, bool):
        # Anthropic-style senders come both ways (raw API number, or the convention's sum). A total
        # below the cache tokens cannot include them; otherwise follow the convention, which every
        # current instrumentation must: counting cache reads again at the full input rate would
        # overstate an agent's spend many times over.
        input_includes_cache = provider not in INPUT_EXCLUDES_CACHE_PROVIDERS or counts["input"] >= cached
    uncached_input = counts["input"] - cached if input_includes_cache else counts["input"]
    if uncached_input < 0:
        errors["usage.uncached_input"] = [
            f"{read['input']} ({counts['input']}) is less than the cache reads and writes it "
            f"should include ({cached}); if this sender reports input without them, set the resource "
            f"attribute {INPUT_INCLUDES_CACHE_RESOURCE_ATTRIBUTE}=false"
        ]
    output = counts["output"] - counts["reasoning"]
    if output < 0:
        errors["usage.output"] = [
            f"{read['output']} ({counts['output']}) is less than the reasoning tokens it "
            f"includes ({counts['reasoning']})"
        ]
    cache_write_5m = counts["cache_creation"] - counts["cache_creation_1h"]
    if cache_write_5m < 0:
        errors["usage.cache_write_1h"] = [
            f"{read['cache_creation_1h']} ({counts['cache_creation_1h']}) is more than "
            f"{read['cache_creation']} ({counts['cache_creation']}), which includes it"
        ]
    return {
        "uncached_input": uncached_input,
        "cache_read": counts["cache_read"],
        "cache_write_5m": cache_write_5m,
        "cache_write_1h": counts["cache_creation_1h"],
        "output": output,
        "reasoning": counts["reasoning"],
    }


def _team(*, span: SpanRecord, default_team: str | None, errors: dict[str, list[str]]) -> str | None:
    team = span.resource_attributes.get(TEAM_RESOURCE_ATTRIBUTE)
    if isinstance(team, str) and team:
        return team
    if default_team:
        return default_team
    errors["team"] = [
        f"no team: set the resource attribute {TEAM_RESOURCE_ATTRIBUTE} "
        f"(OTEL_RESOURCE_ATTRIBUTES={TEAM_RESOURCE_ATTRIBUTE}=<team>) or send with a team-bound token"
    ]
    return None


def _agent_name(*, span: SpanRecord, errors: dict[str, list[str]]) -> str | None:
    agent = _first_text(span.attributes, (AGENT_NAME,)) or _first_text(
        span.resource_attributes, (SERVICE_NAME,)
    )
    if agent is None:
        errors["agent"] = [f"no agent: set {AGENT_NAME} on the span or service.name on the resource"]
    return agent


def _token_count(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of tokens, got {value!r}")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _first_present(attributes: dict[str, Any], names: Iterable[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in attributes:
            return name, attributes[name]
    return None, None


def _first_text(attributes: dict[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = attributes.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _timestamp(unix_nano: int) -> datetime:
    return _EPOCH + timedelta(microseconds=unix_nano // 1000)


def _attributes(key_values) -> dict[str, Any]:
    return {key_value.key: _any_value(key_value.value) for key_value in key_values}


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "double_value" and not math.isfinite(value.double_value):
        # as OTLP/JSON writes them: JSON (and a quarantined span's jsonb payload) has no NaN or Infinity
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value.double_value)]
    return getattr(value, kind)
