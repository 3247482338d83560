"""The input-token breakdown rollup (finops/ledger/breakdown.py), backfilled from the calls stored so far.

The backfill's SQL is written out here as it was when this migration was made (a migration must not
change with the code after it): the same sums as breakdown_select_sql(), over ledger_call.
"""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO ledger_breakdownrollup (day, team_id, agent_id, category, tokens, calls)
SELECT (r.timestamp AT TIME ZONE 'UTC')::date, r.team_id, r.agent_id,
    coalesce(part.category, 'not_broken_down'),
    sum(coalesce(part.tokens, r.uncached_input + r.cache_read + r.cache_write_5m + r.cache_write_1h))::bigint,
    count(*)
FROM ledger_call AS r
LEFT JOIN LATERAL (
    SELECT CASE WHEN entry.key IN ('system', 'tools', 'history', 'retrieval', 'tool_results', 'user')
            THEN entry.key ELSE 'other' END AS category,
        sum(round(entry.value::numeric)) AS tokens
    FROM jsonb_each(CASE WHEN jsonb_typeof(r.input_breakdown) = 'object' THEN r.input_breakdown END) AS entry
    WHERE CASE WHEN jsonb_typeof(entry.value) = 'number'
        THEN entry.value::numeric BETWEEN 0 AND 1000000000 ELSE false END
    GROUP BY 1
) AS part ON true
GROUP BY 1, 2, 3, 4
"""


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_alter_apitoken_scopes'),
        ('ledger', '0005_recent_and_prompt_version_rollups'),
    ]

    operations = [
        migrations.CreateModel(
            name='BreakdownRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('category', models.CharField(db_collation='C', max_length=16)),
                ('tokens', models.BigIntegerField(default=0)),
                ('calls', models.BigIntegerField(default=0, help_text='calls that added tokens to this row')),
                ('agent', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='ledger.agent')),
                ('team', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
            ],
            options={
                'indexes': [models.Index(fields=['team', 'day'], name='breakdown_rollup_team_day_idx')],
                'constraints': [models.UniqueConstraint(fields=('day', 'team', 'agent', 'category'), name='breakdown_rollup_unique')],
            },
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
