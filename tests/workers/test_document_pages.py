"""Who downloads which document, the coordinator's pipeline page, reprocess and retry, the CLI."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Document, OutboxMessage
from orders import close
from orders.models import Cycle
from tests.factories import UserFactory
from tests.helpers import csrf_token, login
from tests.workers.data import make_cycle


def _finalized(**kwargs):
    data = make_cycle(**kwargs)
    close.close_due_cycles()
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    return data


def _doc(kind, chunk=None):
    query = sa.select(Document).where(Document.kind == kind)
    if chunk:
        query = query.where(Document.chunk == chunk)
    return db.session.scalars(query).first()


def test_producer_downloads_only_its_purchase_order(app, client):
    data = _finalized(producers=2)
    user = UserFactory(roles=["producer"], producer_id=data.producer_ids[0])
    db.session.commit()
    login(client, user.email)
    own = _doc("purchase_order", f"producer:{data.producer_ids[0]}")
    other = _doc("purchase_order", f"producer:{data.producer_ids[1]}")
    response = client.get(f"/commandes/documents/{own.id}")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert client.get(f"/commandes/documents/{other.id}").status_code == 404
    assert client.get(f"/commandes/documents/{_doc('bag_slips').id}").status_code == 404
    page = client.get("/commandes/documents").get_data(as_text=True)
    assert own.filename in page and other.filename not in page


def test_volunteer_reads_lists_of_current_distribution_not_purchase_orders(app, client):
    data = _finalized()
    user = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, user.email)
    slips = _doc("bag_slips")
    assert client.get(f"/commandes/documents/{slips.id}").status_code == 200
    assert client.get(f"/commandes/documents/{_doc('distribution_sheet').id}").status_code == 200
    assert client.get(f"/commandes/documents/{_doc('purchase_order').id}").status_code == 404
    page = client.get(f"/commandes/cycles/{data.cycle_id}/documents").get_data(as_text=True)
    assert slips.filename in page and "Relancer" not in page


def test_member_cannot_open_documents(app, client):
    _finalized()
    user = UserFactory(roles=["member"])
    db.session.commit()
    login(client, user.email)
    assert client.get(f"/commandes/documents/{_doc('bag_slips').id}").status_code == 403


def test_coordinator_sees_error_and_reprocess_finishes(app, client, monkeypatch):
    from orders import documents

    data = make_cycle(households=3)
    close.close_due_cycles()
    db.session.commit()

    original = documents.render_grid

    def broken(*args, **kwargs):
        raise RuntimeError("imprimante en panne")

    monkeypatch.setattr(documents, "render_grid", broken)
    try:
        close.finalize_cycle(data.cycle_id, inline=True)
    except RuntimeError:
        pass
    cycle = db.session.get(Cycle, data.cycle_id)
    assert cycle.status == "closed" and "imprimante en panne" in cycle.finalize_error
    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    page = client.get(f"/commandes/cycles/{data.cycle_id}/documents").get_data(as_text=True)
    assert "imprimante en panne" in page and "Relancer la finalisation" in page
    # The coordinator reads French; the exception's text is folded under « Détail technique ».
    shown, folded = page.split("<details>", 1)
    assert "n&#39;a pas pu être préparé" in shown and "RuntimeError" not in shown
    assert "Détail technique" in folded and "RuntimeError: imprimante en panne" in folded.split("</details>")[0]
    listing = client.get("/commandes/cycles").get_data(as_text=True)
    assert "imprimante en panne" in listing

    monkeypatch.setattr(documents, "render_grid", original)
    # The button enqueues finalize; here the test runs it the way the worker would.
    response = client.post(f"/commandes/cycles/{data.cycle_id}/retraiter",
                           data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "Finalisation relancée" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Cycle, data.cycle_id).finalize_error is None
    close.finalize_cycle(data.cycle_id, inline=True)
    db.session.expire_all()
    assert db.session.get(Cycle, data.cycle_id).status == "finalized"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Document).where(Document.kind == "grid")) == 2


def test_failed_mail_listed_and_retry_button(app, client):
    _finalized(households=1)
    message = db.session.scalars(sa.select(OutboxMessage)).first()
    message.status, message.last_error, message.attempts = "failed", "SMTPDataError: 550 refusé", 5
    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    page = client.get("/commandes/courriels").get_data(as_text=True)
    assert "550 refusé" in page and "Renvoyer" in page
    client.post(f"/commandes/courriels/{message.id}/renvoyer", data={"csrf_token": csrf_token(page)})
    db.session.expire_all()
    assert db.session.get(OutboxMessage, message.id).status == "pending"


def test_cli_close_and_finalize(app, runner):
    data = make_cycle(households=2, due=False)
    result = runner.invoke(args=["cycles", "close", str(data.cycle_id)])
    assert result.exit_code == 1 and "date limite" in result.output
    result = runner.invoke(args=["cycles", "finalize", str(data.cycle_id)])
    assert result.exit_code == 1 and "encore ouvert" in result.output
    result = runner.invoke(args=["cycles", "finalize", "4242"])
    assert result.exit_code == 1 and "Aucun cycle n°4242" in result.output
    result = runner.invoke(args=["cycles", "close", str(data.cycle_id), "--force"])
    assert result.exit_code == 0, result.output
    assert "finalisé" in result.output
    db.session.expire_all()
    assert db.session.get(Cycle, data.cycle_id).status == "finalized"
    result = runner.invoke(args=["cycles", "finalize", str(data.cycle_id)])
    assert "déjà finalisé" in result.output


def test_refusing_smtp_server_shows_on_cycle_page_and_cycle_stays_finalized(app, client, smtp_server):
    from app.outbox import deliver_pending

    smtp_server.refuse = "554 Relais refusé"
    data = _finalized(households=2, producers=1)
    assert deliver_pending() == 0
    assert smtp_server.messages == []
    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    page = client.get(f"/commandes/cycles/{data.cycle_id}/documents").get_data(as_text=True)
    assert "Courriels non envoyés" in page and "554" in page and "nouvel essai" in page
    assert db.session.get(Cycle, data.cycle_id).status == "finalized"
    # The server accepts again: the next run (after the backoff) delivers each message once.
    smtp_server.refuse = None
    from datetime import timedelta

    from app.db import utcnow
    assert deliver_pending(now=utcnow() + timedelta(minutes=5)) == 3
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(
        m.recipient for m in db.session.scalars(sa.select(OutboxMessage)))


def test_volunteer_reads_only_the_distribution_being_prepared(app, client):
    """Volunteers read the lists of the distribution the preparation screen shows, not a later one's."""
    from datetime import timedelta

    from pickup.services import current_distribution

    first = _finalized()
    later = _finalized()
    cycle = db.session.get(Cycle, later.cycle_id)
    shift = timedelta(days=5)  # inside the week ahead, but not the distribution being prepared
    cycle.distribution_date += shift
    cycle.distribution_starts_at += shift
    cycle.distribution_ends_at += shift
    user = UserFactory(roles=["volunteer"])
    db.session.commit()
    assert current_distribution().id == first.cycle_id
    login(client, user.email)
    slips = db.session.scalars(sa.select(Document).where(Document.kind == "bag_slips")).all()
    by_cycle = {d.cycle_id: d for d in slips}
    assert client.get(f"/commandes/documents/{by_cycle[first.cycle_id].id}").status_code == 200
    assert client.get(f"/commandes/documents/{by_cycle[later.cycle_id].id}").status_code in (403, 404)


def test_volunteer_documents_page_queries_do_not_grow_with_documents(app, client, count_queries):
    """Which distributions are current is read once per page, not once per document."""
    from orders.documents import store_document

    data = _finalized()
    user = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, user.email)
    url = f"/commandes/cycles/{data.cycle_id}/documents"

    def measure() -> int:
        db.session.commit()
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        return counter["n"]

    before = measure()
    for n in range(15):
        store_document(data.cycle_id, "grid", f"extra:{n}", "volunteer", f"extra-{n}.pdf", b"%PDF-1.4 extra")
    db.session.commit()
    assert measure() == before


def test_coordinator_closes_orders_before_the_deadline_from_the_cycle_page(app, client):
    data = make_cycle(households=2, due=False)  # the deadline is tomorrow
    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    url = f"/commandes/cycles/{data.cycle_id}"
    page = client.get(url).get_data(as_text=True)
    assert "Clore les commandes maintenant" in page
    refused = client.post(f"{url}/clore", data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "Cochez la case pour confirmer : les commandes restent ouvertes." in refused.get_data(as_text=True)
    assert db.session.get(Cycle, data.cycle_id).status == "open"

    done = client.post(f"{url}/clore", data={"csrf_token": csrf_token(page), "sure": "y"}, follow_redirects=True)
    assert "Commandes closes. La finalisation est lancée" in done.get_data(as_text=True)
    db.session.expire_all()
    cycle = db.session.get(Cycle, data.cycle_id)
    # The deadline every page shows becomes the moment orders really stopped.
    assert cycle.status == "closed" and cycle.closed_at is not None and cycle.closes_at == cycle.closed_at
    close.finalize_cycle(data.cycle_id, inline=True)
    db.session.expire_all()
    assert db.session.get(Cycle, data.cycle_id).status == "finalized"
    again = client.post(f"{url}/clore", data={"csrf_token": csrf_token(page), "sure": "y"}, follow_redirects=True)
    assert "n&#39;est pas ouverte : rien n&#39;a changé" in again.get_data(as_text=True)
