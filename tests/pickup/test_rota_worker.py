"""The rota reminder through a real celery worker, a real redis-server and a real SMTP server."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage
from pickup.services import sign_up
from tests.factories import UserFactory
from tests.pickup.test_rota import _cycle_in, _role
from tests.workers.conftest import smtp_server  # noqa: F401 - fixture
from tests.workers.harness import wait_until, worker_env
from tests.workers.test_celery_faults import WORKER_ARGS, processes, redis_broker  # noqa: F401 - fixtures

pytestmark = pytest.mark.celery


def _sent() -> int:
    return db.session.scalar(sa.select(sa.func.count(OutboxMessage.id)).where(OutboxMessage.status == "sent"))


def test_worker_sends_the_reminder_once(redis_broker, app, smtp_server, processes):  # noqa: F811
    cycle = _cycle_in(2)
    paul = UserFactory(email="paul@example.org", name="Paul", roles=["volunteer"])
    sign_up(_role(cycle, "desk").id, paul.id)
    db.session.commit()
    worker = processes(worker_env(app, redis_broker.url, smtp_server.port), *WORKER_ARGS)

    def done(task: str) -> int:
        """How many runs of a task the worker finished, from its log."""
        return sum(1 for line in worker.output().splitlines() if task in line and "succeeded" in line)

    celery = app.extensions["celery"]
    celery.send_task("pickup.tasks.send_rota_reminders")
    wait_until(lambda: _sent() == 1, what="the reminder sent")
    # Beat fires again (or a worker retries): the same outbox key, no second e-mail.
    celery.send_task("pickup.tasks.send_rota_reminders")
    wait_until(lambda: done("pickup.tasks.send_rota_reminders") == 2, what="the second reminder run")
    outbox_runs = done("workers.tasks.send_outbox")
    celery.send_task("workers.tasks.send_outbox")
    wait_until(lambda: done("workers.tasks.send_outbox") > outbox_runs, what="the outbox run after it")
    assert db.session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 1
    received = smtp_server.to("paul@example.org")
    assert len(received) == 1
    assert received[0]["Subject"] == "Rappel : votre permanence de jeudi"
    assert "Accueil et caisse" in received[0].get_content()
