"""Real celery worker and beat processes for fault tests, sharing the test database and folders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.extensions import db

ROOT = Path(__file__).resolve().parents[2]


def worker_env(app, broker_url: str, smtp_port: int | None = None, **extra) -> dict:
    """Environment that points a worker at the test's database, folders, broker and SMTP server."""
    env = dict(os.environ)
    env.update({
        "PANIER_CONFIG": "production",
        "SECRET_KEY": "celery-test-secret",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "PANIER_INSTANCE": app.config["INSTANCE_DIR"],
        "DOCUMENTS_DIR": app.config["DOCUMENTS_DIR"],
        "CELERY_BROKER_URL": broker_url,
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "CELERY_RESTORE_INTERVAL": "1",
        "CELERY_POLLING_INTERVAL": "0.05",
        "DOCUMENT_CHUNK_HOUSEHOLDS": str(app.config.get("DOCUMENT_CHUNK_HOUSEHOLDS", 100)),
        "MAIL_TRANSPORT": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_port or 9),
        "PANIER_BEAT_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class CeleryProcess:
    """`celery -A workers.celery_app worker|beat` in its own process group, with a log file."""

    def __init__(self, env: dict, args: list[str], log: Path) -> None:
        self.env, self.args, self.log = env, args, log
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryProcess:
        """Start the process (its own session so its children can be signalled together)."""
        out = open(self.log, "ab")  # noqa: SIM115 - kept open for the process' lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", *self.args],
            cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to acknowledge or clean up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL if it lingers."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            try:  # children of a prefork pool may outlive the parent briefly
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def output(self) -> str:
        """What the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_until(predicate, timeout: float = 120.0, interval: float = 0.2, what: str = "condition"):
    """Poll a database predicate, ending each read transaction so the worker can write (SQLite)."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        db.session.expire_all()
        value = predicate()
        db.session.rollback()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
