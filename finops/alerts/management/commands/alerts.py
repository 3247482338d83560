"""`finops alerts evaluate`: evaluate every alert rule now and send what fires (SPEC.md, "Command line");
`finops alerts listen`: receive and verify signed alerts, to try a webhook channel out."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from finops.alerts.evaluate import alerts_evaluate
from finops.alerts.listen import main as listen_main


class Command(BaseCommand):
    help = (
        "Alert rules. 'evaluate' judges every enabled rule now, as beat does every minute, and prints "
        "what it evaluated, what fired and what resolved; notifications go out as they would from beat."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{evaluate,listen}")
        actions.add_parser("evaluate", help="evaluate every enabled rule now and send what fires")
        listen = actions.add_parser(
            "listen",
            help="a webhook receiver that prints each signed alert it receives and whether its signature "
            "verifies (to try a webhook channel: its target http://127.0.0.1:PORT/, its secret here)",
        )
        listen.add_argument("--secret", required=True, help="the channel's whsec_… secret, shown once")
        listen.add_argument("--port", type=int, default=9000)
        listen.add_argument("--host", default="127.0.0.1")

    def handle(self, *args, **options) -> None:
        if options["action"] == "listen":
            arguments = [
                "--secret",
                options["secret"],
                "--port",
                str(options["port"]),
                "--host",
                options["host"],
            ]
            raise SystemExit(listen_main(arguments))
        summary = alerts_evaluate()
        write = self.stdout.write
        write(
            f"evaluated {summary.rules} rule(s) at {summary.at:%Y-%m-%d %H:%M:%S} UTC: "
            f"{summary.breaches} breach(es), {len(summary.deliveries)} notification(s) queued"
            + (f", {summary.silenced} silenced" if summary.silenced else "")
        )
        for label, alerts in (
            ("fired", summary.fired),
            ("resolved", summary.resolved),
            ("pending", summary.pending),
        ):
            for alert in alerts:
                write(
                    f"  {label:<8} alert {alert.pk}  rule {alert.rule_id} ({alert.rule.name})  {alert.subject}: {alert.summary}"
                )
        for subject in summary.cleared:
            write(f"  cleared  {subject} (its condition stopped holding before it fired)")
        for rule_id, error in sorted(summary.errors.items()):
            self.stderr.write(f"  rule {rule_id} not evaluated: {error}")
        if not (summary.fired or summary.resolved or summary.pending):
            write("  nothing fired or resolved")
