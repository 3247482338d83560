"""The alerts' services and selectors, called as the pages call them: who may change what, what a rule of
each kind needs, the patterns the API's schema states agreeing with the checks, and the open alerts in
the order someone on call reads them."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from finops.accounts.services import api_token_create
from finops.alerts.models import Alert, AlertChannel, AlertRule, RuleKind, Silence
from finops.alerts.selectors import alerts_open, alerts_recent, silences_active
from finops.alerts.services import (
    EMAIL_TARGET,
    KIND_FIELDS,
    URL_TARGET,
    WEBHOOK_SECRET,
    alert_acknowledge,
    channel_create,
    rule_create,
    rule_update,
    silence_create,
)
from finops.alerts.signing import webhook_secret_key, webhook_secret_new
from finops.audit.models import AuditEntry
from tests.factories import AgentFactory, MembershipFactory, TeamFactory, UserFactory

MOMENT = datetime(2026, 11, 2, 10, tzinfo=UTC)


def accepted(secret: str) -> bool:
    try:
        webhook_secret_key(secret)
    except ValueError:
        return False
    return True


@given(key=st.binary(min_size=0, max_size=100))
@settings(max_examples=300, deadline=None)
def test_the_schemas_secret_pattern_is_what_the_signer_accepts_for_keys_of_every_length(key):
    secret = "whsec_" + base64.b64encode(key).decode()
    assert bool(re.fullmatch(WEBHOOK_SECRET, secret)) == accepted(secret) == (24 <= len(key) <= 64)


@given(secret=st.from_regex(WEBHOOK_SECRET, fullmatch=True))
@settings(max_examples=200, deadline=None)
def test_every_secret_the_pattern_allows_is_one_the_signer_reads(secret):
    assert accepted(secret)


@given(tail=st.text(alphabet="ABCabc012+/=_ -!", max_size=100))
@settings(max_examples=300, deadline=None)
def test_the_secret_pattern_and_the_signer_agree_on_any_text(tail):
    secret = "whsec_" + tail
    assert bool(re.fullmatch(WEBHOOK_SECRET, secret)) == accepted(secret)


def test_a_generated_secret_matches_the_pattern():
    assert re.fullmatch(WEBHOOK_SECRET, webhook_secret_new())


@pytest.mark.parametrize(
    ("target", "url", "email"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", True, False),
        ("http://127.0.0.1:8080/hook?x=1", True, False),
        ("HTTPS://upper.example", False, False),  # the scheme is written in lower case
        ("https://", False, False),
        ("https:///path", False, False),
        ("https://host.example/a b", False, False),
        ("https://host.example/\x1d", False, False),
        ("oncall@example.com", False, True),
        ("on call@example.com", False, False),
        ("@example.com", False, False),
    ],
)
def test_targets(target, url, email):
    assert (bool(re.fullmatch(URL_TARGET, target)), bool(re.fullmatch(EMAIL_TARGET, target))) == (url, email)


@pytest.fixture
def world(db):
    support, search = TeamFactory(slug="support"), TeamFactory(slug="search")
    bot = AgentFactory(team=support, name="refund-bot")
    indexer = AgentFactory(team=search, name="indexer")
    people = {}
    for role in ("sre", "tech_lead", "pm", "viewer"):
        people[role] = UserFactory(username=f"support-{role}")
        MembershipFactory(user=people[role], team=support, role=role)
    people["admin"] = UserFactory(username="the-admin", org_role="admin")
    return {"support": support, "search": search, "bot": bot, "indexer": indexer, **people}


def test_only_guards_write_and_nothing_is_left_of_a_refused_change(world):
    support = world["support"]
    for who in ("pm", "viewer"):
        with pytest.raises(PermissionDenied):
            channel_create(principal=world[who], team=support, kind="email", target="a@example.com")
        with pytest.raises(PermissionDenied):
            rule_create(principal=world[who], name="r", team=support, kind="allowance")
        with pytest.raises(PermissionDenied):
            silence_create(principal=world[who], team=support, ends_at=MOMENT + timedelta(days=10**4))
    with pytest.raises(PermissionDenied):  # a team's guard is not the organisation's
        channel_create(principal=world["sre"], team=None, kind="email", target="a@example.com")
    ingest_token, _ = api_token_create(name="ingest", scopes=["ingest", "read"], team=support)
    with pytest.raises(PermissionDenied):
        rule_create(principal=ingest_token, name="r", team=support, kind="allowance")
    assert not AlertChannel.objects.exists() and not AlertRule.objects.exists()
    assert not Silence.objects.exists() and not AuditEntry.objects.exists()


def test_a_rule_moved_to_another_team_needs_its_guard_and_leaves_the_old_teams_channels(world):
    support, search = world["support"], world["search"]
    channel, secret = channel_create(
        principal=world["admin"], team=support, kind="webhook", target="https://a.example"
    )
    assert secret is not None and channel.secret == secret
    rule = rule_create(
        principal=world["sre"],
        name="spend",
        team=support,
        kind="forecast",
        value=Decimal(9),
        channels=[channel],
    )
    with pytest.raises(PermissionDenied):  # the sre does not guard search
        rule_update(principal=world["sre"], rule=rule, team=search)
    with pytest.raises(ValidationError) as refused:
        rule_update(principal=world["admin"], rule=rule, team=search)
    assert list(refused.value.message_dict) == ["channels"]
    moved = rule_update(principal=world["admin"], rule=rule, team=search, channels=[])
    assert (moved.team, list(moved.channels.all())) == (search, [])
    with pytest.raises(ValidationError) as agent_elsewhere:
        rule_update(principal=world["admin"], rule=rule, agent=world["bot"])
    assert agent_elsewhere.value.message_dict == {
        "agent": ["agent 'refund-bot' is not an agent of team 'search'"]
    }
    assert AlertRule.objects.get().team == search


def test_a_channel_the_editor_cannot_see_stays_on_the_rule(world):
    support = world["support"]
    org, _ = channel_create(principal=world["admin"], team=None, kind="email", target="cfo@example.com")
    own, _ = channel_create(principal=world["sre"], team=support, kind="email", target="oncall@example.com")
    rule = rule_create(
        principal=world["admin"],
        name="spend",
        team=support,
        kind="forecast",
        value=Decimal(9),
        channels=[org],
    )
    # the sre changes the value, and the channels it sees: the organisation's channel stays
    rule_update(principal=world["sre"], rule=rule, value=Decimal(10))
    rule_update(principal=world["sre"], rule=rule, channels=[own])
    assert sorted(rule.channels.values_list("pk", flat=True)) == [org.pk, own.pk]
    rule_update(principal=world["sre"], rule=rule, channels=[])
    assert list(rule.channels.all()) == [org]
    rule_update(principal=world["admin"], rule=rule, channels=[])
    assert not rule.channels.exists()


@pytest.mark.parametrize("kind", RuleKind.values)
def test_each_kind_reads_its_fields_and_refuses_the_others(world, kind):
    # every field a kind reads, filled; then each field it does not read, filled alone: an error of that field
    filled = {
        "metric": "steps" if kind == RuleKind.RUNAWAY_TASK else "cost_usd",
        "value": Decimal(1),
        "window": "1h",
    }
    reads = {name: filled[name] for name in KIND_FIELDS[kind] if name in filled}
    rule = rule_create(principal=world["admin"], name=kind, team=world["support"], kind=kind, **reads)
    assert {name: getattr(rule, name) for name in reads} == reads
    for name in set(filled) - set(reads):
        with pytest.raises(ValidationError) as refused:
            rule_create(
                principal=world["admin"],
                name=kind,
                team=world["support"],
                kind=kind,
                **reads,
                **{name: filled[name]},
            )
        assert list(refused.value.message_dict) == [name]
    for name in reads:
        with pytest.raises(ValidationError) as lacking:
            rule_create(
                principal=world["admin"],
                name=kind,
                team=world["support"],
                kind=kind,
                **{**reads, name: None if name == "value" else ""},
            )
        assert list(lacking.value.message_dict) == [name]


def test_open_alerts_firing_and_unacknowledged_first_and_scoped(world):
    support, search = world["support"], world["search"]
    rule = AlertRule.objects.create(team=support, name="r", kind="forecast", value=1)
    elsewhere = AlertRule.objects.create(team=search, name="s", kind="forecast", value=1)

    def alert(subject, state, hours, **fields):
        started = MOMENT + timedelta(hours=hours)
        return Alert.objects.create(
            rule=rule,
            team=rule.team,
            subject=subject,
            state=state,
            started_at=started,
            last_evaluated_at=started,
            **fields,
        )

    pending = alert("a", "pending", 5)
    old_firing = alert("b", "firing", 1)
    new_firing = alert("c", "firing", 2)
    acked = alert("d", "firing", 3)
    alert_acknowledge(principal=world["sre"], alert=acked)
    resolved = alert("e", "resolved", 4, resolved_at=MOMENT + timedelta(hours=6))
    Alert.objects.create(
        rule=elsewhere, team=search, subject="x", state="firing", started_at=MOMENT, last_evaluated_at=MOMENT
    )
    assert list(alerts_open(principal=world["viewer"])) == [new_firing, old_firing, acked, pending]
    assert alerts_recent(principal=world["viewer"], limit=2) == [pending, resolved]
    since = alerts_recent(principal=world["viewer"], since=MOMENT + timedelta(hours=7))
    assert resolved not in since and len(since) == 4
    assert len(alerts_recent(principal=world["admin"])) == 6


def test_active_silences_are_the_ones_not_ended(world):
    support = world["support"]
    now = timezone.now()
    ended = Silence.objects.create(
        team=support, starts_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1)
    )
    running = silence_create(
        principal=world["sre"], team=support, agent=world["bot"], ends_at=now + timedelta(hours=1)
    )
    coming = silence_create(
        principal=world["sre"],
        team=support,
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=2),
    )
    assert list(silences_active(principal=world["viewer"])) == [running, coming]
    assert ended not in silences_active(principal=world["admin"])
    with pytest.raises(ValidationError) as wrong_agent:
        silence_create(
            principal=world["admin"], team=support, agent=world["indexer"], ends_at=now + timedelta(hours=1)
        )
    assert list(wrong_agent.value.message_dict) == ["agent"]
