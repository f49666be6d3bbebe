"""Rate-limit counters in a small SQLite file, shared by every web process of one machine.

Flask-Limiter's `memory://` store keeps a counter per process: with gunicorn's two workers, ten
sign-in attempts became twenty. Redis is the store for several machines (RATELIMIT_STORAGE_URI);
on the embedded defaults the counters live in `instance/ratelimit.db` instead, through this store
for the `limits` library, registered under the `sqlite` scheme (`sqlite:////absolute/path.db`).
It serves the fixed-window strategy, Flask-Limiter's default, which is all the app uses.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time

from limits.storage import Storage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hit (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    expires_at REAL NOT NULL
)
"""


class SQLiteStorage(Storage):
    """Fixed-window counters: one row per key, gone once its window has passed."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        if not uri.startswith("sqlite:///"):
            raise ValueError(f"a rate-limit file is given as sqlite:///relative or sqlite:////absolute, not {uri!r}")
        self.path = uri[len("sqlite:///"):]  # as SQLAlchemy reads it: four slashes for an absolute path
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a forked worker opens its own)."""
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        self._local.held = (os.getpid(), conn)
        return conn

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to the key's counter, starting a window of `expiry` seconds if none runs."""
        now = time.time()
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM hit WHERE expires_at <= ?", (now,))
            count = conn.execute(
                "INSERT INTO hit (key, count, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET count = count + excluded.count RETURNING count",
                (key, amount, now + expiry)).fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    def get(self, key: str) -> int:
        """The key's count in its running window (0 when none runs)."""
        row = self._connection().execute(
            "SELECT count FROM hit WHERE key = ? AND expires_at > ?", (key, time.time())).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now when none runs)."""
        now = time.time()
        row = self._connection().execute(
            "SELECT expires_at FROM hit WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return row[0] if row else now

    def check(self) -> bool:
        """Whether the file can be read."""
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter; how many there were."""
        return self._connection().execute("DELETE FROM hit").rowcount

    def clear(self, key: str) -> None:
        """Forget one key's counter."""
        self._connection().execute("DELETE FROM hit WHERE key = ?", (key,))
