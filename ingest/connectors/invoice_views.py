"""The invoice import pages: upload a provider's CSV export, preview its first rows, map its columns, save
the mapping, import; then the result with every skipped row. Thin: ingest.connectors.services does the
work, ingest.connectors.invoice_csv the reading.

Invoices are organisation billing data: only the admin and finops roles get these pages; anyone else
signed in gets a 404, as for any page about data they may not see.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.tables import Column, Table, render_page
from finops import embedded
from finops.accounts.selectors import principal_manages_billing
from ingest.connectors.forms import InvoiceMappingForm, InvoiceUploadForm
from ingest.connectors.invoice_csv import (
    DATE_FORMATS,
    DELIMITERS,
    InvoiceMappingSpec,
    InvoiceRowError,
    Preview,
    invoice_rows_parse,
    mapping_problems,
    mapping_suggest,
)
from ingest.connectors.models import InvoiceImport, InvoiceImportStatus, InvoiceMapping
from ingest.connectors.services import (
    invoice_file_preview,
    invoice_import_run,
    invoice_mapping_delete,
    invoice_mapping_save,
    invoice_upload_store,
)
from ingest.imports import ImportFileError

RECENT_IMPORTS = 20


def _billing_only(request) -> None:
    if not principal_manages_billing(request.user):
        raise Http404("no such page")


def _uploads_dir() -> Path:
    folder = embedded.data_dir() / "uploads" / "invoices"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _mappings(request):
    return InvoiceMapping.objects.restrict(request.user, "view")


def _invoice_import(request, import_id: int) -> InvoiceImport:
    found = (
        InvoiceImport.objects.restrict(request.user, "view")
        .select_related("mapping")
        .filter(pk=import_id)
        .first()
    )
    if found is None:
        raise Http404("no such invoice import")
    return found


@login_required
@require_http_methods(["GET", "POST"])
def invoices(request):
    """Upload a file (with a saved mapping: imported at once), the saved mappings, the recent imports."""
    _billing_only(request)
    form = InvoiceUploadForm(request.POST or None, request.FILES or None, mappings=_mappings(request))
    if request.method == "POST" and form.is_valid():
        uploaded = form.cleaned_data["file"]
        invoice_import = invoice_upload_store(
            principal=request.user, file_name=uploaded.name, chunks=uploaded.chunks(), folder=_uploads_dir()
        )
        mapping = form.cleaned_data["mapping"]
        if mapping is None:
            return redirect("ingest:invoice-map", import_id=invoice_import.pk)
        invoice_import_run(invoice_import=invoice_import, mapping=mapping, principal=request.user)
        return redirect("ingest:invoice", import_id=invoice_import.pk)
    recent = InvoiceImport.objects.restrict(request.user, "view").select_related("mapping")[:RECENT_IMPORTS]
    mappings = list(_mappings(request))
    return render_page(
        request,
        "connectors/invoices.html",
        {
            "form": form,
            "mappings": mappings,
            "recent": Table(
                name="imports",
                caption="Recent invoice imports",
                columns=[
                    Column("File", link=lambda item: reverse("ingest:invoice", args=[item.pk])),
                    Column("Mapping"),
                    Column("Status"),
                    Column("Rows", "count"),
                    Column("Skipped", "count"),
                    Column("Uploaded", "datetime"),
                ],
                rows=[
                    [
                        item.file_name,
                        item.mapping.name if item.mapping else "",
                        item.get_status_display(),
                        item.outcome.get("rows_read"),
                        item.outcome.get("skipped"),
                        item.created_at,
                    ]
                    for item in recent
                ],
                sources=list(recent),
                empty="No invoice imported yet.",
            ),
        },
        page="invoices",
        status=400 if form.is_bound and not form.is_valid() else 200,
    )


def _checked_rows(preview: Preview, spec) -> list[dict]:
    """What the mapping makes of the preview's rows: each row's line, or its reasons."""
    records = [(number, dict(zip(preview.header, cells, strict=True))) for number, cells in preview.rows]
    return [
        {"line": number, "errors": parsed.errors}
        if isinstance(parsed, InvoiceRowError)
        else {"line": number, "parsed": parsed}
        for (number, _), parsed in zip(records, invoice_rows_parse(records, spec=spec), strict=True)
    ]


@login_required
@require_http_methods(["GET", "POST"])
def invoice_map(request, import_id: int):
    """The first rows of the upload and the mapping form: check it on those rows, save it, import."""
    _billing_only(request)
    invoice_import = _invoice_import(request, import_id)
    delimiter = request.POST.get("delimiter") if request.method == "POST" else None
    try:
        preview = invoice_file_preview(
            path=Path(invoice_import.stored_path), delimiter=delimiter if delimiter in DELIMITERS else None
        )
    except (ImportFileError, OSError) as error:
        messages.error(request, f"{invoice_import.file_name}: {error}")
        return redirect("ingest:invoices")
    mappings = list(_mappings(request))
    chosen = next((item for item in mappings if str(item.pk) == request.GET.get("mapping")), None)
    fitting = [item for item in mappings if item.header == preview.header]
    if chosen or fitting:
        saved = chosen or fitting[0]
        initial = InvoiceMappingForm.initial_of(InvoiceMappingSpec.from_dict(saved.spec), name=saved.name)
    else:
        initial = InvoiceMappingForm.initial_of(
            mapping_suggest(header=preview.header, preview=preview, file_name=invoice_import.file_name)
        )
    form = InvoiceMappingForm(request.POST or None, header=preview.header, initial=initial)
    problems: list[str] = []
    checked: list[dict] = []
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "check")
        if form.is_valid():
            spec = form.spec()
            problems = mapping_problems(spec=spec, header=preview.header)
            if not problems:
                checked = _checked_rows(preview, spec)
            if not problems and action in ("save", "save_import"):
                try:
                    mapping = invoice_mapping_save(
                        principal=request.user,
                        name=form.cleaned_data["name"],
                        header=preview.header,
                        spec=spec,
                    )
                except ValueError as error:
                    problems = [str(error)]
                else:
                    if action == "save_import":
                        invoice_import_run(
                            invoice_import=invoice_import, mapping=mapping, principal=request.user
                        )
                        return redirect("ingest:invoice", import_id=invoice_import.pk)
                    messages.success(
                        request, f"Mapping “{mapping.name}” saved. Import the file with it below."
                    )
                    target = reverse("ingest:invoice-map", args=[invoice_import.pk])
                    return redirect(f"{target}?{urlencode({'mapping': mapping.pk})}")
        status = 400 if problems or not form.is_valid() else 200
    return render_page(
        request,
        "connectors/invoice_map.html",
        {
            "invoice_import": invoice_import,
            "preview": preview,
            "column_formats": [
                ", ".join(preview.date_formats.get(column, [])) or "" for column in preview.header
            ],
            "date_format_names": DATE_FORMATS,
            "form": form,
            "problems": problems,
            "checked": checked,
            "mappings": mappings,
            "chosen": chosen,
            "fitting": fitting,
        },
        page="invoice-map",
        status=status,
    )


@login_required
@require_POST
def invoice_import(request, import_id: int):
    """Import the uploaded file with a saved mapping (the map page's button after saving)."""
    _billing_only(request)
    found = _invoice_import(request, import_id)
    mapping = (
        InvoiceMapping.objects.restrict(request.user, "change")
        .filter(pk=request.POST.get("mapping") or 0)
        .first()
    )
    if mapping is None:
        messages.error(request, "Choose a saved mapping to import the file with.")
        return redirect("ingest:invoice-map", import_id=found.pk)
    invoice_import_run(invoice_import=found, mapping=mapping, principal=request.user)
    return redirect("ingest:invoice", import_id=found.pk)


@login_required
@require_GET
def invoice_result(request, import_id: int):
    """What an import did: its counts, its totals, and every skipped row with its line and reasons."""
    _billing_only(request)
    found = _invoice_import(request, import_id)
    outcome = found.outcome or {}
    skipped = [
        [row["line"], column, reason, (row.get("row") or {}).get(column, "")]
        for row in outcome.get("skipped_rows", [])
        for column, reasons in row["errors"].items()
        for reason in reasons
    ]
    return render_page(
        request,
        "connectors/invoice_result.html",
        {
            "invoice_import": found,
            "outcome": outcome,
            "pending": found.status == InvoiceImportStatus.UPLOADED,
            "skipped": Table(
                name="skipped",
                caption="Rows skipped, with why (fix them in the file and import it again)",
                columns=[Column("Line", "count"), Column("Column"), Column("Reason"), Column("Cell")],
                rows=skipped,
                empty="No row was skipped.",
            ),
            "totals": Table(
                name="totals",
                caption="Amounts imported (rows read well), per provider and currency",
                columns=[Column("Provider"), Column("Currency"), Column("Amount", "number")],
                rows=[
                    [item["provider"], item["currency"], Decimal(item["amount"])]
                    for item in outcome.get("totals", [])
                ],
                empty="Nothing imported.",
            ),
        },
        page="invoice",
    )


@login_required
@require_POST
def invoice_mapping_remove(request, mapping_id: int):
    _billing_only(request)
    mapping = InvoiceMapping.objects.restrict(request.user, "change").filter(pk=mapping_id).first()
    if mapping is None:
        raise Http404("no such mapping")
    invoice_mapping_delete(principal=request.user, mapping=mapping)
    messages.info(request, f"Mapping “{mapping.name}” deleted; the lines imported with it stay.")
    return redirect("ingest:invoices")
