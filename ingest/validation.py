"""Validation of canonical usage events (SPEC.md, "Usage event"). Hand-written: it runs per row on the
bulk path, where a serializer per row would cost more than the database write."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

from finops.core.json_depth import (
    MAX_DOCUMENT_DEPTH,
    MAX_VALUE_DEPTH,
    JsonTooDeep,
    json_loads_bounded,
    text_depth_exceeds,
    too_deep_message,
    value_depth,
)
from finops.ledger.tokens import TOKEN_TYPES

REQUIRED = ("event_id", "timestamp", "team", "agent", "provider", "model", "usage")
MAX_TEXT = {
    "event_id": 256,
    "team": 64,
    "agent": 128,
    "task_id": 256,
    "provider": 64,
    "model": 128,
    "prompt_version": 128,
    "status": 32,
}
# the fields stored as jsonb (unknown fields are dropped, so whatever they hold does no harm)
JSON_VALUED = ("input_breakdown", "tool_calls", "tags")
MAX_CLOCK_SKEW = timedelta(days=1)
MIN_TIMESTAMP = datetime(2020, 1, 1, tzinfo=UTC)
_MAX_EVENT_DEPTH = MAX_VALUE_DEPTH + 1  # the event object around its JSON values
MAX_TOKENS_PER_FIELD = 10**12
MAX_REPORTED_COST_USD = Decimal(10) ** 16  # numeric(28, 12): 16 digits before the point
STORED_COST_PLACES = Decimal("1e-12")
_WIDE = Context(prec=60)  # room to round any value below 1e16 to 12 places


@dataclass(slots=True)
class Event:
    """A validated usage event: the one shape every adapter produces and the writer consumes."""

    event_id: str
    timestamp: datetime
    team: str
    agent: str
    provider: str
    model: str
    tokens: tuple[int, int, int, int, int, int]  # in TOKEN_TYPES order
    task_id: str | None = None
    step: int | None = None
    input_breakdown: dict | None = None
    batch: bool = False
    latency_ms: int | None = None
    status: str = "ok"
    prompt_version: str | None = None
    max_tokens: int | None = None
    tool_calls: list | None = None
    reported_cost_usd: Decimal | None = None
    tags: dict | None = None
    reservation_id: uuid.UUID | None = None


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words, for errors such as "null, not an event object"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def timestamp_out_of_range(value: datetime, *, now: datetime, text: str) -> str | None:
    """Why a timestamp (of an event, or a task's start or end) is refused, if it is: the ledger keeps
    nothing before 2020 nor more than a day ahead of the clock."""
    if value > now + MAX_CLOCK_SKEW:
        return f"{text} is more than a day in the future; check the clock"
    if value < MIN_TIMESTAMP:
        return f"{text} is before 2020; check the clock or the unit"
    return None


def json_value_problem(value: Any) -> str | None:
    """Why a JSON value cannot be stored (too deep, or holding what PostgreSQL cannot keep), if so."""
    depth = value_depth(value)
    if depth > MAX_VALUE_DEPTH:
        return too_deep_message(depth)
    return _unstorable(value)


def received_payload(raw: Any) -> Any:
    """A row as received, for the quarantine: JSON bytes decoded, or their text when they are not JSON
    (or nest too deep to decode); anything else as it is."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return raw
    try:
        return json_loads_bounded(raw)
    except ValueError:
        return bytes(raw).decode("utf-8", "replace")


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string such as 2026-11-02T10:15:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone; add Z or an offset such as +00:00")
    return parsed.astimezone(UTC)


def _int(value: Any, *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
    return value


def _unstorable(value: Any) -> str | None:
    """Why PostgreSQL could not store this value (a text, or a JSON value and what it holds), if it
    could not: text and jsonb hold neither NUL characters nor lone UTF-16 surrogates, and jsonb no NaN
    or Infinity (which JSON does not have, though Python's json reads them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must not hold {value!r}: JSON has no such number, and PostgreSQL cannot store it"
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters (\\u0000): PostgreSQL cannot store them"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text: it holds a lone UTF-16 surrogate such as \\ud800"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key) or _unstorable(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _unstorable(item)
            if problem:
                return problem
    return None


def storable(value: Any) -> Any:
    """`value` as PostgreSQL can keep it in a text or jsonb column (the quarantine keeps what it was
    sent): unchanged, unless a text in it holds a NUL or a lone surrogate, or it holds NaN or Infinity;
    then its JSON text, where those are written as \\u escapes and NaN (a text loses its quotes)."""
    if _unstorable(value) is None:
        return value
    text = json.dumps(value)  # ensure_ascii: every such character becomes a \\uXXXX escape
    return text[1:-1] if isinstance(value, str) else text


def event_validate(raw: Any, *, now: datetime | None = None) -> tuple[Event | None, dict[str, list[str]]]:
    """Return (event, {}) or (None, {field: [reason, …]}). Missing token fields count as 0."""
    if not isinstance(raw, dict):
        return None, {"non_field_errors": [f"{json_kind(raw)}, not an event object"]}
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name in REQUIRED:
        if raw.get(name) in (None, ""):
            fail(name, "this field is required")
    for name, limit in MAX_TEXT.items():
        value = raw.get(name)
        if value is not None and value != "":
            if not isinstance(value, str):
                fail(name, f"must be a string, got {type(value).__name__}")
            elif len(value) > limit:
                fail(name, f"at most {limit} characters")

    timestamp = None
    if "timestamp" not in errors:
        try:
            timestamp = parse_timestamp(raw["timestamp"])
            problem = timestamp_out_of_range(timestamp, now=now or datetime.now(UTC), text=raw["timestamp"])
            if problem:
                fail("timestamp", problem)
        except ValueError as error:
            fail("timestamp", str(error))

    tokens = [0] * len(TOKEN_TYPES)
    usage = raw.get("usage")
    if "usage" not in errors:
        if not isinstance(usage, dict):
            fail("usage", "must be an object of token counts")
        else:
            unknown = sorted(set(usage) - set(TOKEN_TYPES))
            if unknown:
                # quoted as Python writes them: a key may hold a NUL or a control character
                named = ", ".join(repr(name) for name in unknown)
                fail("usage", f"unknown token field(s) {named}; use {', '.join(TOKEN_TYPES)}")
            for position, token_type in enumerate(TOKEN_TYPES):
                value = usage.get(token_type)
                if value is None:
                    continue
                try:
                    tokens[position] = _int(value, maximum=MAX_TOKENS_PER_FIELD)
                except ValueError as error:
                    fail(f"usage.{token_type}", str(error))

    optional_ints = {
        "step": raw.get("step"),
        "latency_ms": raw.get("latency_ms"),
        "max_tokens": raw.get("max_tokens"),
    }
    clean_ints: dict[str, int | None] = {}
    for name, value in optional_ints.items():
        if value is None:
            clean_ints[name] = None
            continue
        try:
            clean_ints[name] = _int(value)
        except ValueError as error:
            fail(name, str(error))

    batch = raw.get("batch", False)
    if batch is None:
        batch = False
    if not isinstance(batch, bool):
        fail("batch", f"must be true or false, got {batch!r}")

    reported_cost = raw.get("reported_cost_usd")
    if reported_cost is not None:
        if isinstance(reported_cost, float):
            fail("reported_cost_usd", 'send money as a decimal string such as "0.0171", not a float')
        else:
            try:
                reported_cost = Decimal(str(reported_cost))
                if not reported_cost.is_finite() or reported_cost < 0:
                    raise InvalidOperation
                stored = _reported_cost_stored(str(reported_cost))
                if stored is None:
                    fail(
                        "reported_cost_usd",
                        f"{raw.get('reported_cost_usd')!r} is too large (at most 1e16 USD)",
                    )
                else:
                    reported_cost = Decimal(stored)  # as the ledger keeps it
            except InvalidOperation:
                fail("reported_cost_usd", f"{raw.get('reported_cost_usd')!r} is not a non-negative decimal")

    for name in MAX_TEXT:
        problem = _unstorable(raw.get(name))
        if problem:
            fail(name, problem)
    for name in JSON_VALUED:
        problem = json_value_problem(raw.get(name))
        if problem:
            fail(name, problem)

    for name, kind in (("input_breakdown", dict), ("tags", dict), ("tool_calls", list)):
        value = raw.get(name)
        if value is not None and not isinstance(value, kind):
            fail(name, f"must be a JSON {'object' if kind is dict else 'array'}")

    task_id = raw.get("task_id")
    if task_id is not None and not isinstance(task_id, str):
        fail("task_id", f"must be a string, got {type(task_id).__name__}")

    reservation_id = raw.get("reservation_id")
    if reservation_id is not None:
        try:
            reservation_id = uuid.UUID(reservation_id)
        except (TypeError, ValueError, AttributeError):
            fail(
                "reservation_id",
                f"must be the reservation_id of a guard check (a UUID), got {reservation_id!r}",
            )

    if errors:
        return None, errors
    return (
        Event(
            event_id=raw["event_id"],
            timestamp=timestamp,
            team=raw["team"],
            agent=raw["agent"],
            provider=raw["provider"].lower(),
            model=raw["model"],
            tokens=tuple(tokens),
            task_id=task_id or None,
            step=clean_ints["step"],
            input_breakdown=raw.get("input_breakdown"),
            batch=batch,
            latency_ms=clean_ints["latency_ms"],
            status=raw.get("status") or "ok",
            prompt_version=raw.get("prompt_version") or None,
            max_tokens=clean_ints["max_tokens"],
            tool_calls=raw.get("tool_calls"),
            reported_cost_usd=reported_cost,
            tags=raw.get("tags"),
            reservation_id=reservation_id,
        ),
        {},
    )


# --- the fast path -------------------------------------------------------------------------------------
# msgspec decodes and type-checks a well-formed event in C; anything it refuses goes through
# `event_validate` above, which is the one source of the error messages. Both accept the same events.

NULL = msgspec.Raw(b"null")
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_FIELD)]
_Int32 = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


def _text(limit: int, minimum: int = 0):
    return Annotated[str, msgspec.Meta(min_length=minimum, max_length=limit)]


class WireUsage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    uncached_input: _Count = 0
    cache_read: _Count = 0
    cache_write_5m: _Count = 0
    cache_write_1h: _Count = 0
    output: _Count = 0
    reasoning: _Count = 0


class WireEvent(msgspec.Struct, gc=False):
    """A usage event as decoded from JSON; JSON-valued fields stay raw bytes (written as they came)."""

    event_id: _text(256, 1)
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    team: _text(64, 1)
    agent: _text(128, 1)
    provider: _text(64, 1)
    model: _text(128, 1)
    usage: WireUsage
    task_id: _text(256) | None = None
    step: _Int32 | None = None
    input_breakdown: msgspec.Raw = NULL
    batch: bool | None = False
    latency_ms: _Int32 | None = None
    status: _text(32) | None = None
    prompt_version: _text(128) | None = None
    max_tokens: _Int32 | None = None
    tool_calls: msgspec.Raw = NULL
    reported_cost_usd: str | None = None
    tags: msgspec.Raw = NULL
    reservation_id: uuid.UUID | None = None


_decode_event = msgspec.json.Decoder(WireEvent)
_encode = msgspec.json.Encoder()


@dataclass(slots=True)
class Rejected:
    """An event that did not validate: why ({field: [reason, …]}), and the row as received."""

    errors: dict[str, list[str]]
    payload: Any


def wire_events_decode(raws: Iterable[bytes | dict], *, now: datetime) -> list[WireEvent | Rejected]:
    """Decode and validate events from JSON bytes (or dicts an adapter built), one result per row in
    order. This runs per row on the bulk path, so the checks msgspec cannot make are inlined here."""
    decode = _decode_event.decode
    earliest, latest, null = MIN_TIMESTAMP, now + MAX_CLOCK_SKEW, NULL
    results: list[WireEvent | Rejected] = []
    append = results.append
    for raw in raws:
        if isinstance(raw, dict):
            try:
                data = _encode.encode(raw)
            except UnicodeEncodeError:  # a lone surrogate: the validator says in which field
                errors = event_validate(raw, now=now)[1]
                append(
                    Rejected(errors or {"non_field_errors": ["holds text that is not valid Unicode"]}, raw)
                )
                continue
            except (TypeError, msgspec.EncodeError, RecursionError) as error:
                append(Rejected({"non_field_errors": [f"not JSON-serialisable: {error}"]}, repr(raw)))
                continue
        else:
            data = raw
        # a NUL, which PostgreSQL cannot store (or the text "\u0000"), or nested deeper than an event
        # whose JSON values nest the most levels allowed: the slow path looks closer and says where
        if b"\\u0000" in data or text_depth_exceeds(data, _MAX_EVENT_DEPTH):
            append(_slow_path(data, now))
            continue
        try:
            event = decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            append(_slow_path(data, now))
            continue
        if event.reported_cost_usd is not None:  # as the ledger stores it, or None if it cannot
            event.reported_cost_usd = _reported_cost_stored(event.reported_cost_usd)
            if event.reported_cost_usd is None:
                append(_slow_path(data, now))
                continue
        # the JSON-valued fields are mostly absent (null): only a present one needs its kind checked
        if (
            earliest <= event.timestamp <= latest
            and (event.input_breakdown == null or bytes(event.input_breakdown)[:1] == b"{")
            and (event.tags == null or bytes(event.tags)[:1] == b"{")
            and (event.tool_calls == null or bytes(event.tool_calls)[:1] == b"[")
        ):
            append(event)
        else:
            append(_slow_path(data, now))
    return results


def _reported_cost_stored(text: str) -> str | None:
    """A reported cost as the ledger's numeric(28, 12) keeps it, or None if it is not a non-negative
    decimal below 1e16. Rounded here, half up as PostgreSQL rounds: some texts Python reads (1_000,
    1e-999999999) PostgreSQL cannot."""
    try:
        cost = Decimal(text)
    except InvalidOperation:
        return None
    if not (cost.is_finite() and 0 <= cost < MAX_REPORTED_COST_USD):
        return None
    stored = cost.quantize(STORED_COST_PLACES, rounding=ROUND_HALF_UP, context=_WIDE)
    return str(stored) if stored < MAX_REPORTED_COST_USD else None  # 9999999999999999.9999999999995


def _slow_path(data: bytes, now: datetime) -> WireEvent | Rejected:
    if text_depth_exceeds(data, MAX_DOCUMENT_DEPTH):  # too deep to decode safely: kept as its text
        return Rejected({"non_field_errors": [str(JsonTooDeep())]}, bytes(data).decode("utf-8", "replace"))
    try:
        payload = json.loads(data)
    except ValueError as error:
        return Rejected({"non_field_errors": [f"not JSON: {error}"]}, bytes(data).decode("utf-8", "replace"))
    event, errors = event_validate(payload, now=now)
    if errors:
        return Rejected(errors, payload)
    # valid once normalised (e.g. 5.0 tokens, "" for an optional text): re-encode the normalised event
    normalised = {
        "event_id": event.event_id,
        "timestamp": event.timestamp.isoformat(),
        "team": event.team,
        "agent": event.agent,
        "provider": event.provider,
        "model": event.model,
        "usage": dict(zip(TOKEN_TYPES, event.tokens, strict=True)),
        "task_id": event.task_id,
        "step": event.step,
        "input_breakdown": event.input_breakdown,
        "batch": event.batch,
        "latency_ms": event.latency_ms,
        "status": event.status,
        "prompt_version": event.prompt_version,
        "max_tokens": event.max_tokens,
        "tool_calls": event.tool_calls,
        "reported_cost_usd": None if event.reported_cost_usd is None else str(event.reported_cost_usd),
        "tags": event.tags,
        "reservation_id": event.reservation_id and str(event.reservation_id),
    }
    return _decode_event.decode(_encode.encode(normalised))
