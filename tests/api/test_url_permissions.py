"""Every URL of the UI and the API, walked from the URL resolver, answers each principal within its
team only (issue 7, A.3; SPEC.md "Who uses it": a 404, never another team's numbers).

A test matrix, as NetBox's `utilities/testing/api.py` and `views.py` are: ROUTES, keyed by URL name,
says per HTTP method how to build a request about team alpha (the principals' own team: the control)
and about team bravo (the foreign one), and the status each principal must get. From it:

- `test_every_url_has_an_entry`: the URL names the resolver serves are exactly ROUTES' (plus the
  excluded Django admin), so a new URL fails until it is described here;
- `test_each_principal_gets_its_answer`: one case per URL name, method, target and principal. It
  checks the status; that no sentinel of a team the principal may not see (names, a distinctive
  token count, ... planted in `conftest.py`) is anywhere in the body; that a team it may see shows
  where the entry says it does (so the scan could fail); and that a refused request, or any request of
  a principal outside a team, leaves that team's data as it was;
- `test_methods_not_listed_are_refused`: a method an entry does not list answers 405, so the entry's
  list of methods is the URL's.

Where the code gives a wrong answer today the case is marked `xfail(strict=True)` with the bug: fix
the code and delete the mark.

Adding a URL is one entry (the method is the key; `get(path, **query)` builds any request without a
body, `send` one with JSON). `api:allowance-detail` below is a full one:

    "api:allowance-detail": Route(
        scope=READ_OR_MANAGE,  # the token scopes that will do: scopeless_token holds none of them
        methods={
            "GET": Call(each_team(lambda t: get(f"/api/v1/allowances/{t.allowance.pk}")),
                        team_a=API_READ, team_b=API_FOREIGN, shows=of_each(lambda t: [t.agent.name])),
            "PATCH": Call(each_team(lambda t: send(f"/api/v1/allowances/{t.allowance.pk}", {...})),
                          team_a=GUARD_CHANGE, team_b=GUARD_FOREIGN_CHANGE, scope=MANAGE),
            ...
        },
    ),

with the team-owned row it needs made in `_team_data` (conftest.py, kept on `TeamData`) and its table
in `TEAM_TABLES` there. A list is `about_all(...)` with `all=`; billing or other data of no team is
`organisation(...)` with `org=`; a further request (a filter) goes in the targets as "team_b+what",
with its row in `more`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from finops.accounts.models import TokenScope
from finops.modeltiers.models import ModelTier
from tests.api.conftest import (
    CALL_TIME,
    WALK_INVOICE,
    WINDOW,
    Principal,
    TeamData,
    World,
    teams_fingerprint,
)

CSRF_TOKEN = re.compile(r'(?<=name="csrfmiddlewaretoken" )value="[^"]*"')
READ, INGEST, MANAGE = TokenScope.READ.value, TokenScope.INGEST.value, TokenScope.MANAGE.value
# reading what a `manage` token may change: either scope will do (ReadOrManageScope)
READ_OR_MANAGE = (READ, MANAGE)

# The columns of every expectation, in order. org_token and team_token hold every scope (team_token is
# alpha's); scopeless_token is an org-wide token holding every scope but the ones the URL (or the
# method) accepts: nothing but the scope check stands between it and every team's data.
PRINCIPALS = (
    "admin",
    "finops",
    "sre",
    "tech_lead",
    "pm",
    "ml",
    "viewer",
    "org_token",
    "team_token",
    "scopeless_token",
    "anonymous",
)
GROUPS = {
    "members": ("sre", "tech_lead", "pm", "ml", "viewer"),
    "writers": ("sre", "tech_lead", "pm", "ml"),
    "users": ("admin", "finops", "sre", "tech_lead", "pm", "ml", "viewer"),
}
# The teams each target is about: a principal that sees one of them must find its sentinels shown.
TARGET_TEAMS = {"team_a": {"alpha"}, "team_b": {"bravo"}, "all": {"alpha", "bravo"}, "org": set()}

# Excluded URL namespaces, and why that is safe. Only views of Django itself may live under one.
EXCLUDED = {
    "admin": "the Django admin: its own login and staff checks guard it, and its team scoping (a staff "
    "team member sees no other team's rows) is tested page by page in tests/accounts/test_admin.py",
}
# Static files have no URL pattern to exclude: WhiteNoise's middleware serves them before URL routing.

# --- the expectations -----------------------------------------------------------------------------
#              admin finops | sre lead pm  ml  viewer | org team scopeless | anonymous
API_READ = "200 200 | 200 200 200 200 200 | 200 200 403 | 401"
API_FOREIGN = "200 200 | 404 404 404 404 404 | 200 404 403 | 401"
# a batch of rows for one team: a principal that may not write it gets each row rejected, not a 404
API_WRITE = "200 200 | 200 200 200 200 403 | 200 200 403 | 401"
BILLING_API_READ = "200 200 | 403 403 403 403 403 | 200 404 403 | 401"
PAGE = "200 200 | 200 200 200 200 200 | 302 302 302 | 302"
PAGE_FOREIGN = "200 200 | 404 404 404 404 404 | 302 302 302 | 302"
HOME = "200 200 | 200 200 200 200 302 | 302 302 302 | 302"
BILLING_PAGE = "200 200 | 403 403 403 403 403 | 302 302 302 | 302"
# invoices (organisation billing data): admin and finops; a page of them is a 404 to anyone else
INVOICE_PAGE = "200 200 | 404 404 404 404 404 | 302 302 302 | 302"
INVOICE_PAGE_CHANGE = "302 302 | 404 404 404 404 404 | 302 302 302 | 302"
AGENT_FOREIGN_CHANGE = "200 403 | 404 404 404 404 404 | 403 404 403 | 401"
# a guardrail (allowance, kill switch): sre and tech_lead of the team, admin and finops, manage tokens
GUARD_CHANGE = "200 200 | 200 200 403 403 403 | 200 200 403 | 401"
GUARD_FOREIGN_CHANGE = "200 200 | 404 404 404 404 404 | 200 404 403 | 401"
GUARD_CREATE = "201 201 | 201 201 403 403 403 | 201 201 403 | 401"
GUARD_FOREIGN_CREATE = "201 201 | 404 404 404 404 404 | 201 404 403 | 401"
GUARD_DELETE = "204 204 | 204 204 403 403 403 | 204 204 403 | 401"
GUARD_FOREIGN_DELETE = "204 204 | 404 404 404 404 404 | 204 404 403 | 401"
EVERYONE = "200 200 | 200 200 200 200 200 | 200 200 200 | 200"
# a page's form changing a guardrail or alerting (a 302 when done): sre and tech_lead of the team, admin
# and finops; a row seen but not changeable a 403, one not seen a 404
PAGE_GUARD_CHANGE = "302 302 | 302 302 403 403 403 | 302 302 302 | 302"
PAGE_GUARD_FOREIGN = "302 302 | 404 404 404 404 404 | 302 302 302 | 302"


# the model-tier mapping (organisation data): admin, finops and the ml role of any team; never a token
TIER_CREATE = "201 201 | 403 403 403 201 403 | 403 403 403 | 401"
TIER_CHANGE = "200 200 | 403 403 403 200 403 | 403 403 403 | 401"
TIER_DELETE = "204 204 | 403 403 403 204 403 | 403 403 403 | 401"
DAYS = {"start": "2026-11-01", "end": "2026-11-30"}  # the calls' month, as pages and /models/usage take it


def gpt_4o_tier() -> int:
    """The id of a default row of the mapping (migration 0002 of finops.modeltiers)."""
    return ModelTier.objects.get(provider="openai", model="gpt-4o").pk


def billing_api_change(status: int) -> str:
    # API tokens never change billing settings; a team's token learns nothing outside its team
    return f"{status} {status} | 403 403 403 403 403 | 403 404 403 | 401"


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes = b""
    content_type: str = "application/json"


def get(path: str, **query) -> Request:
    return Request(f"{path}?{urlencode(query)}" if query else path)


def send(path: str, payload) -> Request:
    return Request(path, json.dumps(payload).encode())


def form(path: str, fields: dict) -> Request:
    return Request(path, urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded")


def upload(path: str, *, file_name: str, content: bytes, **fields) -> Request:
    fields = {"file": SimpleUploadedFile(file_name, content), "format": "auto", **fields}
    return Request(path, encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT)


def invoice_mapping_form(**fields) -> dict:
    """The Invoices map page's form for the walk's invoice (tests/api/conftest.py WALK_INVOICE)."""
    return {
        "column_period_start": "day",
        "column_amount": "cost",
        "column_model": "model",
        "currency": "USD",
        "provider": "openai",
        "date_format": "iso",
        "period": "day",
        "amount_scale": "units",
        "quantity_scale": "1",
        "delimiter": ",",
        **fields,
    }


Build = Callable[[World], Request]


def each_team(build: Callable[[TeamData], Request], what: str = "") -> dict[str, Build]:
    """The same request about team alpha (team_a) and about team bravo (team_b); given `what`, as
    a further pair of targets, team_a+what and team_b+what."""
    suffix = f"+{what}" if what else ""
    return {
        f"team_a{suffix}": lambda world: build(world.alpha),
        f"team_b{suffix}": lambda world: build(world.bravo),
    }


def of_each(texts: Callable[[TeamData], list[str]]) -> Callable[[list[TeamData]], list[str]]:
    return lambda teams: [text for team in teams for text in texts(team)]


def limit(team: TeamData) -> str:
    """The team's allowance's dollar limit, a sentinel: as the API, the audit log and the page show it."""
    return str(team.allowance.limit_usd)


def rule_form(team: TeamData) -> dict:
    """The rule editor's fields for a forecast rule of the team (the alerts pages)."""
    return {
        "name": f"{team.slug} month end",
        "team": team.slug,
        "kind": "forecast",
        "op": "gt",
        "value": "900",
        "for_minutes": "0",
        "repeat_minutes": "240",
        "enabled": "on",
    }


def about_all(build: Build) -> dict[str, Build]:
    """One request about every team (a list, or no filter): each principal sees what it may."""
    return {"all": build}


def organisation(build: Build) -> dict[str, Build]:
    """One request about no team (billing, login)."""
    return {"org": build}


def event(team: TeamData) -> dict:
    return {
        "event_id": f"walk-{team.slug}-new",
        "timestamp": CALL_TIME,
        "team": team.slug,
        "agent": "walk-new-agent",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"uncached_input": 11, "output": 13},
    }


def task_outcome(team: TeamData) -> dict:
    return {
        "task_id": f"{team.slug}-sentinel-task",
        "team": team.slug,
        "agent": team.agent.name,
        "status": "failure",
        "started_at": "2026-11-02T09:59:00Z",
        "ended_at": "2026-11-02T10:01:00Z",
    }


def litellm_payload(team: TeamData) -> dict:
    return {
        "id": f"walk-{team.slug}-litellm",
        "call_type": "acompletion",
        "model": "gpt-4o",
        "custom_llm_provider": "openai",
        "startTime": 1793613600.0,
        "endTime": 1793613601.5,
        "prompt_tokens": 17,
        "completion_tokens": 19,
        "metadata": {"spend_logs_metadata": {"team": team.slug, "agent": "walk-new-agent"}},
    }


def otlp_span(team: TeamData) -> dict:
    def attribute(key, value):
        kind = "intValue" if isinstance(value, int) else "stringValue"
        return {"key": key, "value": {kind: value}}

    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": "1793613600000000000",
        "endTimeUnixNano": "1793613601000000000",
        "attributes": [
            attribute("gen_ai.operation.name", "chat"),
            attribute("gen_ai.provider.name", "openai"),
            attribute("gen_ai.request.model", "gpt-4o"),
            attribute("gen_ai.usage.input_tokens", 23),
            attribute("gen_ai.usage.output_tokens", 29),
        ],
    }
    resource = {"attributes": [attribute("finops.team", team.slug), attribute("service.name", "walk-svc")]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


# --- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bug:
    """A case where today's code answers wrongly; the case is a strict xfail until it is fixed."""

    target: str
    principals: str  # keys or GROUPS names, space separated
    reason: str


@dataclass(frozen=True)
class Call:
    """One HTTP method of a URL: its request per target, and per target the status of each principal
    (a row of PRINCIPALS' columns; "|" only groups them for the eye)."""

    targets: dict[str, Build]
    team_a: str | None = None
    team_b: str | None = None
    all: str | None = None
    org: str | None = None
    # what a 200 shows of the teams it is about that the principal sees (all of them at once)
    shows: Callable[[list[TeamData]], list[str]] | None = None
    # rows of further requests, named "<target>+<what they vary>" (e.g. team_b+source: by a filter)
    more: dict[str, str] = field(default_factory=dict)
    bugs: tuple[Bug, ...] = ()
    # the token scope(s) this method accepts, where not the route's (changing needs `manage` alone)
    scope: str | tuple[str, ...] | None = None

    def __post_init__(self):
        for target in self.targets:
            self.expected(target)  # a row of the wrong length fails at import, naming the target
        for bug in self.bugs:
            assert bug.target in self.targets, bug

    def expected(self, target: str) -> dict[str, int]:
        row = self.more[target] if "+" in target else getattr(self, target)
        cells = [int(cell) for cell in row.replace("|", " ").split()]
        assert len(cells) == len(PRINCIPALS), f"{target}: {len(cells)} statuses, not {len(PRINCIPALS)}"
        return dict(zip(PRINCIPALS, cells, strict=True))

    def bug(self, target: str, principal: str) -> str:
        return "; ".join(
            bug.reason
            for bug in self.bugs
            if bug.target == target
            and principal in [name for word in bug.principals.split() for name in GROUPS.get(word, (word,))]
        )


@dataclass(frozen=True)
class Route:
    # the token scope it needs, or a tuple of scopes any one of which will do; None: no token may use
    # it (a page)
    scope: str | tuple[str, ...] | None
    methods: dict[str, Call] = field(default_factory=dict)
    other_methods_bug: str = ""  # why methods it does not list are not a 405 today


def only(scope: str | None, method: str, call: Call) -> Route:
    return Route(scope=scope, methods={method: call})


def both_teams(principals: str, reason: str) -> tuple[Bug, Bug]:
    return Bug("team_a", principals, reason), Bug("team_b", principals, reason)


def batch_route(path: str, row: Callable[[TeamData], dict], *, bugs: tuple[Bug, ...] = ()) -> Route:
    """An ingest endpoint taking a JSON array of rows, each naming its team."""
    return only(
        INGEST,
        "POST",
        Call(each_team(lambda team: send(path, [row(team)])), team_a=API_WRITE, team_b=API_WRITE, bugs=bugs),
    )


BAD_LOGIN = {"username": "walk-nobody", "password": "not-a-password"}

ROUTES: dict[str, Route] = {
    # --- API: teams and agents ---
    "api:team-list": only(
        READ,
        "GET",
        Call(about_all(lambda w: get("/api/v1/teams")), all=API_READ, shows=of_each(lambda t: [t.name])),
    ),
    "api:team-detail": Route(
        scope=READ,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/teams/{t.slug}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.name]),
            ),
            # a team's monthly budget: the finops and admin roles only, never a token (SPEC.md, roles)
            "PATCH": Call(
                each_team(lambda t: send(f"/api/v1/teams/{t.slug}", {"monthly_budget_usd": "1200.00"})),
                team_a="200 200 | 403 403 403 403 403 | 403 403 403 | 401",
                team_b="200 200 | 404 404 404 404 404 | 403 404 403 | 401",
            ),
        },
    ),
    "api:agent-list": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            about_all(lambda w: get("/api/v1/agents")),
            all=API_READ,
            shows=of_each(lambda t: [t.agent.name]),
        ),
    ),
    "api:agent-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/agents/{t.agent.pk}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.agent.name]),
            ),
            # each setting by the roles SPEC gives it (finops has none); a `manage` token only the kill
            # switch, of its team's agents (what an sre may)
            "PATCH": Call(
                {
                    # max_steps, the kill switch: sre and tech_lead
                    **each_team(lambda t: send(f"/api/v1/agents/{t.agent.pk}", {"max_steps": 40})),
                    **each_team(
                        lambda t: send(f"/api/v1/agents/{t.agent.pk}", {"cost_slo_usd": "0.3"}), "slo"
                    ),
                    **each_team(lambda t: send(f"/api/v1/agents/{t.agent.pk}", {"ideal_steps": 9}), "ideal"),
                },
                team_a="200 403 | 200 200 403 403 403 | 200 200 403 | 401",
                team_b="200 403 | 404 404 404 404 404 | 200 404 403 | 401",
                scope=MANAGE,
                more={
                    "team_a+slo": "200 403 | 403 403 200 403 403 | 403 403 403 | 401",
                    "team_b+slo": AGENT_FOREIGN_CHANGE,
                    "team_a+ideal": "200 403 | 403 200 200 403 403 | 403 403 403 | 401",
                    "team_b+ideal": AGENT_FOREIGN_CHANGE,
                },
            ),
        },
    ),
    # --- API: guardrails ---
    "api:allowance-list": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                about_all(lambda w: get("/api/v1/allowances")),
                all=API_READ,
                shows=of_each(lambda t: [t.agent.name, limit(t)]),
            ),
            # naming a team the principal does not see is a 404, told as of a missing team
            "POST": Call(
                each_team(
                    lambda t: send(
                        "/api/v1/allowances",
                        {"team": t.slug, "agent": None, "window": "day", "limit_usd": "5.00"},
                    )
                ),
                team_a="201 201 | 201 201 403 403 403 | 201 201 403 | 401",
                team_b="201 201 | 404 404 404 404 404 | 201 404 403 | 401",
                scope=MANAGE,
            ),
        },
    ),
    "api:allowance-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/allowances/{t.allowance.pk}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.agent.name, limit(t)]),
            ),
            "PATCH": Call(
                each_team(lambda t: send(f"/api/v1/allowances/{t.allowance.pk}", {"limit_usd": "9.50"})),
                team_a=GUARD_CHANGE,
                team_b=GUARD_FOREIGN_CHANGE,
                scope=MANAGE,
                shows=of_each(lambda t: [t.agent.name, '"limit_usd":"9.50"']),
            ),
            "DELETE": Call(
                each_team(lambda t: get(f"/api/v1/allowances/{t.allowance.pk}")),
                team_a="204 204 | 204 204 403 403 403 | 204 204 403 | 401",
                team_b="204 204 | 404 404 404 404 404 | 204 404 403 | 401",
                scope=MANAGE,
            ),
        },
    ),
    "api:audit-list": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            {
                **about_all(lambda w: get("/api/v1/audit")),
                # a team filter only narrows the principal's own entries: bravo's are none of an alpha's
                **each_team(lambda t: get("/api/v1/audit", team=t.slug), "team"),
            },
            all=API_READ,
            more={"team_a+team": API_READ, "team_b+team": API_READ},
            shows=of_each(lambda t: [t.agent.name, limit(t)]),
        ),
    ),
    "api:audit-detail": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            each_team(lambda t: get(f"/api/v1/audit/{t.audit.pk}")),
            team_a=API_READ,
            team_b=API_FOREIGN,
            shows=of_each(lambda t: [t.agent.name, limit(t)]),
        ),
    ),
    # --- API: alerts (changed as guardrails are: sre and tech_lead of the team, admin and finops,
    # manage tokens; a team the principal cannot see is a 404, as a team that does not exist) ---
    "api:alert-channel-list": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                about_all(lambda w: get("/api/v1/alert-channels")),
                all=API_READ,
                # whole only to the channel's guards (tests/alerts/test_api.py): its end to every reader
                shows=of_each(lambda t: [t.channel.name, t.channel.target[-4:]]),
            ),
            "POST": Call(
                each_team(
                    lambda t: send(
                        "/api/v1/alert-channels",
                        {"team": t.slug, "kind": "webhook", "target": "https://walk.example/new"},
                    )
                ),
                team_a=GUARD_CREATE,
                team_b=GUARD_FOREIGN_CREATE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-channel-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/alert-channels/{t.channel.pk}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.channel.name]),
            ),
            "PATCH": Call(
                each_team(lambda t: send(f"/api/v1/alert-channels/{t.channel.pk}", {"name": "walk-renamed"})),
                team_a=GUARD_CHANGE,
                team_b=GUARD_FOREIGN_CHANGE,
                scope=MANAGE,
                shows=of_each(lambda t: [t.channel.target, '"name":"walk-renamed"']),
            ),
            "DELETE": Call(
                each_team(lambda t: get(f"/api/v1/alert-channels/{t.channel.pk}")),
                team_a=GUARD_DELETE,
                team_b=GUARD_FOREIGN_DELETE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-rule-list": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                about_all(lambda w: get("/api/v1/alert-rules")),
                all=API_READ,
                shows=of_each(lambda t: [t.rule.name, t.agent.name]),
            ),
            "POST": Call(
                each_team(
                    lambda t: send(
                        "/api/v1/alert-rules",
                        {
                            "team": t.slug,
                            "name": "walk-new-rule",
                            "kind": "forecast",
                            "value": "100",
                            "channels": [t.channel.pk],
                        },
                    )
                ),
                team_a=GUARD_CREATE,
                team_b=GUARD_FOREIGN_CREATE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-rule-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/alert-rules/{t.rule.pk}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.rule.name, t.agent.name]),
            ),
            "PATCH": Call(
                each_team(lambda t: send(f"/api/v1/alert-rules/{t.rule.pk}", {"value": "7.25"})),
                team_a=GUARD_CHANGE,
                team_b=GUARD_FOREIGN_CHANGE,
                scope=MANAGE,
                shows=of_each(lambda t: [t.rule.name, '"value":"7.25"']),
            ),
            "DELETE": Call(
                each_team(lambda t: get(f"/api/v1/alert-rules/{t.rule.pk}")),
                team_a=GUARD_DELETE,
                team_b=GUARD_FOREIGN_DELETE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-list": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            {
                **about_all(lambda w: get("/api/v1/alerts")),
                # a filter only narrows the principal's own alerts: bravo's are none of an alpha's
                **each_team(lambda t: get("/api/v1/alerts", team=t.slug), "team"),
                **each_team(lambda t: get("/api/v1/alerts", rule=t.rule.pk), "rule"),
            },
            all=API_READ,
            more={
                "team_a+team": API_READ,
                "team_b+team": API_READ,
                "team_a+rule": API_READ,
                "team_b+rule": API_READ,
            },
            shows=of_each(lambda t: [t.rule.name, t.alert.subject]),
        ),
    ),
    "api:alert-detail": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            each_team(lambda t: get(f"/api/v1/alerts/{t.alert.pk}")),
            team_a=API_READ,
            team_b=API_FOREIGN,
            shows=of_each(lambda t: [t.rule.name, t.alert.subject]),
        ),
    ),
    "api:alert-ack": only(
        MANAGE,
        "POST",
        Call(
            each_team(lambda t: send(f"/api/v1/alerts/{t.alert.pk}/ack", {})),
            team_a=GUARD_CHANGE,
            team_b=GUARD_FOREIGN_CHANGE,
            shows=of_each(lambda t: [t.rule.name, '"acknowledged_at":"20']),
        ),
    ),
    "api:alert-silence-list": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                about_all(lambda w: get("/api/v1/alert-silences")),
                all=API_READ,
                shows=of_each(lambda t: [t.silence.reason, t.agent.name]),
            ),
            "POST": Call(
                each_team(
                    lambda t: send(
                        "/api/v1/alert-silences",
                        {"team": t.slug, "ends_at": "2099-01-01T00:00:00Z", "reason": "walk"},
                    )
                ),
                team_a=GUARD_CREATE,
                team_b=GUARD_FOREIGN_CREATE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-silence-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/api/v1/alert-silences/{t.silence.pk}")),
                team_a=API_READ,
                team_b=API_FOREIGN,
                shows=of_each(lambda t: [t.silence.reason]),
            ),
            "DELETE": Call(
                each_team(lambda t: get(f"/api/v1/alert-silences/{t.silence.pk}")),
                team_a=GUARD_DELETE,
                team_b=GUARD_FOREIGN_DELETE,
                scope=MANAGE,
            ),
        },
    ),
    "api:alert-delivery-list": only(
        READ_OR_MANAGE,
        "GET",
        Call(
            {
                **about_all(lambda w: get("/api/v1/alert-deliveries")),
                **each_team(lambda t: get("/api/v1/alert-deliveries", channel=t.channel.pk), "channel"),
            },
            all=API_READ,
            more={"team_a+channel": API_READ, "team_b+channel": API_READ},
            shows=of_each(lambda t: [f"msg_{t.slug}_sentinel"]),
        ),
    ),
    # an agent's call may go ahead: who may send its events may ask (a viewer may not)
    "api:guard-check": only(
        INGEST,
        "POST",
        Call(
            each_team(lambda t: send("/api/v1/guard/check", {"team": t.slug, "agent": t.agent.name})),
            team_a=API_WRITE,
            team_b="200 200 | 404 404 404 404 403 | 200 404 403 | 401",
            shows=of_each(lambda t: [f"{t.slug}/{t.agent.name}", limit(t)]),
        ),
    ),
    # --- API: KPIs ---
    "api:kpis": only(
        READ,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/api/v1/kpis", team=t.slug, **WINDOW)),
                **about_all(lambda w: get("/api/v1/kpis", **WINDOW)),
            },
            team_a=API_READ,
            team_b=API_FOREIGN,
            # without a team filter: the principal's own teams, summed (only alpha's figure for
            # alpha's members; the org-wide ones get a sum, so their `shows` is left to team_a/b)
            all=API_READ,
            shows=lambda teams: [f'"uncached_input":{sum(team.uncached_input for team in teams)}'],
        ),
    ),
    # --- API: models (the tier mapping is organisation data: every principal reads it; admin, finops
    # and the ml role of any team change it; API tokens never do) ---
    "api:model-usage": only(
        READ,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/api/v1/models/usage", team=t.slug, **DAYS)),
                **about_all(lambda w: get("/api/v1/models/usage", **DAYS)),
            },
            team_a=API_READ,
            team_b=API_FOREIGN,
            all=API_READ,
            shows=lambda teams: ['"model":"gpt-4o"'] if teams else [],
        ),
    ),
    "api:model-tier-list": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                organisation(lambda w: get("/api/v1/model-tiers")),
                org=API_READ,
                shows=lambda teams: ['"model":"claude-sonnet-4-5"'],
            ),
            "POST": Call(
                organisation(
                    lambda w: send(
                        "/api/v1/model-tiers", {"provider": "walk", "model": "walk-model", "tier": "small"}
                    )
                ),
                org=TIER_CREATE,
                scope=MANAGE,
            ),
        },
    ),
    "api:model-tier-detail": Route(
        scope=READ_OR_MANAGE,
        methods={
            "GET": Call(
                organisation(lambda w: get(f"/api/v1/model-tiers/{gpt_4o_tier()}")),
                org=API_READ,
                shows=lambda teams: ['"model":"gpt-4o"'],
            ),
            "PATCH": Call(
                organisation(lambda w: send(f"/api/v1/model-tiers/{gpt_4o_tier()}", {"tier": "flagship"})),
                org=TIER_CHANGE,
                scope=MANAGE,
                shows=lambda teams: ['"tier":"flagship"'],
            ),
            "DELETE": Call(
                organisation(lambda w: get(f"/api/v1/model-tiers/{gpt_4o_tier()}")),
                org=TIER_DELETE,
                scope=MANAGE,
            ),
        },
    ),
    # --- API: ingest ---
    "api:events": batch_route(
        "/api/v1/events",
        event,
    ),
    "api:tasks": batch_route("/api/v1/tasks", task_outcome),
    "api:litellm": batch_route(
        "/api/v1/litellm",
        litellm_payload,
    ),
    # OTLP exporters authenticate with a bearer token only: a browser session is not a login there
    "otlp-traces": only(
        INGEST,
        "POST",
        Call(
            each_team(lambda t: send("/v1/traces", otlp_span(t))),
            team_a="401 401 | 401 401 401 401 401 | 200 200 403 | 401",
            team_b="401 401 | 401 401 401 401 401 | 200 200 403 | 401",
        ),
    ),
    # --- API: quarantine ---
    "api:quarantine": only(
        # a source is not a team's: filtering by one only ever lists the principal's own rows
        READ,
        "GET",
        Call(
            each_team(lambda t: get("/api/v1/quarantine", source=t.quarantine_source)),
            team_a=API_READ,
            team_b=API_READ,
            shows=of_each(lambda t: [t.quarantined.event_id]),
        ),
    ),
    "api:quarantine-replay": only(
        INGEST,
        "POST",
        Call(
            {
                **each_team(lambda t: send("/api/v1/quarantine/replay", {"ids": [t.quarantined.pk]})),
                # a source is a filter, not an object: it replays the principal's own rows of it
                "team_b+source": lambda w: send(
                    "/api/v1/quarantine/replay", {"source": w.bravo.quarantine_source}
                ),
            },
            team_a="200 200 | 200 200 200 200 403 | 200 200 403 | 401",
            team_b="200 200 | 404 404 404 404 403 | 200 404 403 | 401",
            more={"team_b+source": "200 200 | 200 200 200 200 403 | 200 200 403 | 401"},
        ),
    ),
    # --- API: billing (organisation data: admin and finops, and org-wide tokens may read) ---
    "api:connectors": Route(
        scope=READ,
        methods={
            "GET": Call(
                organisation(lambda w: get("/api/v1/connectors")),
                org=BILLING_API_READ,
                shows=lambda teams: ["walk-connector"],
            ),
            "POST": Call(
                organisation(
                    lambda w: send(
                        "/api/v1/connectors",
                        {"kind": "openai_usage", "name": "walk-new", "credentials": {"api_key": "sk-y"}},
                    )
                ),
                org=billing_api_change(201),
            ),
        },
    ),
    "api:connector-run": only(
        READ,
        "POST",
        Call(
            organisation(lambda w: send(f"/api/v1/connectors/{w.connector_id}/run", {})),
            org=billing_api_change(202),
        ),
    ),
    "api:statements": only(
        READ, "GET", Call(organisation(lambda w: get("/api/v1/statements")), org=BILLING_API_READ)
    ),
    # --- API: bills (organisation data: admin and finops, org-wide read tokens; changes by people only) ---
    "api:months": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/months")),
            org=BILLING_API_READ,
            shows=lambda teams: ['"month":"2026-10","state":"closed"'],
        ),
    ),
    "api:month-close": only(
        READ,
        "POST",
        Call(
            organisation(lambda w: send("/api/v1/months/2026-11/close", {"reason": "walk"})),
            org=billing_api_change(200),
        ),
    ),
    "api:month-reopen": only(
        READ,
        "POST",
        Call(
            organisation(lambda w: send("/api/v1/months/2026-10/reopen", {"reason": "walk"})),
            org=billing_api_change(200),
        ),
    ),
    # November's cost statement ($1.25) allocated to both teams' agents by their telemetry cost
    "api:chargeback": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/chargeback", month="2026-11")),
            org=BILLING_API_READ,
            shows=lambda teams: ['"basis":"statement"', '"total_usd":"1.25"'],
        ),
    ),
    "api:invoice-mappings": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/invoice-mappings")),
            org=BILLING_API_READ,
            shows=lambda teams: ["walk-mapping"],
        ),
    ),
    # importing an invoice file: admin and finops, and org-wide tokens with the ingest scope
    "api:invoices": only(
        INGEST,
        "POST",
        Call(
            organisation(
                lambda w: upload(
                    "/api/v1/invoices",
                    file_name="walk-invoice.csv",
                    content=WALK_INVOICE.encode(),
                    format="invoice-csv",
                    mapping="walk-mapping",
                )
            ),
            org="200 200 | 403 403 403 403 403 | 200 404 403 | 401",
            shows=lambda teams: ['"lines_created":2', '"source":"invoice:walk-invoice.csv"'],
        ),
    ),
    # the reconciliation of the walk's one statement line (openai, 2026-11): billing data
    "api:reconciliation": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/reconciliation", provider="openai", month="2026-11")),
            org=BILLING_API_READ,
        ),
    ),
    "api:reconciliation-line-detail": only(
        READ,
        "PATCH",
        Call(
            organisation(
                lambda w: send(f"/api/v1/reconciliation/lines/{w.reconciliation_line_id}", {"note": "walk"})
            ),
            org=billing_api_change(200),
        ),
    ),
    # --- API: prices, discounts and re-pricing runs (organisation billing data: admin and finops change
    # them, never a token; org-wide read tokens read them) ---
    "api:price-override-list": Route(
        scope=READ,
        methods={
            "GET": Call(
                organisation(lambda w: get("/api/v1/price-overrides")),
                org=BILLING_API_READ,
                shows=lambda teams: ["walk-price-model"],
            ),
            "POST": Call(
                organisation(
                    lambda w: send(
                        "/api/v1/price-overrides",
                        {
                            "provider": "walk",
                            "model": "walk-new-model",
                            "effective_from": "2026-11-01T00:00:00Z",
                            "uncached_input_per_mtok": "2",
                            "output_per_mtok": "8",
                        },
                    )
                ),
                org=billing_api_change(201),
            ),
        },
    ),
    "api:price-override-detail": Route(
        scope=READ,
        methods={
            "GET": Call(
                organisation(lambda w: get(f"/api/v1/price-overrides/{w.price_override_id}")),
                org=BILLING_API_READ,
                shows=lambda teams: ["walk-price-model"],
            ),
            "PATCH": Call(
                organisation(
                    lambda w: send(f"/api/v1/price-overrides/{w.price_override_id}", {"output_per_mtok": "7"})
                ),
                org=billing_api_change(200),
            ),
            "DELETE": Call(
                organisation(lambda w: get(f"/api/v1/price-overrides/{w.price_override_id}")),
                org=billing_api_change(200),
            ),
        },
    ),
    "api:discount-list": Route(
        scope=READ,
        methods={
            "GET": Call(
                organisation(lambda w: get("/api/v1/discounts")),
                org=BILLING_API_READ,
                shows=lambda teams: ['"percent":"4.5"'],
            ),
            "POST": Call(
                organisation(
                    lambda w: send(
                        "/api/v1/discounts",
                        {"provider": "walk", "percent": "3", "effective_from": "2026-11-01T00:00:00Z"},
                    )
                ),
                org=billing_api_change(201),
            ),
        },
    ),
    "api:discount-detail": Route(
        scope=READ,
        methods={
            "GET": Call(
                organisation(lambda w: get(f"/api/v1/discounts/{w.discount_id}")),
                org=BILLING_API_READ,
                shows=lambda teams: ['"percent":"4.5"'],
            ),
            "PATCH": Call(
                organisation(lambda w: send(f"/api/v1/discounts/{w.discount_id}", {"percent": "6"})),
                org=billing_api_change(200),
            ),
            "DELETE": Call(
                organisation(lambda w: get(f"/api/v1/discounts/{w.discount_id}")),
                org=billing_api_change(200),
            ),
        },
    ),
    "api:reprice-run-list": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/reprice-runs")),
            org=BILLING_API_READ,
            shows=lambda teams: ["walk-reprice-run"],
        ),
    ),
    "api:reprice-run-detail": only(
        READ,
        "GET",
        Call(
            organisation(lambda w: get(f"/api/v1/reprice-runs/{w.reprice_run_id}")),
            org=BILLING_API_READ,
            shows=lambda teams: ["walk-reprice-run"],
        ),
    ),
    # --- API: its own description (public: it holds no data) ---
    # who am I: any principal, about itself (no team's data)
    "api:whoami": only(
        None,
        "GET",
        Call(
            organisation(lambda w: get("/api/v1/whoami")),
            org="200 200 | 200 200 200 200 200 | 200 200 200 | 401",
        ),
    ),
    "api:schema": only(None, "GET", Call(organisation(lambda w: get("/api/v1/schema")), org=EVERYONE)),
    "api:docs": only(None, "GET", Call(organisation(lambda w: get("/api/v1/docs")), org=EVERYONE)),
    # --- pages ---
    "dashboard:overview": only(
        None,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/", team=t.slug, start="2026-11-01", end="2026-11-30")),
                **about_all(lambda w: get("/", start="2026-11-01", end="2026-11-30")),
                # an agent name alone picks that agent in every team the principal sees
                "team_b+agent": lambda w: get(
                    "/", agent=w.bravo.agent.name, start="2026-11-01", end="2026-11-30"
                ),
            },
            team_a=PAGE,
            team_b=PAGE_FOREIGN,
            all=PAGE,
            more={"team_b+agent": PAGE_FOREIGN},
            shows=of_each(lambda t: [t.name, t.agent.name]),
        ),
    ),
    "dashboard:breakdown": only(
        None,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/breakdown/", team=t.slug, start="2026-11-01", end="2026-11-30")),
                **about_all(lambda w: get("/breakdown/", start="2026-11-01", end="2026-11-30")),
                "team_b+agent": lambda w: get(
                    "/breakdown/", agent=w.bravo.agent.name, start="2026-11-01", end="2026-11-30"
                ),
            },
            team_a=PAGE,
            team_b=PAGE_FOREIGN,
            all=PAGE,
            more={"team_b+agent": PAGE_FOREIGN},
            shows=of_each(lambda t: [t.name, t.agent.name]),
        ),
    ),
    "dashboard:forecast": Route(
        scope=None,
        methods={
            "GET": Call(
                {
                    **each_team(lambda t: get("/forecast/", team=t.slug)),
                    **about_all(lambda w: get("/forecast/")),
                    "team_b+agent": lambda w: get("/forecast/", agent=w.bravo.agent.name),
                    "team_b+month": lambda w: get("/forecast/", team=w.bravo.slug, month="2026-11"),
                },
                team_a=PAGE,
                team_b=PAGE_FOREIGN,
                all=PAGE,
                more={"team_b+agent": PAGE_FOREIGN, "team_b+month": PAGE_FOREIGN},
                shows=of_each(lambda t: [t.name, t.slug]),
            ),
            # a team's monthly budget: finops and admin (SPEC.md, roles); a team seen is a 403 to others
            "POST": Call(
                each_team(lambda t: form("/forecast/", {"team": t.slug, "monthly_budget_usd": "1200"})),
                team_a="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
                team_b="302 302 | 404 404 404 404 404 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:home": only(
        None,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/home/", team=t.slug)),
                **about_all(lambda w: get("/home/")),
                # another role's home: only where the person holds that role (admin and finops: all)
                "team_a+as": lambda w: get("/home/", team=w.alpha.slug, **{"as": "sre"}),
                "team_b+as": lambda w: get("/home/", team=w.bravo.slug, **{"as": "sre"}),
            },
            # a viewer's home is the team Overview: a redirect to it
            team_a=HOME,
            team_b=PAGE_FOREIGN,
            all=HOME,
            more={
                "team_a+as": "200 200 | 200 400 400 400 400 | 302 302 302 | 302",
                "team_b+as": PAGE_FOREIGN,
            },
            shows=of_each(lambda t: [t.slug]),
        ),
    ),
    "dashboard:guardrails": Route(
        scope=None,
        methods={
            "GET": Call(
                about_all(lambda w: get("/guardrails/")),
                all=PAGE,
                shows=of_each(lambda t: [t.agent.name, limit(t)]),
            ),
            # a team the person may not guard is not among the form's choices: the page again (200, so
            # the form's 302 is the only answer that added one), with the form only for those who may
            "POST": Call(
                each_team(
                    lambda t: form(
                        "/guardrails/",
                        {
                            "team": t.slug,
                            "agent": "",
                            "window": "day",
                            "limit_usd": "5",
                            "warn_at": "0.8",
                            "action": "deny",
                        },
                    )
                ),
                team_a="302 302 | 302 302 403 403 403 | 302 302 302 | 302",
                team_b="302 302 | 200 200 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:task": only(
        None,
        "GET",
        Call(
            each_team(lambda t: get(f"/tasks/{t.task.pk}/")),
            team_a=PAGE,
            team_b=PAGE_FOREIGN,
            shows=of_each(lambda t: [t.agent.name, f"{t.slug}-sentinel-task"]),
        ),
    ),
    "dashboard:agent": Route(
        scope=None,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/agents/{t.agent.pk}/")),
                team_a=PAGE,
                team_b=PAGE_FOREIGN,
                shows=of_each(lambda t: [t.agent.name]),
            ),
            # the kill switch: sre and tech_lead of the team (and admin); finops, pm, ml, viewer may not
            "POST": Call(
                each_team(lambda t: form(f"/agents/{t.agent.pk}/", {"max_steps": "40"})),
                team_a="302 403 | 302 302 403 403 403 | 302 302 302 | 302",
                team_b="302 403 | 404 404 404 404 404 | 302 302 302 | 302",
            ),
        },
    ),
    # an allowance the person sees but may not change is a 403, as in the API; one it cannot see a 404
    "dashboard:allowance-remove": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/guardrails/allowances/{t.allowance.pk}/delete", {})),
            team_a="302 302 | 302 302 403 403 403 | 302 302 302 | 302",
            team_b="302 302 | 404 404 404 404 404 | 302 302 302 | 302",
        ),
    ),
    # --- pages: an allowance's own page, the alerts, the rules and channels, the audit log ---
    "dashboard:allowance-edit": Route(
        scope=None,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/guardrails/allowances/{t.allowance.pk}/")),
                team_a=PAGE,
                team_b=PAGE_FOREIGN,
                shows=of_each(lambda t: [t.agent.name]),
            ),
            "POST": Call(
                each_team(
                    lambda t: form(
                        f"/guardrails/allowances/{t.allowance.pk}/",
                        {
                            "team": t.slug,
                            "agent": t.agent.name,
                            "window": "day",
                            "limit_usd": "9.5",
                            "warn_at": "0.8",
                            "action": "deny",
                        },
                    )
                ),
                team_a=PAGE_GUARD_CHANGE,
                team_b=PAGE_GUARD_FOREIGN,
            ),
        },
    ),
    "dashboard:alerts": only(
        None,
        "GET",
        Call(
            {
                **about_all(lambda w: get("/alerts/")),
                **each_team(lambda t: get("/alerts/", team=t.slug), "team"),
            },
            all=PAGE,
            more={"team_a+team": PAGE, "team_b+team": PAGE_FOREIGN},
            shows=of_each(lambda t: [t.alert.subject, t.rule.name]),
        ),
    ),
    "dashboard:alert-detail": only(
        None,
        "GET",
        Call(
            each_team(lambda t: get(f"/alerts/{t.alert.pk}/")),
            team_a=PAGE,
            team_b=PAGE_FOREIGN,
            shows=of_each(lambda t: [t.alert.subject, t.rule.name]),
        ),
    ),
    "dashboard:alert-ack": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/alerts/{t.alert.pk}/ack", {})),
            team_a=PAGE_GUARD_CHANGE,
            team_b=PAGE_GUARD_FOREIGN,
        ),
    ),
    # a team the person may not guard is not among the form's choices: the form again (200)
    "dashboard:silence-create": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form("/alerts/silences/", {"team": t.slug, "ends_at": "2099-01-01T00:00"})),
            team_a=PAGE_GUARD_CHANGE,
            team_b="302 302 | 200 200 403 403 403 | 302 302 302 | 302",
        ),
    ),
    "dashboard:silence-expire": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/alerts/silences/{t.silence.pk}/expire", {})),
            team_a=PAGE_GUARD_CHANGE,
            team_b=PAGE_GUARD_FOREIGN,
        ),
    ),
    "dashboard:rules": Route(
        scope=None,
        methods={
            "GET": Call(
                about_all(lambda w: get("/alerts/rules/")),
                all=PAGE,
                shows=of_each(lambda t: [t.rule.name]),
            ),
            "POST": Call(
                each_team(lambda t: form("/alerts/rules/", rule_form(t))),
                team_a=PAGE_GUARD_CHANGE,
                team_b="302 302 | 200 200 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:rule-edit": Route(
        scope=None,
        methods={
            "GET": Call(
                each_team(lambda t: get(f"/alerts/rules/{t.rule.pk}/")),
                team_a=PAGE,
                team_b=PAGE_FOREIGN,
                shows=of_each(lambda t: [t.rule.name, t.alert.subject]),
            ),
            "POST": Call(
                each_team(lambda t: form(f"/alerts/rules/{t.rule.pk}/", rule_form(t))),
                team_a=PAGE_GUARD_CHANGE,
                team_b=PAGE_GUARD_FOREIGN,
            ),
        },
    ),
    "dashboard:rule-enabled": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/alerts/rules/{t.rule.pk}/enabled", {})),
            team_a=PAGE_GUARD_CHANGE,
            team_b=PAGE_GUARD_FOREIGN,
        ),
    ),
    "dashboard:rule-remove": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/alerts/rules/{t.rule.pk}/delete", {})),
            team_a=PAGE_GUARD_CHANGE,
            team_b=PAGE_GUARD_FOREIGN,
        ),
    ),
    # a created channel is answered with the page itself (200), its secret shown once, never redirected
    "dashboard:channel-create": only(
        None,
        "POST",
        Call(
            each_team(
                lambda t: form(
                    "/alerts/channels/", {"team": t.slug, "kind": "email", "target": "oncall@example.com"}
                )
            ),
            team_a="200 200 | 200 200 403 403 403 | 302 302 302 | 302",
            team_b="200 200 | 200 200 403 403 403 | 302 302 302 | 302",
        ),
    ),
    "dashboard:channel-remove": only(
        None,
        "POST",
        Call(
            each_team(lambda t: form(f"/alerts/channels/{t.channel.pk}/delete", {})),
            team_a=PAGE_GUARD_CHANGE,
            team_b=PAGE_GUARD_FOREIGN,
        ),
    ),
    "dashboard:audit": only(
        None,
        "GET",
        Call(
            {
                **about_all(lambda w: get("/audit/")),
                **each_team(lambda t: get("/audit/", team=t.slug), "team"),
            },
            all=PAGE,
            more={"team_a+team": PAGE, "team_b+team": PAGE_FOREIGN},
            shows=of_each(lambda t: [limit(t), t.rule.name]),
        ),
    ),
    "dashboard:models": Route(
        scope=None,
        methods={
            "GET": Call(
                {
                    **each_team(lambda t: get("/models/", team=t.slug, **DAYS)),
                    **about_all(lambda w: get("/models/", **DAYS)),
                },
                team_a=PAGE,
                team_b=PAGE_FOREIGN,
                all=PAGE,
                shows=of_each(lambda t: [t.name, "gpt-4o"]),
            ),
            # the org-wide tier mapping: admin, finops and the ml role of any team; the others a 403
            "POST": Call(
                organisation(
                    lambda w: form("/models/", {"provider": "walk", "model": "walk-model", "tier": "mid"})
                ),
                org="302 302 | 403 403 403 302 403 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:caching": only(
        None,
        "GET",
        Call(
            {
                **each_team(lambda t: get("/caching/", team=t.slug, **DAYS)),
                **about_all(lambda w: get("/caching/", **DAYS)),
                "team_b+agent": lambda w: get("/caching/", agent=w.bravo.agent.name, **DAYS),
            },
            team_a=PAGE,
            team_b=PAGE_FOREIGN,
            all=PAGE,
            more={"team_b+agent": PAGE_FOREIGN},
            # one team's uncached input (on its own: a page of both teams sums them)
            shows=lambda teams: (
                [team.name for team in teams] + ([f"{teams[0].uncached_input:,}"] if len(teams) == 1 else [])
            ),
        ),
    ),
    "ingest:upload": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/ingest/upload")),
                org="200 200 | 200 200 200 200 403 | 302 302 302 | 302",
            ),
            # the file's rows are checked against the uploader's teams by the worker (tests/imports)
            "POST": Call(
                each_team(
                    lambda t: upload(
                        "/ingest/upload", file_name="walk.jsonl", content=json.dumps(event(t)).encode()
                    )
                ),
                team_a="302 302 | 302 302 302 302 403 | 302 302 302 | 302",
                team_b="302 302 | 302 302 302 302 403 | 302 302 302 | 302",
            ),
        },
    ),
    # an import job is its uploader's (alpha's sre uploaded alpha's, a bravo member bravo's)
    "ingest:job": only(
        None,
        "GET",
        Call(
            each_team(lambda t: get(f"/ingest/jobs/{t.job.pk}")),
            team_a="200 200 | 200 404 404 404 404 | 302 302 302 | 302",
            team_b=PAGE_FOREIGN,
            shows=of_each(lambda t: [t.job.file_name]),
        ),
    ),
    "ingest:job-progress": only(
        None,
        "GET",
        Call(
            each_team(lambda t: get(f"/ingest/jobs/{t.job.pk}/progress")),
            team_a="200 200 | 200 404 404 404 404 | 302 302 302 | 302",
            team_b=PAGE_FOREIGN,
            shows=of_each(lambda t: [t.job.file_name]),
        ),
    ),
    "ingest:quarantine": only(
        None,
        "GET",
        Call(
            each_team(lambda t: get("/ingest/quarantine", source=t.quarantine_source)),
            team_a=PAGE,
            team_b=PAGE,
            shows=of_each(lambda t: [t.quarantined.event_id]),
        ),
    ),
    "ingest:quarantine-replay": only(
        None,
        "POST",
        Call(
            {
                **each_team(lambda t: form("/ingest/quarantine/replay", {"ids": [t.quarantined.pk]})),
                "team_b+source": lambda w: form(
                    "/ingest/quarantine/replay", {"source": w.bravo.quarantine_source}
                ),
            },
            team_a="302 302 | 302 302 302 302 403 | 302 302 302 | 302",
            team_b="302 302 | 404 404 404 404 403 | 302 302 302 | 302",
            more={"team_b+source": "302 302 | 302 302 302 302 403 | 302 302 302 | 302"},
        ),
    ),
    "connectors:status": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/connectors/")),
                org=BILLING_PAGE,
                shows=lambda teams: ["walk-connector"],
            ),
            "POST": Call(
                organisation(
                    lambda w: form(
                        "/connectors/", {"kind": "openai_usage", "name": "walk-new", "api_key": "sk-y"}
                    )
                ),
                org="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    # organisation billing data: the admin and finops roles; notes on a line are theirs to write
    "dashboard:reconciliation": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/bills/reconciliation/", provider="openai", month="2026-11")),
                org=BILLING_PAGE,
                shows=lambda teams: ["gpt-4o"],
            ),
            "POST": Call(
                organisation(
                    lambda w: form(
                        "/bills/reconciliation/", {"line": w.reconciliation_line_id, "note": "walk page"}
                    )
                ),
                org="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    # --- the Prices pages (admin and finops only) ---
    "dashboard:prices": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/prices/")),
                org=BILLING_PAGE,
                shows=lambda teams: ["walk-price-model", "walk-reprice-run"],
            ),
            "POST": Call(
                organisation(
                    lambda w: form(
                        "/prices/",
                        {
                            "action": "discount",
                            "discount-provider": "walk",
                            "discount-percent": "2",
                            "discount-effective_from": "2026-11-01 00:00",
                        },
                    )
                ),
                org="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:months": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/months/", month="2026-11")),
                org=BILLING_PAGE,
                shows=lambda teams: ["alpha-sentinel-agent", "bravo-sentinel-agent", "$1.25"],
            ),
            # close November (it has ended), confirmed: back to the page
            "POST": Call(
                organisation(
                    lambda w: form("/months/", {"action": "close", "month": "2026-11", "confirm": "yes"})
                ),
                org="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
            ),
        },
    ),
    "dashboard:reprice-runs": only(
        None,
        "GET",
        Call(
            organisation(lambda w: get("/prices/runs/")),
            org=BILLING_PAGE,
            shows=lambda teams: ["walk-reprice-run"],
        ),
    ),
    "dashboard:reprice-run": only(
        None,
        "GET",
        Call(
            organisation(lambda w: get(f"/prices/runs/{w.reprice_run_id}/")),
            org=BILLING_PAGE,
            shows=lambda teams: ["walk-reprice-run"],
        ),
    ),
    "connectors:pull-now": only(
        None,
        "POST",
        Call(
            organisation(lambda w: form(f"/connectors/{w.connector_id}/pull", {})),
            org="302 302 | 403 403 403 403 403 | 302 302 302 | 302",
        ),
    ),
    "ingest:invoices": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get("/ingest/invoices")),
                org=INVOICE_PAGE,
                shows=lambda t: ["walk-mapping"],
            ),
            # an upload without a mapping goes to its map page; with one it is imported at once
            "POST": Call(
                {
                    **organisation(
                        lambda w: upload(
                            "/ingest/invoices", file_name="walk.csv", content=WALK_INVOICE.encode()
                        )
                    ),
                    "org+mapping": lambda w: upload(
                        "/ingest/invoices",
                        file_name="walk.csv",
                        content=WALK_INVOICE.encode(),
                        mapping=str(w.invoice_mapping_id),
                    ),
                },
                org=INVOICE_PAGE_CHANGE,
                more={"org+mapping": INVOICE_PAGE_CHANGE},
            ),
        },
    ),
    "ingest:invoice": only(
        None,
        "GET",
        Call(
            organisation(lambda w: get(f"/ingest/invoices/{w.invoice_import_id}")),
            org=INVOICE_PAGE,
            shows=lambda teams: ["walk-invoice.csv"],
        ),
    ),
    "ingest:invoice-map": Route(
        scope=None,
        methods={
            "GET": Call(
                organisation(lambda w: get(f"/ingest/invoices/{w.invoice_import_id}/map")),
                org=INVOICE_PAGE,
                shows=lambda teams: ["walk-invoice.csv", "2026-11-03"],
            ),
            # checking a mapping on the preview's rows changes nothing: the page again
            "POST": Call(
                {
                    **organisation(
                        lambda w: form(
                            f"/ingest/invoices/{w.invoice_import_id}/map",
                            invoice_mapping_form(action="check"),
                        )
                    ),
                    "org+save": lambda w: form(
                        f"/ingest/invoices/{w.invoice_import_id}/map",
                        invoice_mapping_form(action="save_import", name="walk-new-mapping"),
                    ),
                },
                org=INVOICE_PAGE,
                more={"org+save": INVOICE_PAGE_CHANGE},
                shows=lambda teams: ["What the mapping makes of these rows"],
            ),
        },
    ),
    "ingest:invoice-import": only(
        None,
        "POST",
        Call(
            organisation(
                lambda w: form(
                    f"/ingest/invoices/{w.invoice_import_id}/import", {"mapping": w.invoice_mapping_id}
                )
            ),
            org=INVOICE_PAGE_CHANGE,
        ),
    ),
    "ingest:invoice-mapping-delete": only(
        None,
        "POST",
        Call(
            organisation(lambda w: form(f"/ingest/invoices/mappings/{w.invoice_mapping_id}/delete", {})),
            org=INVOICE_PAGE_CHANGE,
        ),
    ),
    # Django's LoginView takes PUT as POST: wrong credentials are the form again, for everyone
    "login": Route(
        scope=None,
        methods={
            "GET": Call(organisation(lambda w: get("/login/")), org=EVERYONE),
            "POST": Call(organisation(lambda w: form("/login/", BAD_LOGIN)), org=EVERYONE),
            "PUT": Call(organisation(lambda w: form("/login/", BAD_LOGIN)), org=EVERYONE),
        },
    ),
    "logout": only(
        None,
        "POST",
        Call(
            organisation(lambda w: form("/logout/", {})),
            org="302 302 | 302 302 302 302 302 | 302 302 302 | 302",
        ),
    ),
}


# --- the walk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    name: str  # namespaced, as reverse() takes it
    path: str
    callback: Callable


def served_urls(
    resolver: URLResolver | None = None, prefix: str = "", namespace: tuple = ()
) -> Iterator[Served]:
    """Every URL pattern, recursively through includes."""
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            inner = (*namespace, pattern.namespace) if pattern.namespace else namespace
            yield from served_urls(pattern, prefix + str(pattern.pattern), inner)
        else:
            assert isinstance(pattern, URLPattern)
            yield Served(
                ":".join([*namespace, pattern.name or ""]), prefix + str(pattern.pattern), pattern.callback
            )


def test_every_url_has_an_entry():
    excluded, missing = [], []
    for url in served_urls():
        namespace = url.name.split(":")[0] if ":" in url.name else None
        if namespace in EXCLUDED:
            excluded.append(url)
        elif url.name not in ROUTES:
            missing.append(url)
    assert not missing, "\n".join(
        f"URL {url.path!r} ({url.name or 'no name: give it one'}) has no entry in ROUTES of "
        "tests/api/test_url_permissions.py. Add one: how to build its request about team alpha and team "
        "bravo, its methods, and each principal's status (the module docstring shows how)."
        for url in missing
    )
    served = {url.name for url in served_urls()}
    assert not set(ROUTES) - served, f"entries for URLs no longer served: {sorted(set(ROUTES) - served)}"
    strangers = [url for url in excluded if not url.callback.__module__.startswith("django.")]
    assert not strangers, f"only Django's own views may hide in an excluded namespace: {strangers}"
    assert excluded, "the excluded namespaces exclude nothing: drop them from EXCLUDED"


# --- the matrix -----------------------------------------------------------------------------------


def matrix() -> Iterator:
    for name, route in ROUTES.items():
        for method, call in route.methods.items():
            for target in call.targets:
                for principal, status in call.expected(target).items():
                    reason = call.bug(target, principal)
                    marks = (
                        [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)]
                        if reason
                        else []
                    )
                    yield pytest.param(
                        name,
                        method,
                        target,
                        principal,
                        status,
                        marks=marks,
                        id=f"{name}-{method}-{target}-{principal}",
                    )


def scopes_of(route: Route, call: Call) -> frozenset[str]:
    scope = call.scope or route.scope or READ
    return frozenset((scope,) if isinstance(scope, str) else scope)


def principal_for(world: World, route: Route, call: Call, key: str) -> Principal:
    return world.principals.get(key) or world.tokens_lacking[scopes_of(route, call)]


def respond(principal: Principal, method: str, request: Request) -> tuple[int, str, HttpResponse]:
    client, headers = principal.client()
    response = client.generic(method, request.path, request.body, request.content_type, headers=headers)
    # each rendering masks the CSRF token afresh: blank it, so two answers compare equal
    page = CSRF_TOKEN.sub('value=""', response.content.decode("utf-8", "replace"))
    return response.status_code, page, response


@pytest.mark.parametrize(("name", "method", "target", "principal_key", "expected"), list(matrix()))
def test_each_principal_gets_its_answer(url_world, db, name, method, target, principal_key, expected):
    route = ROUTES[name]
    call = route.methods[method]
    request = call.targets[target](url_world)
    principal = principal_for(url_world, route, call, principal_key)
    asked = f"{method} {request.path} as {principal_key}"
    refused = expected >= 400 or (expected == 302 and principal.session_key is None)
    # the teams this request may not change (GET is safe: it changes nothing by HTTP's definition)
    guarded = [
        slug for slug in ("alpha", "bravo") if (refused or slug not in principal.sees) and method != "GET"
    ]
    before = teams_fingerprint(guarded) if guarded else None

    status, body, response = respond(principal, method, request)

    assert status == expected, f"{asked}: {body[:500]}"
    if refused and expected == 302:
        assert response["Location"].startswith(reverse("login")), response["Location"]
    for slug in sorted({"alpha", "bravo"} - principal.sees):
        leaked = [sentinel for sentinel in url_world.team(slug).sentinels if sentinel in body]
        assert not leaked, f"{asked} shows team {slug}'s {leaked}"
    if status == 200 and call.shows:
        about = TARGET_TEAMS[target.partition("+")[0]] & principal.sees
        shown = call.shows([url_world.team(slug) for slug in sorted(about)])
        assert all(text in body for text in shown), f"{asked} should show {shown}: {body[:500]}"
    if guarded:
        assert teams_fingerprint(guarded) == before, f"{asked} changed {guarded}"
    if target.startswith("team_b") and "bravo" not in principal.sees:
        nowhere = url_world.without_bravo()
        missing_status, missing_body, _ = respond(principal, method, call.targets[target](nowhere))
        for field_name in ("slug", "name", "quarantine_source"):
            body = body.replace(getattr(url_world.bravo, field_name), getattr(nowhere.bravo, field_name))
        assert (missing_status, clockless(missing_body)) == (status, clockless(body)), (
            f"{asked} tells bravo's from a missing team's"
        )


def clockless(body: str) -> str:
    """A page without the clock it shows ("as of 13:19:48 UTC", "resets in 28 d 10 h"): two requests a
    moment apart may straddle a second, and the walk compares what they say of the teams."""
    body = re.sub(r"\b\d{2}:\d{2}:\d{2}\b", "hh:mm:ss", body)
    return re.sub(r"\b\d+ (d|h|min|s)\b", r"N \1", body)


def undeclared() -> Iterator:
    for name, route in ROUTES.items():
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method not in route.methods:
                reason = route.other_methods_bug
                marks = (
                    [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
                )
                yield pytest.param(name, method, marks=marks, id=f"{name}-{method}")


@pytest.mark.parametrize(("name", "method"), list(undeclared()))
def test_methods_not_listed_are_refused(url_world, db, name, method):
    """Asked by someone who may do everything the URL offers: the admin, or an org-wide token where
    only tokens log in."""
    route = ROUTES[name]
    call = next(iter(route.methods.values()))
    target = next(iter(call.targets))
    request = call.targets[target](url_world)
    principal_key = "org_token" if call.expected(target)["admin"] == 401 else "admin"
    status, _, _ = respond(principal_for(url_world, route, call, principal_key), method, request)
    assert status == 405, f"{method} {request.path}: {status}"
