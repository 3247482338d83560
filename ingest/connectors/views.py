"""The connector status page: every connector with its last run, a "Pull now" button and a create form."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from finops.accounts.selectors import principal_manages_billing
from ingest.connectors.forms import ConnectorCreateForm
from ingest.connectors.models import Connector
from ingest.connectors.selectors import connectors_list
from ingest.connectors.services import connector_create, connector_run_request


def _require_billing_role(request) -> None:
    if not principal_manages_billing(request.user):
        raise PermissionDenied("Connectors are organisation billing data: the admin and finops roles only.")


@login_required
@require_http_methods(["GET", "POST"])
def connector_status(request):
    _require_billing_role(request)
    form = ConnectorCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        pull_from = form.cleaned_data["pull_from"]
        connector = connector_create(
            kind=form.cleaned_data["kind"],
            name=form.cleaned_data["name"],
            credentials={"api_key": form.cleaned_data["api_key"].strip()},
            base_url=form.cleaned_data["base_url"] or "",
            pull_from=datetime.combine(pull_from, time(0), tzinfo=UTC) if pull_from else None,
        )
        messages.success(
            request, f"Connector “{connector.name}” created; press Pull now to fetch its report."
        )
        return redirect("connectors:status")
    return render(
        request,
        "connectors/status.html",
        {"connectors": connectors_list(principal=request.user), "form": form},
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


@login_required
@require_POST
def connector_pull_now(request, connector_id: int):
    _require_billing_role(request)
    connector = get_object_or_404(Connector.objects.restrict(request.user, "change"), pk=connector_id)
    run = connector_run_request(connector_id=connector.pk)
    messages.info(request, f"Pull of “{connector.name}” queued (run {run.pk}); refresh to see its result.")
    return redirect("connectors:status")
