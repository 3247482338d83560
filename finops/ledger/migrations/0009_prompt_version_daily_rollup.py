"""The per-day prompt-version rollup (finops/ledger/rollups.py), backfilled from the calls stored so far
(the writer keeps it from now on, and the repricing of unpriced calls moves its cost)."""

import django.db.models.deletion
from decimal import Decimal
from django.db import migrations, models

BACKFILL = """
INSERT INTO ledger_promptversiondailyrollup (day, team_id, agent_id, prompt_version, first_call_at,
    last_call_at, calls, cache_read, input_tokens, cost_usd, unpriced_calls, calls_in_tasks,
    unpriced_calls_in_tasks, cost_in_tasks_usd)
SELECT (timestamp AT TIME ZONE 'UTC')::date, min(team_id), agent_id, prompt_version, min(timestamp),
    max(timestamp), count(*), sum(cache_read), sum(uncached_input + cache_read + cache_write_5m + cache_write_1h),
    coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL),
    count(*) FILTER (WHERE task_id IS NOT NULL), count(*) FILTER (WHERE task_id IS NOT NULL AND cost_usd IS NULL),
    coalesce(sum(cost_usd) FILTER (WHERE task_id IS NOT NULL), 0)
FROM ledger_call
WHERE prompt_version IS NOT NULL
GROUP BY 1, 3, 4
"""


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_team_monthly_budget'),
        ('ledger', '0008_task_rollup_early_exit'),
    ]

    operations = [
        migrations.CreateModel(
            name='PromptVersionDailyRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('prompt_version', models.CharField(db_collation='C', max_length=128)),
                ('first_call_at', models.DateTimeField(help_text="the day's first call of the version")),
                ('last_call_at', models.DateTimeField(help_text="the day's last call of the version")),
                ('calls', models.BigIntegerField(default=0)),
                ('cache_read', models.BigIntegerField(default=0)),
                ('input_tokens', models.BigIntegerField(default=0, help_text='the four input token types')),
                ('cost_usd', models.DecimalField(decimal_places=12, default=Decimal('0'), help_text='of the priced calls', max_digits=28)),
                ('unpriced_calls', models.BigIntegerField(default=0)),
                ('calls_in_tasks', models.BigIntegerField(default=0)),
                ('unpriced_calls_in_tasks', models.BigIntegerField(default=0)),
                ('cost_in_tasks_usd', models.DecimalField(decimal_places=12, default=Decimal('0'), help_text='priced calls in tasks', max_digits=28)),
                ('agent', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='ledger.agent')),
                ('team', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
            ],
            options={
                'indexes': [models.Index(fields=['team', 'day'], name='prompt_version_day_team_idx')],
                'constraints': [models.UniqueConstraint(fields=('day', 'agent', 'prompt_version'), name='prompt_version_day_unique')],
            },
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
