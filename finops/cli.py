"""The `finops` console script: every subcommand is a Django management command (see SPEC.md)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finops.settings")
    from django.core.management import execute_from_command_line

    args = list(sys.argv if argv is None else argv)
    args[0] = "finops"
    if args[1:2] == ["up"]:
        # settings read FINOPS_DATA_DIR and start the embedded server at import: `up` goes first
        from finops.core.supervisor import up_environment_prepare

        up_environment_prepare(args[2:])
    execute_from_command_line(args)


if __name__ == "__main__":
    main()
