"""Alerts through the API (SPEC.md, "Alerts"): channels with a webhook secret shown once and never
again; rules checked per kind, each bad field named; alerts listed, filtered and acknowledged;
silences; deliveries. Changed by the team's sre and tech_lead, admin and finops, and `manage` tokens;
read by the others; 404 outside the principal's teams; every change audited with before and after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest.mock import ANY

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from finops.alerts.models import Alert, AlertChannel, AlertRule, Delivery, Silence
from finops.alerts.services import secret_fingerprint
from finops.alerts.signing import webhook_secret_key, webhook_secret_new
from finops.audit.models import AuditEntry
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

HOOK = {"team": "support", "kind": "webhook", "target": "https://hooks.example/finops"}
FORECAST = {"team": "support", "name": "month-end", "kind": "forecast", "value": "1000"}
MOMENT = datetime(2026, 11, 2, 10, tzinfo=UTC)


@pytest.fixture
def support(db):
    team = TeamFactory(slug="support")
    AgentFactory(team=team, name="refund-bot")
    AgentFactory(team=TeamFactory(slug="search"), name="indexer")
    return team


def person(*, role: str | None = None, org_role: str = "", team_slug: str = "support") -> APIClient:
    user = UserFactory(org_role=org_role)
    if role:
        MembershipFactory(user=user, team=TeamFactory(slug=team_slug), role=role)
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def manager(make_api, team=None) -> APIClient:
    return make_api(scopes=["manage"], team=team).client


def an_alert(rule: AlertRule, *, state: str = "firing", subject: str = "agent:support/refund-bot", **fields):
    return Alert.objects.create(
        rule=rule,
        team=rule.team,
        subject=subject,
        state=state,
        value=Decimal("12.5"),
        threshold=Decimal(10),
        started_at=fields.pop("started_at", MOMENT),
        last_evaluated_at=MOMENT,
        **fields,
    )


def a_rule(team, **fields) -> AlertRule:
    return AlertRule.objects.create(
        team=team, name=fields.pop("name", "r"), kind="forecast", value=1, **fields
    )


def entries(object_type: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(object_type=object_type).order_by("at", "id"))


# --- channels -------------------------------------------------------------------------------------


def test_a_webhook_secret_is_generated_shown_once_and_never_again(make_api, support):
    client = manager(make_api, support)
    created = client.post("/api/v1/alert-channels", {**HOOK, "name": "on-call"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(webhook_secret_key(secret)) == 24
    channel = AlertChannel.objects.get()
    assert channel.secret == secret
    assert body == {
        "id": channel.pk,
        "team": "support",
        "name": "on-call",
        "kind": "webhook",
        "target": "https://hooks.example/finops",
        "last_success_at": None,
        "last_failure_at": None,
        "last_error": "",
        "consecutive_failures": 0,
        "created_at": body["created_at"],
    }
    # never again: not in the detail, the list, a change's answer, or the audit log
    later = [
        client.get(f"/api/v1/alert-channels/{channel.pk}"),
        client.get("/api/v1/alert-channels"),
        client.patch(f"/api/v1/alert-channels/{channel.pk}", {"name": "pager"}, format="json"),
        client.get("/api/v1/audit", {"object_type": "alert_channel"}),
    ]
    for answer in later:
        assert answer.status_code == 200
        assert secret not in answer.content.decode() and secret[6:] not in answer.content.decode()
        assert '"secret"' not in answer.content.decode().replace('"secret_fingerprint"', "")
    assert later[0].json() == body and later[2].json() == {**body, "name": "pager"}
    assert later[3].json()["count"] == 2  # the creation and the change, each without the secret


def test_a_given_secret_is_kept_and_not_echoed_and_other_kinds_have_none(make_api, support):
    client = manager(make_api, support)
    secret = webhook_secret_new()
    given = client.post("/api/v1/alert-channels", {**HOOK, "secret": secret}, format="json")
    assert given.status_code == 201 and given.json()["secret"] is None
    assert AlertChannel.objects.get(pk=given.json()["id"]).secret == secret
    slack = client.post(
        "/api/v1/alert-channels",
        {"team": "support", "kind": "slack", "target": "https://hooks.slack.com/services/T0/B0/x"},
        format="json",
    )
    email = client.post(
        "/api/v1/alert-channels",
        {"team": "support", "kind": "email", "target": "oncall@example.com"},
        format="json",
    )
    assert (slack.status_code, slack.json()["secret"]) == (201, None)
    assert (email.status_code, email.json()["secret"]) == (201, None)
    assert AlertChannel.objects.get(pk=slack.json()["id"]).secret == ""


@pytest.mark.parametrize(
    ("body", "field", "said"),
    [
        ({"target": "hooks.example/finops"}, "target", "http:// or https:// URL"),
        ({"target": "ftp://hooks.example/x"}, "target", "http:// or https:// URL"),
        ({"target": "https:// spaces.example"}, "target", "http:// or https:// URL"),
        ({"kind": "email", "target": "https://hooks.example"}, "target", "email address"),
        ({"kind": "slack", "secret": webhook_secret_new()}, "secret", "takes no secret"),
        ({"secret": "hunter2"}, "secret", "starts with 'whsec_'"),
        ({"secret": "whsec_c2hvcnQ="}, "secret", "24 to 64 bytes"),
        ({"secret": "whsec_not base64 at all!!"}, "secret", "followed by base64"),
        ({"kind": "pager"}, "kind", "not a valid choice"),
        ({"target": 5}, "target", "must be a string"),
    ],
)
def test_a_bad_channel_is_a_400_naming_the_field(make_api, support, body, field, said):
    answer = manager(make_api, support).post("/api/v1/alert-channels", {**HOOK, **body}, format="json")
    assert answer.status_code == 400, answer.content
    errors = answer.json()["extra"]["fields"]
    assert list(errors) == [field]
    assert said in errors[field][0]
    assert not AlertChannel.objects.exists()


def test_a_channel_keeps_its_kind_and_team_and_a_webhook_its_secret(make_api, support):
    client = manager(make_api)
    channel = client.post("/api/v1/alert-channels", HOOK, format="json").json()
    path = f"/api/v1/alert-channels/{channel['id']}"
    for change, field in (
        ({"kind": "slack"}, "kind"),
        ({"team": "search"}, "team"),
        ({"secret": ""}, "secret"),
        ({"target": "oncall@example.com"}, "target"),  # a webhook's target is a URL
    ):
        answer = client.patch(path, change, format="json")
        assert answer.status_code == 409, (change, answer.content)
        assert list(answer.json()["extra"]["fields"]) == [field]
    rotated = webhook_secret_new()
    assert client.patch(path, {"secret": rotated}, format="json").status_code == 200
    assert AlertChannel.objects.get().secret == rotated


def test_organisation_channels_are_for_those_who_guard_every_team(make_api, support):
    sre = person(role="sre")
    refused = sre.post("/api/v1/alert-channels", {**HOOK, "team": None}, format="json")
    assert refused.status_code == 403
    assert refused.json()["message"] == "you may not change the alert channels of the organisation (no team)"
    admin = person(org_role="admin")
    org = admin.post("/api/v1/alert-channels", {**HOOK, "team": None}, format="json")
    assert org.status_code == 201 and org.json()["team"] is None
    own = sre.post("/api/v1/alert-channels", HOOK, format="json").json()
    # the sre sees its team's channel, not the organisation's; the admin both
    assert [row["id"] for row in sre.get("/api/v1/alert-channels").json()] == [own["id"]]
    assert sre.get(f"/api/v1/alert-channels/{org.json()['id']}").status_code == 404
    assert {row["id"] for row in admin.get("/api/v1/alert-channels").json()} == {own["id"], org.json()["id"]}
    assert [row["id"] for row in admin.get("/api/v1/alert-channels", {"team": "support"}).json()] == [
        own["id"]
    ]


# --- who may change -------------------------------------------------------------------------------

ROLES = [
    ("sre", True),
    ("tech_lead", True),
    ("admin", True),
    ("finops", True),
    ("pm", False),
    ("ml", False),
    ("viewer", False),
]


def as_role(who: str) -> APIClient:
    return person(org_role=who) if who in {"admin", "finops"} else person(role=who)


@pytest.mark.parametrize(("who", "may_change"), ROLES)
def test_who_may_change_channels_rules_and_silences_and_acknowledge(support, who, may_change):
    client = as_role(who)
    status = {True: (201, 200, 204), False: (403, 403, 403)}[may_change]
    created, changed, deleted = status

    channel = client.post("/api/v1/alert-channels", HOOK, format="json")
    assert channel.status_code == created, channel.content
    rule = client.post("/api/v1/alert-rules", FORECAST, format="json")
    assert rule.status_code == created, rule.content
    silence = client.post(
        "/api/v1/alert-silences", {"team": "support", "ends_at": "2099-01-01T00:00:00Z"}, format="json"
    )
    assert silence.status_code == created, silence.content

    # rows made by someone who may, read by everyone of the team, changed by those who may
    channel = AlertChannel.objects.create(team=support, kind="email", target="a@example.com")
    rule = a_rule(support)
    alert = an_alert(rule)
    silence = Silence.objects.create(team=support, starts_at=MOMENT, ends_at=datetime(2099, 1, 1, tzinfo=UTC))
    for path in (
        f"/api/v1/alert-channels/{channel.pk}",
        f"/api/v1/alert-rules/{rule.pk}",
        f"/api/v1/alerts/{alert.pk}",
        f"/api/v1/alert-silences/{silence.pk}",
    ):
        assert client.get(path).status_code == 200, path
    assert (
        client.patch(f"/api/v1/alert-channels/{channel.pk}", {"name": "x"}, format="json").status_code
        == changed
    )
    assert (
        client.patch(f"/api/v1/alert-rules/{rule.pk}", {"value": "2"}, format="json").status_code == changed
    )
    assert client.post(f"/api/v1/alerts/{alert.pk}/ack").status_code == changed
    alert.refresh_from_db()
    assert (alert.acknowledged_at is not None) is may_change
    assert client.delete(f"/api/v1/alert-silences/{silence.pk}").status_code == deleted
    assert client.delete(f"/api/v1/alert-rules/{rule.pk}").status_code == deleted
    assert client.delete(f"/api/v1/alert-channels/{channel.pk}").status_code == deleted
    assert AlertChannel.objects.filter(pk=channel.pk).exists() is not may_change
    assert AlertRule.objects.filter(pk=rule.pk).exists() is not may_change
    assert Silence.objects.get(pk=silence.pk).ends_at.year == (datetime.now(UTC).year if may_change else 2099)


def test_tokens_read_with_read_and_change_with_manage_for_their_team_only(make_api, support):
    search = TeamFactory(slug="search")
    rule = a_rule(support)
    alert = an_alert(rule)
    reader = make_api(scopes=["read"], team=support).client
    assert reader.get(f"/api/v1/alerts/{alert.pk}").status_code == 200
    assert reader.post(f"/api/v1/alerts/{alert.pk}/ack").status_code == 403
    assert reader.post("/api/v1/alert-rules", FORECAST, format="json").status_code == 403
    ingest = make_api(scopes=["ingest"], team=support).client
    assert ingest.get("/api/v1/alerts").status_code == 403
    other = manager(make_api, search)
    assert other.get(f"/api/v1/alerts/{alert.pk}").status_code == 404
    assert other.post(f"/api/v1/alerts/{alert.pk}/ack").status_code == 404
    assert other.get(f"/api/v1/alert-rules/{rule.pk}").status_code == 404
    assert other.get("/api/v1/alerts").json() == {"count": 0, "next": None, "previous": None, "results": []}
    # a team it cannot see is a team it cannot name: the same answer as a team that does not exist
    foreign = other.post("/api/v1/alert-rules", FORECAST, format="json")
    assert foreign.status_code == 404
    assert foreign.json() == {"message": "no team 'support' that you may see", "extra": {}}
    own = manager(make_api, support)
    acked = own.post(f"/api/v1/alerts/{alert.pk}/ack")
    assert acked.status_code == 200
    # a token is no person: acknowledged, by no one nameable; the audit log names the token
    assert (acked.json()["acknowledged_by"], acked.json()["acknowledged_at"] is not None) == (None, True)
    assert entries("alert")[-1].who.startswith("token test")


# --- rules ----------------------------------------------------------------------------------------

VALID_RULES = [
    {"kind": "threshold", "metric": "cache_hit_rate", "op": "lt", "value": "0.75", "window": "1d"},
    {"kind": "threshold", "metric": "cost_usd", "value": "250", "window": "month"},
    {"kind": "threshold", "metric": "tokens.output", "value": "1000000", "window": "1h"},
    {"kind": "threshold", "metric": "tasks.failed", "value": "3", "window": "15m"},
    {"kind": "forecast", "value": "1000"},
    {"kind": "anomaly", "value": "3", "window": "1h"},
    {"kind": "runaway_task", "metric": "cost_usd", "value": "5.00"},
    {"kind": "runaway_task", "metric": "steps", "value": "40"},
    {"kind": "cache_collapse", "value": "0.2"},
    {"kind": "allowance"},
]


@pytest.mark.parametrize(
    "fields", VALID_RULES, ids=[f"{rule['kind']}-{rule.get('metric', '')}" for rule in VALID_RULES]
)
def test_a_rule_of_each_kind_is_created_as_given(make_api, support, fields):
    client = manager(make_api, support)
    channel = client.post("/api/v1/alert-channels", HOOK, format="json").json()
    body = {"team": "support", "agent": "refund-bot", "name": "watch", "channels": [channel["id"]], **fields}
    created = client.post("/api/v1/alert-rules", body, format="json")
    assert created.status_code == 201, created.content
    answer = created.json()
    expected_value = None if "value" not in fields else str(Decimal(fields["value"]).normalize())
    assert answer == {
        "id": answer["id"],
        "name": "watch",
        "team": "support",
        "agent": "refund-bot",
        "kind": fields["kind"],
        "metric": fields.get("metric", ""),
        "op": fields.get("op", "gt"),
        "value": f"{Decimal(expected_value):f}" if expected_value else None,
        "window": fields.get("window", ""),
        "for_minutes": 0,
        "repeat_minutes": 240,
        "channels": [channel["id"]],
        "enabled": True,
        "created_at": answer["created_at"],
        "updated_at": answer["updated_at"],
    }
    assert client.get(f"/api/v1/alert-rules/{answer['id']}").json() == answer


BAD_RULES = [
    ({"kind": "threshold", "value": "1", "window": "1h"}, "metric", "needs a metric"),
    ({"kind": "threshold", "metric": "spend", "value": "1", "window": "1h"}, "metric", "not a valid choice"),
    (
        {"kind": "threshold", "metric": "steps", "value": "1", "window": "1h"},
        "metric",
        "not a metric of a threshold",
    ),
    ({"kind": "threshold", "metric": "cost_usd", "window": "1h"}, "value", "needs a value"),
    ({"kind": "threshold", "metric": "cost_usd", "value": "1"}, "window", "needs a window"),
    (
        {"kind": "threshold", "metric": "cost_usd", "value": "1", "window": "2h"},
        "window",
        "not a valid choice",
    ),
    (
        {"kind": "threshold", "metric": "cost_usd", "value": "1", "window": "1h", "op": "ge"},
        "op",
        "not a valid",
    ),
    ({"kind": "forecast"}, "value", "needs a value"),
    ({"kind": "forecast", "value": "1", "metric": "cost_usd"}, "metric", "takes no metric"),
    ({"kind": "forecast", "value": "1", "op": "lt"}, "op", "op is gt"),
    ({"kind": "forecast", "value": "-1"}, "value", "greater than or equal to 0"),
    ({"kind": "forecast", "value": 1}, "value", "decimal string"),
    ({"kind": "anomaly", "value": "3"}, "window", "needs a window"),
    ({"kind": "runaway_task", "value": "5"}, "metric", "needs a metric"),
    ({"kind": "cache_collapse", "value": "1.5"}, "value", "from 0 to 1"),
    ({"kind": "cache_collapse", "value": "0.2", "window": "1h"}, "window", "takes no window"),
    ({"kind": "allowance", "value": "1"}, "value", "takes no value"),
    ({"kind": "forecast", "value": "1", "name": "   "}, "name", "more than spaces"),
    ({"kind": "forecast", "value": "1", "for_minutes": -1}, "for_minutes", "greater than or equal to 0"),
    ({"kind": "forecast", "value": "1", "channels": ["x"]}, "channels", "whole number"),
    ({"kind": "paging"}, "kind", "not a valid choice"),
]


@pytest.mark.parametrize(
    ("fields", "field", "said"), BAD_RULES, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD_RULES)]
)
def test_a_bad_rule_is_a_400_naming_the_field(make_api, support, fields, field, said):
    body = {"team": "support", "name": "watch", **fields}
    answer = manager(make_api, support).post("/api/v1/alert-rules", body, format="json")
    assert answer.status_code == 400, answer.content
    errors = answer.json()["extra"]["fields"]
    assert list(errors) == [field], errors
    assert said in " ".join(str(message) for message in errors[field]), errors
    assert not AlertRule.objects.exists()


def test_a_rule_names_an_agent_of_its_team_and_channels_of_its_team_or_the_organisation(make_api, support):
    admin = person(org_role="admin")
    search_channel = admin.post("/api/v1/alert-channels", {**HOOK, "team": "search"}, format="json").json()
    org_channel = admin.post("/api/v1/alert-channels", {**HOOK, "team": None}, format="json").json()
    other_agent = admin.post("/api/v1/alert-rules", {**FORECAST, "agent": "indexer"}, format="json")
    assert other_agent.status_code == 404
    assert other_agent.json()["message"] == "no agent 'indexer' in team 'support'"
    wrong_channel = admin.post(
        "/api/v1/alert-rules", {**FORECAST, "channels": [search_channel["id"]]}, format="json"
    )
    assert wrong_channel.status_code == 409
    assert list(wrong_channel.json()["extra"]["fields"]) == ["channels"]
    unseen = manager(make_api, support).post(
        "/api/v1/alert-rules", {**FORECAST, "channels": [org_channel["id"]]}, format="json"
    )
    assert unseen.status_code == 404
    assert unseen.json()["message"] == f"no alert channel {org_channel['id']} that you may see"
    fine = admin.post("/api/v1/alert-rules", {**FORECAST, "channels": [org_channel["id"]]}, format="json")
    assert fine.status_code == 201 and fine.json()["channels"] == [org_channel["id"]]
    # an organisation rule (every team) names no agent, and only organisation channels
    org_rule = admin.post(
        "/api/v1/alert-rules", {**FORECAST, "team": None, "agent": "refund-bot"}, format="json"
    )
    assert org_rule.status_code == 404
    assert AlertRule.objects.count() == 1
    assert (
        person(role="sre").post("/api/v1/alert-rules", {**FORECAST, "team": None}, format="json").status_code
        == 403
    )


def test_a_change_that_leaves_a_rule_without_what_its_kind_needs_is_a_409(make_api, support):
    client = manager(make_api, support)
    rule = client.post("/api/v1/alert-rules", FORECAST, format="json").json()
    path = f"/api/v1/alert-rules/{rule['id']}"
    to_threshold = client.patch(path, {"kind": "threshold"}, format="json")
    assert to_threshold.status_code == 409
    assert set(to_threshold.json()["extra"]["fields"]) == {"metric", "window"}
    assert client.patch(path, {"value": None}, format="json").status_code == 409
    assert client.patch(path, {"value": "abc"}, format="json").status_code == 400
    changed = client.patch(
        path, {"kind": "threshold", "metric": "cost_usd", "window": "1d", "value": "40"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert {name: changed.json()[name] for name in ("kind", "metric", "window", "value")} == {
        "kind": "threshold",
        "metric": "cost_usd",
        "window": "1d",
        "value": "40",
    }
    assert client.get(path).json()["kind"] == "threshold"


def test_every_change_of_rules_and_channels_is_audited_with_before_and_after(support):
    sre = person(role="sre")
    channel = sre.post("/api/v1/alert-channels", {**HOOK, "name": "pager"}, format="json").json()
    secret = AlertChannel.objects.get().secret
    rule = sre.post("/api/v1/alert-rules", {**FORECAST, "channels": [channel["id"]]}, format="json").json()
    sre.patch(f"/api/v1/alert-rules/{rule['id']}", {"value": "1500", "repeat_minutes": 60}, format="json")
    sre.patch(f"/api/v1/alert-rules/{rule['id']}", {"value": "1500"}, format="json")  # no change: no entry
    rotated = webhook_secret_new()
    sre.patch(f"/api/v1/alert-channels/{channel['id']}", {"secret": rotated}, format="json")
    sre.delete(f"/api/v1/alert-rules/{rule['id']}")
    sre.delete(f"/api/v1/alert-channels/{channel['id']}")

    settings = {
        "name": "month-end",
        "team": "support",
        "agent": None,
        "kind": "forecast",
        "metric": "",
        "op": "gt",
        "window": "",
        "for_minutes": 0,
        "channels": [channel["id"]],
        "enabled": True,
    }
    rules = entries("alert_rule")
    assert [(entry.action, entry.object_id) for entry in rules] == [
        ("create", str(rule["id"])),
        ("update", str(rule["id"])),
        ("delete", str(rule["id"])),
    ]
    assert rules[0].before is None
    assert rules[0].after == {**settings, "value": "1000.000000", "repeat_minutes": 240}
    assert rules[1].before == rules[0].after
    assert rules[1].after == {**settings, "value": "1500.000000", "repeat_minutes": 60}
    assert rules[2].before == rules[1].after and rules[2].after is None

    channels = entries("alert_channel")
    hook = {"team": "support", "name": "pager", "kind": "webhook", "target": HOOK["target"]}
    assert [(entry.action, entry.before, entry.after) for entry in channels] == [
        ("create", None, {**hook, "secret_fingerprint": secret_fingerprint(secret)}),
        (
            "update",
            {**hook, "secret_fingerprint": secret_fingerprint(secret)},
            {**hook, "secret_fingerprint": secret_fingerprint(rotated)},
        ),
        ("delete", {**hook, "secret_fingerprint": secret_fingerprint(rotated)}, None),
    ]
    assert {entry.who for entry in [*rules, *channels]} == {sre.user.username}
    assert {entry.team.slug for entry in [*rules, *channels]} == {"support"}


# --- alerts ---------------------------------------------------------------------------------------


def test_alerts_are_listed_newest_first_and_filtered(make_api, support):
    search = TeamFactory(slug="search")
    rule, other = a_rule(support, name="spend"), a_rule(search, name="search-spend")
    resolved = an_alert(rule, state="resolved", started_at=MOMENT, resolved_at=MOMENT + timedelta(hours=1))
    firing = an_alert(rule, started_at=MOMENT + timedelta(days=1), fired_at=MOMENT + timedelta(days=1))
    elsewhere = an_alert(other, subject="team:search", started_at=MOMENT + timedelta(days=2))
    client = manager(make_api)

    def ids(**query) -> list[int]:
        answer = client.get("/api/v1/alerts", query)
        assert answer.status_code == 200, answer.content
        return [row["id"] for row in answer.json()["results"]]

    assert ids() == [elsewhere.pk, firing.pk, resolved.pk]
    assert ids(state="firing") == [elsewhere.pk, firing.pk]
    assert ids(state="resolved") == [resolved.pk]
    assert ids(rule=rule.pk) == [firing.pk, resolved.pk]
    assert ids(team="search") == [elsewhere.pk]
    # open at some moment since: still open, or resolved since
    assert ids(since="2026-11-02T10:30:00Z") == [elsewhere.pk, firing.pk, resolved.pk]
    assert ids(since="2026-11-02T12:30:00+01:00") == [elsewhere.pk, firing.pk]  # 11:30 UTC, after it resolved
    assert ids(rule=2**40) == []
    assert client.get("/api/v1/alerts", {"state": "burning"}).status_code == 400
    assert client.get("/api/v1/alerts", {"since": "yesterday"}).status_code == 400
    detail = client.get(f"/api/v1/alerts/{firing.pk}").json()
    assert detail == {
        "id": firing.pk,
        "rule": rule.pk,
        "rule_name": "spend",
        "team": "support",
        "subject": "agent:support/refund-bot",
        "state": "firing",
        "value": "12.5",
        "threshold": "10",
        "summary": "",
        "started_at": "2026-11-03T10:00:00Z",
        "fired_at": "2026-11-03T10:00:00Z",
        "resolved_at": None,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "last_notified_at": None,
    }
    # a team member sees its team's alerts only
    assert [row["id"] for row in person(role="viewer").get("/api/v1/alerts").json()["results"]] == [
        firing.pk,
        resolved.pk,
    ]


def test_acknowledging_an_alert_names_who_once_and_a_resolved_one_is_a_409(support):
    sre = person(role="sre")
    rule = a_rule(support)
    alert, done = an_alert(rule), an_alert(rule, state="resolved", subject="other", resolved_at=MOMENT)
    before = timezone.now()
    acked = sre.post(f"/api/v1/alerts/{alert.pk}/ack")
    assert acked.status_code == 200, acked.content
    assert acked.json()["acknowledged_by"] == sre.user.username
    alert.refresh_from_db()
    assert alert.acknowledged_by == sre.user and alert.acknowledged_at >= before
    again = sre.post(f"/api/v1/alerts/{alert.pk}/ack")  # changes nothing, and says what stands
    assert again.status_code == 200 and again.json() == acked.json()
    log = entries("alert")
    assert len(log) == 1
    assert log[0].before == {
        "rule": rule.pk,
        "subject": alert.subject,
        "state": "firing",
        "acknowledged_by": None,
        "acknowledged_at": None,
    }
    assert log[0].after == {**log[0].before, "acknowledged_by": sre.user.username, "acknowledged_at": ANY}
    # the log keeps instants to the millisecond (DjangoJSONEncoder)
    logged = datetime.fromisoformat(log[0].after["acknowledged_at"])
    assert abs(logged - alert.acknowledged_at) < timedelta(milliseconds=1)
    resolved = sre.post(f"/api/v1/alerts/{done.pk}/ack")
    assert resolved.status_code == 409
    assert resolved.json()["extra"]["fields"] == {
        "state": ["the alert is resolved: there is nothing left to acknowledge"]
    }
    done.refresh_from_db()
    assert done.acknowledged_at is None and len(entries("alert")) == 1


# --- silences -------------------------------------------------------------------------------------


def test_silences_of_a_team_an_agent_or_a_rule(make_api, support):
    client = person(role="tech_lead")
    rule = a_rule(support)
    team_wide = client.post(
        "/api/v1/alert-silences",
        {"team": "support", "ends_at": "2099-01-01T00:00:00Z", "reason": "maintenance"},
        format="json",
    )
    assert team_wide.status_code == 201, team_wide.content
    agent = client.post(
        "/api/v1/alert-silences",
        {"team": "support", "agent": "refund-bot", "ends_at": "2099-01-01T00:00:00Z"},
        format="json",
    )
    of_rule = client.post(
        "/api/v1/alert-silences", {"rule": rule.pk, "ends_at": "2099-01-01T00:00:00Z"}, format="json"
    )
    assert (agent.status_code, of_rule.status_code) == (201, 201)
    # a rule's silence is its team's, so the team sees it
    assert (of_rule.json()["team"], of_rule.json()["rule"], of_rule.json()["agent"]) == (
        "support",
        rule.pk,
        None,
    )
    assert agent.json()["agent"] == "refund-bot"
    body = team_wide.json()
    assert body["reason"] == "maintenance" and body["created_by"] == client.user.username
    assert datetime.fromisoformat(body["starts_at"]) <= timezone.now()
    listed = client.get("/api/v1/alert-silences", {"active": "true"}).json()
    assert {row["id"] for row in listed} == {body["id"], agent.json()["id"], of_rule.json()["id"]}
    assert client.get("/api/v1/alert-silences", {"active": "false"}).json() == []
    assert client.get("/api/v1/alert-silences", {"active": "yes"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": "refund-bot"}, "agent"),  # an agent needs its team
        ({"rule": 1, "agent": "refund-bot"}, "agent"),  # a rule's silence is the rule's
        ({"team": "support", "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        (
            {"team": "support", "starts_at": "2098-01-02T00:00:00Z", "ends_at": "2098-01-01T00:00:00Z"},
            "ends_at",
        ),
        ({"team": "support", "ends_at": "soon"}, "ends_at"),
        ({"team": "support", "reason": "x" * 513}, "reason"),
    ],
)
def test_a_bad_silence_is_a_400_naming_the_field(make_api, support, body, field):
    answer = manager(make_api, support).post(
        "/api/v1/alert-silences", {"ends_at": "2099-01-01T00:00:00Z", **body}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert list(answer.json()["extra"]["fields"]) == [field]
    assert not Silence.objects.exists()


def test_a_rule_silence_names_no_team_and_unknown_names_are_404(make_api, support):
    client = manager(make_api, support)
    rule = a_rule(support)
    both = client.post(
        "/api/v1/alert-silences",
        {"rule": rule.pk, "team": "support", "ends_at": "2099-01-01T00:00:00Z"},
        format="json",
    )
    assert both.status_code == 400 and list(both.json()["extra"]["fields"]) == ["team"]
    assert (
        client.post(
            "/api/v1/alert-silences", {"rule": 2**30, "ends_at": "2099-01-01T00:00:00Z"}, format="json"
        ).status_code
        == 404
    )
    unknown = client.post(
        "/api/v1/alert-silences",
        {"team": "support", "agent": "ghost", "ends_at": "2099-01-01T00:00:00Z"},
        format="json",
    )
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "no agent 'ghost' in team 'support'"
    # everything (no team, no rule) is for those who guard every team
    assert (
        client.post("/api/v1/alert-silences", {"ends_at": "2099-01-01T00:00:00Z"}, format="json").status_code
        == 403
    )
    assert (
        manager(make_api)
        .post("/api/v1/alert-silences", {"ends_at": "2099-01-01T00:00:00Z"}, format="json")
        .status_code
        == 201
    )


def test_deleting_a_silence_ends_it_now_and_one_not_started_is_removed(support):
    sre = person(role="sre")
    now = timezone.now()
    running = Silence.objects.create(
        team=support, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1)
    )
    later = Silence.objects.create(
        team=support, starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=2)
    )
    assert sre.delete(f"/api/v1/alert-silences/{running.pk}").status_code == 204
    assert sre.delete(f"/api/v1/alert-silences/{later.pk}").status_code == 204
    running.refresh_from_db()
    assert now < running.ends_at <= timezone.now()
    assert not Silence.objects.filter(pk=later.pk).exists()
    log = entries("silence")
    assert [(entry.object_id, entry.action) for entry in log] == [
        (str(running.pk), "delete"),
        (str(later.pk), "delete"),
    ]
    assert abs(datetime.fromisoformat(log[0].after["ends_at"]) - running.ends_at) < timedelta(milliseconds=1)
    assert log[0].before["ends_at"] != log[0].after["ends_at"] and log[1].after is None
    # the ended one is history: listed as ended
    assert [row["id"] for row in sre.get("/api/v1/alert-silences", {"active": "false"}).json()] == [
        running.pk
    ]


# --- deliveries -----------------------------------------------------------------------------------


def test_deliveries_show_why_a_channel_fails(make_api, support):
    rule = a_rule(support)
    alert = an_alert(rule)
    failing = AlertChannel.objects.create(
        team=support, kind="webhook", target="https://down.example", secret=""
    )
    working = AlertChannel.objects.create(team=support, kind="email", target="a@example.com")
    gave_up = Delivery.objects.create(
        alert=alert,
        channel=failing,
        team=support,
        event="alert.firing",
        payload={},
        status="failed",
        attempts=5,
        last_status_code=503,
        last_error="503 Service Unavailable",
    )
    Delivery.objects.create(
        alert=alert, channel=working, team=support, event="alert.firing", payload={}, status="sent"
    )
    client = person(role="viewer")
    answer = client.get("/api/v1/alert-deliveries", {"channel": failing.pk})
    assert answer.status_code == 200
    rows = answer.json()["results"]
    assert [
        (row["id"], row["status"], row["attempts"], row["last_status_code"], row["last_error"])
        for row in rows
    ] == [(gave_up.pk, "failed", 5, 503, "503 Service Unavailable")]
    assert client.get("/api/v1/alert-deliveries", {"status": "sent"}).json()["count"] == 1
    assert person(role="viewer", team_slug="search").get("/api/v1/alert-deliveries").json()["count"] == 0


def test_a_team_editor_sends_back_the_channels_it_read_including_the_organisations(support):
    admin, sre = person(org_role="admin"), person(role="sre")
    org = admin.post("/api/v1/alert-channels", {**HOOK, "team": None}, format="json").json()
    rule = admin.post("/api/v1/alert-rules", {**FORECAST, "channels": [org["id"]]}, format="json").json()
    read = sre.get(f"/api/v1/alert-rules/{rule['id']}").json()
    assert read["channels"] == [org["id"]]
    again = sre.patch(
        f"/api/v1/alert-rules/{rule['id']}", {"channels": read["channels"], "value": "5"}, format="json"
    )
    assert again.status_code == 200, again.content
    assert (again.json()["channels"], again.json()["value"]) == ([org["id"]], "5")


def test_a_channel_url_is_masked_for_whoever_may_not_change_it(make_api, support):
    """A Slack or webhook URL lets its holder post to the channel: a reader (a viewer, a read token)
    gets its scheme, host and last four characters; a guard (sre, a manage token) gets it whole."""
    secret_url = "https://hooks.slack.com:8443/services/T0AAA/B0BBB/s3cretT0kenXy9z"
    AlertChannel.objects.create(team=support, kind="slack", target=secret_url)
    AlertChannel.objects.create(team=support, kind="email", target="oncall@example.com")
    # a URL with nothing past its host holds no secret: shown as it is
    AlertChannel.objects.create(team=support, kind="webhook", target="http://127.0.0.1:9000/")
    masked = "https://hooks.slack.com:8443/…Xy9z"
    readers = [person(role="viewer"), person(role="pm"), make_api(scopes=["read"], team=support).client]
    guards = [person(role="sre"), manager(make_api, support), person(org_role="finops")]
    for client, expected in [(c, masked) for c in readers] + [(c, secret_url) for c in guards]:
        listed = client.get("/api/v1/alert-channels").json()
        targets = {channel["kind"]: channel["target"] for channel in listed}
        assert targets == {
            "slack": expected,
            "email": "oncall@example.com",
            "webhook": "http://127.0.0.1:9000/",
        }
        one = client.get(f"/api/v1/alert-channels/{listed[0]['id']}").json()
        assert one["target"] in (expected, "oncall@example.com")
