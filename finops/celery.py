"""The Celery app. Queues by kind of work so deployment can scale each without a code change."""

from __future__ import annotations

import enum
import os
from pathlib import Path

from celery import Celery

from finops.scheduled import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finops.settings")


class CeleryQueue(enum.StrEnum):
    DEFAULT = "default"
    INGEST = "ingest"
    PRICING = "pricing"
    ALERTS = "alerts"


app = Celery("finops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()

BROKER_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


@app.on_after_configure.connect
def broker_folders_create(sender: Celery, source, **kwargs) -> None:
    """The local filesystem queue's folders, made when a process first reads Celery's settings (to send
    or take tasks) rather than when the settings are imported."""
    if source.broker_url != "filesystem://":
        return
    options = source.broker_transport_options or {}
    for name in BROKER_FOLDER_OPTIONS:
        if options.get(name):
            Path(options[name]).mkdir(parents=True, exist_ok=True)
