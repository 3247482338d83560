"""`finops up`: everything on this machine, in one command (see SPEC.md and ARCHITECTURE.md, Processes)."""

from __future__ import annotations

import importlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from finops import embedded
from finops.core import supervisor

DEMO_MARKER_FILE_NAME = "demo-loaded"
# the edge that owns the demo data set: looked up by name, so the domain never imports ingest/
DEMO_LOGINS_MODULE = "ingest.demo"


class Command(BaseCommand):
    help = (
        "Start everything on this machine: PostgreSQL (embedded unless DATABASE_URL is set), migrations, "
        "the demo data on first start, then web, Celery worker and beat. Ctrl-C stops it all."
    )
    requires_system_checks: list[str] = []  # checked by migrate, once the database is up

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=supervisor.DEFAULT_PORT, help="web port on 127.0.0.1")
        parser.add_argument(
            "--data-dir",
            help="folder for the embedded database, local queue, beat schedule and logs "
            "(default: FINOPS_DATA_DIR, else ~/.local/share/finops)",
        )
        parser.add_argument("--no-demo", action="store_true", help="do not load the demo data set")

    def handle(self, *args, port: int, data_dir: str | None, no_demo: bool, **options):
        data_folder = embedded.data_dir()
        if data_dir and Path(data_dir).expanduser().resolve() != data_folder:
            # settings already chose their folder at import; only the `finops` script reads it first
            raise CommandError(
                f"--data-dir {data_dir} was given after settings chose {data_folder}. "
                f"Run `finops up --data-dir {data_dir}`, or set FINOPS_DATA_DIR={data_dir}"
            )
        running_pid = supervisor.up_lock_holder(data_folder)
        if running_pid is not None:
            raise CommandError(supervisor.up_already_running_message(data_folder, running_pid))
        owns_postgres = os.environ.get(supervisor.OWNS_POSTGRES_ENV) == "1" or not os.environ.get(
            "DATABASE_URL"
        )
        lock = data_folder / supervisor.LOCK_FILE_NAME
        lock.write_text(str(os.getpid()))
        stack = supervisor.Stack(children=supervisor.children_define(port=port, data_dir=data_folder))
        supervisor.signals_raise_stop()
        exit_reason: str | None = None
        try:
            self.start(stack=stack, port=port, data_folder=data_folder, load_demo=not no_demo)
            stack.supervise()
        except supervisor.StopRequested as request:
            supervisor.say(f"{request} received")
        except supervisor.ChildExited as exited:
            supervisor.say(f"{exited} (log: {exited.child.log_path}); last lines:")
            supervisor.say(exited.child.log_tail().rstrip() or "(empty log)")
            exit_reason = f"{exited}; the rest of the stack was stopped"
        except supervisor.UpError as error:
            exit_reason = str(error)
        finally:
            supervisor.signals_hold()
            stack.stop()
            connections.close_all()
            if owns_postgres:
                supervisor.say("stopping PostgreSQL…")
                embedded.stop_postgres(root=data_folder)
            lock.unlink(missing_ok=True)
        if exit_reason:
            raise CommandError(exit_reason)
        supervisor.say("stopped")

    def start(self, *, stack: supervisor.Stack, port: int, data_folder: Path, load_demo: bool) -> None:
        port_problem = supervisor.port_check(port)
        if port_problem:
            raise supervisor.UpError(port_problem)
        database = settings.DATABASES["default"]
        supervisor.say(f"database: {database['NAME']} on {database['HOST'] or 'localhost'}")
        supervisor.say("migrating…")
        call_command("migrate", interactive=False, verbosity=0)
        demo_marker = data_folder / DEMO_MARKER_FILE_NAME
        if load_demo and not demo_marker.exists():
            demo_load()
            demo_marker.write_text(datetime.now(UTC).isoformat())

        env = {
            **os.environ,
            # explicit, so no child starts an embedded server of its own
            "DATABASE_URL": settings.DATABASE_URL,
            "FINOPS_DATA_DIR": str(data_folder),
            "PYTHONUNBUFFERED": "1",
            # the web server listens on 127.0.0.1 over plain HTTP: cookies without the Secure flag, or no
            # browser would send them back (an explicit FINOPS_PLAIN_HTTP=false still wins)
            "FINOPS_PLAIN_HTTP": os.environ.get("FINOPS_PLAIN_HTTP", "true"),
            # alert notifications link to the alert's page on this server
            "FINOPS_BASE_URL": os.environ.get("FINOPS_BASE_URL", f"http://{supervisor.WEB_HOST}:{port}"),
        }
        env.pop(supervisor.OWNS_POSTGRES_ENV, None)
        broker = "CELERY_BROKER_URL" if os.environ.get("CELERY_BROKER_URL") else "local queue"
        supervisor.say(
            f"starting web, Celery worker ({broker}) and beat… (logs in {data_folder / supervisor.LOG_DIR_NAME})"
        )
        started = time.monotonic()
        stack.start(env=env, cwd=Path(settings.BASE_DIR))
        url = f"http://{supervisor.WEB_HOST}:{port}"
        status = stack.wait_for_web(f"{url}/login/", timeout=supervisor.WEB_READY_TIMEOUT_SECONDS)
        if status >= 500:
            supervisor.say(f"warning: {url}/login/ answers {status}; see {stack.children[0].log_path}")
        supervisor.say(f"web on {url} ({time.monotonic() - started:.1f} s)")
        if load_demo and demo_marker.exists():
            logins = demo_logins()
            supervisor.say("demo logins (username / password, role):")
            for username, password, role in logins:
                supervisor.say(f"  {username} / {password}  ({role})")
        supervisor.say(f"ready: open {url} (Ctrl-C stops everything)")


def demo_load() -> None:
    if "demo" not in get_commands():
        raise supervisor.UpError(
            "the `demo` command is not installed (ingest/management/commands/demo.py), so the demo data "
            "cannot load; start without it: finops up --no-demo"
        )
    supervisor.say("loading demo data (first start)…")
    started = time.monotonic()
    call_command("demo")
    supervisor.say(f"demo data loaded ({time.monotonic() - started:.1f} s)")


def demo_logins() -> list[tuple[str, str, str]]:
    try:
        module = importlib.import_module(DEMO_LOGINS_MODULE)
    except ImportError:
        return []
    return [tuple(login) for login in getattr(module, "DEMO_LOGINS", [])]
