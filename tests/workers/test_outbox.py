"""The outbox sends each message once per key, retries refusals with backoff, never resends blindly."""
from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from app import outbox
from app.db import utcnow
from app.extensions import db
from app.models import Document, OutboxMessage
from tests.servers import free_port


def _queue(key="cycle:1:household:1:confirmation", recipient="foyer@example.org", **kwargs):
    message = outbox.queue_message(key, recipient, "Votre commande", "Bonjour,\nvotre panier est prêt.",
                                   kind="confirmation", **kwargs)
    db.session.commit()
    return message


def test_queue_is_idempotent_and_sends_once(app, smtp_server):
    first = _queue()
    second = _queue()
    assert first.id == second.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1

    assert outbox.deliver_pending() == 1
    assert outbox.deliver_pending() == 0
    assert len(smtp_server.to("foyer@example.org")) == 1
    received = smtp_server.messages[0]
    assert received["Subject"] == "Votre commande"
    assert "votre panier est prêt" in received.get_content()
    row = db.session.get(OutboxMessage, first.id)
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 1


def test_attachments_come_from_document_rows(app, smtp_server, tmp_path):
    pdf = tmp_path / "bon.pdf"
    pdf.write_bytes(b"%PDF-1.7 fake but bytes")
    document = Document(cycle_id=None, kind="purchase_order", audience="producer:1", chunk="producer:1",
                        filename="bon-de-commande.pdf", path=str(pdf), checksum="x" * 64)
    # The document table wants a cycle: make one the cheap way.
    from tests.factories import CycleFactory
    document.cycle_id = CycleFactory().id
    db.session.add(document)
    db.session.flush()
    _queue(key="po", recipient="ferme@example.org", attachments=[{"document_id": document.id}])
    assert outbox.deliver_pending() == 1
    received = smtp_server.to("ferme@example.org")[0]
    attachments = list(received.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["bon-de-commande.pdf"]
    assert attachments[0].get_content() == b"%PDF-1.7 fake but bytes"


def test_refusal_backs_off_then_fails_then_coordinator_retries(app, smtp_server):
    app.config.update(MAIL_MAX_ATTEMPTS=3, MAIL_RETRY_BASE_SECONDS=60)
    smtp_server.refuse = "550 Mailbox unavailable"
    message = _queue()
    start = utcnow()

    assert outbox.deliver_pending(now=start) == 0
    row = db.session.get(OutboxMessage, message.id)
    assert row.status == "pending" and row.attempts == 1
    assert "550" in row.last_error
    first_delay = row.next_attempt_at - start
    assert timedelta(seconds=59) <= first_delay <= timedelta(seconds=70)

    # Not due yet: nothing is attempted.
    assert outbox.deliver_pending(now=start) == 0
    assert db.session.get(OutboxMessage, message.id).attempts == 1

    later = start + timedelta(minutes=2)
    outbox.deliver_pending(now=later)
    row = db.session.get(OutboxMessage, message.id)
    assert row.attempts == 2
    assert row.next_attempt_at - later >= timedelta(seconds=119)  # doubled

    outbox.deliver_pending(now=later + timedelta(minutes=10))
    row = db.session.get(OutboxMessage, message.id)
    assert row.status == "failed" and row.attempts == 3
    assert outbox.problem_messages() == [row]
    assert smtp_server.messages == []

    smtp_server.refuse = None
    assert outbox.retry_message(message.id)
    db.session.commit()
    assert outbox.deliver_pending() == 1
    assert len(smtp_server.messages) == 1
    assert db.session.get(OutboxMessage, message.id).status == "sent"


def test_connection_error_is_retried_later(app):
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_TIMEOUT=2)
    message = _queue()
    assert outbox.deliver_pending() == 0
    row = db.session.get(OutboxMessage, message.id)
    assert row.status == "pending" and row.next_attempt_at is not None
    assert "Connection" in row.last_error or "refused" in row.last_error.lower()


def test_message_stuck_in_sending_is_not_resent(app, smtp_server):
    message = _queue()
    # A worker claimed it, handed it over, and was killed before recording the result.
    db.session.execute(sa.update(OutboxMessage).values(status="sending", attempts=1,
                                                      claimed_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    assert outbox.deliver_pending() == 0
    assert smtp_server.messages == []
    row = db.session.get(OutboxMessage, message.id)
    assert row.status == "failed"
    assert "peut-être été remis" in row.last_error


def test_recent_sending_message_is_left_alone(app, smtp_server):
    message = _queue()
    db.session.execute(sa.update(OutboxMessage).values(status="sending", attempts=1, claimed_at=utcnow()))
    db.session.commit()
    assert outbox.deliver_pending() == 0
    assert db.session.get(OutboxMessage, message.id).status == "sending"
    assert smtp_server.messages == []


def test_two_workers_at_once_send_each_message_once(app, smtp_server):
    for n in range(20):
        _queue(key=f"k{n}", recipient=f"foyer{n}@example.org")
    results = []

    def worker():
        with app.app_context():
            results.append(outbox.deliver_pending())
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 20
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(f"foyer{n}@example.org" for n in range(20))


def test_file_transport_writes_eml(app):
    app.config.update(MAIL_TRANSPORT="file")
    _queue()
    assert outbox.deliver_pending() == 1
    from pathlib import Path
    files = list((Path(app.config["INSTANCE_DIR"]) / "mail").glob("*.eml"))
    assert len(files) == 1 and b"Votre commande" in files[0].read_bytes()
