"""Worker entry point: `celery -A workers.celery_app worker` and `... beat`."""
import logging
import os

from celery.signals import worker_init

from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

# Import the task modules so the worker registers them, and the periodic schedule.
import pickup.tasks  # noqa: F401
import workers.tasks  # noqa: F401
from workers.schedule import BEAT_SCHEDULE

celery_app.conf.beat_schedule = BEAT_SCHEDULE
# A prefork child that grew past this (KiB) is replaced after its task: WeasyPrint does not give
# all of its memory back, so long-lived renderers would otherwise creep upwards.
celery_app.conf.worker_max_memory_per_child = int(os.environ.get("CELERY_MAX_MEMORY_PER_CHILD", "307200"))
app = celery_app

# WeasyPrint logs every layout step at INFO; the worker log should show tasks, not pages.
logging.getLogger("weasyprint").setLevel(logging.WARNING)
logging.getLogger("fontTools").setLevel(logging.WARNING)


@worker_init.connect
def _warm_up_pdf(**_kwargs) -> None:
    """WeasyPrint, fonts and document templates loaded before the pool processes are forked."""
    from app.pdf import warm_up

    warm_up(flask_app)
