"""The `finops` console script: every subcommand is a Django management command (see SPEC.md).

Importing the settings starts nothing, so the database a command needs is made ready here, before it
runs: without DATABASE_URL the embedded PostgreSQL is started (or reused) and migrated on first use,
so every command works on a fresh data folder. `finops up` prepares its own (supervisor.py).
"""

from __future__ import annotations

import os
import sys

from finops import embedded

# asking for help or the version needs no database
NO_DATABASE_ARGS = frozenset({"help", "--help", "-h", "version", "--version"})
# they read or change the schema's migration state themselves: applying migrations first would hide it
SCHEMA_COMMANDS = frozenset(
    {
        "migrate",
        "makemigrations",
        "showmigrations",
        "sqlmigrate",
        "squashmigrations",
        "optimizemigration",
        "dbshell",
        "inspectdb",
    }
)
# they never read the database (a deploy check runs before the database is reachable or migrated)
NO_SCHEMA_COMMANDS = frozenset({"check", "diffsettings", "collectstatic", "findstatic", "sendtestemail"})
MIGRATE_LOCK = "finops migrate"  # two commands starting together on a fresh database migrate it once


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finops.settings")
    from django.core.management import execute_from_command_line

    args = list(sys.argv if argv is None else argv)
    args[0] = "finops"
    command = args[1] if len(args) > 1 else None
    if args[1:3] == ["alerts", "listen"]:
        # a webhook receiver, as the receiving service would run it: it reads no database, so it starts
        # none (run in another terminal without FINOPS_DATA_DIR, it would start and migrate the default
        # folder's, which need not be the server's)
        from finops.alerts.listen import main as listen_main

        raise SystemExit(listen_main(args[3:]))
    if command == "up":
        # `up` applies --data-dir and checks its port before anything starts, then starts the server
        from finops.core.supervisor import up_environment_prepare

        up_environment_prepare(args[2:])
    elif command is not None and not NO_DATABASE_ARGS.intersection(args[1:]):
        database_prepare(command=command)
    execute_from_command_line(args)


def database_prepare(*, command: str) -> None:
    """Before `command` runs: the embedded server up when there is no DATABASE_URL (started before the
    settings are read, which find its socket in its data folder), then the schema current."""
    embedded_database = not os.environ.get("DATABASE_URL")
    if embedded_database:
        embedded.ensure_postgres()
    import django
    from django.core.management import get_commands

    django.setup()
    if command not in get_commands() or command in SCHEMA_COMMANDS | NO_SCHEMA_COMMANDS:
        return  # Django answers an unknown command itself
    migrations_apply(apply=embedded_database)


def migrations_apply(*, apply: bool) -> None:
    """Apply the migrations the database lacks, saying so in one line on stderr (stdout stays the
    command's). apply=False (a DATABASE_URL: a server finops does not own, whose schema its operator
    migrates with the release) stops with what to run instead of a traceback from a missing table."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [MIGRATE_LOCK])
        try:
            executor = MigrationExecutor(connection)
            missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if not missing:
                return
            if not apply:
                raise SystemExit(
                    f"finops: the database at DATABASE_URL lacks {len(missing)} migration(s) of this "
                    "version of finops; apply them first: finops migrate"
                )
            print(f"finops: preparing the database ({len(missing)} migrations)…", file=sys.stderr, flush=True)
            call_command("migrate", interactive=False, verbosity=0)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [MIGRATE_LOCK])


if __name__ == "__main__":
    main()
