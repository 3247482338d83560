from django.apps import AppConfig


class GuardrailsConfig(AppConfig):
    name = "finops.guardrails"
    label = "guardrails"
