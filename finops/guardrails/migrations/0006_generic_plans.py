"""The guard check's functions keep one generic plan per statement for the session, never re-planning.

Under PostgreSQL's default (plan_cache_mode = auto) a plpgsql statement with parameters is planned
afresh for its first five runs and then whenever the generic plan looks dearer than the custom ones
had; with enable_seqscan off (0004, 0005) a generic plan's estimate can stay dearer, so every guard
check planned its statements again: planning was the largest share of the check's database CPU (perf on
a backend: copyObject, expression walkers, eval_const_expressions). Forced generic plans cut a check
from about 700 to about 310 µs of backend CPU (one connection, 5,000 checks). Every statement of these
functions is a probe of a unique or partial index by its leading columns, which a generic plan serves
as well as a custom one."""

from django.db import migrations

FUNCTIONS = (
    "guardrails_guard",
    "guardrails_release(bigint[], timestamptz)",
    "guardrails_reserved_add(bigint, numeric, numeric)",
    "guardrails_reservation_held()",
)

FORWARD = "".join(f"ALTER FUNCTION {function} SET plan_cache_mode = force_generic_plan;\n" for function in FUNCTIONS)
BACKWARD = "".join(f"ALTER FUNCTION {function} RESET plan_cache_mode;\n" for function in FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0005_reserved_totals_log")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
