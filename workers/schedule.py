"""The periodic schedule run by Celery beat."""
import os

from celery.schedules import crontab

#: Seconds between runs of the minute jobs; tests shorten it with PANIER_BEAT_SECONDS.
EVERY = float(os.environ.get("PANIER_BEAT_SECONDS", "60"))

BEAT_SCHEDULE: dict = {
    "close-due-cycles": {"task": "workers.tasks.close_due_cycles", "schedule": EVERY},
    "send-outbox": {"task": "workers.tasks.send_outbox", "schedule": EVERY},
    "open-due-cycles": {"task": "workers.tasks.open_due_cycles", "schedule": EVERY},
    "generate-cycles": {"task": "workers.tasks.generate_cycles", "schedule": crontab(minute=7)},
    # Rota e-mails once a day in the morning (UTC; 8:00 or 9:00 at the café); outbox keys make reruns harmless.
    "rota-reminders": {"task": "pickup.tasks.send_rota_reminders", "schedule": crontab(hour=7, minute=30)},
    "rota-alerts": {"task": "pickup.tasks.send_rota_alerts", "schedule": crontab(hour=7, minute=35)},
}
