from django.apps import AppConfig


class KpisConfig(AppConfig):
    name = "finops.kpis"
    label = "kpis"
