"""The world of the URL-walking permission test (test_url_permissions.py): two teams, alpha (the
principals' own) and bravo (the foreign one), each with data carrying sentinels (texts and numbers no
request contains), and one principal of each role. Built once per module inside a transaction that is
rolled back at the end; each test runs in a savepoint of it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import combinations
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.client import ClientHandler

from finops.accounts.models import Membership, OrgRole, Team, TeamRole, TokenScope, User
from finops.accounts.services import api_token_create
from finops.alerts.models import Alert, AlertChannel, AlertRule, Delivery, Silence
from finops.alerts.services import channel_create, rule_create, silence_create
from finops.audit.models import AuditEntry
from finops.bills.closing import month_close
from finops.bills.models import ReconciliationLine
from finops.guardrails.models import Allowance, Reservation
from finops.guardrails.services import allowance_create
from finops.ledger.models import (
    Agent,
    BreakdownRollup,
    Call,
    DailyRollup,
    EventKey,
    PromptVersionDailyRollup,
    Task,
)
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount
from finops.pricing.reprice import RepriceScope, reprice_run_create
from ingest.connectors.invoice_csv import InvoiceMappingSpec
from ingest.connectors.models import InvoiceImport, StatementLine
from ingest.connectors.services import connector_create, invoice_mapping_save
from ingest.models import ImportJob, QuarantinedRow
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory

CSRF_SECRET = "walkWALKwalkWALKwalkWALKwalkWALK"  # 32 characters: an unmasked CSRF secret
_HANDLER = ClientHandler(enforce_csrf_checks=True)
CALL_TIME = "2026-11-02T10:00:00Z"
# an invoice file of the organisation (billing data: no team's)
WALK_INVOICE_HEADER = "day,model,cost"
WALK_INVOICE = f"{WALK_INVOICE_HEADER}\n2026-11-02,gpt-4o,1.75\n2026-11-03,gpt-4o,2.25\n"
WINDOW = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}


@dataclass
class TeamData:
    """One team's rows, and the sentinels that must show only to principals who see the team."""

    slug: str
    name: str
    agent: Agent
    uncached_input: int  # one call's count, distinctive enough that no other figure contains it
    quarantined: QuarantinedRow
    quarantine_source: str
    job: ImportJob
    allowance: Allowance  # on the team's agent, its dollar limit a sentinel
    audit: AuditEntry  # the allowance's creation, by a member of the team
    task: Task  # the run of the team's one call
    channel: AlertChannel  # a webhook, its name a sentinel
    rule: AlertRule  # a runaway_task rule on the agent, sending to the channel, its name a sentinel
    alert: Alert  # the rule's, firing, with a delivery (its message id a sentinel)
    silence: Silence  # of the agent, its reason a sentinel
    sentinels: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """Who sends a request: a session user, an API token, or nobody. `sees` are the team slugs whose
    data it may read."""

    key: str
    sees: frozenset[str]
    user: User | None = None
    session_key: str | None = None
    token_secret: str | None = None

    def client(self) -> tuple[Client, dict[str, str]]:
        """A client checking CSRF as a browser's requests are checked, holding the CSRF cookie a visit
        to the login page leaves (so a refusal is the view's, not CSRF's), and the login or token."""
        client = Client(enforce_csrf_checks=True, raise_request_exception=False)
        client.handler = _HANDLER  # one middleware chain: WhiteNoise's start-up scan is not per request
        client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
        headers = {"X-CSRFToken": CSRF_SECRET}
        if self.session_key:
            client.cookies[settings.SESSION_COOKIE_NAME] = self.session_key
        if self.token_secret:
            headers["Authorization"] = f"Bearer {self.token_secret}"
        return client, headers


@dataclass
class World:
    alpha: TeamData
    bravo: TeamData
    principals: dict[str, Principal]
    # per set of scopes (any of which a request accepts), an org-wide token holding every other scope
    tokens_lacking: dict[frozenset[str], Principal] = field(default_factory=dict)
    connector_id: int = 0
    invoice_mapping_id: int = 0
    invoice_import_id: int = 0
    reconciliation_line_id: int = 0
    price_override_id: int = 0  # organisation prices (finops/pricing) and a re-pricing run
    discount_id: int = 0
    reprice_run_id: int = 0

    def team(self, slug: str) -> TeamData:
        return {"alpha": self.alpha, "bravo": self.bravo}[slug]

    def without_bravo(self) -> World:
        """This world with bravo's rows swapped for ones that do not exist: what a principal outside
        bravo gets asking about bravo must be what it gets asking about nothing."""
        missing = 2**31 - 1
        ghost = TeamData(
            slug="ghost",
            name="Ghost Team",
            agent=Agent(pk=missing, name="ghost-agent"),
            uncached_input=0,
            quarantined=QuarantinedRow(pk=missing, event_id="ghost-rejected"),
            quarantine_source="file:ghost-only.jsonl",
            job=ImportJob(pk=missing, file_name="ghost-upload.jsonl"),
            allowance=Allowance(pk=missing),
            audit=AuditEntry(pk=missing),
            task=Task(pk=missing),
            channel=AlertChannel(pk=missing),
            rule=AlertRule(pk=missing, name="ghost-sentinel-rule"),
            alert=Alert(pk=missing, subject="task:ghost/ghost-sentinel-task"),
            silence=Silence(pk=missing),
            sentinels=(),
        )
        return replace(self, bravo=ghost)


def _team_data(
    *, slug: str, uncached_input: int, output: int, uploader: User, limit_usd: str, guard: User
) -> TeamData:
    name = f"{slug.title()} Sentinel Team"
    team = TeamFactory(slug=slug, name=name)
    agent_name = f"{slug}-sentinel-agent"
    events_ingest(
        raw_events=[
            {
                "event_id": f"{slug}-sentinel-call",
                "timestamp": CALL_TIME,
                "team": slug,
                "agent": agent_name,
                "task_id": f"{slug}-sentinel-task",
                "provider": "openai",
                "model": "gpt-4o",
                "usage": {"uncached_input": uncached_input, "output": output},
            }
        ],
        principal=None,
        source="test",
    )
    source = f"file:{slug}-only.jsonl"
    quarantined = QuarantinedRow.objects.create(
        source=source,
        team=team,
        position="line 1",
        event_id=f"{slug}-sentinel-rejected",
        payload={"event_id": f"{slug}-sentinel-rejected", "team": slug, "agent": agent_name},
        errors={"timestamp": ["this field is required"]},
        adapter="events",
    )
    job = ImportJob.objects.create(
        created_by=uploader,
        file_name=f"{slug}-sentinel-upload.jsonl",
        stored_path=f"/nonexistent/{slug}.jsonl",
        source=f"file:{slug}-sentinel-upload.jsonl",
        accepted=uncached_input,
    )
    agent = Agent.objects.get(team=team, name=agent_name)
    # a month's allowance: today's window holds none of the November calls, so only its limit shows
    allowance = allowance_create(
        principal=uploader,
        created_by=uploader,
        team=team,
        agent=agent,
        window="month",
        limit_usd=Decimal(limit_usd),
        action="deny",
    )
    # alerting: made by `guard` (who may change every team's), as the services insist
    channel, _ = channel_create(
        principal=guard,
        team=team,
        kind="webhook",
        target=f"https://{slug}-sentinel-hook.example/alerts",
        name=f"{slug}-sentinel-channel",
    )
    rule = rule_create(
        principal=guard,
        name=f"{slug}-sentinel-rule",
        team=team,
        agent=agent,
        kind="runaway_task",
        metric="cost_usd",
        value=Decimal(5),
        channels=[channel],
    )
    fired = datetime(2026, 11, 2, 10, 5, tzinfo=UTC)
    alert = Alert.objects.create(
        rule=rule,
        team=team,
        subject=f"task:{slug}/{slug}-sentinel-task",
        state="firing",
        value=Decimal("5.5"),
        threshold=Decimal(5),
        started_at=fired,
        fired_at=fired,
        last_evaluated_at=fired,
    )
    Delivery.objects.create(
        alert=alert,
        channel=channel,
        team=team,
        event="alert.firing",
        payload={},
        message_id=f"msg_{slug}_sentinel",
    )
    silence = silence_create(
        principal=guard,
        team=team,
        agent=agent,
        ends_at=datetime(2099, 1, 1, tzinfo=UTC),
        reason=f"{slug}-sentinel-silence",
    )
    return TeamData(
        slug=slug,
        name=name,
        agent=agent,
        uncached_input=uncached_input,
        quarantined=quarantined,
        quarantine_source=source,
        job=job,
        allowance=allowance,
        audit=AuditEntry.objects.get(object_type="allowance", object_id=str(allowance.pk)),
        task=Task.objects.get(team=team, task_id=f"{slug}-sentinel-task"),
        channel=channel,
        rule=rule,
        alert=alert,
        silence=silence,
        sentinels=(
            name,
            agent_name,
            str(uncached_input),
            f"{slug}-sentinel-rejected",
            job.file_name,
            limit_usd,
            f"{slug}-sentinel-hook",
            f"{slug}-sentinel-channel",
            f"{slug}-sentinel-rule",
            f"msg_{slug}_sentinel",
            f"{slug}-sentinel-silence",
        ),
    )


def _session_key(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.session.session_key


# every table holding a team's rows (api tokens aside: using one stamps its last_used_at)
TEAM_TABLES = [
    Team,
    Membership,
    Agent,
    Task,
    Call,
    EventKey,
    DailyRollup,
    BreakdownRollup,
    PromptVersionDailyRollup,
    QuarantinedRow,
    Allowance,
    Reservation,
    AuditEntry,
    AlertChannel,
    AlertRule,
    Alert,
    Silence,
    Delivery,
]


def teams_fingerprint(slugs: list[str]) -> list[tuple]:
    """Every row of the teams, whole, in one query: equal before and after a request means untouched."""
    parts = ", ".join(
        f"(SELECT json_agg(row_to_json(t) ORDER BY row_to_json(t)::text) FROM {model._meta.db_table} t "
        f"WHERE {'id' if model is Team else 'team_id'} = team.id)"
        for model in TEAM_TABLES
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT team.slug, {parts} FROM {Team._meta.db_table} team WHERE team.slug = ANY(%s) ORDER BY 1",
            [slugs],
        )
        return cursor.fetchall()


@pytest.fixture(scope="module")
def url_world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        users = {
            "admin": UserFactory(username="walk-admin", org_role=OrgRole.ADMIN),
            "finops": UserFactory(username="walk-finops", org_role=OrgRole.FINOPS),
        }
        bravo_member = UserFactory(username="walk-bravo-sre")
        for role in (TeamRole.SRE, TeamRole.TECH_LEAD, TeamRole.PM, TeamRole.ML, TeamRole.VIEWER):
            users[str(role)] = UserFactory(username=f"walk-{role}")
        alpha = _team_data(
            slug="alpha",
            uncached_input=3_141_593,
            output=271_829,
            uploader=users["sre"],
            limit_usd="61.803398",
            guard=users["admin"],
        )
        bravo = _team_data(
            slug="bravo",
            uncached_input=7_777_331,
            output=424_243,
            uploader=bravo_member,
            limit_usd="57.721566",
            guard=users["admin"],
        )
        alpha_team, bravo_team = Team.objects.get(slug="alpha"), Team.objects.get(slug="bravo")
        MembershipFactory(user=bravo_member, team=bravo_team, role=TeamRole.SRE)
        for role in (TeamRole.SRE, TeamRole.TECH_LEAD, TeamRole.PM, TeamRole.ML, TeamRole.VIEWER):
            MembershipFactory(user=users[str(role)], team=alpha_team, role=role)

        every_team = frozenset({"alpha", "bravo"})
        principals = {
            key: Principal(
                key=key,
                sees=every_team if user.sees_every_team else frozenset({"alpha"}),
                user=user,
                session_key=_session_key(user),
            )
            for key, user in users.items()
        }
        # the tokens hold every scope: what each URL lets a token do, its team bounds (`manage` too)
        every_scope = list(TokenScope.values)
        principals["org_token"] = Principal(
            key="org_token", sees=every_team, token_secret=api_token_create(name="org", scopes=every_scope)[1]
        )
        principals["team_token"] = Principal(
            key="team_token",
            sees=frozenset({"alpha"}),
            token_secret=api_token_create(name="alpha", scopes=every_scope, team=alpha_team)[1],
        )
        principals["anonymous"] = Principal(key="anonymous", sees=frozenset())
        tokens_lacking = {
            frozenset(lacked): Principal(
                key="scopeless_token",
                sees=every_team,
                token_secret=api_token_create(
                    name=f"without {' '.join(lacked)}",
                    scopes=[other for other in TokenScope.values if other not in lacked],
                )[1],
            )
            for size in range(1, len(TokenScope.values))
            for lacked in combinations(TokenScope.values, size)
        }
        connector = connector_create(
            kind="openai_costs", name="walk-connector", credentials={"api_key": "sk-x"}
        )
        StatementLine.objects.create(
            provider="openai",
            kind="cost",
            source=f"openai_costs:{connector.pk}",
            period_start=datetime(2026, 11, 2, tzinfo=UTC),
            period_end=datetime(2026, 11, 3, tzinfo=UTC),
            model="gpt-4o",
            line_item="walk",
            amount="1.25",
            currency="usd",
            pulled_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
        # a closed month, for the walk's reopen (October: the calls are November's)
        month_close(principal=users["admin"], month=date(2026, 10, 1), reason="walk")
        mapping = invoice_mapping_save(
            principal=None,
            name="walk-mapping",
            header=WALK_INVOICE_HEADER.split(","),
            spec=InvoiceMappingSpec(
                columns={"period_start": "day", "amount": "cost", "model": "model"},
                currency="USD",
                provider="openai",
                date_format="iso",
            ),
        )
        invoice_file = Path(tempfile.mkdtemp(prefix="walk-invoice-")) / "walk-invoice.csv"
        invoice_file.write_text(WALK_INVOICE)
        invoice_import = InvoiceImport.objects.create(
            file_name="walk-invoice.csv", stored_path=str(invoice_file), source="invoice:walk-invoice.csv"
        )
        reconciliation_line = ReconciliationLine.objects.create(
            provider="openai",
            month=date(2026, 11, 1),
            day=date(2026, 11, 2),
            model="gpt-4o",
            token_type="output",
        )
        override = ModelPriceOverride.objects.create(
            provider="walk",
            model="walk-price-model",
            effective_from=datetime(2026, 1, 1, tzinfo=UTC),
            uncached_input_per_mtok=Decimal("1.5"),
            output_per_mtok=Decimal("6"),
        )
        discount = NegotiatedDiscount.objects.create(
            provider="walk", percent=Decimal("4.5"), effective_from=datetime(2026, 1, 1, tzinfo=UTC)
        )
        run = reprice_run_create(
            trigger="walk-reprice-run",
            scopes=[RepriceScope(provider="walk", model=None, start=datetime(2026, 1, 1, tzinfo=UTC))],
        )
        yield World(
            alpha=alpha,
            bravo=bravo,
            principals=principals,
            tokens_lacking=tokens_lacking,
            connector_id=connector.pk,
            invoice_mapping_id=mapping.pk,
            invoice_import_id=invoice_import.pk,
            reconciliation_line_id=reconciliation_line.pk,
            price_override_id=override.pk,
            discount_id=discount.pk,
            reprice_run_id=run.pk,
        )
        transaction.set_rollback(True)
