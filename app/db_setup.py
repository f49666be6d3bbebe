"""Engine settings per database: SQLite in WAL mode with foreign keys, and writers that take turns."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask

from app.extensions import db


class WriterQueue:
    """Writers to one SQLite file wait their turn on an flock'ed file next to it.

    Every transaction here begins with BEGIN IMMEDIATE, which takes SQLite's write lock. A process
    that finds it taken is put to sleep by SQLite's busy handler for 1, 2, 5, 10, 15... ms between
    tries, whatever the holder does: with two web workers saving orders, a third of the CPU sat
    idle while the lock was free. A blocking flock wakes the next writer as soon as the last one
    commits. Threads of one process queue on a thread lock first, since an flock is held by the open
    file, not by a thread. The kernel drops the flock of a process that dies.

    Anything that bypasses the queue (the sqlite3 shell, a thread that already holds the turn and
    opens a second connection) still meets SQLite's busy timeout, as before.
    """

    #: Seconds a thread waits for another thread of its own process before falling back on SQLite's
    #: busy handler (SQLite's busy timeout is 30 s too).
    THREAD_WAIT = 30.0

    def __init__(self, path: str):
        self.path = path
        self._reset()

    def _reset(self) -> None:
        """State of this process (a forked child starts afresh: the parent's flock is not its own)."""
        self._pid = os.getpid()
        self._threads = threading.Lock()
        self._file: int | None = None
        self._holder: sqlite3.Connection | None = None
        self._holder_thread: int | None = None

    def take(self, connection: sqlite3.Connection) -> None:
        """Wait for this connection's turn to write (nothing to do if it already has it)."""
        if self._pid != os.getpid():
            if self._file is not None:
                # The parent's open file: kept open here, it would keep the parent's flock alive
                # after the parent dies.
                os.close(self._file)
            self._reset()
        if self._holder is connection or self._holder_thread == threading.get_ident():
            return
        if not self._threads.acquire(timeout=self.THREAD_WAIT):
            return
        try:
            if self._file is None:
                self._file = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._holder, self._holder_thread = connection, threading.get_ident()

    def give_back(self, connection: sqlite3.Connection) -> None:
        """End this connection's turn, if it has one."""
        if self._holder is not connection or self._pid != os.getpid():
            return
        self._holder = self._holder_thread = None
        try:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _ends_turn(method):
    """A sqlite3.Connection method that ends the transaction, then gives the writer's turn back."""
    def ending(self: QueuedConnection) -> None:
        try:
            method(self)
        finally:
            if self.writer_queue is not None:
                self.writer_queue.give_back(self)

    ending.__name__ = method.__name__
    return ending


class QueuedConnection(sqlite3.Connection):
    """A sqlite3 connection that gives its writer's turn back when its transaction ends."""

    writer_queue: WriterQueue | None = None

    commit = _ends_turn(sqlite3.Connection.commit)
    rollback = _ends_turn(sqlite3.Connection.rollback)
    close = _ends_turn(sqlite3.Connection.close)


_QUEUES: dict[str, WriterQueue] = {}
_QUEUES_LOCK = threading.Lock()


def queue_for(database: str) -> WriterQueue:
    """The queue of one database file, shared by every engine of this process that opens it."""
    path = os.path.abspath(database) + "-writers"
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(path, WriterQueue(path))


def _sqlite_file(url: sa.URL) -> str | None:
    """The database file of a SQLite URL, or None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def prepare_engine_options(app: Flask) -> None:
    """Engine options that must exist before the engine: the queued connection class on SQLite files.

    Pinging each checked-out connection only makes sense over a network, so SQLite skips it.
    """
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.get_backend_name() == "sqlite":
        options["pool_pre_ping"] = False
    if _sqlite_file(url) is not None:
        options["connect_args"] = {**options.get("connect_args", {}), "factory": QueuedConnection}
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def configure_engine(app: Flask) -> None:
    """Turn on WAL, foreign keys and a busy timeout for every SQLite connection."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite":
        return
    path = _sqlite_file(engine.url)
    queue = queue_for(path) if path is not None else None

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        """SQLite: enforce foreign keys, wait for locks, write-ahead log."""
        # Let SQLAlchemy issue BEGIN itself so BEGIN IMMEDIATE can be used for writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if path is not None:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        if isinstance(dbapi_connection, QueuedConnection):
            dbapi_connection.writer_queue = queue

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        """Wait for the writer's turn, then take the write lock at BEGIN."""
        if conn.get_execution_options().get(_NO_TRANSACTION):
            return  # each statement is its own read (read_connection)
        dbapi_connection = conn.connection.dbapi_connection
        if queue is not None and isinstance(dbapi_connection, QueuedConnection):
            queue.take(dbapi_connection)
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                queue.give_back(dbapi_connection)
                raise
        else:
            dbapi_connection.execute("BEGIN IMMEDIATE")


#: Execution option of the connections read_connection hands out on SQLite.
_NO_TRANSACTION = "panier_no_transaction"


@contextmanager
def read_connection() -> Iterator[sa.Connection]:
    """A connection for a few reads that need no transaction of their own, such as who is signed in.

    On SQLite each statement then runs as its own read, which takes no write lock: a request's
    first read no longer holds every other writer back, nor does the request need to commit
    before it writes. On PostgreSQL, where reads lock nothing, it is the session's connection.
    """
    engine = db.engine
    if engine.dialect.name != "sqlite":
        yield db.session.connection()
        return
    with engine.connect() as conn:
        yield conn.execution_options(**{_NO_TRANSACTION: True})
