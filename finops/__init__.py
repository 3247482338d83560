"""finops: FinOps for LLM token spend."""

from finops.celery import app as celery_app

__all__ = ["celery_app"]
