"""`finops demo`: a realistic month of LLM traffic whose numbers tell a story, loaded through the one writer.

The story (SPEC.md, `finops demo`): several teams and agents whose runs are plan → tool → observe →
reflect loops that resend their whole context each step (mostly from the prompt cache); a runaway loop
in coding/code-review on two days; a prompt change in support/ticket-triage that puts a timestamp at the
top of the system prompt and collapses its cache hit rate; nightly batch jobs at the batch discount; a
model the price catalog does not know (unpriced, never $0); one-off calls that are not in a task; and a
provider bill with a variance: Anthropic's statement (source "demo-bill") for every day of the window
before its last (today's is not pulled yet, as a provider's report lags a day) equals the ledger's own
telemetry in the agents' workspace, and on the prompt-change day also bills 4% more uncached input
tokens of the triage agent's model from a workspace that sends finops no telemetry (a notebook's calls
the agents did not report). Reconciliation names both: the unseen workspace and the day not pulled.

Guardrails: the runaway agent has a kill switch (max steps and max cost per task) and its team a day
allowance with action deny, set by the team's sre, and the team's agents check before each call as
`POST /api/v1/guard/check` would answer (demo_guard): so the runaway loops stop where the guard denied
them (their tasks `killed`), and on the runaway days the allowance's usage ends near its limit.

Traffic is generated per calendar day, agent and seed with its own random stream, and every id derives
from those, so loading again adds nothing; `end` only decides which tasks have already finished.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from finops.accounts.models import Membership, OrgRole, Team, TeamRole, User
from finops.accounts.services import team_budget_set, team_get_or_create
from finops.alerts.evaluate import Summary as AlertsSummary
from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.models import AlertRule, RuleKind, RuleOp
from finops.guardrails.models import Allowance, AllowanceAction
from finops.guardrails.services import allowance_create
from finops.guardrails.windows import window_bounds
from finops.kpis.selectors import Scope, kpis_for_scope
from finops.ledger.models import Agent, DailyRollup, TaskStatus
from finops.ledger.services import agent_settings_update, task_outcomes_record
from finops.ledger.tokens import TOKEN_TYPES
from finops.pricing.fast import PicoPricer
from finops.pricing.services import PriceBook
from ingest.connectors.models import StatementKind
from ingest.connectors.services import StatementWrite, statement_lines_replace
from ingest.writer import IngestResult, Resolver, TeamPolicy, events_ingest, heap_frozen

DEFAULT_SEED = 42
DEFAULT_DAYS = 30
MIN_DAYS = 4  # the prompt change needs days before and after it, the runaway two days of its own
BATCH_SIZE = 5000
SOURCE = "demo"
BILL_SOURCE = "demo-bill"
BILL_PROVIDER = "anthropic"
BILL_VARIANCE_PERCENT = Decimal(4)
BILL_AGENTS_WORKSPACE = "wrkspc_agents"  # the workspace the agents' keys belong to
BILL_UNSEEN_WORKSPACE = "wrkspc_notebooks"  # calls from here never reach finops' telemetry
AMOUNT_PLACES = Decimal("1e-12")  # StatementLine.amount's decimal places

TEAMS: dict[str, str] = {
    "support": "Customer Support",
    "coding": "Developer Productivity",
    "research": "Research",
    "data": "Data Platform",
}


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    org_role: str = OrgRole.NONE
    team_slug: str | None = None
    team_role: str | None = None

    @property
    def role_description(self) -> str:
        if self.org_role == OrgRole.ADMIN:
            return "org admin: everything (staff, superuser)"
        if self.org_role == OrgRole.FINOPS:
            return "org finops: every team, prices, bills, budgets (staff)"
        return f"{self.team_role} of team {self.team_slug}"


# every team role of SPEC's table, so each role's pages can be tried as its person sees them: the
# username is <team>-<role>, with tech-lead for tech_lead
TEAM_ROLE_LOGINS: tuple[tuple[str, str], ...] = (
    ("sre", TeamRole.SRE),
    ("tech-lead", TeamRole.TECH_LEAD),
    ("pm", TeamRole.PM),
    ("ml", TeamRole.ML),
    ("viewer", TeamRole.VIEWER),
)
DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("admin", "admin", org_role=OrgRole.ADMIN),
    DemoAccount("finops", "finops", org_role=OrgRole.FINOPS),
    *(
        DemoAccount(f"{slug}-{role_name}", f"{slug}-{role_name}", team_slug=slug, team_role=role)
        for slug in TEAMS
        for role_name, role in TEAM_ROLE_LOGINS
    ),
)
# (username, password, role description): what `finops up` prints after loading the demo
DEMO_LOGINS: list[tuple[str, str, str]] = [
    (account.username, account.password, account.role_description) for account in DEMO_ACCOUNTS
]


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str
    weight: int = 1


@dataclass(frozen=True)
class AgentProfile:
    """How one agent behaves: its models, its context sizes per part, its volume and its outcomes."""

    team: str
    name: str
    models: tuple[ModelChoice, ...]  # one is drawn per task
    prompt_version: str
    system_tokens: int
    tools_tokens: int
    user_tokens: tuple[int, int]
    retrieval_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    tool_result_tokens: tuple[int, int]
    steps: tuple[int, int]
    tasks_per_weekday: int
    tasks_per_weekend_day: int
    tool_names: tuple[str, ...] = ()
    planning_model: ModelChoice | None = None  # used on plan and reflect steps instead of the task's model
    phases: tuple[str, ...] = ("plan", "tool", "observe", "reflect")
    in_tasks: bool = True
    prompt_caching: bool = True
    batch: bool = False
    hours: tuple[int, int] = (7, 23)  # UTC hours in which its tasks start
    max_tokens: int = 4096
    cost_slo_usd: Decimal | None = None
    ideal_steps: int | None = None
    success_rate: float = 0.9
    abandon_rate: float = 0.03
    # (share of tasks, task type, own ideal steps, steps): tasks whose ideal differs from the agent's
    special_task: tuple[float, str, int, tuple[int, int]] | None = None


PROFILES: tuple[AgentProfile, ...] = (
    AgentProfile(
        team="support",
        name="ticket-triage",
        models=(ModelChoice("anthropic", "claude-sonnet-4-5"),),
        prompt_version="triage@4f2a9c",
        system_tokens=3600,
        tools_tokens=2800,
        user_tokens=(300, 1200),
        retrieval_tokens=(6000, 16000),
        output_tokens=(180, 520),
        tool_result_tokens=(1500, 4500),
        steps=(4, 6),
        tasks_per_weekday=170,
        tasks_per_weekend_day=90,
        tool_names=("search_kb", "get_customer", "set_priority", "route_ticket"),
        max_tokens=1024,
        cost_slo_usd=Decimal("0.30"),
        ideal_steps=4,
        success_rate=0.9,
        abandon_rate=0.02,
    ),
    AgentProfile(
        team="support",
        name="refund-bot",
        models=(ModelChoice("anthropic", "claude-haiku-4-5"),),
        prompt_version="refund@b71e03",
        system_tokens=2600,
        tools_tokens=1800,
        user_tokens=(200, 800),
        retrieval_tokens=(1000, 3000),
        output_tokens=(120, 400),
        tool_result_tokens=(300, 1500),
        steps=(5, 8),
        tasks_per_weekday=60,
        tasks_per_weekend_day=40,
        tool_names=("get_order", "check_refund_policy", "issue_refund", "email_customer"),
        max_tokens=1024,
        cost_slo_usd=Decimal("0.10"),
        ideal_steps=6,
        success_rate=0.86,
        abandon_rate=0.04,
    ),
    AgentProfile(
        team="support",
        name="intent-classifier",
        models=(ModelChoice("openai", "gpt-4o-mini"),),
        prompt_version="intent@0c9d11",
        system_tokens=1300,
        tools_tokens=0,
        user_tokens=(150, 900),
        retrieval_tokens=(0, 0),
        output_tokens=(5, 40),
        tool_result_tokens=(0, 0),
        steps=(1, 1),
        tasks_per_weekday=700,
        tasks_per_weekend_day=380,
        phases=("classify",),
        in_tasks=False,
        hours=(0, 24),
        max_tokens=64,
    ),
    AgentProfile(
        team="coding",
        name="code-review",
        models=(ModelChoice("anthropic", "claude-opus-4-1", 7), ModelChoice("openai", "gpt-5", 3)),
        prompt_version="review@91aa5d",
        system_tokens=4200,
        tools_tokens=3100,
        user_tokens=(400, 1500),
        retrieval_tokens=(6000, 24000),
        output_tokens=(250, 900),
        tool_result_tokens=(1000, 5000),
        steps=(11, 16),
        tasks_per_weekday=34,
        tasks_per_weekend_day=6,
        tool_names=("read_file", "grep", "run_tests", "git_diff", "post_comment"),
        max_tokens=8192,
        cost_slo_usd=Decimal("5.00"),
        ideal_steps=12,
        success_rate=0.88,
        abandon_rate=0.03,
        special_task=(0.2, "large-pr", 20, (18, 26)),
    ),
    AgentProfile(
        team="research",
        name="web-researcher",
        models=(ModelChoice("openai", "gpt-4o"),),
        planning_model=ModelChoice("openai", "o3"),
        prompt_version="research@5e2277",
        system_tokens=2800,
        tools_tokens=1600,
        user_tokens=(100, 600),
        retrieval_tokens=(0, 2000),
        output_tokens=(200, 800),
        tool_result_tokens=(2000, 8000),
        steps=(8, 13),
        tasks_per_weekday=26,
        tasks_per_weekend_day=8,
        tool_names=("web_search", "fetch_page", "extract_table", "cite"),
        max_tokens=4096,
        cost_slo_usd=Decimal("1.50"),
        ideal_steps=10,
        success_rate=0.84,
        abandon_rate=0.06,
        special_task=(0.15, "deep-dive", 16, (14, 20)),
    ),
    AgentProfile(
        team="research",
        name="doc-extractor",
        models=(ModelChoice("acme", "acme-large-2"),),
        prompt_version="extract@3d0b8f",
        system_tokens=1500,
        tools_tokens=0,
        user_tokens=(4000, 16000),
        retrieval_tokens=(0, 0),
        output_tokens=(400, 1500),
        tool_result_tokens=(0, 0),
        steps=(2, 3),
        tasks_per_weekday=45,
        tasks_per_weekend_day=5,
        phases=("extract", "verify"),
        prompt_caching=False,
        max_tokens=2048,
        ideal_steps=2,
        success_rate=0.93,
        abandon_rate=0.0,
    ),
    AgentProfile(
        team="data",
        name="nightly-summaries",
        models=(ModelChoice("anthropic", "claude-sonnet-4-5"),),
        prompt_version="nightly@7c4410",
        system_tokens=1800,
        tools_tokens=0,
        user_tokens=(6000, 20000),
        retrieval_tokens=(0, 0),
        output_tokens=(500, 1400),
        tool_result_tokens=(0, 0),
        steps=(5, 5),
        tasks_per_weekday=40,
        tasks_per_weekend_day=40,
        phases=("summarise-chunk",) * 4 + ("combine",),
        prompt_caching=False,
        batch=True,
        hours=(1, 3),
        max_tokens=2048,
        cost_slo_usd=Decimal("0.25"),
        ideal_steps=5,
        success_rate=0.97,
        abandon_rate=0.0,
    ),
)

REASONING_TOKENS: dict[str, tuple[int, int]] = {"o3": (800, 4000), "gpt-5": (300, 1500)}
OPENAI_CACHE_MINIMUM = 1024  # OpenAI caches prompts from 1,024 tokens on, in steps of 128
OPENAI_CACHE_STEP = 128
COMPACTION_THRESHOLD = 150_000  # context size at which agents summarise their history
COMPACTED_HISTORY_TOKENS = 6000
RUNAWAY_SHARE = 0.6
RUNAWAY_STEPS = (40, 80)
# the runaway agent's kill switch and its team's allowance, as its sre sets them on first load. The kill
# switch is above every ordinary run (at most 26 steps, under $4) and below what the runaway loops reach
# (its steps stop the cheaper model's loops, its cost the dearer one's). The day allowance is 1.7 times
# an ordinary weekday of the team (about $50, never past $68, where it would warn): the loops the kill
# switch lets run still take a runaway day past it
KILL_SWITCH_MAX_STEPS = 40
KILL_SWITCH_MAX_COST_USD = Decimal("6.00")
ALLOWANCE_WINDOW = "day"
ALLOWANCE_LIMIT_USD = Decimal("85.00")
ALLOWANCE_WARN_AT = 0.8


@dataclass(frozen=True)
class DemoStory:
    """Where the story's events sit in the window [start, end)."""

    start: datetime
    end: datetime
    runaway_team: str
    runaway_agent: str
    runaway_days: tuple[date, ...]
    prompt_change_team: str
    prompt_change_agent: str
    prompt_change_at: datetime
    prompt_version_before: str
    prompt_version_after: str
    unpriced_provider: str
    unpriced_model: str
    batch_team: str
    batch_agent: str
    bill_provider: str
    bill_variance_day: date
    bill_variance_model: str
    bill_variance_token_type: str
    bill_variance_percent: Decimal

    @property
    def bill_days(self) -> tuple[date, ...]:
        """The UTC days the demo's provider bill covers: every day of the window but the end's own (the
        provider's report of the current day is not pulled yet)."""
        first = self.start.date()
        return tuple(first + timedelta(days=n) for n in range((self.end.date() - first).days))

    @property
    def bill_variance(self) -> str:
        return (
            f"{self.bill_provider}'s bill has {self.bill_variance_percent}% more {self.bill_variance_token_type} "
            f"tokens of {self.bill_variance_model} on {self.bill_variance_day} than telemetry: calls the agents "
            f"did not report, from workspace {BILL_UNSEEN_WORKSPACE}"
        )


def demo_story(*, days: int, end: datetime) -> DemoStory:
    """Place the story relative to the end date, so a month-long load shows it in the current month."""
    if days < MIN_DAYS:
        raise ValueError(f"the demo needs at least {MIN_DAYS} days, got {days}")
    end = end.astimezone(UTC)
    target = end.date() - timedelta(days=max(2, round(days * 0.5)))
    # two working days, when the agent is busy (weekends have too few runs to show it), inside the window
    candidates = [end.date() - timedelta(days=back) for back in range(2, days)]
    working = [day for day in candidates if day.weekday() <= 3] or candidates
    runaway_first = min(working, key=lambda day: (abs((day - target).days), day))
    change_day = end.date() - timedelta(days=max(1, round(days * 0.3)))
    return DemoStory(
        start=end - timedelta(days=days),
        end=end,
        runaway_team="coding",
        runaway_agent="code-review",
        runaway_days=(runaway_first, runaway_first + timedelta(days=1)),
        prompt_change_team="support",
        prompt_change_agent="ticket-triage",
        prompt_change_at=datetime(change_day.year, change_day.month, change_day.day, 14, tzinfo=UTC),
        prompt_version_before="triage@4f2a9c",
        prompt_version_after="triage@e03b7d",
        unpriced_provider="acme",
        unpriced_model="acme-large-2",
        batch_team="data",
        batch_agent="nightly-summaries",
        bill_provider=BILL_PROVIDER,
        bill_variance_day=change_day,
        bill_variance_model="claude-sonnet-4-5",  # ticket-triage's model
        bill_variance_token_type=TOKEN_TYPES[0],  # uncached_input: what a prompt change drives up
        bill_variance_percent=BILL_VARIANCE_PERCENT,
    )


@dataclass
class DemoTask:
    """The calls of one agent run and its outcome (None for calls that are not in a task)."""

    events: list[dict]
    outcome: dict | None
    started_at: datetime
    finished_at: datetime


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _task_start(rng: random.Random, day: date, hours: tuple[int, int]) -> datetime:
    first_hour, last_hour = hours
    # busier in the middle of the working window than at its edges
    hour_offset = rng.triangular(0, last_hour - first_hour, (last_hour - first_hour) / 2)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        hours=first_hour + hour_offset, seconds=rng.random()
    )


def _openai_cached(prefix_tokens: int) -> int:
    if prefix_tokens < OPENAI_CACHE_MINIMUM:
        return 0
    return prefix_tokens // OPENAI_CACHE_STEP * OPENAI_CACHE_STEP


def _agent_run(
    *, rng: random.Random, profile: AgentProfile, story: DemoStory, seed: int, day: date, number: int
) -> DemoTask:
    """One agent run: each step resends system, tools, the task's context and everything said so far."""
    started_at = _task_start(rng, day, profile.hours)
    model = rng.choices(profile.models, weights=[choice.weight for choice in profile.models])[0]
    task_id = f"demo{seed}-{profile.name}-{day:%Y%m%d}-{number:04d}" if profile.in_tasks else None
    event_prefix = task_id or f"demo{seed}-{profile.name}-{day:%Y%m%d}-call-{number:05d}"
    is_story_agent = (profile.team, profile.name) == (story.prompt_change_team, story.prompt_change_agent)
    timestamp_in_prompt = is_story_agent and started_at >= story.prompt_change_at
    prompt_version = story.prompt_version_after if timestamp_in_prompt else profile.prompt_version

    task_type = ""
    ideal_steps: int | None = None
    step_range = profile.steps
    if profile.special_task and rng.random() < profile.special_task[0]:
        _, task_type, ideal_steps, step_range = profile.special_task
    roll = rng.random()
    if roll < profile.success_rate:
        status = TaskStatus.SUCCESS
    elif roll < 1 - profile.abandon_rate:
        status = TaskStatus.FAILURE
    else:
        status = TaskStatus.ABANDONED
    step_count = rng.randint(*step_range)
    runaway = (
        (profile.team, profile.name) == (story.runaway_team, story.runaway_agent)
        and day in story.runaway_days
        and rng.random() < RUNAWAY_SHARE
    )
    if runaway:  # the agent keeps re-running the same failing tool until someone gives up on it
        step_count = rng.randint(*RUNAWAY_STEPS)
        status = TaskStatus.ABANDONED
    if status != TaskStatus.SUCCESS and not runaway:
        step_count = max(1, step_count - rng.randint(0, 2))

    system_tokens = profile.system_tokens + (24 if timestamp_in_prompt else 0)
    user_tokens = rng.randint(*profile.user_tokens)
    retrieval_tokens = rng.randint(*profile.retrieval_tokens)
    history_tokens = 0  # the agent's own earlier outputs
    tool_result_tokens = 0
    fresh_prefix = True  # the task's context is not in the cache yet (first step, or after compaction)
    previous_input_by_model: dict[str, int] = {}
    moment = started_at
    events: list[dict] = []
    for step in range(1, step_count + 1):
        phase = profile.phases[(step - 1) % len(profile.phases)]
        step_model = model
        if profile.planning_model and phase in ("plan", "reflect"):
            step_model = profile.planning_model
        total_input = (
            system_tokens
            + profile.tools_tokens
            + user_tokens
            + retrieval_tokens
            + history_tokens
            + tool_result_tokens
        )
        warm_prefix = profile.tools_tokens + system_tokens  # kept in the cache by the agent's other runs
        cache_read = cache_write_5m = 0
        if profile.prompt_caching and step_model.provider == "anthropic":
            if timestamp_in_prompt:
                # tools come before the system prompt, so only they still match a cached prefix
                cache_read = profile.tools_tokens
            elif fresh_prefix or step_model.model not in previous_input_by_model:
                cache_read = warm_prefix
                cache_write_5m = total_input - warm_prefix - user_tokens
            else:
                cache_read = previous_input_by_model[step_model.model]
        elif profile.prompt_caching:  # OpenAI caches the longest seen prefix on its own
            cache_read = _openai_cached(previous_input_by_model.get(step_model.model, warm_prefix))
        cache_read = min(cache_read, total_input)
        uncached_input = total_input - cache_read - cache_write_5m
        previous_input_by_model[step_model.model] = total_input
        fresh_prefix = False

        is_last_step = step == step_count
        failed_call = is_last_step and status == TaskStatus.FAILURE and rng.random() < 0.5
        output_tokens = rng.randint(20, 80) if failed_call else rng.randint(*profile.output_tokens)
        reasoning_range = REASONING_TOKENS.get(step_model.model)
        reasoning_tokens = rng.randint(*reasoning_range) if reasoning_range else 0
        latency_ms = int(
            350 + total_input / 1000 * 25 + (output_tokens + reasoning_tokens) * rng.uniform(10, 22)
        )
        event = {
            "event_id": f"{event_prefix}:step-{step}" if task_id else event_prefix,
            "timestamp": _iso(moment),
            "team": profile.team,
            "agent": profile.name,
            "provider": step_model.provider,
            "model": step_model.model,
            "usage": {
                "uncached_input": uncached_input,
                "cache_read": cache_read,
                "cache_write_5m": cache_write_5m,
                "cache_write_1h": 0,
                "output": output_tokens,
                "reasoning": reasoning_tokens,
            },
            "input_breakdown": {
                "system": system_tokens,
                "tools": profile.tools_tokens,
                "history": history_tokens,
                "retrieval": retrieval_tokens,
                "tool_results": tool_result_tokens,
                "user": user_tokens,
            },
            "batch": profile.batch,
            "latency_ms": latency_ms,
            "status": "error" if failed_call else "ok",
            "prompt_version": prompt_version,
            "max_tokens": profile.max_tokens,
            "tags": {"phase": phase},
        }
        if task_id:
            event["task_id"] = task_id
            event["step"] = step
        if phase == "tool" and profile.tool_names:
            tool_name = profile.tool_names[0 if runaway else rng.randrange(len(profile.tool_names))]
            event["tool_calls"] = [{"name": tool_name, "args_hash": f"{rng.getrandbits(64):016x}"}]
            tool_result_tokens += rng.randint(*profile.tool_result_tokens)
        events.append(event)
        history_tokens += output_tokens
        moment += timedelta(milliseconds=latency_ms)
        if phase == "tool":
            moment += timedelta(milliseconds=rng.randint(300, 6000))  # the tool itself runs
        if history_tokens + tool_result_tokens + retrieval_tokens > COMPACTION_THRESHOLD:
            history_tokens, tool_result_tokens, retrieval_tokens = COMPACTED_HISTORY_TOKENS, 0, 0
            fresh_prefix = True
            previous_input_by_model.clear()

    if not task_id:
        return DemoTask(events=events, outcome=None, started_at=started_at, finished_at=moment)
    outcome = {
        "team": profile.team,
        "agent": profile.name,
        "task_id": task_id,
        "status": status,
        "started_at": started_at,
        "ended_at": moment,
    }
    if task_type:
        outcome["task_type"] = task_type
    if ideal_steps is not None:
        outcome["ideal_steps"] = ideal_steps
    return DemoTask(events=events, outcome=outcome, started_at=started_at, finished_at=moment)


def demo_traffic(*, story: DemoStory, seed: int) -> Iterator[DemoTask]:
    """Every run (and one-off call) that started in [start, end) and finished by `end`, day by day."""
    day = story.start.date()
    while day <= story.end.date():
        for profile in PROFILES:
            rng = random.Random(f"finops-demo:{seed}:{profile.team}:{profile.name}:{day.isoformat()}")
            is_weekend = day.weekday() >= 5
            count = profile.tasks_per_weekend_day if is_weekend else profile.tasks_per_weekday
            count = max(0, round(count * rng.uniform(0.85, 1.15)))
            for number in range(count):
                run = _agent_run(rng=rng, profile=profile, story=story, seed=seed, day=day, number=number)
                if story.start <= run.started_at and run.finished_at <= story.end:
                    yield run
        day += timedelta(days=1)


@dataclass(frozen=True)
class DemoGuardrails:
    """What the guard check enforces on one team's calls: its agents' kill switches and the team's
    allowance with action deny (if any), as the database holds them."""

    team: str
    kill_switches: dict[str, tuple[int | None, Decimal | None]]  # agent name: (max_steps, max_cost_usd)
    allowance_id: int | None = None
    allowance_window: str | None = None
    allowance_limit_usd: Decimal | None = None


@dataclass
class DemoGuarded:
    """The runs as the guard let them happen, and what it stopped."""

    runs: list[DemoTask]
    killed: list[str] = field(default_factory=list)  # task ids stopped by their kill switch
    denied: list[str] = field(default_factory=list)  # task ids stopped by the allowance
    used_usd: dict[datetime, Decimal] = field(default_factory=dict)  # the allowance's windows, by start
    denied_windows: set[datetime] = field(default_factory=set)  # the windows in which it denied a call


def demo_guard(
    *, runs: list[DemoTask], guardrails: DemoGuardrails, cost: Callable[[dict], Decimal | None]
) -> DemoGuarded:
    """Replay one team's runs in time order through the guard check's rules (finops/guardrails/check.py):
    before each call its agent checks with the call's cost as its estimate (the demo's agents know it);
    a task at its agent's max_steps, or whose cost would pass max_cost_usd, is denied and `killed`; a
    call that would take the allowance's used + reserved past its limit is denied, and its task ends as
    a failure. An allowed call is reserved from its start and counts as used from its end (when its
    event settles the reservation), in the window of its timestamp. The calls from the first denial of
    a task on are never made; a task denied its first call has no calls and only its outcome."""
    calls = sorted(
        (datetime.fromisoformat(event["timestamp"]), number, step)
        for number, run in enumerate(runs)
        for step, event in enumerate(run.events)
    )
    kept: list[list[dict]] = [[] for _ in runs]
    spent = [Decimal(0)] * len(runs)
    stopped: dict[int, tuple[datetime, str]] = {}
    in_flight: list[tuple[datetime, Decimal, datetime]] = []  # (end, cost, window start), a heap
    held = Decimal(0)  # what in_flight holds
    window: tuple[datetime, datetime] | None = None  # the allowance's window of the latest call
    guarded = DemoGuarded(runs=[])
    used = guarded.used_usd
    limit = guardrails.allowance_limit_usd
    for at, number, step in calls:
        if number in stopped:
            continue
        event = runs[number].events[step]
        while in_flight and in_flight[0][0] <= at:
            _, settled, start = heapq.heappop(in_flight)
            used[start] = used.get(start, Decimal(0)) + settled
            held -= settled
        estimate = cost(event) or Decimal(0)
        max_steps, max_cost = guardrails.kill_switches.get(event["agent"], (None, None))
        steps, task_cost = len(kept[number]), spent[number]
        killed = "task_id" in event and (
            (max_steps is not None and steps >= max_steps)
            or (
                max_cost is not None
                and (task_cost >= max_cost or (estimate and task_cost + estimate > max_cost))
            )
        )
        window_start = None
        over = False
        if limit is not None:
            if window is None or not window[0] <= at < window[1]:
                window = window_bounds(window=guardrails.allowance_window, at=at)
            window_start = window[0]
            # used in this window + every open reservation, as guardrails_check sums them
            taken = used.get(window_start, Decimal(0)) + held
            over = taken + estimate > limit if estimate else taken >= limit
        if killed or over:
            stopped[number] = (at, TaskStatus.KILLED if killed else TaskStatus.FAILURE)
            if over and not killed:
                guarded.denied_windows.add(window_start)
            continue
        kept[number].append(event)
        spent[number] += estimate
        if window_start is not None:
            heapq.heappush(
                in_flight, (at + timedelta(milliseconds=event["latency_ms"]), estimate, window_start)
            )
            held += estimate
    for _, settled, start in in_flight:
        used[start] = used.get(start, Decimal(0)) + settled
    for number, run in enumerate(runs):
        if number not in stopped:
            guarded.runs.append(run)
            continue
        at, status = stopped[number]
        if run.outcome is None:  # a call not in a task: denied, so never made
            if kept[number]:
                guarded.runs.append(DemoTask(kept[number], None, run.started_at, at))
            continue
        (guarded.killed if status == TaskStatus.KILLED else guarded.denied).append(run.outcome["task_id"])
        guarded.runs.append(
            DemoTask(
                events=kept[number],
                outcome={**run.outcome, "status": status, "ended_at": at},
                started_at=run.started_at,
                finished_at=at,
            )
        )
    return guarded


@dataclass(frozen=True)
class DemoBatchProgress:
    number: int
    events_sent: int
    accepted: int
    duplicates: int
    rejected: int
    seconds: float


@dataclass
class DemoLoadResult:
    story: DemoStory
    teams: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    ingest: IngestResult = field(default_factory=IngestResult)
    tasks_recorded: int = 0  # outcomes written by this load
    tasks_in_window: int = 0  # tasks that ended in the window, by the KPI selector
    cost_usd: Decimal = Decimal(0)
    calls_in_window: int = 0
    unpriced_calls: int = 0
    bill: StatementWrite = field(default_factory=StatementWrite)
    bill_amount_usd: Decimal = Decimal(0)
    bill_variance_tokens: int = 0
    bill_variance_usd: Decimal = Decimal(0)
    guardrails: DemoGuardrails | None = None
    guarded: DemoGuarded | None = None  # the guarded team's runs, as the guard let them happen
    alerts: AlertsSummary | None = None  # the evaluation after loading
    seconds: float = 0.0

    @property
    def guardrails_summary(self) -> str:
        """The story's guardrails and what they stopped, for the demo's summary."""
        guardrails, guarded = self.guardrails, self.guarded
        if guardrails is None or guarded is None:
            return "none"
        parts = []
        for agent, (max_steps, max_cost) in sorted(guardrails.kill_switches.items()):
            limits = [
                f"{max_steps} steps" if max_steps is not None else "",
                f"${max_cost:,.2f}" if max_cost else "",
            ]
            parts.append(
                f"kill switch {guardrails.team}/{agent} ({' or '.join(filter(None, limits))} a task): "
                f"{len(guarded.killed):,} runaway tasks killed"
            )
        if guardrails.allowance_limit_usd is not None:
            limit = guardrails.allowance_limit_usd
            full = [
                f"{start:%Y-%m-%d %H:%M} ${guarded.used_usd[start]:,.2f}"
                for start in sorted(guarded.denied_windows)
            ]
            parts.append(
                f"allowance {guardrails.allowance_id} ({guardrails.team}, {guardrails.allowance_window}, deny at "
                f"${limit:,.2f}): {len(guarded.denied):,} tasks denied"
                + (f" (used in the windows from {', '.join(full)})" if full else "")
            )
        return "; ".join(parts) or "none"

    @property
    def bill_summary(self) -> str:
        """The story's provider bill, for the demo's summary."""
        return (
            f"{BILL_SOURCE} ({self.bill.lines:,} statement lines, ${self.bill_amount_usd:,.2f}; "
            f"{self.bill.created + self.bill.updated:,} written now): {self.story.bill_variance} "
            f"(+{self.bill_variance_tokens:,} tokens, +${self.bill_variance_usd:,.2f})"
        )


def demo_logins_ensure(*, teams: dict[str, Team]) -> list[User]:
    """Create the demo users and their roles. An existing user keeps its password."""
    users = []
    for account in DEMO_ACCOUNTS:
        user, created = User.objects.get_or_create(username=account.username)
        if created:
            user.set_password(account.password)
        user.org_role = account.org_role
        user.is_staff = account.org_role in (OrgRole.ADMIN, OrgRole.FINOPS)
        user.is_superuser = account.org_role == OrgRole.ADMIN
        user.save()
        if account.team_slug:
            Membership.objects.update_or_create(
                user=user, team=teams[account.team_slug], defaults={"role": account.team_role}
            )
        users.append(user)
    return users


def _teams_and_agents_ensure() -> tuple[dict[str, Team], dict[tuple[str, str], Agent], set[tuple[str, str]]]:
    """The demo's teams and agents, and which agents this call created."""
    teams = {slug: team_get_or_create(slug=slug, name=name) for slug, name in TEAMS.items()}
    agents = {}
    created = set()
    for profile in PROFILES:
        # settings only on creation: someone may have tuned the SLO or ideal steps since
        agent, new = Agent.objects.get_or_create(
            team=teams[profile.team],
            name=profile.name,
            defaults={"cost_slo_usd": profile.cost_slo_usd, "ideal_steps": profile.ideal_steps},
        )
        agents[(profile.team, profile.name)] = agent
        if new:
            created.add((profile.team, profile.name))
    return teams, agents, created


def demo_guardrails_ensure(
    *, story: DemoStory, teams: dict[str, Team], agents: dict[tuple[str, str], Agent], created: set
) -> DemoGuardrails:
    """The runaway agent's kill switch (set when the demo creates the agent) and its team's day allowance
    (created when the team has none of that window), both by the team's sre, so the audit log says who;
    then what the database holds, which is what the guard check enforces. Someone may have tuned either
    since: the demo's traffic follows what they hold now."""
    team = teams[story.runaway_team]
    sre = User.objects.get(username=f"{story.runaway_team}-sre")
    key = (story.runaway_team, story.runaway_agent)
    if key in created:
        agent_settings_update(
            agent=agents[key],
            role=TeamRole.SRE,
            changes={"max_steps": KILL_SWITCH_MAX_STEPS, "max_cost_usd": KILL_SWITCH_MAX_COST_USD},
            principal=sre,
        )
    allowance = Allowance.objects.filter(team=team, agent=None, window=ALLOWANCE_WINDOW).first()
    if allowance is None:
        allowance = allowance_create(
            principal=sre,
            created_by=sre,
            team=team,
            agent=None,
            window=ALLOWANCE_WINDOW,
            limit_usd=ALLOWANCE_LIMIT_USD,
            warn_at=ALLOWANCE_WARN_AT,
            action=AllowanceAction.DENY,
        )
    denies = allowance.action == AllowanceAction.DENY and allowance.limit_usd is not None
    return DemoGuardrails(
        team=team.slug,
        kill_switches={
            agent.name: (agent.max_steps, agent.max_cost_usd)
            for agent in Agent.objects.filter(team=team)
            if agent.max_steps is not None or agent.max_cost_usd is not None
        },
        allowance_id=allowance.pk,
        allowance_window=allowance.window,
        allowance_limit_usd=allowance.limit_usd if denies else None,
    )


def _demo_alerts(
    *, story: DemoStory, teams: dict[str, Team], agents: dict[tuple[str, str], Agent]
) -> list[AlertRule]:
    """The stories' alert rules, made once by each team's sre, with no channels (a new user adds one:
    README, "Alerts"): a runaway_task rule on the runaway agent, firing for a task still running past
    half its kill switch's max cost (so someone hears of it before the switch stops it), and a
    cache_collapse rule on the agent whose prompt change collapsed its cache hit rate, which fires when
    the demo is loaded (demo_load evaluates the rules last)."""
    runaway = agents[(story.runaway_team, story.runaway_agent)]
    max_cost = runaway.max_cost_usd or KILL_SWITCH_MAX_COST_USD
    rules = []
    for team, agent, kind, fields in (
        (
            story.runaway_team,
            runaway,
            RuleKind.RUNAWAY_TASK,
            {"name": f"{story.runaway_agent} runaway task", "metric": "cost_usd", "value": max_cost / 2},
        ),
        (
            story.prompt_change_team,
            agents[(story.prompt_change_team, story.prompt_change_agent)],
            RuleKind.CACHE_COLLAPSE,
            # a drop of more than 20 points of cache hit rate from one prompt version to the next
            {"name": f"{story.prompt_change_agent} cache collapse", "value": Decimal("0.2")},
        ),
    ):
        rule, _ = AlertRule.objects.get_or_create(
            team=teams[team],
            agent=agent,
            kind=kind,
            defaults={
                **fields,
                "op": RuleOp.GT,
                "created_by": User.objects.get(username=f"{team}-sre"),
            },
        )
        rules.append(rule)
    return rules


def demo_load(
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[DemoBatchProgress], None] | None = None,
) -> DemoLoadResult:
    """Load the demo data set for the `days` days up to `end` (default now). Idempotent per seed."""
    clock = time.monotonic()
    story = demo_story(days=days, end=end or datetime.now(UTC))
    with transaction.atomic():
        teams, agents, created = _teams_and_agents_ensure()
        demo_logins_ensure(teams=teams)
        guardrails = demo_guardrails_ensure(story=story, teams=teams, agents=agents, created=created)
        _demo_alerts(story=story, teams=teams, agents=agents)
    result = DemoLoadResult(
        story=story, teams=sorted(teams), agents=sorted(f"{team}/{name}" for team, name in agents)
    )
    resolver = Resolver(TeamPolicy(None))
    price_book = PriceBook.load()
    events: list[dict] = []
    outcomes: list[dict] = []
    batch_number = 0

    def flush() -> None:
        nonlocal batch_number
        batch_clock = time.monotonic()
        with transaction.atomic():
            written = events_ingest(
                raw_events=events,
                principal=None,
                source=SOURCE,
                resolver=resolver,
                price_book=price_book,
                first_index=result.ingest.accepted + result.ingest.duplicates + len(result.ingest.rejected),
            )
            # a batch with no new call was written whole, outcomes included, by an earlier load
            if written.accepted:
                result.tasks_recorded += task_outcomes_record(
                    outcomes=[
                        {
                            **outcome,
                            "team": teams[outcome["team"]],
                            "agent": agents[(outcome["team"], outcome["agent"])],
                        }
                        for outcome in outcomes
                    ]
                )
        result.ingest.add(written)
        batch_number += 1
        if on_batch:
            on_batch(
                DemoBatchProgress(
                    number=batch_number,
                    events_sent=len(events),
                    accepted=written.accepted,
                    duplicates=written.duplicates,
                    rejected=len(written.rejected),
                    seconds=time.monotonic() - batch_clock,
                )
            )
        events.clear()
        outcomes.clear()

    def add(run: DemoTask) -> None:
        events.extend(run.events)
        if run.outcome:
            outcomes.append(run.outcome)
        if len(events) >= batch_size:
            flush()

    guarded_runs = []
    for run in demo_traffic(story=story, seed=seed):
        if run.events and run.events[0]["team"] == guardrails.team:
            guarded_runs.append(run)  # its calls interleave with the team's other runs': replayed together
        else:
            add(run)

    pricer = PicoPricer(price_book)  # the writer's pricing, to the picodollar

    def cost(event: dict) -> Decimal | None:
        usage = event["usage"]
        priced = pricer.price(
            provider=event["provider"],
            model=event["model"],
            tokens=tuple(usage.get(name, 0) for name in TOKEN_TYPES),
            at=datetime.fromisoformat(event["timestamp"]),
            batch=event["batch"],
        )
        return None if priced is None else Decimal(priced[0]).scaleb(-12)

    with heap_frozen():  # thousands of runs stay alive while they are replayed: no full collections
        result.guarded = demo_guard(runs=guarded_runs, guardrails=guardrails, cost=cost)
    result.guardrails = guardrails
    for run in result.guarded.runs:
        add(run)
    if events:
        flush()

    demo_bill_write(story=story, agent_ids=[agent.pk for agent in agents.values()], result=result)
    demo_budgets_ensure(story=story, teams=teams)
    totals = kpis_for_scope(
        scope=Scope(team_ids=frozenset(team.pk for team in teams.values())), start=story.start, end=story.end
    )
    result.cost_usd = totals.cost_usd
    result.calls_in_window = totals.calls
    result.tasks_in_window = totals.tasks_ended
    result.unpriced_calls = totals.unpriced_calls
    # the rules judge what was just loaded, as beat would in a minute: the prompt change's alert fires
    result.alerts = alerts_evaluate()
    result.seconds = time.monotonic() - clock
    return result


# each team's monthly budget against its demo spend: the runaway's team is set to run over it
BUDGET_OVER_FACTOR, BUDGET_FACTOR, BUDGET_STEP = Decimal("0.85"), Decimal("1.25"), Decimal(50)


def demo_budgets_ensure(*, story: DemoStory, teams: dict[str, Team]) -> dict[str, Decimal]:
    """Give each demo team without one a monthly budget (set as the demo's admin, so in the audit log):
    its spend over the demo's days scaled to 30, times 1.25, in steps of $50; the runaway's team gets
    0.85 of it, so the Forecast page and the finops home show one team heading over budget."""
    admin = User.objects.get(username="admin")
    budgets = {}
    for slug, team in sorted(teams.items()):
        if team.monthly_budget_usd is not None:
            budgets[slug] = team.monthly_budget_usd
            continue
        spent = kpis_for_scope(scope=Scope(team_ids=frozenset({team.pk})), start=story.start, end=story.end)
        days = Decimal((story.end - story.start).total_seconds()) / 86400
        monthly = spent.cost_usd * 30 / days
        factor = BUDGET_OVER_FACTOR if slug == story.runaway_team else BUDGET_FACTOR
        budget = max(
            BUDGET_STEP, (monthly * factor / BUDGET_STEP).to_integral_value(ROUND_CEILING) * BUDGET_STEP
        )
        team_budget_set(team=team, monthly_budget_usd=budget, principal=admin)
        budgets[slug] = budget
    return budgets


@dataclass
class DemoBill:
    lines: list[dict]
    variance_tokens: int = 0  # what the bill has on top of telemetry
    variance_usd: Decimal = Decimal(0)


def demo_bill(*, story: DemoStory, agent_ids: list[int]) -> DemoBill:
    """The provider's bill for its days: per day, model and token type, the tokens and cost the ledger's
    rollups hold for the demo's agents (their workspace), plus the story's one variance on a line of a
    workspace of its own, as the provider's cost report splits its lines by workspace."""
    sums = {name: Sum(name) for name in TOKEN_TYPES}
    sums |= {f"cost_{name}_usd": Sum(f"cost_{name}_usd") for name in TOKEN_TYPES}
    rows = (
        DailyRollup.objects.filter(
            provider=story.bill_provider, agent_id__in=agent_ids, day__in=story.bill_days
        )
        .values("day", "model")
        .annotate(**sums)
        .order_by("day", "model")
    )
    variance_key = (story.bill_variance_day, story.bill_variance_model, story.bill_variance_token_type)
    share = story.bill_variance_percent / 100
    bill = DemoBill(lines=[])
    for row in rows:
        start = datetime(row["day"].year, row["day"].month, row["day"].day, tzinfo=UTC)
        for token_type in TOKEN_TYPES:
            quantity, amount = row[token_type], row[f"cost_{token_type}_usd"]
            if not quantity:
                continue
            line = {
                "kind": StatementKind.COST,
                "provider": story.bill_provider,
                "period_start": start,
                "period_end": start + timedelta(days=1),
                "model": row["model"],
                "token_type": token_type,
                "line_item": f"{row['model']} {token_type.replace('_', ' ')} tokens",
                "workspace_id": BILL_AGENTS_WORKSPACE,
                "quantity": quantity,
                "amount": amount,
                "currency": "USD",
            }
            bill.lines.append(line)
            if (row["day"], row["model"], token_type) == variance_key:
                bill.variance_tokens = int((quantity * share).to_integral_value())
                bill.variance_usd = (amount * share).quantize(AMOUNT_PLACES)
                bill.lines.append(
                    {
                        **line,
                        "workspace_id": BILL_UNSEEN_WORKSPACE,
                        "quantity": bill.variance_tokens,
                        "amount": bill.variance_usd,
                    }
                )
    return bill


def demo_bill_write(*, story: DemoStory, agent_ids: list[int], result: DemoLoadResult) -> None:
    """Write the bill as statement lines of source demo-bill; writing the same bill again changes nothing."""
    bill = demo_bill(story=story, agent_ids=agent_ids)
    result.bill = statement_lines_replace(source=BILL_SOURCE, lines=bill.lines, pulled_at=timezone.now())
    result.bill_amount_usd = sum((line["amount"] for line in bill.lines), Decimal(0))
    result.bill_variance_tokens, result.bill_variance_usd = bill.variance_tokens, bill.variance_usd
