"""The Prices page (admin and finops): a discount saved on the page is audited and queues a re-pricing
run the page links to; the run's page shows its before and after per day (chart and table) and per
team, model and day, each table also a CSV file."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

from django.test import Client

from finops.audit.models import AuditEntry
from finops.ledger.models import Call
from finops.pricing.models import ModelPriceOverride, NegotiatedDiscount, RepriceRun
from finops.pricing.reprice import reprice_run_execute
from ingest.writer import events_ingest
from tests.factories import MembershipFactory, TeamFactory, UserFactory


def signed_in(username: str, **fields) -> Client:
    client = Client()
    client.force_login(UserFactory(username=username, **fields))
    return client


def test_finops_saves_a_discount_on_the_page_and_reads_its_run(db):
    ModelPriceOverride.objects.create(
        provider="acme",
        model="acme-large-2",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        uncached_input_per_mtok=Decimal(4),
        output_per_mtok=Decimal(8),
    )
    events_ingest(
        raw_events=[
            {
                "event_id": f"page-{day}",
                "timestamp": f"2026-11-{day:02d}T08:00:00Z",
                "team": "support",
                "agent": "triage",
                "provider": "acme",
                "model": "acme-large-2",
                "usage": {"uncached_input": 250_000, "output": 25_000},
            }
            for day in (3, 4)
        ],
        principal=None,
        source="test",
    )
    finops = signed_in("page-finops", org_role="finops")
    page = finops.get("/prices/")
    assert page.status_code == 200
    assert "No negotiated discount." in page.content.decode()
    assert 'href="/prices/"' in page.content.decode()  # the nav entry

    # when: 25% off acme from the 4th, saved on the page
    answer = finops.post(
        "/prices/",
        {
            "action": "discount",
            "discount-provider": "acme",
            "discount-percent": "25",
            "discount-effective_from": "2026-11-04 00:00",
        },
    )
    assert answer.status_code == 302
    run = RepriceRun.objects.get()
    reprice_run_execute(run_id=run.pk)
    page = finops.get("/prices/").content.decode()
    assert f'<a href="/prices/runs/{run.pk}/">re-pricing run {run.pk}</a>' in page
    assert AuditEntry.objects.filter(object_type="discount", action="create", who="page-finops").exists()
    # the call of the 3rd kept its $1.2 (250k × $4 + 25k × $8 per MTok), the 4th's is $0.9
    assert sorted(Call.objects.values_list("cost_usd", flat=True)) == [Decimal("0.9"), Decimal("1.2")]

    run_page = finops.get(f"/prices/runs/{run.pk}/").content.decode()
    assert "before-after-plot" in run_page and "2026-11-04" in run_page
    rows = list(
        csv.reader(
            io.StringIO(
                b"".join(finops.get(f"/prices/runs/{run.pk}/?export=deltas").streaming_content).decode()
            )
        )
    )
    assert rows == [
        ["Day (UTC)", "Team", "Provider", "Model", "Before", "After", "Difference", "Calls", "Closed month (adjusted)"],
        ["2026-11-04", "support", "acme", "acme-large-2", "1.200000000000", "0.900000000000", "-0.300000000000", "1", "no"],
    ]  # fmt: skip

    # changing the discount's percent on the page (its edit form) re-prices again
    discount = NegotiatedDiscount.objects.get()
    assert finops.get(f"/prices/?discount={discount.pk}").status_code == 200
    answer = finops.post(
        f"/prices/?discount={discount.pk}",
        {
            "action": "discount",
            "discount-provider": "acme",
            "discount-percent": "50",
            "discount-effective_from": "2026-11-04 00:00",
        },
    )
    assert answer.status_code == 302
    reprice_run_execute(run_id=RepriceRun.objects.order_by("-id").first().pk)
    assert sorted(Call.objects.values_list("cost_usd", flat=True)) == [Decimal("0.6"), Decimal("1.2")]
    assert finops.get("/prices/runs/").status_code == 200


def test_bad_input_stays_on_the_page_and_other_roles_are_refused(db):
    admin = signed_in("page-admin", is_superuser=True)
    answer = admin.post(
        "/prices/",
        {
            "action": "discount",
            "discount-percent": "10",
            "discount-effective_from": "2026-11-04 00:00",
            "discount-effective_to": "2026-11-01 00:00",
        },
    )
    assert answer.status_code == 200 and "must be after effective from" in answer.content.decode()
    assert not NegotiatedDiscount.objects.exists() and not RepriceRun.objects.exists()
    sre = Client()
    user = UserFactory(username="page-sre")
    MembershipFactory(user=user, team=TeamFactory(slug="support"), role="sre")
    sre.force_login(user)
    assert sre.get("/prices/").status_code == 403
    assert sre.get("/prices/runs/").status_code == 403
    assert 'href="/prices/"' not in sre.get("/").content.decode()
