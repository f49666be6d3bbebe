"""Fault tests with real celery worker processes, a real redis-server and a real SMTP server."""
from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.models import Document, FinalizeStep, OutboxMessage
from orders import close
from orders.models import Cycle
from tests.servers import RedisServer
from tests.workers.data import make_cycle
from tests.workers.harness import CeleryProcess, wait_until, worker_env

pytestmark = pytest.mark.celery

WORKER_ARGS = ["worker", "--pool=solo", "--loglevel=INFO", "--without-mingle", "--without-gossip",
               "--without-heartbeat"]


@pytest.fixture()
def redis_broker(app_config):
    """A redis-server the test app and the workers use as broker."""
    server = RedisServer().start()
    app_config.update(CELERY_BROKER_URL=server.url, CELERY_VISIBILITY_TIMEOUT=4)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture()
def processes(tmp_path):
    """Start celery processes; every one is stopped at the end, with its log shown on failure."""
    started: list[CeleryProcess] = []

    def start(env: dict, *args: str, name: str = "worker") -> CeleryProcess:
        process = CeleryProcess(env, list(args), tmp_path / f"{name}-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        print(f"----- {process.log.name}\n{process.output()[-4000:]}")


def _status(cycle_id: int) -> str:
    return db.session.scalar(sa.select(Cycle.status).where(Cycle.id == cycle_id))


def _all_sent(expected: int):
    def check():
        sent = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.status == "sent"))
        return sent == expected
    return check


def _assert_documents_once(app, cycle_id: int) -> None:
    """One row per (kind, chunk), one file per row, no temporary file left behind."""
    rows = db.session.scalars(sa.select(Document).where(Document.cycle_id == cycle_id)).all()
    assert len(rows) == len({(d.kind, d.chunk) for d in rows})
    folder = Path(app.config["DOCUMENTS_DIR"]) / f"cycle-{cycle_id}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(d.path).name for d in rows)
    steps = db.session.scalars(sa.select(FinalizeStep).where(FinalizeStep.cycle_id == cycle_id)).all()
    assert all(s.status == "done" for s in steps)
    assert {d.kind for d in rows} >= {"purchase_order", "purchase_order_csv", "bag_slips", "grid",
                                      "distribution_sheet"}


def test_same_cycle_finalized_twice_at_once(redis_broker, app, smtp_server, processes):
    app.config["DOCUMENT_CHUNK_HOUSEHOLDS"] = 3
    data = make_cycle(households=9, slots=2, producers=2)
    assert close.close_due_cycles() == [data.cycle_id]
    db.session.commit()
    env = worker_env(app, redis_broker.url, smtp_server.port)
    processes(env, *WORKER_ARGS, "-n", "one@%h")
    processes(env, *WORKER_ARGS, "-n", "two@%h")
    assert close.enqueue("finalize_cycle", data.cycle_id)
    assert close.enqueue("finalize_cycle", data.cycle_id)

    wait_until(lambda: _status(data.cycle_id) == "finalized", what="cycle finalized")
    wait_until(_all_sent(9 + 2), what="every e-mail sent")
    time.sleep(2)  # let any duplicate task finish: it must not add anything
    db.session.rollback()
    _assert_documents_once(app, data.cycle_id)
    received = Counter(m["To"] for m in smtp_server.messages)
    assert len(received) == 11 and set(received.values()) == {1}


def test_worker_killed_mid_finalize_then_restarted_finishes(redis_broker, app, smtp_server, processes):
    """SIGKILL during the chunks; the restarted worker, with beat as in production, finishes the cycle.

    The chunk the dead worker held comes back by late acknowledgement (visibility timeout). One
    case does not: kombu's Redis transport pops a message (BRPOP) before it records it as unacked,
    so a kill in between loses it, and this test kills right after a chunk is done, when the worker
    fetches the next one (about 1 run in 8). Beat's safety net (close.stalled_cycles) finalizes again
    a cycle without progress for FINALIZE_STALE_SECONDS, which re-sends the chunks still pending.
    """
    app.config["DOCUMENT_CHUNK_HOUSEHOLDS"] = 2
    data = make_cycle(households=24, slots=2, producers=2)
    close.close_due_cycles()
    db.session.commit()
    env = worker_env(app, redis_broker.url, smtp_server.port, FINALIZE_STALE_SECONDS=6)
    worker = processes(env, *WORKER_ARGS, "-n", "first@%h")
    close.enqueue("finalize_cycle", data.cycle_id)

    def some_chunks_done():
        return db.session.scalar(sa.select(sa.func.count()).select_from(FinalizeStep).where(
            FinalizeStep.cycle_id == data.cycle_id, FinalizeStep.name.like("chunk:%"),
            FinalizeStep.status == "done")) >= 2

    wait_until(some_chunks_done, interval=0.05, what="a few chunks rendered")
    worker.kill()
    db.session.rollback()
    assert _status(data.cycle_id) == "closed", "the worker finished before it could be killed"

    processes(env, *WORKER_ARGS, "-n", "second@%h")
    processes(env, "beat", "--loglevel=INFO", name="beat")
    wait_until(lambda: _status(data.cycle_id) == "finalized", timeout=240, what="cycle finalized after restart")
    wait_until(_all_sent(24 + 2), what="every e-mail sent")
    _assert_documents_once(app, data.cycle_id)
    received = Counter(m["To"] for m in smtp_server.messages)
    assert len(received) == 26 and set(received.values()) == {1}


def test_redis_outage_while_cycle_due_loses_nothing(redis_broker, app, smtp_server, processes):
    data = make_cycle(households=3, slots=1, producers=1, due=False)
    env = worker_env(app, redis_broker.url, smtp_server.port)
    processes(env, *WORKER_ARGS, "-n", "steady@%h")
    processes(env, "beat", "--loglevel=INFO", name="beat")
    time.sleep(3)
    redis_broker.stop()
    # The deadline passes while the broker is down.
    db.session.execute(sa.update(Cycle).where(Cycle.id == data.cycle_id)
                       .values(closes_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    time.sleep(4)
    db.session.rollback()
    # Finalizing needs the broker. Closing is a database step: a close_due_cycles task the worker got
    # just before the outage may still close the cycle (it happened on a loaded machine).
    assert _status(data.cycle_id) in ("open", "closed")
    redis_broker.start()
    wait_until(lambda: _status(data.cycle_id) == "finalized", timeout=240, what="cycle finalized after outage")
    wait_until(_all_sent(3 + 1), what="every e-mail sent")
    _assert_documents_once(app, data.cycle_id)


def test_embedded_filesystem_broker_closes_cycle_end_to_end(app, smtp_server, processes):
    data = make_cycle(households=3, slots=1, producers=1)
    env = worker_env(app, "filesystem://", smtp_server.port)
    processes(env, *WORKER_ARGS, "-B", "-n", "embedded@%h")
    wait_until(lambda: _status(data.cycle_id) == "finalized", timeout=240, what="cycle finalized")
    wait_until(_all_sent(3 + 1), what="every e-mail sent")
    _assert_documents_once(app, data.cycle_id)
    assert len(smtp_server.messages) == 4
