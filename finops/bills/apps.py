from django.apps import AppConfig


class BillsConfig(AppConfig):
    name = "finops.bills"
    label = "bills"
    verbose_name = "bills"
