"""The e-mail outbox: messages are queued in the database and sent at most once per key.

Delivery rules (why they are what they are):

* ``queue_message`` is idempotent by ``key``: queuing twice returns the first row.
* ``deliver_pending`` claims a message with a guarded UPDATE (pending -> sending) and commits
  the claim before talking to the SMTP server, so two workers never send the same message.
* A message is marked ``sent`` only after the server accepted it. A refusal or a connection
  error puts it back to ``pending`` with an exponential backoff; after ``MAIL_MAX_ATTEMPTS``
  attempts it becomes ``failed`` and the coordinator sees it (with a retry button).
* A message found still ``sending`` after ``MAIL_SENDING_TIMEOUT`` seconds means a worker died
  between handing it to the server and recording the result: it MAY have been delivered.
  It is never resent blindly (that could send it twice): it becomes ``failed`` with an
  explanation, and the coordinator decides whether to send it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from kombu.exceptions import OperationalError
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.extensions import db
from app.models import Document, OutboxMessage

log = logging.getLogger("panier.outbox")

#: Shown to the coordinator when a worker died while a message was in the hands of the server.
INTERRUPTED_ERROR = (
    "Envoi interrompu : le message a peut-être été remis. Vérifiez auprès du destinataire "
    "avant de le renvoyer."
)


def site_link(endpoint: str, **values) -> str:
    """An absolute link for a mail, on BASE_URL (never the Host header), from a request or a worker."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["BASE_URL"].rstrip("/") + path


def _message_id(key: str) -> str:
    """A Message-ID derived from the key: a retry of the same message carries the same id."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@panier-commun>"


@dataclass(frozen=True)
class MessageSpec:
    """One e-mail to queue: what queue_message takes."""

    key: str
    recipient: str
    subject: str
    body: str
    kind: str
    cycle_id: int | None = None
    attachments: list[dict] | None = None


def queue_message(
    key: str,
    recipient: str,
    subject: str,
    body: str,
    *,
    kind: str,
    cycle_id: int | None = None,
    attachments: list[dict] | None = None,
) -> OutboxMessage:
    """Queue an e-mail once per key and return its row (the caller commits)."""
    existing = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.key == key))
    if existing is not None:
        return existing
    message = _pending_row(MessageSpec(key, recipient, subject, body, kind, cycle_id, attachments))
    try:
        # A savepoint: a concurrent writer of the same key must not undo the caller's other work.
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        existing = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.key == key))
        if existing is None:
            raise
        return existing
    return message


def queue_messages(specs: list[MessageSpec]) -> int:
    """Queue many e-mails once per key with one lookup and one flush; returns how many were new.

    For the hundreds of confirmations of a cycle. If a concurrent writer inserted one of the keys
    meanwhile, the batch falls back to queue_message one by one. The caller commits.
    """
    keys = [spec.key for spec in specs]
    existing = set(db.session.scalars(sa.select(OutboxMessage.key).where(OutboxMessage.key.in_(keys))))
    fresh = [spec for spec in specs if spec.key not in existing]
    try:
        with db.session.begin_nested():
            db.session.add_all(_pending_row(spec) for spec in fresh)
    except IntegrityError:
        for spec in fresh:
            queue_message(spec.key, spec.recipient, spec.subject, spec.body, kind=spec.kind,
                          cycle_id=spec.cycle_id, attachments=spec.attachments)
    return len(fresh)


def _pending_row(spec: MessageSpec) -> OutboxMessage:
    """The outbox row of an e-mail not sent yet."""
    return OutboxMessage(
        key=spec.key, recipient=spec.recipient, subject=spec.subject[:200], body=spec.body, kind=spec.kind,
        cycle_id=spec.cycle_id, attachments=json.dumps(spec.attachments) if spec.attachments else None,
        message_id=_message_id(spec.key), status="pending", attempts=0)


def request_delivery() -> bool:
    """Ask a worker to send pending messages now (call after commit); False if no broker answered."""
    try:
        current_app.extensions["celery"].send_task("workers.tasks.send_outbox")
        return True
    except (OperationalError, OSError) as exc:  # the broker may be down: beat sends the outbox every minute anyway
        log.warning("outbox: could not reach the broker to request delivery (%s)", exc)
        return False


def _config(name: str, default):
    """A mail setting from the app config, with a default."""
    value = current_app.config.get(name)
    return default if value is None else value


def build_email(message: OutboxMessage) -> EmailMessage:
    """The EmailMessage of an outbox row, with its attachments read from disk."""
    email = EmailMessage()
    sender = current_app.config["MAIL_SENDER"]
    email["From"] = sender
    email["To"] = message.recipient
    email["Subject"] = message.subject
    # Mail filters distrust a message without a Date or whose Message-ID names no real domain:
    # the sender's domain, else the site's host. The part before the @ is the row's, so a retry
    # of the same message keeps its id.
    email["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if "." not in domain:
        domain = urlsplit(current_app.config.get("BASE_URL") or "").hostname or domain or "localhost"
    local_part = message.message_id.strip("<>").partition("@")[0]
    email["Message-ID"] = f"<{local_part}@{domain}>"
    email.set_content(message.body)
    for item in json.loads(message.attachments or "[]"):
        if "document_id" in item:
            document = db.session.get(Document, item["document_id"])
            if document is None:
                raise FileNotFoundError(f"document {item['document_id']} is gone")
            path, filename, content_type = Path(document.path), document.filename, document.content_type
        else:
            path, filename = Path(item["path"]), item["filename"]
            content_type = item.get("content_type") or mimetypes.guess_type(filename)[0]
        maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
        email.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=filename)
    return email


def _send(email: EmailMessage, message: OutboxMessage) -> None:
    """Hand one e-mail to the configured transport; raises if it was not accepted."""
    if _config("MAIL_TRANSPORT", "smtp") == "file":
        folder = Path(current_app.config["INSTANCE_DIR"]) / "mail"
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", message.key)[:120]
        (folder / f"{message.id:06d}-{safe}.eml").write_bytes(email.as_bytes())
        return
    with smtplib.SMTP(
        current_app.config["MAIL_SERVER"],
        int(current_app.config["MAIL_PORT"]),
        timeout=float(_config("MAIL_TIMEOUT", 30)),
    ) as smtp:
        if current_app.config.get("MAIL_USE_TLS"):
            # smtplib's default context checks nothing: a man in the middle would read reset links.
            smtp.starttls(context=ssl.create_default_context())
        if current_app.config.get("MAIL_USERNAME"):
            smtp.login(current_app.config["MAIL_USERNAME"], current_app.config.get("MAIL_PASSWORD") or "")
        refused = smtp.send_message(email)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)


def backoff_seconds(attempts: int) -> int:
    """Delay before the next attempt: base, 2 x base, 4 x base ... capped at six hours."""
    base = int(_config("MAIL_RETRY_BASE_SECONDS", 60))
    return min(base * 2 ** max(attempts - 1, 0), 6 * 3600)


def release_interrupted(now: datetime | None = None) -> int:
    """Mark messages stuck in "sending" past the timeout as failed for the coordinator to check."""
    now = now or utcnow()
    timeout = int(_config("MAIL_SENDING_TIMEOUT", 600))
    result = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - timedelta(seconds=timeout))
        .values(status="failed", last_error=INTERRUPTED_ERROR)
    )
    db.session.commit()
    if result.rowcount:
        log.error("outbox: %d message(s) interrupted while sending, left for the coordinator", result.rowcount)
    return result.rowcount


def deliver_pending(limit: int | None = None, now: datetime | None = None) -> int:
    """Send due pending messages; returns how many the server accepted.

    It commits itself, message by message: the claim must be durable before the server
    is contacted, and the result recorded right after.
    """
    now = now or utcnow()
    release_interrupted(now)
    query = (
        sa.select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            sa.or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        )
        .order_by(OutboxMessage.id)
    )
    if limit is not None:
        query = query.limit(limit)
    ids = list(db.session.scalars(query))
    db.session.commit()
    sent = 0
    for message_id in ids:
        if deliver_one(message_id, now=now):
            sent += 1
    return sent


def deliver_one(message_id: int, now: datetime | None = None) -> bool:
    """Claim, send and record one message; False if another worker had it or sending failed."""
    now = now or utcnow()
    claimed = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending")
        .values(status="sending", claimed_at=utcnow(), attempts=OutboxMessage.attempts + 1)
    ).rowcount
    db.session.commit()
    if not claimed:
        return False
    message = db.session.get(OutboxMessage, message_id)
    try:
        email = build_email(message)
        _send(email, message)
    except (smtplib.SMTPException, OSError) as exc:
        _record_failure(message, exc, now)
        return False
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "sending")
        .values(status="sent", sent_at=utcnow(), last_error=None, next_attempt_at=None)
    )
    db.session.commit()
    log.info("outbox: sent %s to %s", message.key, message.recipient)
    return True


def _record_failure(message: OutboxMessage, exc: Exception, now: datetime) -> None:
    """Back to pending with a backoff, or failed after the last attempt."""
    attempts = message.attempts
    max_attempts = int(_config("MAIL_MAX_ATTEMPTS", 5))
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if attempts >= max_attempts:
        values = {"status": "failed", "last_error": error, "next_attempt_at": None}
        log.error("outbox: giving up on %s to %s after %d attempts: %s",
                  message.key, message.recipient, attempts, error)
    else:
        retry_at = now + timedelta(seconds=backoff_seconds(attempts))
        values = {"status": "pending", "last_error": error, "next_attempt_at": retry_at}
        log.warning("outbox: sending %s to %s failed (attempt %d), retry at %s: %s",
                    message.key, message.recipient, attempts, retry_at.isoformat(), error)
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.status == "sending")
        .values(**values)
    )
    db.session.commit()


def retry_message(message_id: int) -> bool:
    """A coordinator sends a failed message again (attempts reset); False if it was not failed."""
    result = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=None, claimed_at=None)
    )
    return bool(result.rowcount)


def problem_messages(cycle_id: int | None = None, limit: int = 200) -> list[OutboxMessage]:
    """Messages not sent yet or given up on, oldest first, for the coordinator's page."""
    query = sa.select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending", "failed")))
    if cycle_id is not None:
        query = query.where(OutboxMessage.cycle_id == cycle_id)
    return list(db.session.scalars(query.order_by(OutboxMessage.status, OutboxMessage.id).limit(limit)))
