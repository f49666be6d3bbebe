"""SQLite writers take turns through the flock'ed file next to the database (app.db_setup.WriterQueue)."""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from config import TestConfig

pytestmark = pytest.mark.skipif(os.environ.get("PANIER_TEST_DB") == "postgresql", reason="SQLite only")

COUNTER = sa.table("counter", sa.column("id", sa.Integer), sa.column("n", sa.Integer))


@pytest.fixture()
def sqlite_app(tmp_path):
    """An app on its own SQLite file with one counter row."""
    path = tmp_path / "writers.db"
    application = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}", INSTANCE_DIR=str(tmp_path))
    with application.app_context():
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
        yield application, str(path) + "-writers"
        db.session.remove()
        db.engine.dispose()


def _turn_is_free(lock_path: str) -> bool:
    """Whether another open file could take the writers' flock right now."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _increment(times: int) -> None:
    """Read the counter and write it back plus one, in one transaction, `times` times."""
    for _ in range(times):
        with db.engine.begin() as conn:
            n = conn.execute(sa.select(COUNTER.c.n).where(COUNTER.c.id == 1)).scalar_one()
            conn.execute(COUNTER.update().where(COUNTER.c.id == 1).values(n=n + 1))


def test_a_transaction_holds_the_turn_until_commit_or_rollback(sqlite_app):
    _app, lock_path = sqlite_app
    db.session.execute(sa.select(COUNTER.c.n))
    assert not _turn_is_free(lock_path)
    db.session.commit()
    assert _turn_is_free(lock_path)

    db.session.execute(COUNTER.update().values(n=5))
    assert not _turn_is_free(lock_path)
    db.session.rollback()
    assert _turn_is_free(lock_path)
    assert db.session.execute(sa.select(COUNTER.c.n)).scalar_one() == 0
    db.session.close()
    assert _turn_is_free(lock_path)


def _child(url: str, instance: str, times: int) -> None:
    """A separate process (forked after the parent used the queue) that increments the counter."""
    application = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=url, INSTANCE_DIR=instance)
    with application.app_context():
        _increment(times)
        db.engine.dispose()


def test_processes_and_threads_take_turns_without_losing_a_write(sqlite_app, tmp_path):
    application, _lock_path = sqlite_app
    _increment(1)  # the parent has used (and given back) the turn before forking
    url = application.config["SQLALCHEMY_DATABASE_URI"]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_child, args=(url, str(tmp_path), 100)) for _ in range(3)]
    for process in processes:
        process.start()

    def in_thread():
        with application.app_context():
            _increment(100)

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    db.session.remove()
    assert db.session.execute(sa.select(COUNTER.c.n)).scalar_one() == 1 + 300 + 200


def test_reads_outside_a_transaction_leave_the_turn_free(sqlite_app):
    from app.db_setup import read_connection

    _app, lock_path = sqlite_app
    with read_connection() as conn:
        assert conn.execute(sa.select(COUNTER.c.n)).scalar_one() == 0
        assert _turn_is_free(lock_path)
        assert not conn.connection.dbapi_connection.in_transaction
    db.session.execute(sa.select(COUNTER.c.n))
    assert not _turn_is_free(lock_path)
    db.session.rollback()
