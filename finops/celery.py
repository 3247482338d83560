"""The Celery app. Queues by kind of work so deployment can scale each without a code change."""

from __future__ import annotations

import enum
import os

from celery import Celery

from finops.scheduled import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finops.settings")


class CeleryQueue(enum.StrEnum):
    DEFAULT = "default"
    INGEST = "ingest"
    PRICING = "pricing"


app = Celery("finops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()
