"""The tables of the alerts, rules, audit, guardrails and quarantine pages download as CSV: the rows the
page shows, exact (dollars to the micro-dollar the database keeps, timestamps in ISO form)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from finops.alerts.models import Alert, AlertChannel, Delivery
from finops.audit.models import AuditEntry
from finops.guardrails.selectors import allowances_live
from ingest.models import QuarantinedRow
from ingest.writer import events_ingest
from tests.dashboard.recent_ledger import member, rows_of
from tests.dashboard.test_alerts_pages import client_for, person


def test_the_alerts_page_tables_download(recent):
    client = client_for(member("sre1", (recent.teams["support"], "sre")))
    page = client.get("/alerts/").content.decode()
    assert 'href="?export=open-alerts"' in page
    (row,) = rows_of(client.get("/alerts/", {"export": "open-alerts"}))
    alert = Alert.objects.get()
    assert (row["State"], row["Rule"], row["Subject"]) == ("firing", "runaway support", "task:support/run-1")
    assert Decimal(row["Value"]) == alert.value == recent.spend(task_id="run-1")
    assert datetime.fromisoformat(row["Since (UTC)"]) == alert.fired_at
    assert rows_of(client.get("/alerts/", {"export": "silences"})) == []


def test_the_rules_page_tables_download(recent):
    root = person("root2", is_superuser=True)
    AlertChannel.objects.create(
        name="pager", kind="webhook", target="https://example.com/hook", team=recent.teams["support"]
    )
    client = client_for(root)
    (rule,) = rows_of(client.get("/alerts/rules/", {"export": "rules"}))
    assert (rule["Name"], rule["Team"], rule["Kind"], rule["Metric"]) == (
        "runaway support",
        "support",
        "runaway_task",
        "cost_usd",
    )
    assert Decimal(rule["Value"]) == Decimal("1.00") and rule["Enabled"] == "true"
    (channel,) = rows_of(client.get("/alerts/rules/", {"export": "channels"}))
    assert (channel["Name"], channel["Team"], channel["Target"]) == (
        "pager",
        "support",
        "https://example.com/hook",
    )


def test_the_audit_and_guardrails_tables_download(recent):
    client = client_for(member("sre2", (recent.teams["support"], "sre")))
    audit = rows_of(client.get("/audit/", {"export": "audit"}))
    entries = list(AuditEntry.objects.filter(team=recent.teams["support"]).order_by("-at", "-id"))
    assert [(row["Object type"], row["Object id"], row["Action"]) for row in audit] == [
        (entry.object_type, entry.object_id, entry.action) for entry in entries
    ]
    assert any("limit_usd: " in row["Changes"] for row in audit)

    (allowance,) = rows_of(client.get("/guardrails/", {"export": "allowances"}))
    live = allowances_live(allowances=[recent.allowance])[recent.allowance.pk]
    assert (
        Decimal(allowance["Used $"]) == live.used_usd == recent.spend(team="support", since=live.window_start)
    )
    assert Decimal(allowance["Limit $"]) == Decimal("4.000000") and allowance["Window"] == "month"
    assert datetime.fromisoformat(allowance["Resets (UTC)"]) == live.resets_at
    assert len(rows_of(client.get("/guardrails/", {"export": "audit"}))) == len(entries)


def test_the_quarantine_table_downloads(recent):
    bad = {"event_id": "bad-1", "timestamp": "not a time", "team": "support", "agent": "triage",
           "provider": "acme", "model": "m1", "usage": {"output": 1}}  # fmt: skip
    result = events_ingest(raw_events=[bad], principal=None, source="test")
    assert result.accepted == 0
    client = client_for(member("sre3", (recent.teams["support"], "sre")))
    (row,) = rows_of(client.get("/ingest/quarantine", {"export": "quarantine"}))
    stored = QuarantinedRow.objects.get()
    assert (row["#"], row["Event"], row["Team"]) == (str(stored.pk), "bad-1", "support")
    assert row["Reason"].startswith("timestamp: ")
    assert '"timestamp": "not a time"' in row["Payload"]


def test_an_alerts_deliveries_download(recent):
    alert = Alert.objects.get()
    channel = AlertChannel.objects.create(
        name="pager", kind="webhook", target="https://example.com/hook", team=recent.teams["support"]
    )
    Delivery.objects.create(
        alert=alert, channel=channel, team=recent.teams["support"], event="firing", payload={},
        status="failed", attempts=3, last_status_code=503, last_error="HTTP 503 Service Unavailable",
    )  # fmt: skip
    client = client_for(member("sre4", (recent.teams["support"], "sre")))
    (row,) = rows_of(client.get(f"/alerts/{alert.pk}/", {"export": "deliveries"}))
    assert (row["Channel"], row["Event"], row["Status"], row["Attempts"], row["Last HTTP status"]) == (
        "pager",
        "firing",
        "failed",
        "3",
        "503",
    )
    assert row["Last error"] == "HTTP 503 Service Unavailable" and row["Sent (UTC)"] == ""
