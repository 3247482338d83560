"""Task outcomes from outside (POST /api/v1/tasks, SPEC.md "Task outcome"): validated one by one, their
teams and agents resolved for the whole batch at once, the good ones recorded and the bad ones rejected
with their reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rest_framework import serializers

from finops.accounts.models import ApiToken, Team, User
from finops.ledger.models import Agent, TaskStatus
from finops.ledger.services import task_outcomes_record
from ingest.validation import json_kind, json_value_problem, timestamp_out_of_range
from ingest.writer import IngestResult, Resolver, TeamPolicy


class TaskOutcomeSerializer(serializers.Serializer):
    task_id = serializers.CharField(max_length=256)
    team = serializers.CharField(max_length=64)
    agent = serializers.CharField(max_length=128)
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    ideal_steps = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)
    task_type = serializers.CharField(max_length=128, required=False, allow_blank=True)
    tags = serializers.DictField(required=False)

    def validate_tags(self, tags: dict) -> dict:
        # too deep, or holding a NUL or a lone surrogate (keys too): jsonb cannot store it, and one such
        # task would fail the whole batch
        problem = json_value_problem(tags)
        if problem:
            raise serializers.ValidationError(problem)
        return tags

    def validate_started_at(self, value: datetime) -> datetime:
        return self._in_range(value)

    def validate_ended_at(self, value: datetime) -> datetime:
        return self._in_range(value)

    def _in_range(self, value: datetime) -> datetime:
        problem = timestamp_out_of_range(value, now=self.context["now"], text=value.isoformat())
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs):
        if attrs["ended_at"] < attrs["started_at"]:
            raise serializers.ValidationError({"ended_at": ["must not be before started_at"]})
        return attrs


def task_outcomes_ingest(*, raw_outcomes: list[Any], principal: User | ApiToken | None) -> IngestResult:
    """Record a batch of task outcomes as sent (decoded JSON): each is validated on its own, and the
    batch's teams and agents are resolved in a few queries whatever its size. Answers as the events
    do: accepted, and each rejected one with its index and why (outcomes have no duplicates: a later
    report of a task updates it)."""
    resolver = Resolver(TeamPolicy(principal))
    # one serializer validates every outcome (as a ListSerializer's child does): building one per
    # outcome deep-copies its fields each time, which was most of the time of a batch
    validator = TaskOutcomeSerializer(context={"now": datetime.now(UTC)})
    result = IngestResult()
    valid: list[tuple[int, dict]] = []
    for index, raw in enumerate(raw_outcomes):
        if not isinstance(raw, dict):
            result.rejected.append(
                {
                    "index": index,
                    "task_id": None,
                    "errors": {"non_field_errors": [f"{json_kind(raw)}, not a task outcome object"]},
                }
            )
            continue
        try:
            valid.append((index, dict(validator.run_validation(raw))))
        except serializers.ValidationError as error:
            result.rejected.append({"index": index, "task_id": raw.get("task_id"), "errors": error.detail})
    ids, refused = resolver.resolve(names={(outcome["team"], outcome["agent"]) for _, outcome in valid})
    # references by id, one per team and agent: the record needs their keys only
    teams = {team_id: Team(pk=team_id) for team_id, _ in ids.values()}
    agents = {agent_id: Agent(pk=agent_id, team_id=team_id) for team_id, agent_id in ids.values()}
    outcomes = []
    for index, outcome in valid:
        names = (outcome["team"], outcome["agent"])
        if names in refused:
            result.rejected.append(
                {"index": index, "task_id": outcome["task_id"], "errors": {"team": [refused[names][1]]}}
            )
            continue
        team_id, agent_id = ids[names]
        outcome["team"], outcome["agent"] = teams[team_id], agents[agent_id]
        outcomes.append(outcome)
    result.rejected.sort(key=lambda entry: entry["index"])
    result.accepted = task_outcomes_record(outcomes=outcomes)
    return result
