"""Reads of the alerts."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from finops.accounts.selectors import Principal
from finops.alerts.models import AlertChannel, DeliveryStatus

# --- channel health (finops/alerts/delivery.py keeps it) -------------------------------------------------


def channels_failing(*, principal: Principal) -> QuerySet[AlertChannel]:
    """The channels the principal may see whose latest delivery attempt failed (consecutive_failures is
    reset by a success), newest failure first, each with `last_error`, `last_failure_at` and the count of
    its deliveries still retrying (`deliveries_retrying`) and given up (`deliveries_failed`): what the
    alerts page shows so that an alert nobody received is not mistaken for a quiet night."""
    return (
        AlertChannel.objects.restrict(principal, "view")
        .filter(consecutive_failures__gte=1)
        .select_related("team")
        .annotate(
            deliveries_retrying=Count(
                "deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING, deliveries__attempts__gte=1)
            ),
            deliveries_failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
        )
        .order_by("-last_failure_at", "-id")
    )


# --- end of channel health -------------------------------------------------------------------------------
