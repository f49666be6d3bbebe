"""Engine settings per database: SQLite in WAL mode with foreign keys and a busy timeout."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from app.extensions import db


def configure_engine(app: Flask) -> None:
    """Turn on WAL, foreign keys and a busy timeout for every SQLite connection."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        """SQLite: enforce foreign keys, wait for locks, write-ahead log."""
        # Let SQLAlchemy issue BEGIN itself so BEGIN IMMEDIATE can be used for writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        """Take the write lock at BEGIN so concurrent writers queue instead of failing."""
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def end_read_before_write() -> None:
    """End the transaction that has only read so far, on SQLite; nothing to do on PostgreSQL.

    SQLite takes its write lock at BEGIN (above), so a request that read the signed-in user would
    hold it while it parses its form; committing there lets the write that follows take the lock for
    its own statements only. PostgreSQL locks rows, not the database: the round trips are saved.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.commit()
