"""Flask's Celery pattern: tasks run inside the app context, reusing an active one."""
from __future__ import annotations

import threading

import sqlalchemy as sa

from app.extensions import db
from app.models import Household
from tests.factories import HouseholdFactory


def _count_task(app):
    """A task that counts households through the app's session."""
    celery = app.extensions["celery"]

    @celery.task(name="tests.count_households")
    def count_households() -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(Household))

    return count_households


def test_task_called_inside_a_request_shares_its_session(app):
    task = _count_task(app)
    HouseholdFactory()  # flushed, not committed: only this session sees it
    assert task.apply().get() == 1


def test_task_outside_any_context_gets_its_own(app):
    task = _count_task(app)
    HouseholdFactory()
    db.session.commit()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("n", task.apply().get()))
    thread.start()
    thread.join(timeout=30)
    assert result == {"n": 1}

