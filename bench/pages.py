"""Dashboard pages and GET /api/v1/kpis at 10M calls (issue 9, "Speed at 10M calls"): one command, prints
every figure.

    .venv/bin/python bench/pages.py [--calls 10000000] [--requests 20]

A fresh database holds a year of traffic of 50 agents in 5 teams (bench/ledger.py: calls, daily rollups,
task aggregates and, by ledger_task's triggers, per-day task rollups), 20 allowances and 40 alert rules
evaluated once (so the alert pages have alerts to list). The pages are requested over real HTTP from a
real server: granian as `finops up` runs it (its workers and threads; access log off), logged in as a
superuser (every team), one request at a time. Every page of dashboard/urls.py that answers GET is
requested (those taking an id with one of the bench's objects) for each window: last 7 days, 30 days, this
month, 90 days and a year (the pages' whole UTC days, today included), `GET /api/v1/kpis` for the same
lengths ending now (ragged edges) with an org-wide token. Each figure is the p95 of --requests requests
after two unmeasured ones.

Beside each: the same KPIs of the same scope and window by a plain GROUP BY over ledger_call and
ledger_task (best of two runs), checked in the run: equal to the API's JSON for its window, and shown by
the overview (spend, outcomes; every team) and agent page ($/successful task, outcomes; one agent) for
theirs, with the speed-up. The sequential and index scans of the calls and tasks tables during each
page's and endpoint's requests come from pg_stat_user_tables (goal: no sequential scan).

Uses DATABASE_URL if set, else the embedded PostgreSQL under bench/out/data; the database is created
for the run and dropped at the end (--keep keeps it, --reuse NAME runs on a kept one).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from ledger import ledger_ready, say, table_scans
from scratch import free_port, run_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from finops.core import supervisor  # noqa: E402  (the project root on the path first)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WINDOWS = {"7d": 7, "30d": 30, "this month": None, "90d": 90, "a year": 365}
TABLES = ["ledger_call", "ledger_task"]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def page_window(name: str, today: date) -> tuple[date, date]:
    """[first, last] days, inclusive, as the dashboard's filters take them."""
    days = WINDOWS[name]
    return (today.replace(day=1) if days is None else today - timedelta(days=days - 1)), today


def api_window(name: str, now: datetime) -> tuple[datetime, datetime]:
    days = WINDOWS[name]
    start = (
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if days is None
        else now - timedelta(days=days)
    )
    return start, now


class Client:
    def __init__(self, port: int, headers: dict) -> None:
        self.port, self.headers = port, headers
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[int, bytes, float]:
        clock = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - clock


def timed(client: Client, path: str, requests: int) -> tuple[int, float, bytes]:
    """(status, p95 ms, last body) of `requests` GETs after two unmeasured ones."""
    status, body, _ = client.get(path)
    client.get(path)
    elapsed = []
    for _ in range(requests):
        status, body, seconds = client.get(path)
        elapsed.append(seconds * 1000)
    return status, p95(elapsed), body


GROUP_BY_CALLS = """
SELECT count(*), count(*) FILTER (WHERE cost_usd IS NULL), count(*) FILTER (WHERE task_id IS NULL),
    coalesce(sum(cost_usd), 0), coalesce(sum(cost_usd) FILTER (WHERE task_id IS NULL), 0),
    coalesce(sum(uncached_input), 0), coalesce(sum(cache_read), 0), coalesce(sum(cache_write_5m), 0),
    coalesce(sum(cache_write_1h), 0), coalesce(sum(output), 0), coalesce(sum(reasoning), 0)
FROM ledger_call WHERE timestamp >= %(start)s AND timestamp < %(end)s {agent}
"""
GROUP_BY_TASKS = """
SELECT count(*), count(*) FILTER (WHERE t.status = 'success'), count(*) FILTER (WHERE t.status = 'failure'),
    count(*) FILTER (WHERE t.status = 'abandoned'), count(*) FILTER (WHERE t.status = 'killed'),
    coalesce(sum(t.cost_usd), 0), coalesce(sum(t.unpriced_calls), 0),
    coalesce(sum(t.output) FILTER (WHERE t.status = 'success'), 0),
    coalesce(sum(t.uncached_input + t.cache_read + t.cache_write_5m + t.cache_write_1h + t.output
        + t.reasoning), 0),
    coalesce(sum(t.steps) FILTER (WHERE coalesce(t.ideal_steps, a.ideal_steps) IS NOT NULL), 0),
    coalesce(sum(coalesce(t.ideal_steps, a.ideal_steps)), 0)
FROM ledger_task AS t JOIN ledger_agent AS a ON a.id = t.agent_id
WHERE t.ended_at >= %(start)s AND t.ended_at < %(end)s AND t.status IS NOT NULL {agent}
"""
CALL_KEYS = ["calls", "unpriced_calls", "calls_not_in_task", "cost_usd", "cost_not_in_task_usd"]  # + tokens
TASK_KEYS = [
    "ended",
    "successful",
    "failed",
    "abandoned",
    "killed",
    "cost_usd",
    "unpriced_calls",
    "useful_output",
    "all_tokens",
    "actual_steps",
    "ideal_steps",
]


def group_by(*, start: datetime, end: datetime, agent_id: int | None) -> tuple[dict, float]:
    """The KPI body of a scope and window from a plain GROUP BY over calls and tasks, and its best time
    of two runs in ms."""
    from django.db import connection

    from finops.kpis.api import kpis_as_json
    from finops.kpis.selectors import kpis_from_totals
    from finops.ledger.tokens import TOKEN_TYPES

    best, body = float("inf"), None
    for _ in range(2):
        with connection.cursor() as cursor:
            clock = time.perf_counter()
            params = {"start": start, "end": end, "agent_id": agent_id}
            cursor.execute(
                GROUP_BY_CALLS.format(agent="AND agent_id = %(agent_id)s" if agent_id else ""), params
            )
            calls = dict(zip([*CALL_KEYS, *TOKEN_TYPES], cursor.fetchone(), strict=True))
            cursor.execute(
                GROUP_BY_TASKS.format(agent="AND t.agent_id = %(agent_id)s" if agent_id else ""), params
            )
            tasks = dict(zip(TASK_KEYS, cursor.fetchone(), strict=True))
            best = min(best, (time.perf_counter() - clock) * 1000)
        tasks = {key: value if key == "cost_usd" else int(value) for key, value in tasks.items()}
        calls = {key: value if "cost" in key else int(value) for key, value in calls.items()}
        body = kpis_as_json(
            kpis_from_totals(start=start, end=end, calls=calls, tasks=tasks), team=None, agent=None
        )
    return body, best


def scans_between(before: dict, after: dict) -> dict:
    return {table: tuple(b - a for a, b in zip(before[table], after[table], strict=True)) for table in before}


def page_figures(page: str, body: dict) -> list[str]:
    """What the overview or agent page shows of the KPIs in `body` (the API's JSON), as it formats them."""
    from decimal import Decimal

    from dashboard.formatting import usd_exact

    tasks = body["tasks"]
    if page == "overview":
        outcomes = f"{tasks['successful']:,} successful, {tasks['failed']:,} failed, "
        outcomes += f"{tasks['abandoned']:,} abandoned, {tasks['killed']:,} killed"
        return [f'title="{usd_exact(Decimal(body["cost_usd"]))}"', outcomes]
    per_success = body["cost_per_successful_task_usd"]
    outcomes = f"{tasks['successful']} successful, {tasks['failed']} failed, "
    outcomes += f"{tasks['abandoned']} abandoned, {tasks['killed']} killed"
    return [f'title="{usd_exact(None if per_success is None else Decimal(per_success))}"', outcomes]


def pages_of_urlconf(ids: dict[str, int]) -> list[tuple[str, str]]:
    """(name, path) of every dashboard page, its ids filled from the bench's objects."""
    from django.urls import reverse

    from dashboard.urls import urlpatterns

    pages = []
    for pattern in urlpatterns:
        params = re.findall(r"<int:(\w+)>", str(pattern.pattern))
        if any(param not in ids for param in params):
            say(f"   (no object for {pattern.name}: {', '.join(params)})")
            continue
        pages.append((pattern.name, reverse(f"dashboard:{pattern.name}", kwargs={p: ids[p] for p in params})))
    return pages


def setup(now: datetime) -> tuple[str, str, dict[str, int]]:
    """A superuser's session cookie, an org-wide read token, and the ids the pages take."""
    from alerts import rules_create
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from finops.accounts.models import User
    from finops.accounts.services import api_token_create
    from finops.alerts.evaluate import alerts_evaluate
    from finops.alerts.models import Alert, AlertRule
    from finops.guardrails.models import Allowance
    from finops.ledger.models import Agent, Task

    if not User.objects.filter(username="bench").exists():
        rules_create(count=40)
        alerts_evaluate(now=now)
        User.objects.create_superuser(
            username="bench", password=None, email="bench@example.com"
        )  # session only
    user = User.objects.get(username="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    _, secret = api_token_create(name="bench", scopes=["read"])
    agent = Agent.objects.order_by("name")[7]
    ids = {
        "agent_pk": agent.pk,
        "task_pk": Task.objects.filter(agent=agent).order_by("-cost_usd").values_list("pk", flat=True)[0],
        "allowance_id": Allowance.objects.order_by("id").values_list("id", flat=True)[0],
        "rule_id": AlertRule.objects.order_by("id").values_list("id", flat=True)[0],
    }
    alert = Alert.objects.order_by("id").values_list("id", flat=True).first()
    if alert:
        ids["alert_id"] = alert
    return session.session_key, secret, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page and window")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME", help="run on a database kept by --keep")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINOPS_DATA_DIR", str(OUT / "data"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "finops.settings"
    os.environ.setdefault("FINOPS_PLAIN_HTTP", "1")
    sys.path.insert(0, str(ROOT))
    scratch = run_database(prefix="finops_bench_pages", reuse=args.reuse)
    server = None
    try:
        now = ledger_ready(new=scratch is not None, calls=args.calls)
        from django.db import connection

        session, token, ids = setup(now)
        with connection.cursor() as cursor:
            cursor.execute("SELECT (SELECT count(*) FROM ledger_call), (SELECT count(*) FROM ledger_task)")
            calls, tasks = cursor.fetchone()
            cursor.execute("VACUUM ANALYZE")
        port = free_port()
        server = subprocess.Popen(
            supervisor.web_command(port=port, access_log=False, log_level="warning"), cwd=ROOT
        )
        page_client = Client(port, {"Cookie": f"sessionid={session}"})
        api_client = Client(port, {"Authorization": f"Bearer {token}"})
        deadline = time.time() + 60
        while True:
            try:
                page_client.get("/api/v1/schema")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
                page_client = Client(port, {"Cookie": f"sessionid={session}"})
        pages = pages_of_urlconf(ids)
        today = now.date()
        results = []  # (page, window, status, p95 ms)
        bodies = {}  # (page, window) → the HTML of the overview and agent pages
        scans = {}  # page or endpoint → {table: (sequential, index) scans during its requests}
        say(f"== {len(pages)} pages x {len(WINDOWS)} windows and /api/v1/kpis, {args.requests} requests each")
        time.sleep(1.5)
        for name, path in pages:
            before = table_scans(TABLES)
            for window in WINDOWS:
                first, last = page_window(window, today)
                query = urlencode({"start": first.isoformat(), "end": last.isoformat()})
                status, ms, body = timed(page_client, f"{path}?{query}", args.requests)
                if status == 405:
                    say(f"   {name}: POST only")
                    break
                results.append((name, window, status, ms))
                bodies[name, window] = body.decode()
                say(f"   {path} {window}: {status} p95 {ms:.0f} ms")
            time.sleep(1.5)  # the server's backends report their statistics once idle for a second
            if status != 405:
                scans[name] = scans_between(before, table_scans(TABLES))
        from finops.ledger.models import Agent

        agent = Agent.objects.select_related("team").get(pk=ids["agent_pk"])
        api_bodies = {}
        for scope in ("all teams", "one agent"):
            before = table_scans(TABLES)
            for window in WINDOWS:
                start, end = api_window(window, now)
                params = {"start": start.isoformat(), "end": end.isoformat()}
                if scope == "one agent":
                    params |= {"team": agent.team.slug, "agent": agent.name}
                status, ms, body = timed(api_client, f"/api/v1/kpis?{urlencode(params)}", args.requests)
                api_bodies[scope, window] = (json.loads(body), ms)
                say(f"   /api/v1/kpis {scope} {window}: {status} p95 {ms:.0f} ms")
            time.sleep(1.5)
            scans[f"/api/v1/kpis {scope}"] = scans_between(before, table_scans(TABLES))
        say("== the same KPIs by a plain GROUP BY over calls and tasks")
        reference = {}
        for scope, page in (("all teams", "overview"), ("one agent", "agent")):
            for window in WINDOWS:
                agent_id = ids["agent_pk"] if scope == "one agent" else None
                api_body, _ = api_bodies[scope, window]
                start, end = api_window(window, now)
                body, ms = group_by(start=start, end=end, agent_id=agent_id)
                body["scope"] = api_body["scope"]
                same = body == api_body
                if not same:
                    say(f"   MISMATCH {scope} {window}:\n     api {api_body}\n     sql {body}")
                first, last = page_window(window, today)
                page_start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
                page_end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
                page_body, page_ms = group_by(start=page_start, end=page_end, agent_id=agent_id)
                missing = [
                    shown for shown in page_figures(page, page_body) if shown not in bodies[page, window]
                ]
                if missing:
                    say(f"   MISMATCH {page} {window}: the page does not show {missing}")
                reference[scope, window] = (ms, page_ms, same, not missing)
                say(
                    f"   {scope} {window}: {ms:.0f} ms (API window, identical: {same}), "
                    f"{page_ms:.0f} ms ({page} page's window, shown: {not missing})"
                )
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        say("")
        say(f"calls {calls:,}, tasks {tasks:,}; load: {load}")
        say(
            f"{'page / endpoint':<34}{'window':<12}{'p95 ms':>8}{'GROUP BY ms':>13}{'speed-up':>10}  identical"
        )
        for name, window, status, ms in results:
            scope = {"overview": "all teams", "agent": "one agent"}.get(name)
            flag = "" if status == 200 else f"  (HTTP {status})"
            if scope:
                _, page_ms, _, shown = reference[scope, window]
                say(f"{name:<34}{window:<12}{ms:>8.0f}{page_ms:>13.0f}{page_ms / ms:>9.0f}x  {shown}{flag}")
            else:
                say(f"{name:<34}{window:<12}{ms:>8.0f}{'-':>13}{'-':>10}{flag}")
        for (scope, window), (_, ms) in api_bodies.items():
            group_ms, _, same, _ = reference[scope, window]
            say(
                f"{'/api/v1/kpis ' + scope:<34}{window:<12}{ms:>8.0f}{group_ms:>13.0f}{group_ms / ms:>9.0f}x  {same}"
            )
        say("goals: pages p95 < 300 ms, /api/v1/kpis p95 < 100 ms, each >= 50x the GROUP BY, identical")
        say("")
        say(
            f"{'scans during the timed requests':<42}{'calls seq':>10}{'calls idx':>10}{'tasks seq':>10}{'tasks idx':>10}"
        )
        for name, counts in scans.items():
            (call_seq, call_idx), (task_seq, task_idx) = counts["ledger_call"], counts["ledger_task"]
            say(f"{name:<42}{call_seq:>10}{call_idx:>10}{task_seq:>10}{task_idx:>10}")
    finally:
        if server:
            server.terminate()
            server.wait()
        from django.db import connections

        connections.close_all()
        if scratch and args.keep:
            say(f"== kept database {scratch.name} (bench/pages.py --reuse {scratch.name})")
        elif scratch:
            scratch.drop()


if __name__ == "__main__":
    main()
