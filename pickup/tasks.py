"""Celery tasks of the rota: reminders two days before, alerts three days before (safe to run twice)."""
from __future__ import annotations

from datetime import date

from celery import shared_task

from app.extensions import db


def _day(today: str | date | None) -> date | None:
    """Tasks take the day as an ISO string (JSON-friendly); None means today at the café."""
    if today is None or isinstance(today, date):
        return today
    return date.fromisoformat(today)


@shared_task(name="pickup.tasks.send_rota_reminders")
def send_rota_reminders(today: str | None = None) -> int:
    """Queue the e-mail reminders of the distribution in two days, then ask for delivery."""
    from app.outbox import request_delivery
    from pickup import services

    queued = services.send_rota_reminders(_day(today))
    db.session.commit()
    if queued:
        request_delivery()
    return queued


@shared_task(name="pickup.tasks.send_rota_alerts")
def send_rota_alerts(today: str | None = None) -> int:
    """Queue the alerts for roles still empty three days before, then ask for delivery."""
    from app.outbox import request_delivery
    from pickup import services

    queued = services.send_rota_alerts(_day(today))
    db.session.commit()
    if queued:
        request_delivery()
    return queued
