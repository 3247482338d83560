"""guardrails_release reads the held reservations through their partial indexes, never a sequential
scan. Its statements' plans are cached for the session as generic plans, and with many reservations
the planner took `allowance_id = ANY (p_ids) AND expires_at <= p_now` for a large share of the table:
every guard check then read the whole reservations table (10 ms at 70k rows, growing with them), while
the rows it releases are the few that expired since the last check. Found by bench/guard.py."""

from django.db import migrations

FORWARD = "ALTER FUNCTION guardrails_release(bigint[], timestamptz) SET enable_seqscan = off;"
BACKWARD = "ALTER FUNCTION guardrails_release(bigint[], timestamptz) RESET enable_seqscan;"


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0003_reservations_held")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
