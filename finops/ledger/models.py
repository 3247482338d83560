"""The ledger: agents, tasks (agent runs), LLM calls and the rollups the dashboards read.

`Call` lives in a table partitioned by month (created by migration SQL, see 0002), written only by the
bulk writer; its idempotency key lives in `EventKey`, because a unique index on a partitioned table would
have to include the timestamp, and a re-sent event must be a no-op even if its timestamp changed.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from finops.accounts.models import Team
from finops.accounts.querysets import TeamOwnedQuerySet

MONEY = {"max_digits": 28, "decimal_places": 12}


class TaskStatus(models.TextChoices):
    SUCCESS = "success", "success"
    FAILURE = "failure", "failure"
    ABANDONED = "abandoned", "abandoned"
    KILLED = "killed", "killed (by its agent's kill switch)"


class TokenCounts(models.Model):
    uncached_input = models.BigIntegerField(default=0)
    cache_read = models.BigIntegerField(default=0)
    cache_write_5m = models.BigIntegerField(default=0)
    cache_write_1h = models.BigIntegerField(default=0)
    output = models.BigIntegerField(default=0)
    reasoning = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class Agent(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=128)
    cost_slo_usd = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="target $ per successful task"
    )
    ideal_steps = models.PositiveIntegerField(null=True, blank=True, help_text="steps a good run takes")
    max_steps = models.PositiveIntegerField(null=True, blank=True, help_text="kill switch: steps per task")
    max_cost_usd = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="kill switch: $ per task"
    )
    target_cache_hit_rate = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0.75"))
    target_token_efficiency = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0.18"))
    target_step_inflation = models.DecimalField(max_digits=5, decimal_places=3, default=Decimal("1.4"))
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="agent_team_name_unique")]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"


class Task(TokenCounts):
    """One agent run. Outcome fields come from POST /tasks; the aggregates from the writer.

    The writer inserts a task row for every new task_id it sees, so the foreign keys carry no database
    constraint (a deferred check per new task cost ~10% of the write; the writer resolves both ids
    itself and deletes cascade through the ORM), and team is not indexed alone (the unique
    constraint and the (team, ended_at) index both start with it)."""

    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="tasks", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tasks", db_constraint=False)
    # byte-order collation: these keys are compared millions of times by the writer's unique indexes
    task_id = models.CharField(max_length=256, db_collation="C")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ideal_steps = models.PositiveIntegerField(null=True, blank=True)
    task_type = models.CharField(max_length=128, blank=True, default="")
    tags = models.JSONField(default=dict, blank=True)
    # aggregates over the task's calls, maintained by the writer in the same transaction as the calls
    steps = models.IntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    unpriced_calls = models.IntegerField(default=0)
    first_call_at = models.DateTimeField(null=True, blank=True)
    last_call_at = models.DateTimeField(null=True, blank=True)

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "task_id"], name="task_team_task_id_unique")]
        indexes = [
            models.Index(fields=["team", "ended_at"], name="task_team_ended_idx"),
            # the ended tasks of every team (the ragged edges of a window's task KPIs) and of one agent
            # (its page): partial, so the writer's new tasks (no outcome yet) cost it nothing
            models.Index(fields=["ended_at"], condition=Q(status__isnull=False), name="task_ended_idx"),
            # covering the agent page's reads (outcomes, steps, cost percentiles): index-only scans
            models.Index(
                fields=["agent", "ended_at"],
                include=["status", "steps", "cost_usd", "unpriced_calls"],
                condition=Q(status__isnull=False),
                name="task_agent_ended_idx",
            ),
            # the costliest ended runs of a window (finops.kpis.selectors.tasks_most_expensive)
            models.Index(
                models.F("cost_usd").desc(),
                "id",
                condition=Q(status__isnull=False),
                name="task_ended_cost_idx",
            ),
            # the runaway-task alert's candidates: tasks with no outcome yet, by their latest call
            models.Index(fields=["last_call_at"], condition=Q(status__isnull=True), name="task_running_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.team_id}:{self.task_id}"


class Call(TokenCounts):
    """One LLM call. The table is partitioned by month: migration 0002 creates it by SQL."""

    id = models.BigAutoField(primary_key=True)
    timestamp = models.DateTimeField()
    team = models.ForeignKey(Team, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    event_id = models.CharField(max_length=256, db_collation="C")
    task_id = models.CharField(max_length=256, null=True, db_collation="C")
    step = models.IntegerField(null=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    input_breakdown = models.JSONField(null=True)
    batch = models.BooleanField(default=False)
    latency_ms = models.IntegerField(null=True)
    status = models.CharField(max_length=32, default="ok")
    prompt_version = models.CharField(max_length=128, null=True)
    max_tokens = models.IntegerField(null=True)
    tool_calls = models.JSONField(null=True)
    reported_cost_usd = models.DecimalField(**MONEY, null=True)
    tags = models.JSONField(null=True)
    cost_usd = models.DecimalField(**MONEY, null=True, help_text="null: unpriced (unknown model)")
    ingested_at = models.DateTimeField()

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        db_table = "ledger_call"


class EventKey(models.Model):
    """The idempotency key of a call: (team, event_id) seen once, ever."""

    pk = models.CompositePrimaryKey("team_id", "event_id")
    # no index of its own: the primary key starts with it
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+"
    )
    event_id = models.CharField(max_length=256, db_collation="C")
    timestamp = models.DateTimeField()

    objects = TeamOwnedQuerySet.as_manager()


class DailyRollup(TokenCounts):
    """Per UTC day x team x agent x provider x model. Dashboards and KPIs read these, never raw calls."""

    day = models.DateField()
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)  # (team, day)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128)
    calls = models.IntegerField(default=0)
    unpriced_calls = models.IntegerField(default=0)
    batch_calls = models.IntegerField(default=0)
    calls_not_in_task = models.IntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_not_in_task_usd = models.DecimalField(**MONEY, default=Decimal(0))
    # spend per token type (after batch and negotiated discounts), for the "stack by token type" chart
    cost_uncached_input_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_read_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_write_5m_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_cache_write_1h_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_output_usd = models.DecimalField(**MONEY, default=Decimal(0))
    cost_reasoning_usd = models.DecimalField(**MONEY, default=Decimal(0))

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "team", "agent", "provider", "model"], name="rollup_day_scope_unique"
            )
        ]
        indexes = [models.Index(fields=["team", "day"], name="rollup_team_day_idx")]


class RecentRollup(TokenCounts):
    """Per minute x team x agent, for the calls of the last days only (see finops/ledger/rollups.py):
    alert rules judge trailing windows (15 minutes to 7 days, and the partial UTC day at the start of
    a calendar month in the organisation's time zone) from these and the daily rollups, never from
    the calls. Kept by the writer with the calls; rows past the retention are purged by beat."""

    minute = models.DateTimeField()
    # no database foreign keys: checked per inserted row, they cost the writer; the ids are its own
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    calls = models.IntegerField(default=0)
    unpriced_calls = models.IntegerField(default=0)
    calls_not_in_task = models.IntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["minute", "team", "agent"], name="recent_rollup_minute_unique")
        ]


class PromptVersionRollup(models.Model):
    """Per agent x prompt version, over all of the version's calls: when it was first and last called
    and its cache hit rate's terms, for the cache-collapse alert (the newest version against the one
    before it). Kept by the writer with the calls; one small row per version."""

    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    prompt_version = models.CharField(max_length=128, db_collation="C")
    first_call_at = models.DateTimeField()
    last_call_at = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    cache_read = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0, help_text="the four input token types")

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "prompt_version"], name="prompt_version_rollup_unique")
        ]
        indexes = [models.Index(fields=["team", "agent"], name="prompt_version_team_idx")]


class PromptVersionDailyRollup(models.Model):
    """Per UTC day x agent x prompt version: what the tech lead's home and the Caching page show of a
    version over a window (calls, cache hit rate's terms, priced cost, the calls in tasks and their
    cost), read for the window's whole UTC days instead of the calls. Kept by the writer with the calls
    (finops/ledger/rollups.py) and by the repricing of unpriced calls (finops/ledger/services.py).

    Tasks are not counted: a task's calls spread over days and versions, so distinct tasks cannot be
    summed from days; the pages show $ per call and the cost of the calls in tasks instead."""

    day = models.DateField()
    # no database foreign keys: checked per inserted row, they cost the writer; the ids are its own
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    prompt_version = models.CharField(max_length=128, db_collation="C")
    first_call_at = models.DateTimeField(help_text="the day's first call of the version")
    last_call_at = models.DateTimeField(help_text="the day's last call of the version")
    calls = models.BigIntegerField(default=0)
    cache_read = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0, help_text="the four input token types")
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0), help_text="of the priced calls")
    unpriced_calls = models.BigIntegerField(default=0)
    calls_in_tasks = models.BigIntegerField(default=0)
    unpriced_calls_in_tasks = models.BigIntegerField(default=0)
    cost_in_tasks_usd = models.DecimalField(**MONEY, default=Decimal(0), help_text="priced calls in tasks")

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "prompt_version"], name="prompt_version_day_unique"
            )
        ]
        indexes = [models.Index(fields=["team", "day"], name="prompt_version_day_team_idx")]


class TaskDailyRollup(models.Model):
    """Per UTC day a task ended x team x agent: the sums the task KPIs take over the tasks that ended
    (an outcome and an end), so a window's whole days are read from here and only its ragged edges from
    the tasks (finops/kpis/selectors.py).

    Kept by triggers on ledger_task (migration 0006), in the transaction of every change to a task,
    whoever makes it: the writer's call aggregates (calls may arrive after the outcome), an outcome
    recorded, re-sent or changed, the kill switch, a repricing, a delete. Each change takes the task's
    old contribution out and puts the new one in, so the sums stay exact in any order of arrival.

    Steps against ideal steps are kept in two parts: the tasks that name their ideal steps, and those
    that fall back on their agent's (which can be edited later), summed at read time with the agent's
    current value, as the KPI over the tasks would."""

    day = models.DateField()
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    ended = models.IntegerField(default=0)
    successful = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    abandoned = models.IntegerField(default=0)
    killed = models.IntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    unpriced_calls = models.BigIntegerField(default=0)
    useful_output = models.BigIntegerField(default=0, help_text="output tokens of the successful tasks")
    all_tokens = models.BigIntegerField(default=0, help_text="the six token types, every task")
    steps_ideal_known = models.BigIntegerField(default=0, help_text="steps of the tasks naming ideal steps")
    ideal_steps = models.BigIntegerField(default=0, help_text="their ideal steps")
    steps_agent_ideal = models.BigIntegerField(default=0, help_text="steps of the tasks that do not")
    tasks_agent_ideal = models.IntegerField(default=0, help_text="how many tasks do not")

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "agent", "day"], name="task_rollup_scope_day_unique")
        ]
        indexes = [models.Index(fields=["team", "day"], name="task_rollup_team_day_idx")]


class BreakdownRollup(models.Model):
    """Per UTC day x team x agent: the input tokens the calls' `input_breakdown` put in each part of the
    prompt, and the input tokens of calls that carried none (`not_broken_down_tokens`), each with the
    number of calls that added to it. Kept by the writer with the calls (finops/ledger/breakdown.py says
    what each call adds); the Breakdown page reads these. One row a day and agent, the parts as
    columns: a row per part made the writer upsert up to eight rows where the daily rollup upserts one."""

    day = models.DateField()
    # no database foreign keys: checked per inserted row, they cost the writer; the ids are its own
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    system_tokens = models.BigIntegerField(default=0)
    system_calls = models.BigIntegerField(default=0)
    tools_tokens = models.BigIntegerField(default=0)
    tools_calls = models.BigIntegerField(default=0)
    history_tokens = models.BigIntegerField(default=0)
    history_calls = models.BigIntegerField(default=0)
    retrieval_tokens = models.BigIntegerField(default=0)
    retrieval_calls = models.BigIntegerField(default=0)
    tool_results_tokens = models.BigIntegerField(default=0)
    tool_results_calls = models.BigIntegerField(default=0)
    user_tokens = models.BigIntegerField(default=0)
    user_calls = models.BigIntegerField(default=0)
    other_tokens = models.BigIntegerField(default=0, help_text="keys SPEC does not name")
    other_calls = models.BigIntegerField(default=0)
    not_broken_down_tokens = models.BigIntegerField(default=0, help_text="input of calls with no breakdown")
    not_broken_down_calls = models.BigIntegerField(default=0)

    objects = TeamOwnedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "team", "agent"], name="breakdown_rollup_unique")
        ]
        indexes = [models.Index(fields=["team", "day"], name="breakdown_rollup_team_day_idx")]
