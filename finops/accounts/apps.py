from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "finops.accounts"
    label = "accounts"
