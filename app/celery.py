"""Celery bound to the Flask app: tasks run inside the app context (Flask's Celery pattern)."""
from __future__ import annotations

import os
from pathlib import Path

from celery import Celery, Task
from flask import Flask, has_app_context

from app.celery_fs import use_for_filesystem_urls
from config import filesystem_broker_options


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app from the Flask config and store it in app.extensions["celery"]."""

    class FlaskTask(Task):
        """Runs the task inside the app context, reusing one that is already active."""

        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    broker_url = app.config["CELERY_BROKER_URL"]
    transport_options: dict = {}
    if broker_url.startswith("filesystem://"):
        use_for_filesystem_urls()  # Kombu's own transport can hand a worker a half-written message
        instance = Path(app.config["INSTANCE_DIR"])
        transport_options = filesystem_broker_options(instance)
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            Path(transport_options[key]).mkdir(parents=True, exist_ok=True)
    elif broker_url.startswith("redis://"):
        # A task not acknowledged within this delay is delivered again (worker killed mid-task).
        # CELERY_VISIBILITY_TIMEOUT (seconds) is short in the fault tests.
        transport_options = {"visibility_timeout": int(
            app.config.get("CELERY_VISIBILITY_TIMEOUT") or os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
        # How often a worker looks for such messages (kombu: every 10 s x 10 by default).
        restore = app.config.get("CELERY_RESTORE_INTERVAL") or os.environ.get("CELERY_RESTORE_INTERVAL")
        if restore:
            transport_options.update(unacked_restore_interval=int(restore), unacked_restore_throttle=1)
        # The restore sweep runs under a Redis lock that a worker killed mid-sweep keeps until it
        # expires (kombu: 300 s), and no message is restored meanwhile. A sweep takes milliseconds.
        transport_options["unacked_mutex_expire"] = max(5, 5 * int(restore)) if restore else 60

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=broker_url,
        result_backend=app.config.get("CELERY_RESULT_BACKEND"),
        task_ignore_result=True,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # Acknowledge after the task ran, so a killed worker's task is delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="UTC",
        enable_utc=True,
        beat_schedule_filename=str(Path(app.config["INSTANCE_DIR"]) / "celerybeat-schedule"),
        task_always_eager=app.config.get("CELERY_TASK_ALWAYS_EAGER", False),
        task_eager_propagates=True,
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
