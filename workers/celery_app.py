"""Worker entry point: `celery -A workers.celery_app worker` and `... beat`."""
import logging

from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

# Import the task modules so the worker registers them, and the periodic schedule.
import pickup.tasks  # noqa: F401
import workers.tasks  # noqa: F401
from workers.schedule import BEAT_SCHEDULE

celery_app.conf.beat_schedule = BEAT_SCHEDULE
app = celery_app

# WeasyPrint logs every layout step at INFO; the worker log should show tasks, not pages.
logging.getLogger("weasyprint").setLevel(logging.WARNING)
logging.getLogger("fontTools").setLevel(logging.WARNING)
