"""The alerts pages, per role: what each shows, that a POST changes exactly what it should through the
services and leaves an audit entry, and that a forbidden POST changes nothing (SPEC.md, "Alerts" and
the roles table: sre and tech_lead change their teams' alerting, admin and finops everywhere; pm, ml and
viewer read; another team's rows are a 404)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from finops.accounts.models import Membership, OrgRole, User
from finops.alerts.models import Alert, AlertChannel, AlertRule, Delivery, Silence
from finops.alerts.services import channel_create, rule_create, silence_create
from finops.alerts.signing import webhook_secret_key
from finops.audit.models import AuditEntry
from finops.audit.services import audit_record
from finops.guardrails.models import Allowance
from finops.guardrails.services import allowance_create
from tests.factories import AgentFactory, TeamFactory

MOMENT = datetime(2026, 11, 2, 10, tzinfo=UTC)
TEAM_ROLES = ("sre", "tech_lead", "pm", "ml", "viewer")
GUARDS = ("sre", "tech_lead", "admin", "finops")


def person(username: str, **fields) -> User:
    """A user with no usable password: these tests sign in with force_login, and hashing one per user
    is most of a fixture's time."""
    return User.objects.create(username=username, **fields)


def member(team, role: str, username: str) -> User:
    user = person(username)
    Membership.objects.create(user=user, team=team, role=role)
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(db):
    """Team support (the principals' own) and team search (foreign), each with a channel, a runaway rule
    on it, a firing alert with one failed delivery, a resolved alert, and a silence."""
    admin = person("ada", org_role=OrgRole.ADMIN)
    support, search = TeamFactory(slug="support", name="Support"), TeamFactory(slug="search", name="Search")
    teams = {}
    for team in (support, search):
        agent = AgentFactory(team=team, name=f"{team.slug}-bot")
        channel, _ = channel_create(
            principal=admin,
            team=team,
            kind="webhook",
            target=f"https://hooks.example/{team.slug}",
            name=f"{team.slug}-hook",
        )
        AlertChannel.objects.filter(pk=channel.pk).update(
            last_failure_at=MOMENT + timedelta(minutes=2),
            consecutive_failures=3,
            last_error=f"HTTP 503 from {team.slug} receiver",
        )
        rule = rule_create(
            principal=admin,
            name=f"{team.slug} runaway",
            team=team,
            agent=agent,
            kind="runaway_task",
            metric="cost_usd",
            value=Decimal("5"),
            channels=[channel],
        )
        firing = Alert.objects.create(
            rule=rule,
            team=team,
            subject=f"task:{team.slug}/run-42",
            state="firing",
            value=Decimal("7.125"),
            threshold=Decimal("5"),
            started_at=MOMENT,
            fired_at=MOMENT + timedelta(minutes=1),
            last_evaluated_at=MOMENT + timedelta(minutes=5),
        )
        Delivery.objects.create(
            alert=firing,
            channel=channel,
            team=team,
            event="alert.firing",
            payload={},
            status="failed",
            attempts=4,
            last_status_code=503,
            last_error=f"HTTP 503 from {team.slug} receiver",
        )
        resolved = Alert.objects.create(
            rule=rule,
            team=team,
            subject=f"task:{team.slug}/run-7",
            state="resolved",
            value=Decimal("6"),
            threshold=Decimal("5"),
            started_at=MOMENT - timedelta(days=1),
            fired_at=MOMENT - timedelta(days=1),
            resolved_at=MOMENT - timedelta(hours=20),
            last_evaluated_at=MOMENT - timedelta(hours=20),
        )
        silence = silence_create(
            principal=admin,
            team=team,
            ends_at=timezone.now() + timedelta(hours=2),
            reason=f"{team.slug} deploy",
        )
        teams[team.slug] = {
            "team": team,
            "agent": agent,
            "channel": channel,
            "rule": rule,
            "firing": firing,
            "resolved": resolved,
            "silence": silence,
        }
    users = {"admin": admin, "finops": person("fran", org_role=OrgRole.FINOPS)}
    for role in TEAM_ROLES:
        users[role] = member(support, role, f"u-{role}")
    return {"teams": teams, "users": users, "support": teams["support"], "search": teams["search"]}


def page(world, role: str, path: str, **query) -> str:
    answer = client_for(world["users"][role]).get(path, query)
    assert answer.status_code == 200, (role, path, answer.status_code)
    return answer.content.decode()


def audit_count() -> int:
    return AuditEntry.objects.count()


# --- /alerts/ -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "finops", *TEAM_ROLES])
def test_the_alerts_page_shows_what_the_role_sees_and_offers_what_it_may(world, role):
    html = page(world, role, "/alerts/")
    support = world["support"]
    assert "task:support/run-42" in html and "$7.12" in html  # firing, value in its rule's unit (USD)
    assert "task:support/run-7" in html  # resolved, below
    assert "HTTP 503 from support receiver" in html  # the failing channel's banner
    assert "support deploy" in html  # the silence
    sees_search = role in ("admin", "finops")
    assert ("task:search/run-42" in html) is sees_search
    assert ("HTTP 503 from search receiver" in html) is sees_search
    guards = role in GUARDS
    assert (f"/alerts/{support['firing'].pk}/ack" in html) is guards
    assert ("Add a silence" in html) is guards
    assert (f"/alerts/silences/{support['silence'].pk}/expire" in html) is guards
    assert html.index("task:support/run-42") < html.index("task:support/run-7")  # open first


def test_the_nav_counts_the_firing_alerts_the_person_sees(world):
    assert '<span class="badge" title="1 firing">1</span>' in page(world, "viewer", "/")
    assert '<span class="badge" title="2 firing">2</span>' in page(world, "admin", "/guardrails/")
    nav = page(world, "sre", "/audit/")
    assert all(f'href="{path}"' in nav for path in ("/guardrails/", "/alerts/", "/audit/", "/alerts/rules/"))


def test_filters_by_team_and_state_live_in_the_url(world):
    html = page(world, "admin", "/alerts/", team="search", state="resolved")
    assert "task:search/run-7" in html
    assert "task:search/run-42" not in html and "task:support" not in html
    html = page(world, "admin", "/alerts/", state="firing")
    assert "task:search/run-42" in html and "task:support/run-42" in html and "run-7" not in html
    sre = client_for(world["users"]["sre"])
    assert sre.get("/alerts/", {"team": "search"}).status_code == 404  # not one of theirs
    assert sre.get("/alerts/", {"team": "nowhere"}).status_code == 404  # the same answer
    assert sre.get("/alerts/", {"state": "exploded"}).status_code == 404


def test_the_resolved_alerts_are_paginated(world):
    support = world["support"]
    for number in range(30):
        Alert.objects.create(
            rule=support["rule"],
            team=support["team"],
            subject=f"task:support/old-{number:02d}",
            state="resolved",
            started_at=MOMENT - timedelta(days=40 - number),
            resolved_at=MOMENT - timedelta(days=40 - number, hours=-1),
            last_evaluated_at=MOMENT,
        )
    first = page(world, "viewer", "/alerts/")
    # 31 resolved, 25 a page, newest resolved first: run-7, then old-29 … old-06
    assert "task:support/run-7" in first and "old-06" in first and "old-05" not in first
    assert "Page 1 of 2" in first
    second = page(world, "viewer", "/alerts/", page=2)
    assert "old-05" in second and "old-00" in second and "old-06" not in second


def test_empty_states_say_what_to_do_next(db):
    sre = member(TeamFactory(slug="fresh"), "sre", "fresh-sre")
    html = client_for(sre).get("/alerts/").content.decode()
    assert "No rules yet, so nothing can fire." in html and "Create a rule" in html
    assert "No resolved alerts yet." in html and "No silence active or coming." in html
    viewer = member(TeamFactory(slug="calm"), "viewer", "calm-viewer")
    html = client_for(viewer).get("/alerts/").content.decode()
    assert "Ask an sre or tech lead of your team to create one." in html
    assert "No rules yet — an sre or tech lead" in client_for(viewer).get("/alerts/rules/").content.decode()
    assert "No changes yet" in client_for(viewer).get("/audit/").content.decode()


@pytest.mark.parametrize("role", ["sre", "tech_lead", "admin", "finops"])
def test_a_guard_acknowledges_a_firing_alert(world, role):
    firing = world["support"]["firing"]
    before = audit_count()
    answer = client_for(world["users"][role]).post(
        f"/alerts/{firing.pk}/ack", {"next": "/alerts/?state=firing"}
    )
    assert answer.status_code == 302 and answer["Location"] == "/alerts/?state=firing"
    firing.refresh_from_db()
    user = world["users"][role]
    assert firing.acknowledged_by == user and firing.acknowledged_at is not None
    assert firing.state == "firing"  # acknowledging does not resolve
    entry = AuditEntry.objects.latest("id")
    assert audit_count() == before + 1
    assert (entry.who, entry.object_type, entry.object_id, entry.action) == (
        user.username,
        "alert",
        str(firing.pk),
        "update",
    )
    assert entry.after["acknowledged_by"] == user.username and entry.before["acknowledged_by"] is None
    assert Alert.objects.exclude(pk=firing.pk).filter(acknowledged_at__isnull=False).count() == 0
    html = page(world, role, "/alerts/")
    assert f"/alerts/{firing.pk}/ack" not in html  # no button on an acknowledged alert


@pytest.mark.parametrize(("role", "status"), [("pm", 403), ("ml", 403), ("viewer", 403)])
def test_a_reader_may_not_acknowledge(world, role, status):
    firing = world["support"]["firing"]
    before = audit_count()
    assert client_for(world["users"][role]).post(f"/alerts/{firing.pk}/ack").status_code == status
    firing.refresh_from_db()
    assert firing.acknowledged_at is None and audit_count() == before


def test_another_teams_alert_is_a_404_to_see_and_to_acknowledge(world):
    foreign = world["search"]["firing"]
    sre = client_for(world["users"]["sre"])
    before = audit_count()
    assert sre.get(f"/alerts/{foreign.pk}/").status_code == 404
    assert sre.post(f"/alerts/{foreign.pk}/ack").status_code == 404
    foreign.refresh_from_db()
    assert foreign.acknowledged_at is None and audit_count() == before


def test_acknowledging_a_resolved_alert_says_why_and_changes_nothing(world):
    resolved = world["support"]["resolved"]
    before = audit_count()
    answer = client_for(world["users"]["sre"]).post(f"/alerts/{resolved.pk}/ack", follow=True)
    assert "nothing left to acknowledge" in answer.content.decode()
    resolved.refresh_from_db()
    assert resolved.acknowledged_at is None and audit_count() == before


# --- silences -------------------------------------------------------------------------------------


def test_an_sre_silences_a_rule_then_ends_the_silence(world):
    support = world["support"]
    sre = client_for(world["users"]["sre"])
    before = audit_count()
    ends = (timezone.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    answer = sre.post(
        "/alerts/silences/",
        {"rule": support["rule"].pk, "ends_at": ends.strftime("%Y-%m-%dT%H:%M"), "reason": "db failover"},
    )
    assert answer.status_code == 302
    silence = Silence.objects.get(reason="db failover")
    assert (silence.rule, silence.team, silence.ends_at) == (support["rule"], support["team"], ends)
    assert audit_count() == before + 1
    assert AuditEntry.objects.latest("id").object_type == "silence"
    assert sre.post(f"/alerts/silences/{silence.pk}/expire").status_code == 302
    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()  # kept, ended: it had started
    assert audit_count() == before + 2
    assert "db failover" not in page(world, "sre", "/alerts/")  # no longer active or coming


def test_an_upcoming_silence_is_shown_as_such(world):
    starts = (timezone.now() + timedelta(days=1)).replace(second=0, microsecond=0)
    sre = client_for(world["users"]["sre"])
    answer = sre.post(
        "/alerts/silences/",
        {
            "team": "support",
            "agent": "support-bot",
            "starts_at": starts.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": (starts + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "reason": "planned migration",
        },
    )
    assert answer.status_code == 302
    silence = Silence.objects.get(reason="planned migration")
    assert silence.agent == world["support"]["agent"] and silence.starts_at == starts
    html = page(world, "viewer", "/alerts/")
    row = html[html.index("planned migration") - 400 : html.index("planned migration")]
    assert "upcoming" in row


def test_a_silence_form_error_is_shown_beside_its_field(world):
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    before = (Silence.objects.count(), audit_count())
    answer = client_for(world["users"]["sre"]).post("/alerts/silences/", {"team": "support", "ends_at": past})
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'id="id_ends_at-errors"' in html and "must be after starts_at" in html
    assert (Silence.objects.count(), audit_count()) == before


@pytest.mark.parametrize("role", ["pm", "viewer"])
def test_a_reader_may_neither_silence_nor_end_a_silence(world, role):
    client = client_for(world["users"][role])
    silence = world["support"]["silence"]
    before = (Silence.objects.count(), audit_count())
    ends = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert client.post("/alerts/silences/", {"team": "support", "ends_at": ends}).status_code == 403
    assert client.post(f"/alerts/silences/{silence.pk}/expire").status_code == 403
    silence_after = Silence.objects.get(pk=silence.pk)
    assert silence_after.ends_at == silence.ends_at
    assert (Silence.objects.count(), audit_count()) == before


def test_an_sre_cannot_silence_or_end_another_teams(world):
    sre = client_for(world["users"]["sre"])
    before = (Silence.objects.count(), audit_count())
    ends = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    # the foreign team is not among the form's choices: the form again, nothing added
    answer = sre.post("/alerts/silences/", {"team": "search", "ends_at": ends})
    assert answer.status_code == 200 and "Select a valid choice" in answer.content.decode()
    answer = sre.post("/alerts/silences/", {"rule": world["search"]["rule"].pk, "ends_at": ends})
    assert answer.status_code == 200
    assert sre.post(f"/alerts/silences/{world['search']['silence'].pk}/expire").status_code == 404
    assert (Silence.objects.count(), audit_count()) == before


# --- /alerts/<id>/ --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "sre"])
def test_one_alert_tells_its_story(world, role):
    support = world["support"]
    firing = support["firing"]
    html = page(world, role, f"/alerts/{firing.pk}/")
    assert "support runaway" in html and "a running task past $5" in html
    assert "$7.12 vs threshold $5.00" in html
    timeline = html[html.index('id="timeline"') :]
    started, fired, notified = (
        timeline.index("2026-11-02 10:00:00"),
        timeline.index("2026-11-02 10:01:00"),
        timeline.index("notification to support-hook"),
    )
    assert started < fired and fired < timeline.index("</ol>")
    assert notified > 0
    deliveries = html[html.index('id="deliveries"') :]
    assert "support-hook" in deliveries and "failed (gave up)" in deliveries
    assert '<td class="num">4</td>' in deliveries and '<td class="num">503</td>' in deliveries
    assert "HTTP 503 from support receiver" in deliveries
    assert (f"/alerts/{firing.pk}/ack" in html) is (role == "sre")


def test_an_acknowledged_and_resolved_alert_has_each_moment_in_order(world):
    firing = world["support"]["firing"]
    client_for(world["users"]["sre"]).post(f"/alerts/{firing.pk}/ack")
    Alert.objects.filter(pk=firing.pk).update(
        state="resolved", resolved_at=timezone.now() + timedelta(minutes=1)
    )
    html = page(world, "viewer", f"/alerts/{firing.pk}/")
    timeline = html[html.index('id="timeline"') : html.index("</ol>")]
    order = [timeline.index(text) for text in ("started", "fired", "acknowledged by u-sre", "resolved")]
    assert order == sorted(order)


# --- /alerts/rules/ -------------------------------------------------------------------------------


THRESHOLD_FORM = {
    "name": "hourly spend",
    "team": "support",
    "agent": "",
    "kind": "threshold",
    "metric": "cost_usd",
    "op": "gt",
    "value": "12.5",
    "window": "1h",
    "for_minutes": "5",
    "repeat_minutes": "60",
    "enabled": "on",
}


@pytest.mark.parametrize("role", ["admin", "finops", *TEAM_ROLES])
def test_the_rules_page_lists_rules_and_channels_and_offers_the_editor_to_guards(world, role):
    html = page(world, role, "/alerts/rules/")
    assert "support runaway" in html and "support-hook" in html
    assert ("search runaway" in html) is (role in ("admin", "finops"))
    guards = role in GUARDS
    assert ("Add a rule" in html) is guards and ("Add a channel" in html) is guards
    assert (f"/alerts/rules/{world['support']['rule'].pk}/delete" in html) is guards
    assert (f"/alerts/channels/{world['support']['channel'].pk}/delete" in html) is guards
    secret = AlertChannel.objects.get(pk=world["support"]["channel"].pk).secret
    assert secret.startswith("whsec_") and secret not in html  # a secret is never shown again


def test_an_sre_creates_a_threshold_rule_with_its_fields(world):
    sre = client_for(world["users"]["sre"])
    channel = world["support"]["channel"]
    before = audit_count()
    answer = sre.post("/alerts/rules/", {**THRESHOLD_FORM, "channels": [channel.pk]})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    rule = AlertRule.objects.get(name="hourly spend")
    assert (rule.team, rule.agent, rule.kind, rule.metric, rule.op, rule.value, rule.window) == (
        world["support"]["team"],
        None,
        "threshold",
        "cost_usd",
        "gt",
        Decimal("12.5"),
        "1h",
    )
    assert (rule.for_minutes, rule.repeat_minutes, rule.enabled) == (5, 60, True)
    assert list(rule.channels.all()) == [channel]
    entry = AuditEntry.objects.latest("id")
    assert audit_count() == before + 1 and (entry.object_type, entry.action) == ("alert_rule", "create")
    assert Decimal(entry.after["value"]) == Decimal("12.5") and entry.after["channels"] == [channel.pk]
    assert "cost_usd &gt; 12.5 over last hour" in page(world, "viewer", "/alerts/rules/")


def test_fields_a_kind_does_not_read_are_dropped_not_refused(world):
    # the form keeps every field; a forecast reads only its value, so metric, op and window are ignored
    sre = client_for(world["users"]["sre"])
    form = {**THRESHOLD_FORM, "name": "month end", "kind": "forecast", "value": "900", "op": "lt"}
    assert sre.post("/alerts/rules/", form).status_code == 302
    rule = AlertRule.objects.get(name="month end")
    assert (rule.kind, rule.metric, rule.op, rule.value, rule.window) == (
        "forecast",
        "",
        "gt",
        Decimal(900),
        "",
    )
    runaway = {
        **THRESHOLD_FORM,
        "name": "long task",
        "kind": "runaway_task",
        "metric": "runaway:steps",
        "value": "40",
    }
    assert sre.post("/alerts/rules/", runaway).status_code == 302
    rule = AlertRule.objects.get(name="long task")
    assert (rule.metric, rule.value, rule.window) == ("steps", Decimal(40), "")


def test_a_rule_form_shows_the_service_errors_beside_their_fields(world):
    sre = client_for(world["users"]["sre"])
    before = (AlertRule.objects.count(), audit_count())
    answer = sre.post("/alerts/rules/", {**THRESHOLD_FORM, "metric": "", "window": "", "value": ""})
    assert answer.status_code == 200
    html = answer.content.decode()
    for field in ("metric", "value", "window"):
        assert f'id="id_{field}-errors"' in html, field
    assert "a threshold rule needs a metric" in html and "a threshold rule needs a value" in html
    answer = sre.post("/alerts/rules/", {**THRESHOLD_FORM, "agent": "nobody"})
    assert 'id="id_agent-errors"' in answer.content.decode() and "has no agent" in answer.content.decode()
    # another team's channel is not among the choices
    answer = sre.post("/alerts/rules/", {**THRESHOLD_FORM, "channels": [world["search"]["channel"].pk]})
    assert answer.status_code == 200 and 'id="id_channels-errors"' in answer.content.decode()
    assert (AlertRule.objects.count(), audit_count()) == before


@pytest.mark.parametrize("role", ["pm", "ml", "viewer"])
def test_a_reader_may_not_create_edit_toggle_or_delete_a_rule(world, role):
    client = client_for(world["users"][role])
    rule = world["support"]["rule"]
    before = (AlertRule.objects.count(), audit_count())
    assert client.post("/alerts/rules/", THRESHOLD_FORM).status_code == 403
    assert client.post(f"/alerts/rules/{rule.pk}/", {**THRESHOLD_FORM, "name": "renamed"}).status_code == 403
    assert client.post(f"/alerts/rules/{rule.pk}/enabled", {}).status_code == 403
    assert client.post(f"/alerts/rules/{rule.pk}/delete").status_code == 403
    html = page(world, role, f"/alerts/rules/{rule.pk}/")
    assert "support runaway" in html and 'name="name"' not in html  # read only
    rule.refresh_from_db()
    assert (rule.name, rule.enabled) == ("support runaway", True)
    assert (AlertRule.objects.count(), audit_count()) == before


def test_an_sre_edits_disables_enables_and_deletes_a_rule(world):
    support = world["support"]
    rule, channel = support["rule"], support["channel"]
    sre = client_for(world["users"]["sre"])
    form = page(world, "sre", f"/alerts/rules/{rule.pk}/")
    assert (
        'value="support runaway"' in form
        and 'name="value" value="5"' in form
        and 'value="runaway:cost_usd" selected' in form
    )
    before = audit_count()
    edited = {
        **THRESHOLD_FORM,
        "name": "support runaway",
        "agent": "support-bot",
        "kind": "runaway_task",
        "metric": "runaway:cost_usd",
        "value": "8",
        "channels": [channel.pk],
    }
    assert sre.post(f"/alerts/rules/{rule.pk}/", edited).status_code == 302
    rule.refresh_from_db()
    assert (rule.value, rule.for_minutes, rule.repeat_minutes) == (Decimal(8), 5, 60)
    entry = AuditEntry.objects.latest("id")
    assert entry.action == "update"
    assert (Decimal(entry.before["value"]), Decimal(entry.after["value"])) == (Decimal(5), Decimal(8))
    assert sre.post(f"/alerts/rules/{rule.pk}/enabled", {}).status_code == 302
    rule.refresh_from_db()
    assert rule.enabled is False
    assert sre.post(f"/alerts/rules/{rule.pk}/enabled", {"enabled": "on"}).status_code == 302
    rule.refresh_from_db()
    assert rule.enabled is True
    assert audit_count() == before + 3
    assert sre.post(f"/alerts/rules/{rule.pk}/delete").status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert not Alert.objects.filter(rule_id=rule.pk).exists()  # its alerts went with it
    assert AlertRule.objects.filter(pk=world["search"]["rule"].pk).exists()
    assert audit_count() == before + 4 and AuditEntry.objects.latest("id").action == "delete"


def test_an_sre_cannot_reach_another_teams_rule(world):
    foreign = world["search"]["rule"]
    sre = client_for(world["users"]["sre"])
    before = audit_count()
    assert sre.get(f"/alerts/rules/{foreign.pk}/").status_code == 404
    assert sre.post(f"/alerts/rules/{foreign.pk}/", THRESHOLD_FORM).status_code == 404
    assert sre.post(f"/alerts/rules/{foreign.pk}/enabled", {}).status_code == 404
    assert sre.post(f"/alerts/rules/{foreign.pk}/delete").status_code == 404
    foreign.refresh_from_db()
    assert foreign.enabled and audit_count() == before


# --- channels -------------------------------------------------------------------------------------


def test_a_new_webhook_channel_shows_its_secret_once_with_how_to_verify(world):
    sre = client_for(world["users"]["sre"])
    before = audit_count()
    answer = sre.post(
        "/alerts/channels/",
        {"team": "support", "name": "pager", "kind": "webhook", "target": "https://pager.example/in"},
    )
    assert answer.status_code == 200
    html = answer.content.decode()
    channel = AlertChannel.objects.get(name="pager")
    assert (
        channel.secret.startswith("whsec_")
        and f'<code id="new-secret" class="secret">{channel.secret}</code>' in html
    )
    assert webhook_secret_key(channel.secret)  # a key that decodes
    assert "webhook-signature" in html and "{webhook-id}.{webhook-timestamp}.{raw body}" in html
    assert audit_count() == before + 1
    entry = AuditEntry.objects.latest("id")
    assert channel.secret not in str(entry.after)  # only a fingerprint
    assert channel.secret not in sre.get("/alerts/rules/").content.decode()  # never again


def test_a_channel_form_error_names_the_field(world):
    sre = client_for(world["users"]["sre"])
    before = (AlertChannel.objects.count(), audit_count())
    answer = sre.post("/alerts/channels/", {"team": "support", "kind": "email", "target": "not-an-address"})
    html = answer.content.decode()
    assert (
        answer.status_code == 200 and 'id="id_target-errors"' in html and "must be an email address" in html
    )
    assert (AlertChannel.objects.count(), audit_count()) == before


def test_channels_are_deleted_by_guards_only(world):
    channel = world["support"]["channel"]
    before = audit_count()
    assert (
        client_for(world["users"]["viewer"]).post(f"/alerts/channels/{channel.pk}/delete").status_code == 403
    )
    assert (
        client_for(world["users"]["sre"])
        .post(f"/alerts/channels/{world['search']['channel'].pk}/delete")
        .status_code
        == 404
    )
    assert (
        client_for(world["users"]["viewer"])
        .post("/alerts/channels/", {"team": "support", "kind": "email", "target": "a@b.example"})
        .status_code
        == 403
    )
    assert AlertChannel.objects.count() == 2 and audit_count() == before
    assert (
        client_for(world["users"]["tech_lead"]).post(f"/alerts/channels/{channel.pk}/delete").status_code
        == 302
    )
    assert not AlertChannel.objects.filter(pk=channel.pk).exists()
    assert audit_count() == before + 1 and AuditEntry.objects.latest("id").object_type == "alert_channel"


def test_a_channel_that_recovered_leaves_the_banner(world):
    channel = world["support"]["channel"]
    AlertChannel.objects.filter(pk=channel.pk).update(
        last_success_at=MOMENT + timedelta(minutes=3), consecutive_failures=0
    )
    assert "HTTP 503 from support receiver" not in page(world, "sre", "/alerts/").split('id="open-title"')[0]


# --- /audit/ --------------------------------------------------------------------------------------


def test_the_audit_log_shows_a_readable_diff_filtered_and_scoped(world):
    support = world["support"]
    client_for(world["users"]["sre"]).post(
        f"/alerts/rules/{support['rule'].pk}/",
        {**THRESHOLD_FORM, "name": "renamed runaway", "agent": "support-bot", "kind": "runaway_task",
         "metric": "runaway:cost_usd", "value": "5", "for_minutes": "0", "repeat_minutes": "240",
         "channels": [support["channel"].pk]},
    )  # fmt: skip
    html = page(world, "viewer", "/audit/", object_type="alert_rule")
    # only what changed: the name; not the untouched value
    assert "<del>support runaway</del> → <ins>renamed runaway</ins>" in html
    assert "<del>5.000000</del>" not in html
    assert "alert_rule " + str(support["rule"].pk) in html
    assert "alert_channel" not in html.split('id="audit"')[1]  # filtered by type
    assert "search runaway" not in html  # another team's
    assert client_for(world["users"]["viewer"]).get("/audit/", {"team": "search"}).status_code == 404
    everything = page(world, "admin", "/audit/", team="search")
    assert "search runaway" in everything and "support runaway" not in everything


def test_the_audit_log_is_paginated(world):
    for number in range(60):
        audit_record(
            principal=None,
            team_id=world["support"]["team"].pk,
            object_type="allowance",
            object_id=1000 + number,
            action="update",
            before={"limit_usd": "1"},
            after={"limit_usd": str(number)},
        )
    first = page(world, "viewer", "/audit/")
    total = AuditEntry.objects.filter(team=world["support"]["team"]).count()
    assert f"{total} changes" in first and f"Page 1 of {(total + 49) // 50}" in first
    assert "allowance 1059" in first and "allowance 1000" not in first
    assert "allowance 1000" in page(world, "viewer", "/audit/", page=2)


# --- /guardrails/ ---------------------------------------------------------------------------------


def test_an_allowance_is_edited_on_its_page_and_audited(world):
    support = world["support"]["team"]
    allowance = allowance_create(
        principal=None, team=support, agent=None, window="day", limit_usd=Decimal(25)
    )
    sre = client_for(world["users"]["sre"])
    listing = page(world, "sre", "/guardrails/")
    assert (
        f"/guardrails/allowances/{allowance.pk}/" in listing
        and 'class="warn-mark" style="left: 80%"' in listing
    )
    before = audit_count()
    answer = sre.post(
        f"/guardrails/allowances/{allowance.pk}/",
        {
            "team": "support",
            "agent": "",
            "window": "day",
            "limit_usd": "40",
            "limit_tokens": "",
            "warn_at": "0.9",
            "action": "warn",
        },
    )
    assert answer.status_code == 302
    allowance.refresh_from_db()
    assert (allowance.limit_usd, allowance.warn_at, allowance.action) == (Decimal(40), 0.9, "warn")
    entry = AuditEntry.objects.latest("id")
    assert audit_count() == before + 1 and (entry.object_type, entry.action) == ("allowance", "update")
    assert (entry.before["limit_usd"], entry.after["limit_usd"]) == ("25.000000", "40.000000")
    viewer = client_for(world["users"]["viewer"])
    html = viewer.get(f"/guardrails/allowances/{allowance.pk}/").content.decode()
    assert "$40.00" in html and 'name="limit_usd"' not in html
    assert viewer.post(f"/guardrails/allowances/{allowance.pk}/", {"limit_usd": "1"}).status_code == 403
    foreign = allowance_create(
        principal=None, team=world["search"]["team"], agent=None, window="day", limit_tokens=9
    )
    assert sre.get(f"/guardrails/allowances/{foreign.pk}/").status_code == 404
    allowance.refresh_from_db()
    assert allowance.limit_usd == Decimal(40) and audit_count() == before + 2  # + the foreign one's creation
    assert Allowance.objects.get(pk=foreign.pk).limit_tokens == 9


# --- cost -----------------------------------------------------------------------------------------


def queries_for(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def test_many_rows_cost_no_more_queries_than_one(world):
    support, admin = world["support"], world["users"]["admin"]
    sre = client_for(world["users"]["sre"])
    paths = ["/alerts/", "/alerts/rules/", "/audit/", f"/alerts/{support['firing'].pk}/"]
    few = {path: queries_for(sre, path) for path in paths}
    for number in range(8):
        channel, _ = channel_create(
            principal=admin, team=support["team"], kind="email", target=f"oncall{number}@example.com"
        )
        AlertChannel.objects.filter(pk=channel.pk).update(last_failure_at=MOMENT, consecutive_failures=1)
        rule = rule_create(
            principal=admin,
            name=f"forecast {number}",
            team=support["team"],
            kind="forecast",
            value=Decimal(100 + number),
            channels=[channel],
        )
        Alert.objects.create(
            rule=rule,
            team=support["team"],
            subject="team:support",
            state="firing" if number % 2 else "resolved",
            started_at=MOMENT,
            resolved_at=None if number % 2 else MOMENT + timedelta(hours=1),
            acknowledged_by=admin if number % 3 == 0 else None,
            acknowledged_at=MOMENT if number % 3 == 0 else None,
            last_evaluated_at=MOMENT,
        )
        Delivery.objects.create(
            alert=support["firing"], channel=channel, team=support["team"], event="alert.firing", payload={}
        )
        silence_create(principal=admin, rule=rule, ends_at=timezone.now() + timedelta(hours=number + 1))
    many = {path: queries_for(sre, path) for path in paths}
    assert many == few


# --- a channel's URL is a secret --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "shown_in_full"), [(role, role in GUARDS) for role in (*TEAM_ROLES, "admin")]
)
def test_a_channel_url_is_shown_in_full_only_to_who_may_change_the_channel(world, role, shown_in_full):
    """Whoever holds a webhook or Slack URL can post to it as finops: the readers of a team see the
    host and the URL's last four characters, on the page and in its CSV; its guards see it whole."""
    secret_url = "https://hooks.slack.com/services/T0AAA/B0BBB/s3cretT0kenXy9z"
    channel = world["support"]["channel"]
    AlertChannel.objects.filter(pk=channel.pk).update(target=secret_url, name="")
    html = page(world, role, "/alerts/rules/")
    exported = client_for(world["users"][role]).get("/alerts/rules/", {"export": "channels"})
    csv_text = b"".join(exported.streaming_content).decode()
    detail = page(world, role, f"/alerts/{world['support']['firing'].pk}/")
    listing = page(world, role, "/alerts/")
    if shown_in_full:
        assert secret_url in html and secret_url in csv_text
    else:
        for text in (html, csv_text, detail, listing):
            assert "s3cretT0ken" not in text
        assert "https://hooks.slack.com/…Xy9z" in html and "https://hooks.slack.com/…Xy9z" in csv_text
    # the alert's story and the failing channels name it the same way to everyone but never whole
    assert secret_url not in detail and "https://hooks.slack.com/…Xy9z" in detail
    assert secret_url not in listing
