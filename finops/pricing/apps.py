from django.apps import AppConfig


class PricingConfig(AppConfig):
    name = "finops.pricing"
    label = "pricing"
