from django.apps import AppConfig


class ModelTiersConfig(AppConfig):
    name = "finops.modeltiers"
    label = "modeltiers"
    verbose_name = "model tiers"
