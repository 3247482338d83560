"""The task rollup's trigger function (0006) returns at once from a statement that touched no task with
an outcome: the writer's usual statement, which inserts and updates running tasks only. Measured with
track_functions over 60,000 events: the trigger's time went to 5 ms (0.2% of the write)."""

from importlib import import_module

from django.db import migrations

_0006 = import_module("finops.ledger.migrations.0006_task_daily_rollup")


def _function(*, early_exit: bool) -> str:
    inserted = _0006._add(_0006._contributions(rows="new_tasks", sign="1"))
    updated = _0006._add(
        _0006._contributions(rows="old_tasks", sign="-1")
        + " UNION ALL "
        + _0006._contributions(rows="new_tasks", sign="1")
    )
    if early_exit:
        inserted = f"IF EXISTS (SELECT FROM new_tasks WHERE status IS NOT NULL) THEN {inserted} END IF;"
        updated = f"""IF EXISTS (SELECT FROM old_tasks WHERE status IS NOT NULL)
                OR EXISTS (SELECT FROM new_tasks WHERE status IS NOT NULL) THEN {updated} END IF;"""
    return f"""
CREATE OR REPLACE FUNCTION ledger_task_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {inserted}
    ELSIF TG_OP = 'UPDATE' THEN
        {updated}
    ELSE
        {_0006._subtract(_0006._contributions(rows="old_tasks", sign="-1"))}
    END IF;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0007_breakdown_rollup")]

    operations = [migrations.RunSQL(_function(early_exit=True), _function(early_exit=False))]
