"""Worker jobs of ingest. Thin: arguments are ids, the work is in ingest.imports."""

from __future__ import annotations

from celery import shared_task

from ingest.imports import import_job_run


@shared_task(
    name="ingest.tasks.import_file",
    acks_late=True,  # importing a file again changes nothing: rows are idempotent on event_id
)
def import_file(job_id: int) -> str:
    """Enqueued on the ingest queue (CeleryQueue.INGEST) by ingest.views. Import an uploaded file (ImportJob job_id); the job row carries the progress and the outcome."""
    return import_job_run(job_id=job_id).status
