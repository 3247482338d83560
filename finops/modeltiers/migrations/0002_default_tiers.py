"""Load the default mapping (finops/modeltiers/defaults.py) into a new installation; rows already
there (a model the ml role mapped first) are kept as they are."""

from django.db import migrations

from finops.modeltiers.defaults import DEFAULT_TIERS


def load_defaults(apps, schema_editor):
    model_tier = apps.get_model("modeltiers", "ModelTier")
    for provider, model, tier in DEFAULT_TIERS:
        model_tier.objects.get_or_create(provider=provider, model=model, defaults={"tier": tier})


class Migration(migrations.Migration):
    dependencies = [("modeltiers", "0001_initial")]

    operations = [migrations.RunPython(load_defaults, migrations.RunPython.noop)]
