"""The input-token breakdown rollup (finops/ledger/breakdown.py), backfilled from the calls stored so far.

The backfill is written out here in SQL as the rules stood when this migration was made (a migration
must not change with the code after it); the writer applies the same rules in Python
(breakdown_stage_values), and tests/ledger/test_breakdown_rollup.py holds both to one brute-force sum.
"""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
INSERT INTO ledger_breakdownrollup (day, team_id, agent_id, system_tokens, system_calls, tools_tokens, tools_calls, history_tokens, history_calls, retrieval_tokens, retrieval_calls, tool_results_tokens, tool_results_calls, user_tokens, user_calls, other_tokens, other_calls, not_broken_down_tokens, not_broken_down_calls)
SELECT (call.timestamp AT TIME ZONE 'UTC')::date, call.team_id, call.agent_id,
    coalesce(sum(part.in_system), 0), count(part.in_system),
    coalesce(sum(part.in_tools), 0), count(part.in_tools),
    coalesce(sum(part.in_history), 0), count(part.in_history),
    coalesce(sum(part.in_retrieval), 0), count(part.in_retrieval),
    coalesce(sum(part.in_tool_results), 0), count(part.in_tool_results),
    coalesce(sum(part.in_user), 0), count(part.in_user),
    coalesce(sum(part.in_other), 0), count(part.in_other),
    coalesce(sum(call.uncached_input + call.cache_read + call.cache_write_5m + call.cache_write_1h)
        FILTER (WHERE part.entries = 0), 0),
    count(*) FILTER (WHERE part.entries = 0)
FROM ledger_call AS call
CROSS JOIN LATERAL (
    SELECT sum(usable.tokens) FILTER (WHERE usable.key = 'system') AS in_system,
        sum(usable.tokens) FILTER (WHERE usable.key = 'tools') AS in_tools,
        sum(usable.tokens) FILTER (WHERE usable.key = 'history') AS in_history,
        sum(usable.tokens) FILTER (WHERE usable.key = 'retrieval') AS in_retrieval,
        sum(usable.tokens) FILTER (WHERE usable.key = 'tool_results') AS in_tool_results,
        sum(usable.tokens) FILTER (WHERE usable.key = 'user') AS in_user,
        sum(usable.tokens) FILTER (WHERE usable.key NOT IN ('system', 'tools', 'history', 'retrieval', 'tool_results', 'user')) AS in_other,
        count(*) AS entries
    FROM (
        SELECT entry.key, round(entry.value::numeric) AS tokens
        FROM jsonb_each(
            CASE WHEN jsonb_typeof(call.input_breakdown) = 'object' THEN call.input_breakdown END
        ) AS entry
        WHERE CASE WHEN jsonb_typeof(entry.value) = 'number'
            THEN entry.value::numeric BETWEEN 0 AND 1000000000 ELSE false END
    ) AS usable
) AS part
GROUP BY 1, 2, 3
"""


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_alter_apitoken_scopes'),
        ('ledger', '0006_task_daily_rollup'),
    ]

    operations = [
        migrations.CreateModel(
            name='BreakdownRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('system_tokens', models.BigIntegerField(default=0)),
                ('system_calls', models.BigIntegerField(default=0)),
                ('tools_tokens', models.BigIntegerField(default=0)),
                ('tools_calls', models.BigIntegerField(default=0)),
                ('history_tokens', models.BigIntegerField(default=0)),
                ('history_calls', models.BigIntegerField(default=0)),
                ('retrieval_tokens', models.BigIntegerField(default=0)),
                ('retrieval_calls', models.BigIntegerField(default=0)),
                ('tool_results_tokens', models.BigIntegerField(default=0)),
                ('tool_results_calls', models.BigIntegerField(default=0)),
                ('user_tokens', models.BigIntegerField(default=0)),
                ('user_calls', models.BigIntegerField(default=0)),
                ('other_tokens', models.BigIntegerField(default=0, help_text='keys SPEC does not name')),
                ('other_calls', models.BigIntegerField(default=0)),
                ('not_broken_down_tokens', models.BigIntegerField(default=0, help_text='input of calls with no breakdown')),
                ('not_broken_down_calls', models.BigIntegerField(default=0)),
                ('agent', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='ledger.agent')),
                ('team', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.team')),
            ],
            options={
                'indexes': [models.Index(fields=['team', 'day'], name='breakdown_rollup_team_day_idx')],
                'constraints': [models.UniqueConstraint(fields=('day', 'team', 'agent'), name='breakdown_rollup_unique')],
            },
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
