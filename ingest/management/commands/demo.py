"""`finops demo [--days 30] [--seed N]`: load the demo data set (see ingest/demo.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ingest.demo import DEFAULT_DAYS, DEFAULT_SEED, DEMO_LOGINS, MIN_DAYS, DemoBatchProgress, demo_load


class Command(BaseCommand):
    help = (
        "Load a realistic demo data set: several teams and agents, a runaway loop stopped by its agent's "
        "kill switch and its team's allowance, a prompt change that collapses the cache hit rate, batch "
        "jobs, an unpriced model. Loading it again adds nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of traffic up to now")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same data")

    def handle(self, *args, days: int, seed: int, **options) -> None:
        if days < MIN_DAYS:
            raise CommandError(f"--days must be at least {MIN_DAYS}")
        self.stdout.write(f"Loading {days} days of demo traffic (seed {seed})…")
        result = demo_load(days=days, seed=seed, on_batch=self._progress)
        ingest = result.ingest
        story = result.story
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo loaded in {result.seconds:.1f}s: {len(result.teams)} teams, {len(result.agents)} agents, "
                f"{ingest.accepted:,} calls accepted, {ingest.duplicates:,} duplicates, "
                f"{len(ingest.rejected):,} rejected, {result.tasks_in_window:,} tasks "
                f"({result.tasks_recorded:,} outcomes recorded now), "
                f"${result.cost_usd:,.2f} total cost ({result.unpriced_calls:,} unpriced calls)"
            )
        )
        self.stdout.write(f"  window        {story.start:%Y-%m-%d %H:%M} – {story.end:%Y-%m-%d %H:%M} UTC")
        self.stdout.write(f"  teams         {', '.join(result.teams)}")
        self.stdout.write(f"  agents        {', '.join(result.agents)}")
        self.stdout.write(
            f"  runaway loop  {story.runaway_team}/{story.runaway_agent} on "
            f"{', '.join(day.isoformat() for day in story.runaway_days)}"
        )
        self.stdout.write(
            f"  prompt change {story.prompt_change_team}/{story.prompt_change_agent} "
            f"{story.prompt_version_before} → {story.prompt_version_after} at {story.prompt_change_at:%Y-%m-%d %H:%M} UTC"
        )
        self.stdout.write(f"  guardrails    {result.guardrails_summary}")
        fired = result.alerts.fired if result.alerts else []
        for alert in fired:
            self.stdout.write(f"  alert fired   {alert.rule.name}: {alert.summary} (/alerts/{alert.pk}/)")
        self.stdout.write(f"  batch jobs    {story.batch_team}/{story.batch_agent}")
        self.stdout.write(f"  unpriced      {story.unpriced_provider}/{story.unpriced_model}")
        self.stdout.write(f"  provider bill {result.bill_summary}")
        self.stdout.write("Demo logins (username / password — role):")
        for username, password, role in DEMO_LOGINS:
            self.stdout.write(f"  {username} / {password} — {role}")

    def _progress(self, progress: DemoBatchProgress) -> None:
        self.stdout.write(
            f"  batch {progress.number}: {progress.events_sent:,} events, {progress.accepted:,} new, "
            f"{progress.duplicates:,} duplicates, {progress.rejected:,} rejected ({progress.seconds:.1f}s)"
        )
