from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "ingest.connectors"
    label = "connectors"
    verbose_name = "provider connectors and statements"
