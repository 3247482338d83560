"""The forms of the connector status page and of the invoice import pages."""

from __future__ import annotations

from django import forms

from ingest.connectors.invoice_csv import (
    AMOUNT_SCALES,
    DATE_FORMATS,
    DELIMITERS,
    FIELDS,
    PERIODS,
    QUANTITY_SCALES,
    InvoiceMappingSpec,
)
from ingest.connectors.models import ConnectorKind


class ConnectorCreateForm(forms.Form):
    kind = forms.ChoiceField(choices=ConnectorKind.choices)
    name = forms.CharField(max_length=128)
    api_key = forms.CharField(
        label="Admin API key",
        widget=forms.PasswordInput(render_value=False),
        help_text="OpenAI: an organization Admin key. Anthropic: an Admin key (sk-ant-admin…). Stored encrypted.",
    )
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="only for a proxy or gateway; empty: the provider's API",
    )
    pull_from = forms.DateField(required=False, help_text="first day to pull; empty: start of last month")


class InvoiceUploadForm(forms.Form):
    file = forms.FileField(
        help_text="a provider's CSV export: cost per day, model and token type, or any invoice CSV"
    )
    mapping = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="— none: preview the file and map its columns —",
        help_text="a file with the same header as one imported before: import it in one step",
    )

    def __init__(self, *args, mappings, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["mapping"].queryset = mappings


class InvoiceMappingForm(forms.Form):
    """The mapping of one file's columns (invoice_csv.InvoiceMappingSpec), its choices the file's header."""

    name = forms.CharField(
        max_length=128,
        required=False,
        help_text="to save it: the next file with this header imports in one step",
    )
    currency = forms.CharField(
        max_length=3,
        required=False,
        label="Currency of every row",
        help_text="when no column gives it, e.g. USD",
    )
    provider = forms.CharField(
        max_length=64,
        required=False,
        label="Provider of every row",
        help_text="when no column gives it, e.g. openai",
    )
    date_format = forms.ChoiceField(
        choices=[("", "— choose —"), *DATE_FORMATS.items()],
        required=False,
        help_text="how the date columns read: D/M/Y or M/D/Y is yours to say, never guessed",
    )
    period = forms.ChoiceField(choices=list(PERIODS.items()), label="A row without a period end covers")
    end_inclusive = forms.BooleanField(required=False, label="The period end is the period's last day")
    amount_scale = forms.ChoiceField(choices=list(AMOUNT_SCALES.items()), label="Amounts are in")
    quantity_scale = forms.TypedChoiceField(
        choices=list(QUANTITY_SCALES.items()), coerce=int, label="Quantities are in"
    )
    decimal_comma = forms.BooleanField(required=False, label="Decimal comma (1.234,56)")
    delimiter = forms.ChoiceField(choices=list(DELIMITERS.items()))

    def __init__(self, *args, header: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.header = header
        column_choices = [("", "—"), *((column, column) for column in header)]
        for name, label in FIELDS.items():
            self.fields[f"column_{name}"] = forms.ChoiceField(
                choices=column_choices, required=False, label=label
            )

    def column_fields(self):
        return [self[f"column_{name}"] for name in FIELDS]

    def setting_fields(self):
        return [self[name] for name in ("currency", "provider", "date_format", "period", "end_inclusive")] + [
            self[name] for name in ("amount_scale", "quantity_scale", "decimal_comma", "delimiter")
        ]

    @staticmethod
    def initial_of(spec: InvoiceMappingSpec, *, name: str = "") -> dict:
        return {
            "name": name,
            **{f"column_{field}": column for field, column in spec.columns.items()},
            **{key: value for key, value in spec.as_dict().items() if key != "columns"},
        }

    def spec(self) -> InvoiceMappingSpec:
        data = self.cleaned_data
        return InvoiceMappingSpec(
            columns={name: data[f"column_{name}"] for name in FIELDS if data.get(f"column_{name}")},
            currency=(data["currency"] or "").strip().upper(),
            provider=(data["provider"] or "").strip(),
            date_format=data["date_format"],
            period=data["period"],
            end_inclusive=data["end_inclusive"],
            amount_scale=data["amount_scale"],
            quantity_scale=data["quantity_scale"],
            decimal_comma=data["decimal_comma"],
            delimiter=data["delimiter"],
        )
