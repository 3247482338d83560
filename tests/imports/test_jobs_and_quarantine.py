"""The upload page and its import job (the task function called directly), and the quarantine: list
scoping on the page and the API, and replay after a fix."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from finops.accounts.models import OrgRole, TeamRole
from finops.ledger.models import Call, DailyRollup
from ingest.imports import file_import
from ingest.models import ImportJob, ImportStatus, QuarantinedRow
from ingest.tasks import import_file
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.imports.conftest import canonical_event, write_jsonl


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FINOPS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def jsonl_bytes(rows: list) -> bytes:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def test_an_upload_is_stored_and_its_job_reports_progress_and_summary(db, support, data_dir, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr(import_file, "apply_async", lambda args, queue: queued.append((args[0], queue)))
    sre = UserFactory()
    MembershipFactory(user=sre, team=support, role=TeamRole.SRE)
    client = logged_in(sre)
    content = jsonl_bytes([canonical_event(f"u-{n}") for n in range(12)] + ["{broken"])

    with pytest.MonkeyPatch.context() as patch:
        response = client.post(
            "/ingest/upload",
            {"file": SimpleUploadedFile("calls.jsonl", content), "format": "auto"},
        )
        job = ImportJob.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/ingest/jobs/{job.pk}"
        assert Path(job.stored_path).parent == data_dir / "uploads"
        assert Path(job.stored_path).read_bytes() == content
        assert (job.status, job.source, job.created_by) == (ImportStatus.QUEUED, "file:calls.jsonl", sre)

        # the worker's task, called directly; progress is saved after every batch
        seen: list[tuple[int, int]] = []

        def file_import_spy(**kwargs):
            def on_progress(progress):
                kwargs_on_progress(progress)
                seen.append((progress.rows_read, ImportJob.objects.get(pk=job.pk).accepted))

            kwargs_on_progress = kwargs["on_progress"]
            kwargs["on_progress"] = on_progress
            return file_import(**kwargs, batch_size=5)

        patch.setattr("ingest.imports.file_import", file_import_spy)
        assert import_file(job.pk) == ImportStatus.DONE

    assert seen == [(5, 5), (10, 10), (13, 12)]
    job.refresh_from_db()
    assert (job.accepted, job.duplicates, job.rejected, job.rows_read) == (12, 0, 1, 13)
    assert job.bytes_done == job.bytes_total == len(content)
    assert job.finished_at is not None
    assert QuarantinedRow.objects.get(source="file:calls.jsonl").position == "line 13"

    progress = client.get(f"/ingest/jobs/{job.pk}/progress").json()
    assert progress["status"] == "done"
    assert progress["finished"] is True
    assert (progress["accepted"], progress["rejected"]) == (12, 1)
    assert progress["quarantine_url"] == "/ingest/quarantine?source=file%3Acalls.jsonl"
    page = client.get(f"/ingest/jobs/{job.pk}")
    assert page.status_code == 200
    assert b"file:calls.jsonl" in page.content
    # the enqueue happens on commit, on the ingest queue (the test transaction never commits)
    assert queued == []


def test_a_failed_import_says_why_on_the_job(db, data_dir):
    user = UserFactory(org_role=OrgRole.FINOPS)
    stored = data_dir / "x.txt"
    stored.parent.mkdir(parents=True)
    stored.write_text("hello\n")
    job = ImportJob.objects.create(created_by=user, file_name="x.txt", stored_path=str(stored))

    import_file(job.pk)

    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert "pass --format" in job.error


def test_viewers_may_not_upload_and_jobs_are_private(db, support, data_dir):
    viewer = UserFactory()
    MembershipFactory(user=viewer, team=support, role=TeamRole.VIEWER)
    assert logged_in(viewer).get("/ingest/upload").status_code == 403
    assert Client().get("/ingest/upload").status_code == 302  # to the login page

    owner = UserFactory(org_role=OrgRole.ADMIN)
    job = ImportJob.objects.create(created_by=owner, file_name="a.jsonl", stored_path="/nowhere")
    assert logged_in(viewer).get(f"/ingest/jobs/{job.pk}/progress").status_code == 404
    assert logged_in(owner).get(f"/ingest/jobs/{job.pk}/progress").status_code == 200


@pytest.fixture
def two_teams_quarantine(db, tmp_path):
    support = TeamFactory(slug="support")
    billing = TeamFactory(slug="billing")
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            canonical_event("s-bad", timestamp="yesterday"),
            canonical_event("b-bad", team="billing", timestamp="yesterday"),
            "{no team at all",
        ],
    )
    file_import(path=path)
    return support, billing


def test_the_quarantine_is_team_scoped_on_the_page_and_the_api(two_teams_quarantine, make_api):
    support, billing = two_teams_quarantine
    member = UserFactory()
    MembershipFactory(user=member, team=support, role=TeamRole.PM)
    finops_user = UserFactory(org_role=OrgRole.FINOPS)

    page = logged_in(member).get("/ingest/quarantine", {"source": "file:mixed.jsonl"})
    assert page.status_code == 200
    assert b"s-bad" in page.content
    assert b"b-bad" not in page.content
    assert b"no team at all" not in page.content
    everything = logged_in(finops_user).get("/ingest/quarantine").content
    assert b"s-bad" in everything and b"b-bad" in everything and b"no team at all" in everything

    listed = make_api(scopes=["read"], team=billing).get("/api/v1/quarantine", source="file:mixed.jsonl")
    assert listed.status_code == 200
    assert [row["event_id"] for row in listed.json()["results"]] == ["b-bad"]
    assert listed.json()["results"][0]["position"] == "line 2"
    org_wide = make_api(scopes=["read"]).get("/api/v1/quarantine", source="file:mixed.jsonl").json()
    assert org_wide["count"] == 3
    assert make_api(scopes=["read"]).get("/api/v1/quarantine", source="other").json()["count"] == 0
    assert make_api(scopes=["ingest"]).get("/api/v1/quarantine").status_code == 403


def test_replay_after_creating_the_missing_team_writes_the_row_once(db, tmp_path, make_api):
    TeamFactory(slug="support")
    finops_user = UserFactory(org_role=OrgRole.FINOPS)  # may write every team, may not create teams
    path = write_jsonl(tmp_path / "new-team.jsonl", [canonical_event("r-1", team="research")])
    summary = file_import(path=path, principal=finops_user)
    assert summary.rejected == 1
    row = QuarantinedRow.objects.get(source="file:new-team.jsonl")
    assert "unknown team 'research'" in row.errors["team"][0]

    # still failing: the errors are refreshed, nothing is written
    api = make_api(scopes=["ingest", "read"])
    client = logged_in(finops_user)
    response = client.post("/ingest/quarantine/replay", {"ids": [row.pk]})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.replayed_at is None
    assert Call.objects.count() == 0

    TeamFactory(slug="research")  # the fix
    result = api.post("/api/v1/quarantine/replay", {"ids": [row.pk]}).json()
    assert result == {"rows": 1, "accepted": 1, "duplicates": 0, "still_rejected": 0}
    row.refresh_from_db()
    assert row.replayed_at is not None
    assert Call.objects.filter(event_id="r-1").count() == 1
    rollups = list(DailyRollup.objects.values())

    again = api.post("/api/v1/quarantine/replay", {"ids": [row.pk]}).json()
    assert again == {"rows": 1, "accepted": 0, "duplicates": 1, "still_rejected": 0}
    assert list(DailyRollup.objects.values()) == rollups
    by_source = api.post("/api/v1/quarantine/replay", {"source": "file:new-team.jsonl"}).json()
    assert by_source["rows"] == 0  # by source, only rows not yet replayed


def test_replay_after_correcting_a_csv_row_uses_the_csv_adapter(db, tmp_path, make_api):
    TeamFactory(slug="support")
    path = tmp_path / "calls.csv"
    path.write_text(
        "event_id,timestamp,team,agent,provider,model,uncached_input,output\n"
        "k-1,2026-11-02T10:15:00Z,support,triage,anthropic,claude-sonnet-4-5,100,ten\n"
    )
    file_import(path=path)
    row = QuarantinedRow.objects.get(source="file:calls.csv")
    assert (row.position, row.adapter, row.payload["output"]) == ("line 2", "events-csv", "ten")

    row.payload["output"] = "10"
    row.save()
    result = make_api().post("/api/v1/quarantine/replay", {"source": "file:calls.csv"}).json()

    assert result == {"rows": 1, "accepted": 1, "duplicates": 0, "still_rejected": 0}
    call = Call.objects.get(event_id="k-1")
    assert (call.uncached_input, call.output) == (100, 10)


def test_replay_needs_ids_or_a_source_and_the_ingest_scope(db, make_api):
    assert make_api().post("/api/v1/quarantine/replay", {}).status_code == 400
    assert make_api(scopes=["read"]).post("/api/v1/quarantine/replay", {"source": "x"}).status_code == 403


def test_odd_quarantine_queries_are_answered_not_a_server_error(two_teams_quarantine, make_api):
    api = make_api(scopes=["read"])
    finops_user = UserFactory(org_role=OrgRole.FINOPS)

    far = api.get("/api/v1/quarantine", offset=str(10**30))
    assert far.status_code == 200
    assert far.json() == {"count": 3, "results": []}
    assert api.get("/api/v1/quarantine", source="file:\x00").json()["count"] == 0
    page = logged_in(finops_user).get("/ingest/quarantine", {"source": "file:\x00"})
    assert page.status_code == 200
    assert b"s-bad" not in page.content


def test_replay_leaves_the_rows_of_teams_one_only_views_alone(two_teams_quarantine):
    support, billing = two_teams_quarantine
    member = UserFactory()
    MembershipFactory(user=member, team=support, role=TeamRole.SRE)
    MembershipFactory(user=member, team=billing, role=TeamRole.VIEWER)
    billing_row = QuarantinedRow.objects.get(event_id="b-bad")
    billing_row.payload["timestamp"] = "2026-11-02T10:15:00Z"  # billing's own fix, not replayed yet
    billing_row.save()
    errors_before = billing_row.errors

    response = logged_in(member).post("/ingest/quarantine/replay", {"source": "file:mixed.jsonl"})

    assert response.status_code == 302
    billing_row.refresh_from_db()
    assert billing_row.errors == errors_before  # not overwritten with "you may not send events for …"
    assert billing_row.replayed_at is None
    assert QuarantinedRow.objects.get(event_id="s-bad").errors["timestamp"]  # its own team's: replayed


def test_a_focus_invoice_uploaded_on_the_import_page_lists_its_bad_rows_with_line_numbers(
    db, data_dir, monkeypatch
):
    """A bill's unreadable rows are never quarantined (a statement row must not reach the call writer), so
    the job itself must say which line was skipped and why; the page must not point at an empty quarantine."""
    from ingest.connectors.models import StatementLine

    monkeypatch.setattr(import_file, "apply_async", lambda args, queue: None)
    client = logged_in(UserFactory(org_role=OrgRole.FINOPS))
    header = "BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ProviderName,ChargeDescription\n"
    period = "2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,OpenAI"
    content = (
        f"{header}12.50,USD,{period},gpt-4o input tokens\nabc,USD,{period},gpt-4o output tokens\n"
        f"3.25,USD,{period},gpt-5 output tokens\n"
    ).encode()

    response = client.post(
        "/ingest/upload", {"file": SimpleUploadedFile("bill.csv", content), "format": "auto"}
    )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert import_file(job.pk) == ImportStatus.DONE

    job.refresh_from_db()
    assert (job.format, job.rows_read, job.accepted, job.rejected) == ("focus", 3, 2, 1)
    assert sorted(StatementLine.objects.values_list("amount", flat=True)) == [
        Decimal("3.25"),
        Decimal("12.5"),
    ]
    assert QuarantinedRow.objects.count() == 0
    progress = client.get(f"/ingest/jobs/{job.pk}/progress").json()
    assert progress["quarantine_url"] is None
    assert [row["position"] for row in progress["skipped_rows"]] == ["line 3"]  # the header is line 1
    assert "BilledCost" in progress["skipped_rows"][0]["errors"]
    page = client.get(f"/ingest/jobs/{job.pk}").content.decode()
    assert "<td>line 3</td>" in page and "BilledCost: not a decimal number" in page
    assert 'id="job-quarantine"' not in page
