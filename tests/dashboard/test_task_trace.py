"""The task trace: one run step by step, its numbers worked out here from the events sent."""

from __future__ import annotations

import re
from decimal import Decimal

from finops.ledger.models import Task, TaskStatus
from ingest.writer import events_ingest
from tests.dashboard.conftest import UNPRICED_MODEL, event, expected_cost
from tests.factories import AgentFactory

CONTEXT_STEP = 12_000  # each step resends the context, which grows by 12K tokens a step


def loop_events() -> list[dict]:
    """Six steps of a loop on 6 March 2025; sent out of order. Step n sends 12,000·n input tokens, of
    which the previous step's context is read from the cache; step 5 uses a model with no price."""
    tools = {
        2: [{"name": "search", "args_hash": "h1"}],
        3: [{"name": "search", "args_hash": "h1"}],  # a repeat
        4: [{"name": "search", "args_hash": "h2"}],
        5: [{"name": "fetch", "args_hash": "h1"}],  # another tool: not a repeat
        6: [{"name": "search", "args_hash": "h1"}, {"name": "search", "args_hash": "h2"}],  # both repeats
    }
    events = []
    for step in (4, 1, 6, 2, 5, 3):
        cached = CONTEXT_STEP * (step - 1)
        sent = event(
            f"loop-{step}", day="2025-03-06", team="support", agent="looper", task_id="run-7",
            model=UNPRICED_MODEL if step == 5 else "m1",
            uncached_input=CONTEXT_STEP * step - cached, cache_read=cached, output=400,
        )  # fmt: skip
        sent["timestamp"] = f"2025-03-06T12:00:{step:02d}Z"
        sent["step"] = step
        sent["tool_calls"] = tools.get(step)
        events.append(sent)
    return events


def rows(html: str) -> list[list[str]]:
    table = re.search(r'<table id="trace-steps">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    ]


def test_a_run_step_by_step(client, ledger, support_member):
    AgentFactory(team=ledger.teams["support"], name="looper", max_steps=6, max_cost_usd=Decimal("0.5"))
    events = loop_events()
    assert events_ingest(raw_events=events, principal=None, source="test").accepted == 6
    task = Task.objects.get(task_id="run-7")
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.KILLED)
    client.force_login(support_member)
    html = client.get(f"/tasks/{task.pk}/").content.decode()

    by_step = sorted(events, key=lambda sent: sent["step"])
    costs = [
        None if sent["model"] == UNPRICED_MODEL else expected_cost("m1", sent["usage"]) for sent in by_step
    ]
    so_far = [sum((cost or 0 for cost in costs[: index + 1]), Decimal(0)) for index in range(6)]
    table = rows(html)
    assert [row[0] for row in table] == ["1", "2", "3", "4", "5", "6"]  # in step order, not arrival
    for index, row in enumerate(table):
        step = index + 1
        context = CONTEXT_STEP * step
        assert row[4] == f"{context - CONTEXT_STEP * (step - 1):,}"  # uncached input
        assert row[5] == f"{CONTEXT_STEP * (step - 1):,}"  # cache read
        assert row[12] == f"{context:,}"  # context: all input tokens
        assert row[10] == ("unpriced" if step == 5 else f"${costs[index]:.4f}")
        assert row[11] == f"${so_far[index]:.4f}"
        assert row[13] == f"{(step - 1) / step * 100:.1f}%"
    assert [row[14] for row in table] == ["—", "search", "↻ search", "search", "fetch", "↻ search, ↻ search"]
    assert 'class="repeat"' in html and html.count('<tr class="repeat">') == 2

    flat = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Outcome killed" in flat and "Stopped by the kill switch" in flat
    assert "Calls 6" in flat and "kill switch at 6" in flat
    assert "Repeated tool calls 3" in flat
    assert "1 unpriced call" in flat
    # the context chart's table: so far = 12,000·n(n+1)/2, with compaction = 12,000·n
    context_table = re.search(r"<caption>Input tokens.*?</caption>(.*?)</table>", html, re.S).group(1)
    for step in range(1, 7):
        cells = f"{CONTEXT_STEP * step:,}</td><td>{CONTEXT_STEP * step * (step + 1) // 2:,}</td><td>{CONTEXT_STEP * step:,}"
        assert cells in context_table.replace("\n", "").replace(" ", "")


def test_a_task_with_no_calls_says_so(client, ledger, support_member):
    task = Task.objects.create(
        team=ledger.teams["support"], agent=ledger.agents["triage"], task_id="quiet", status="success"
    )
    client.force_login(support_member)
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "No calls recorded for this task" in html and "trace-steps" not in html


def test_the_overview_lists_the_costliest_tasks_with_a_link_to_their_trace(client, ledger, support_member):
    client.force_login(support_member)
    html = client.get("/", {"start": "2025-03-01", "end": "2025-03-31"}).content.decode()
    listed = re.search(
        r'<section class="panel" aria-labelledby="tasks-title".*?</section>', html, re.S
    ).group(0)
    t1, t2 = (Task.objects.get(task_id=task_id) for task_id in ("t1", "t2"))
    assert ledger.spend(task_id="t1") > ledger.spend(task_id="t2")  # 0.97 against 0.66
    assert re.findall(r'<a href="/tasks/(\d+)/">', listed) == [
        str(t1.pk),
        str(t2.pk),
    ]  # billing's b1 not shown
