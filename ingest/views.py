"""Ingest pages (upload, import job, quarantine) and API views (LiteLLM logs, quarantine). Thin: they
call ingest.imports and ingest.quarantine."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import get_valid_filename
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from dashboard.exports import quarantine_table
from dashboard.tables import render_page
from finops import embedded
from finops.accounts.models import User
from finops.accounts.selectors import writable_team_ids
from finops.api.pagination import CountedLimitOffset
from finops.api.parsers import RAW_BODY_PARSERS, raw_body
from finops.api.permissions import IngestScope, ReadScope
from finops.api.schema import Batch
from finops.api.viewsets import ScopedAPIView, TeamScopedViewSet
from finops.celery import CeleryQueue
from finops.core.json_depth import json_loads_bounded
from finops.pricing.services import PriceBook
from ingest.filters import QuarantinedRowFilter
from ingest.imports import FORMATS, STATEMENT_FORMATS, import_job_fail, import_source_name
from ingest.models import ImportJob, ImportStatus, QuarantinedRow
from ingest.quarantine import (
    QuarantinedRowsNotFound,
    principal_default_team,
    quarantine_sources,
    quarantined_rows_replay,
    quarantined_rows_visible,
    source_row_translate,
    source_rows_ingest,
)
from ingest.serializers import (
    IngestResultSerializer,
    LiteLLMPayloadSerializer,
    QuarantinedRowSerializer,
    ReplayRequestSerializer,
    ReplayResultSerializer,
)
from ingest.writer import Resolver, TeamPolicy

logger = logging.getLogger(__name__)

LITELLM_SOURCE = "litellm"
QUARANTINE_PAGE_SIZE = 100
PAYLOAD_EXCERPT_CHARS = 160


def may_write_events(*, user: User) -> bool:
    """Whether the user may write data for some team (writable_team_ids: None is every team)."""
    team_ids = writable_team_ids(principal=user)
    return team_ids is None or bool(team_ids)


# --- pages --------------------------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL or CSV of canonical events, LiteLLM logs (JSONL), OTLP/JSON")
    format = forms.ChoiceField(
        choices=[(name, name) for name in FORMATS if name not in STATEMENT_FORMATS], initial="auto"
    )


def _uploads_dir() -> Path:
    folder = embedded.data_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _import_enqueue(job_id: int) -> None:
    from ingest.tasks import import_file

    try:
        import_file.apply_async(args=[job_id], queue=CeleryQueue.INGEST)
    except Exception as error:  # the broker is down: say so on the job instead of failing the request
        logger.warning("could not enqueue import job %s", job_id, exc_info=True)
        import_job_fail(
            job_id=job_id,
            error=f"could not queue the import ({error}); is the worker's broker running? Upload again.",
        )


@login_required
@require_http_methods(["GET", "POST"])
def upload(request):
    if not may_write_events(user=request.user):
        raise PermissionDenied("uploading usage needs admin, finops, or a team role other than viewer")
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        file_name = Path(uploaded.name).name
        stored = _uploads_dir() / f"{uuid.uuid4().hex}-{get_valid_filename(file_name) or 'upload'}"
        with stored.open("wb") as destination:
            for chunk in uploaded.chunks():
                destination.write(chunk)
        with transaction.atomic():
            job = ImportJob.objects.create(
                created_by=request.user,
                file_name=file_name[:255],
                stored_path=str(stored),
                format=form.cleaned_data["format"],
                source=import_source_name(file_name=file_name),
                bytes_total=stored.stat().st_size,
            )
            transaction.on_commit(lambda: _import_enqueue(job.pk))
        return redirect("ingest:job", job_id=job.pk)
    recent_jobs = ImportJob.objects.restrict(request.user).filter(created_by=request.user)[:10]
    return render(request, "ingest/upload.html", {"form": form, "recent_jobs": recent_jobs})


def _visible_job(request, job_id: int) -> ImportJob:
    job = ImportJob.objects.restrict(request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("no such import job")
    return job


def _job_json(job: ImportJob) -> dict:
    return {
        "id": job.pk,
        "file_name": job.file_name,
        "format": job.format,
        "status": job.status,
        "bytes_total": job.bytes_total,
        "bytes_done": job.bytes_done,
        "rows_read": job.rows_read,
        "accepted": job.accepted,
        "duplicates": job.duplicates,
        "rejected": job.rejected,
        "error": job.error,
        "source": job.source,
        # a provider bill's bad rows are listed on the job, never quarantined: no quarantine to point at
        "quarantine_url": None
        if job.format in STATEMENT_FORMATS
        else f"{reverse('ingest:quarantine')}?{urlencode({'source': job.source})}",
        "skipped_rows": job.skipped_rows,
        "finished": job.status in {ImportStatus.DONE, ImportStatus.FAILED},
    }


@login_required
@require_GET
def job_detail(request, job_id: int):
    job = _visible_job(request, job_id)
    return render(request, "ingest/job.html", {"job": job, "job_json": _job_json(job)})


@login_required
@require_GET
def job_progress(request, job_id: int):
    return JsonResponse(_job_json(_visible_job(request, job_id)))


def _payload_excerpt(payload) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return text if len(text) <= PAYLOAD_EXCERPT_CHARS else f"{text[:PAYLOAD_EXCERPT_CHARS]}…"


@login_required
@require_GET
def quarantine_list(request):
    source = request.GET.get("source") or None
    rows = quarantined_rows_visible(principal=request.user, source=source)
    page = Paginator(rows, QUARANTINE_PAGE_SIZE).get_page(request.GET.get("page"))
    for row in page.object_list:
        row.payload_excerpt = _payload_excerpt(row.payload)
    return render_page(
        request,
        "ingest/quarantine.html",
        {
            "quarantine_export": quarantine_table(list(page.object_list)),
            "page": page,
            "source": source,
            "sources": quarantine_sources(principal=request.user),
            "may_replay": may_write_events(user=request.user),
        },
        page="quarantine",
    )


@login_required
@require_POST
def quarantine_replay(request):
    if not may_write_events(user=request.user):
        raise PermissionDenied("replaying needs admin, finops, or a team role other than viewer")
    source = request.POST.get("source") or None
    try:
        row_ids = [int(value) for value in request.POST.getlist("ids")] or None
    except ValueError:
        row_ids = None
    if row_ids is None and not source:
        messages.error(request, "Choose rows to replay, or filter by a source and replay all of it.")
    else:
        try:
            outcome = quarantined_rows_replay(principal=request.user, row_ids=row_ids, source=source)
        except QuarantinedRowsNotFound as error:
            raise Http404(str(error)) from None
        messages.info(
            request,
            f"Replayed {outcome.rows} row(s): {outcome.accepted} accepted, {outcome.duplicates} already "
            f"written (duplicates), {outcome.still_rejected} still rejected.",
        )
    target = reverse("ingest:quarantine")
    return redirect(f"{target}?{urlencode({'source': source})}" if source else target)


# --- API ----------------------------------------------------------------------------------------------


def _not_json(constant: str):
    # Python's json reads NaN and Infinity, which are not JSON and which Postgres' jsonb refuses
    raise ValueError(f"{constant} is not JSON")


def _litellm_payloads(body: bytes) -> list:
    """LiteLLM's generic logger posts a JSON array (log_format json_array, the default), one object
    (single) or NDJSON (ndjson)."""
    try:
        parsed = json_loads_bounded(body, parse_constant=_not_json)
    except ValueError:
        try:
            parsed = [
                json_loads_bounded(line, parse_constant=_not_json)
                for line in body.splitlines()
                if line.strip()
            ]
        except ValueError as error:
            raise ValueError(
                f"the body is not JSON ({error}); send LiteLLM's StandardLoggingPayload as a JSON array, "
                "object or NDJSON"
            ) from None
        if not parsed:
            raise ValueError(
                "the body is not JSON; send LiteLLM's StandardLoggingPayload as a JSON array, object or NDJSON"
            ) from None
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise ValueError("the body must be a LiteLLM log object or an array of them")
    return parsed


class LiteLLMView(ScopedAPIView):
    """POST /api/v1/litellm: LiteLLM's generic API logger (StandardLoggingPayload) points here."""

    permission_classes = [IngestScope]
    parser_classes = RAW_BODY_PARSERS  # the body is read raw: array, object or NDJSON

    @extend_schema(
        request={"application/json": Batch(child=LiteLLMPayloadSerializer(), or_one=True)},
        responses={200: IngestResultSerializer},
    )
    def post(self, request):
        try:
            payloads = _litellm_payloads(raw_body(request))
        except ValueError as error:
            return Response({"message": str(error), "extra": {}}, status=status.HTTP_400_BAD_REQUEST)
        principal = self.principal
        default_team = principal_default_team(principal=principal)
        rows = [
            source_row_translate(
                position=str(index), payload=payload, adapter="litellm", default_team=default_team
            )
            for index, payload in enumerate(payloads)
        ]
        outcome = source_rows_ingest(
            rows=rows,
            principal=principal,
            source=LITELLM_SOURCE,
            resolver=Resolver(TeamPolicy(principal)),
            price_book=PriceBook.load(),
        )
        rejected = [
            {"index": int(entry["position"]), "event_id": entry["event_id"], "errors": entry["errors"]}
            for entry in outcome.rejected
        ]
        return Response(
            {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "rejected": rejected}
        )


class QuarantineViewSet(mixins.ListModelMixin, TeamScopedViewSet):
    queryset = QuarantinedRow.objects.all()
    serializer_class = QuarantinedRowSerializer
    filterset_class = QuarantinedRowFilter
    pagination_class = CountedLimitOffset

    def get_permissions(self):
        return [IngestScope()] if self.action == "replay" else [ReadScope()]

    def safely_get_queryset(self, queryset):
        return queryset.select_related("team").order_by("-created_at", "-id")

    def list(self, request, *args, **kwargs):
        """GET /api/v1/quarantine?source=&limit=&offset=: newest first; a team-bound token sees its team's."""
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=ReplayRequestSerializer,
        responses={200: ReplayResultSerializer},
    )
    def replay(self, request):
        """POST /api/v1/quarantine/replay: run quarantined rows through the current adapter and writer."""
        serializer = ReplayRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            outcome = quarantined_rows_replay(
                principal=self.principal,
                row_ids=serializer.validated_data.get("ids") or None,
                source=serializer.validated_data.get("source") or None,
            )
        except QuarantinedRowsNotFound as error:
            raise NotFound(str(error)) from None
        return Response(outcome.as_json())
