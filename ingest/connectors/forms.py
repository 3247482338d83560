"""The create form of the connector status page."""

from __future__ import annotations

from django import forms

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
