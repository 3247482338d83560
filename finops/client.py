"""A small client for finops: send usage events, report task outcomes, and check before each LLM call.

Standard library only (no Django), so an agent or gateway can import it, or copy this one file:

    from finops.client import FinopsClient, GuardDenied

    finops = FinopsClient("http://127.0.0.1:8000", token="fo_...")
    decision = finops.check(team="support", agent="refund-bot", task_id="run-42",
                            estimated_cost_usd="0.02", raise_on_deny=True)
    ...  # the LLM call
    finops.send_events([{..., "reservation_id": decision["reservation_id"]}])
    finops.report_tasks([{"task_id": "run-42", "team": "support", "agent": "refund-bot",
                          "status": "success", "started_at": "...", "ended_at": "..."}])
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any


class FinopsError(Exception):
    """finops answered with an error (status and its message), or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class GuardDenied(FinopsError):
    """The guard check denied the call; `reasons` says why (an allowance, a kill switch)."""

    def __init__(self, decision: dict[str, Any]) -> None:
        self.decision = decision
        self.reasons: list[str] = list(decision.get("reasons") or [])
        super().__init__("finops guard denied the call: " + ("; ".join(self.reasons) or "no reason given"))


class FinopsClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"finops URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _post(self, path: str, body: Any) -> Any:
        data = json.dumps(body, default=_json_default).encode()
        request = urllib.request.Request(  # noqa: S310 (the URL's scheme is checked in __init__)
            f"{self.url}{path}",
            data=data,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw.decode("utf-8", "replace")
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise FinopsError(
                f"POST {path}: HTTP {error.code}: {message}", status=error.code, body=answer
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise FinopsError(f"POST {path}: finops at {self.url} could not be reached: {error}") from None

    def send_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /api/v1/events: {"accepted", "duplicates", "rejected"}."""
        return self._post("/api/v1/events", events)

    def report_tasks(self, outcomes: list[dict[str, Any]]) -> Any:
        """POST /api/v1/tasks: task outcomes (success, failure, abandoned)."""
        return self._post("/api/v1/tasks", outcomes)

    def check(
        self,
        team: str,
        agent: str,
        task_id: str | None = None,
        estimated_tokens: int | None = None,
        estimated_cost_usd: str | Decimal | None = None,
        *,
        raise_on_deny: bool = False,
    ) -> dict[str, Any]:
        """POST /api/v1/guard/check: {"decision": "allow"|"warn"|"deny", "reasons", "reservation_id", …}.
        With raise_on_deny, a deny raises GuardDenied carrying the reasons."""
        body: dict[str, Any] = {"team": team, "agent": agent}
        if task_id is not None:
            body["task_id"] = task_id
        if estimated_tokens is not None:
            body["estimated_tokens"] = estimated_tokens
        if estimated_cost_usd is not None:
            body["estimated_cost_usd"] = str(estimated_cost_usd)
        decision = self._post("/api/v1/guard/check", body)
        if raise_on_deny and decision.get("decision") == "deny":
            raise GuardDenied(decision)
        return decision


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact: a decimal string
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
