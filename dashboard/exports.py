"""The CSV side of the tables whose page cells carry more than a value: buttons (acknowledge, delete,
replay), usage bars, before → after diffs. The page keeps its markup; each such table also comes as a
`Table` of the same rows, so `render_page` serves it at the page's URL with ?export=<name> (the rows the
person saw, with the page's filters and page number), with exact values instead of the page's text.
"""

from __future__ import annotations

import json

from dashboard.tables import Column, Table


def open_alerts_table(alerts: list) -> Table:
    return Table(
        name="open-alerts",
        caption="Firing and pending alerts",
        columns=[
            Column("State"),
            Column("Rule"),
            Column("Subject"),
            Column("Value", "number"),
            Column("Threshold", "number"),
            Column("Since (UTC)", "datetime"),
            Column("Acknowledged by"),
        ],
        rows=[
            [
                alert.state,
                alert.rule.name,
                alert.subject,
                alert.value,
                alert.threshold,
                alert.fired_at or alert.started_at,
                _acknowledger(alert),
            ]
            for alert in alerts
        ],
    )


def past_alerts_table(alerts: list) -> Table:
    return Table(
        name="past-alerts",
        caption="Resolved alerts (this page of them)",
        columns=[
            Column("Rule"),
            Column("Subject"),
            Column("Value", "number"),
            Column("Threshold", "number"),
            Column("Started (UTC)", "datetime"),
            Column("Resolved (UTC)", "datetime"),
            Column("Acknowledged by"),
        ],
        rows=[
            [
                alert.rule.name,
                alert.subject,
                alert.value,
                alert.threshold,
                alert.started_at,
                alert.resolved_at,
                _acknowledger(alert),
            ]
            for alert in alerts
        ],
    )


def _acknowledger(alert) -> str:
    if alert.acknowledged_at is None:
        return ""
    return alert.acknowledged_by.get_username() if alert.acknowledged_by else "an API token"


def deliveries_table(deliveries: list) -> Table:
    return Table(
        name="deliveries",
        caption="The alert's notifications, one per channel and event",
        columns=[
            Column("Channel"),
            Column("Kind"),
            Column("Event"),
            Column("Status"),
            Column("Attempts", "count"),
            Column("Last HTTP status"),
            Column("Created (UTC)", "datetime"),
            Column("Sent (UTC)", "datetime"),
            Column("Next try (UTC)", "datetime"),
            Column("Last error"),
        ],
        rows=[
            [
                delivery.channel.label,
                delivery.channel.kind,
                delivery.event,
                delivery.status,
                delivery.attempts,
                delivery.last_status_code,
                delivery.created_at,
                delivery.sent_at,
                delivery.next_attempt_at if delivery.status == "pending" else None,
                delivery.last_error,
            ]
            for delivery in deliveries
        ],
    )


def silences_table(silences: list) -> Table:
    return Table(
        name="silences",
        caption="Silences active or to come",
        columns=[
            Column("Scope"),
            Column("From (UTC)", "datetime"),
            Column("Until (UTC)", "datetime"),
            Column("Reason"),
            Column("By"),
        ],
        rows=[
            [
                _silence_scope(silence),
                silence.starts_at,
                silence.ends_at,
                silence.reason,
                silence.created_by.get_username() if silence.created_by else "",
            ]
            for silence in silences
        ],
    )


def _silence_scope(silence) -> str:
    if silence.rule:
        return f"rule {silence.rule.name}"
    if silence.team:
        return f"{silence.team.slug}/{silence.agent.name}" if silence.agent else silence.team.slug
    return "everything"


def rules_table(rules: list) -> Table:
    return Table(
        name="rules",
        caption="Alert rules",
        columns=[
            Column("Name"),
            Column("Team"),
            Column("Agent"),
            Column("Kind"),
            Column("Metric"),
            Column("Op"),
            Column("Value", "number"),
            Column("Window"),
            Column("For (min)", "count"),
            Column("Repeat (min)", "count"),
            Column("Channels"),
            Column("Enabled"),
        ],
        rows=[
            [
                rule.name,
                rule.team.slug if rule.team else "every team",
                rule.agent.name if rule.agent else "",
                rule.kind,
                rule.metric,
                rule.op,
                rule.value,
                rule.window,
                rule.for_minutes,
                rule.repeat_minutes,
                ", ".join(channel.name or channel.kind for channel in rule.channels.all()),
                rule.enabled,
            ]
            for rule in rules
        ],
    )


def channels_table(channels: list, *, changeable: set[int]) -> Table:
    return Table(
        name="channels",
        caption="Alert channels",
        columns=[
            Column("#"),
            Column("Name"),
            Column("Kind"),
            Column("Team"),
            Column("Target"),
            Column("Last success (UTC)", "datetime"),
            Column("Last failure (UTC)", "datetime"),
            Column("Failures in a row", "count"),
            Column("Last error"),
        ],
        rows=[
            [
                channel.pk,
                channel.name,
                channel.kind,
                channel.team.slug if channel.team else "org",
                channel.target if channel.pk in changeable else channel.target_masked,
                channel.last_success_at,
                channel.last_failure_at,
                channel.consecutive_failures,
                channel.last_error,
            ]
            for channel in channels
        ],
    )


def audit_table(rows: list[dict]) -> Table:
    """Audit entries with their changes as `field: before → after` lines (the page's diff, as text)."""
    return Table(
        name="audit",
        caption="Audit log (this page of it)",
        columns=[
            Column("When (UTC)", "datetime"),
            Column("Who"),
            Column("Team"),
            Column("Action"),
            Column("Object type"),
            Column("Object id"),
            Column("Changes"),
        ],
        rows=[
            [
                row["entry"].at,
                row["entry"].who,
                row["entry"].team.slug if row["entry"].team else "",
                row["entry"].action,
                row["entry"].object_type,
                row["entry"].object_id,
                "\n".join(
                    f"{change.field}: {_json(change.before)} → {_json(change.after)}"
                    for change in row["changes"]
                ),
            ]
            for row in rows
        ],
    )


def _json(value) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def allowances_table(rows: list[dict]) -> Table:
    return Table(
        name="allowances",
        caption="Allowances: the current window's use, reservations and limits",
        columns=[
            Column("#"),
            Column("Scope"),
            Column("Window"),
            Column("Action"),
            Column("Used $", "usd_exact"),
            Column("Reserved $", "usd_exact"),
            Column("Limit $", "usd_exact"),
            Column("Used tokens", "count"),
            Column("Reserved tokens", "count"),
            Column("Limit tokens", "count"),
            Column("Warn at", "ratio"),
            Column("Unpriced calls", "count"),
            Column("Window start (UTC)", "datetime"),
            Column("Resets (UTC)", "datetime"),
        ],
        rows=[
            [
                row["allowance"].pk,
                row["allowance"].scope_name,
                row["allowance"].window,
                row["allowance"].action,
                row["live"].used_usd,
                row["live"].reserved_usd,
                row["allowance"].limit_usd,
                row["live"].used_tokens,
                row["live"].reserved_tokens,
                row["allowance"].limit_tokens,
                row["allowance"].warn_at,
                row["live"].unpriced_calls,
                row["live"].window_start,
                row["live"].resets_at,
            ]
            for row in rows
        ],
    )


def _reasons(errors) -> str:
    if not isinstance(errors, dict):
        return str(errors)
    return "; ".join(
        f"{name}: {' '.join(map(str, reasons)) if isinstance(reasons, list) else reasons}"
        for name, reasons in errors.items()
    )


def quarantine_table(rows: list) -> Table:
    return Table(
        name="quarantine",
        caption="Quarantined rows (this page of them)",
        columns=[
            Column("#"),
            Column("Source"),
            Column("Position"),
            Column("Event"),
            Column("Team"),
            Column("Reason"),
            Column("Payload"),
            Column("Created (UTC)", "datetime"),
            Column("Replayed (UTC)", "datetime"),
        ],
        rows=[
            [
                row.pk,
                row.source,
                row.position,
                row.event_id,
                row.team.slug if row.team else "",
                _reasons(row.errors),
                json.dumps(row.payload, sort_keys=True),
                row.created_at,
                row.replayed_at,
            ]
            for row in rows
        ],
    )
