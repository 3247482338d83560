from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "finops.audit"
    label = "audit"
