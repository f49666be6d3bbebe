"""Closing and finalizing a cycle: allocation, bag numbers, documents, outbox, reprocessing."""
from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Document, FinalizeStep, OutboxMessage
from orders import close
from orders.models import Cycle, Order, OrderLine
from producers.models import Offer
from tests.workers.data import make_cycle


def pdf_text(path: str) -> str:
    """The text of a PDF (pdftotext), whitespace normalised."""
    text = subprocess.run(["pdftotext", path, "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(text.split())  # words in reading order, whatever the line wrapping


def pdf_pages(path: str) -> int:
    """Page count as poppler reads it."""
    info = subprocess.run(["pdfinfo", path], check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def test_close_due_cycles_closes_only_due_open_cycles(app):
    due = make_cycle(households=1)
    later = make_cycle(households=1, due=False)
    assert close.close_due_cycles() == [due.cycle_id]
    db.session.commit()
    assert close.close_due_cycles() == []  # a second run finds nothing
    assert db.session.get(Cycle, due.cycle_id).status == "closed"
    assert db.session.get(Cycle, later.cycle_id).status == "open"


def test_finalize_inline_makes_documents_and_mail(app):
    data = make_cycle(households=4, slots=2, producers=2)
    close.close_due_cycles()
    db.session.commit()
    result = close.finalize_cycle(data.cycle_id, inline=True)
    assert result.status == "finalized"
    cycle = db.session.get(Cycle, data.cycle_id)
    assert cycle.status == "finalized" and cycle.finalized_at is not None and cycle.finalize_error is None

    orders = db.session.scalars(sa.select(Order).where(Order.cycle_id == data.cycle_id).order_by(Order.bag_number)).all()
    assert [o.bag_number for o in orders] == [1, 2, 3, 4]
    # Slot first, then household name: Famille 0001 and 0003 are in the first slot.
    assert [o.household_id for o in orders] == [data.household_ids[i] for i in (0, 2, 1, 3)]
    assert all(o.total_cents == 2 * 420 for o in orders)  # 1.5 kg x 2.80 EUR, two lines

    kinds = sorted((d.kind, d.chunk) for d in db.session.scalars(sa.select(Document)))
    assert ("purchase_order", f"producer:{data.producer_ids[0]}") in kinds
    assert ("purchase_order_csv", f"producer:{data.producer_ids[0]}") in kinds
    assert ("bag_slips", f"slot:{data.slot_ids[0]}:0") in kinds
    assert ("grid", f"slot:{data.slot_ids[1]}:0") in kinds
    assert ("distribution_sheet", f"slot:{data.slot_ids[1]}") in kinds
    for document in db.session.scalars(sa.select(Document)):
        assert Path(document.path).exists()
        import hashlib
        assert hashlib.sha256(Path(document.path).read_bytes()).hexdigest() == document.checksum

    po = db.session.scalar(sa.select(Document).where(Document.kind == "purchase_order",
                                                    Document.chunk == f"producer:{data.producer_ids[0]}"))
    text = pdf_text(po.path)
    assert "Bon de commande" in text and "Ferme des Lilas 1" in text and "page 1 / 1" in text
    assert "Légume 1.1" in text
    csv_doc = db.session.scalar(sa.select(Document).where(Document.kind == "purchase_order_csv",
                                                         Document.chunk == f"producer:{data.producer_ids[0]}"))
    csv_text = Path(csv_doc.path).read_text(encoding="utf-8-sig")
    assert csv_text.splitlines()[0].startswith("produit;unite;taille_colis;quantite")
    assert "Légume 1.1;kg;;3" in csv_text  # two households x 1.5 kg

    messages = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.key)).all()
    assert sum(m.kind == "purchase_order" for m in messages) == 2
    assert sum(m.kind == "confirmation" for m in messages) == 4
    confirmation = next(m for m in messages if m.recipient == f"famille1.c{data.cycle_id}@example.org")
    assert "Numéro de sac : 1" in confirmation.body and "Montant de la commande" in confirmation.body
    assert "Le détail et le paiement en ligne : http://localhost/commandes/commande/" in confirmation.body
    # Signed off with the distribution's own weekday, whatever the schedule.
    weekday = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"][
        db.session.get(Cycle, data.cycle_id).distribution_date.weekday()]
    assert f"À {weekday} !" in confirmation.body


def test_finalize_twice_generates_nothing_twice(app):
    data = make_cycle(households=3)
    close.close_due_cycles()
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    documents = {(d.kind, d.chunk): d.checksum for d in db.session.scalars(sa.select(Document))}
    outbox_count = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    # Run every step again, as a redelivered task would.
    db.session.execute(sa.update(Cycle).values(status="closed"))
    db.session.execute(sa.update(FinalizeStep).values(status="pending"))
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    again = {(d.kind, d.chunk): d.checksum for d in db.session.scalars(sa.select(Document))}
    assert again.keys() == documents.keys()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == outbox_count
    bags = db.session.scalars(sa.select(Order.bag_number).order_by(Order.id)).all()
    assert sorted(bags) == [1, 2, 3]


def test_finish_writes_the_emails_in_batches_and_each_once(app, monkeypatch):
    """Confirmations go to the outbox a few per transaction (SQLite's lock stays short); a finish
    interrupted after some batches, then run again, writes each e-mail exactly once."""
    monkeypatch.setattr(close, "MESSAGES_PER_COMMIT", 3)
    data = make_cycle(households=8, producers=2)
    close.close_due_cycles()
    db.session.commit()
    commits = []
    real_commit = db.session.commit
    monkeypatch.setattr(db.session, "commit", lambda: (commits.append(1), real_commit())[1])
    close.finalize_cycle(data.cycle_id, inline=True)
    assert db.session.get(Cycle, data.cycle_id).status == "finalized"
    keys = db.session.scalars(sa.select(OutboxMessage.key)).all()
    assert len(keys) == len(set(keys)) == 8 + 2
    # Interrupted after its first batches: the cycle is still closed, some e-mails are written.
    db.session.execute(sa.delete(OutboxMessage).where(OutboxMessage.id.in_(
        sa.select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(4))))
    db.session.execute(sa.update(Cycle).values(status="closed"))
    db.session.execute(sa.update(FinalizeStep).where(FinalizeStep.name == "finish").values(status="pending"))
    real_commit()
    commits.clear()
    assert close.finish_cycle(data.cycle_id) is True
    assert len(commits) == 4 + 1  # 10 e-mails in batches of 3, then the cycle's status
    again = db.session.scalars(sa.select(OutboxMessage.key)).all()
    assert sorted(again) == sorted(keys)
    assert close.finish_cycle(data.cycle_id) is False


def test_finalize_refuses_open_and_unknown_cycles(app):
    data = make_cycle(households=1, due=False)
    with pytest.raises(close.FinalizeError, match="encore ouvert"):
        close.finalize_cycle(data.cycle_id)
    with pytest.raises(close.FinalizeError, match="Aucun cycle n°999"):
        close.finalize_cycle(999)
    with pytest.raises(close.FinalizeError, match="invalide"):
        close.finalize_cycle("abc")
    assert db.session.get(Cycle, data.cycle_id).status == "open"


def test_withdrawn_product_and_stock_cap(app):
    from producers.models import Offer, Product

    data = make_cycle(households=4, slots=1, producers=1, products_per_producer=2, lines=1)
    offer_a, offer_b = (db.session.get(Offer, i) for i in data.offer_ids)
    db.session.get(Product, offer_a.product_id).active = False  # withdrawn after ordering
    offer_b.stock_cap = offer_b.reserved = None or offer_b.reserved  # keep constraint happy
    offer_b.stock_cap = __import__("decimal").Decimal("2")
    db.session.commit()
    close.close_due_cycles()
    db.session.commit()
    result = close.finalize_cycle(data.cycle_id, inline=True)
    assert any("retiré" in note for note in result.notes)
    allocated = {
        (line.offer_id, line.order_id): line.quantity_allocated
        for line in db.session.scalars(sa.select(OrderLine))
    }
    from decimal import Decimal
    assert [q for (o, _), q in sorted(allocated.items()) if o == offer_a.id] == [Decimal(0)] * 2
    # 2 units in stock for two orders of 1.5: the first gets 1.5, the second what is left.
    assert sorted(q for (o, _), q in allocated.items() if o == offer_b.id) == [Decimal("0.5"), Decimal("1.5")]
    slips = db.session.scalar(sa.select(Document).where(Document.kind == "bag_slips"))
    assert "non livré" in pdf_text(slips.path)


def test_producer_without_email_is_reported_not_an_error(app):
    from orders.documents import producers_without_email
    from producers.models import Producer

    data = make_cycle(households=2, producers=2)
    db.session.get(Producer, data.producer_ids[0]).email = None
    db.session.commit()
    close.close_due_cycles()
    db.session.commit()
    assert close.finalize_cycle(data.cycle_id, inline=True).status == "finalized"
    assert [p.id for p in producers_without_email(data.cycle_id)] == [data.producer_ids[0]]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.kind == "purchase_order")) == 1


def test_250_households_page_counts_and_text(app):
    app.config["DOCUMENT_CHUNK_HOUSEHOLDS"] = 100
    data = make_cycle(households=250, slots=1, producers=2, lines=2)
    close.close_due_cycles()
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    slips = db.session.scalars(sa.select(Document).where(Document.kind == "bag_slips")
                               .order_by(Document.chunk)).all()
    # Chunks of 100, 100 and 50 households, three slips per page.
    assert [d.chunk.rsplit(":", 1)[1] for d in slips] == ["0", "1", "2"]
    assert [pdf_pages(d.path) for d in slips] == [34, 34, 17]
    assert [d.pages for d in slips] == [34, 34, 17]
    first = pdf_text(slips[0].path)
    assert "Famille 0001" in first and "Sac 1" in first and "page 34 / 34" in first
    assert "Famille 0101" in pdf_text(slips[1].path)

    sheet = db.session.scalar(sa.select(Document).where(Document.kind == "distribution_sheet"))
    text = pdf_text(sheet.path)
    pages = pdf_pages(sheet.path)
    assert sheet.pages == pages and pages > 1
    assert f"page {pages} / {pages}" in text and "Signature" in text
    assert all(f"Famille {n:04d}" in text for n in range(1, 251))

    grid = db.session.scalars(sa.select(Document).where(Document.kind == "grid")).all()
    assert len(grid) == 3
    assert "Tableau de répartition" in pdf_text(grid[0].path)


def test_bulk_product_gets_whole_cases_and_a_repackaging_sheet(app):
    from decimal import Decimal

    from producers.models import Offer, Product

    data = make_cycle(households=4, slots=1, producers=1, products_per_producer=1, lines=1)
    offer = db.session.get(Offer, data.offer_ids[0])
    product = db.session.get(Product, offer.product_id)
    product.name, product.case_size, product.portion_step = "Riz complet", Decimal(5), Decimal("0.5")
    # 4 x 1.5 kg = 6 kg ordered: one 5 kg case is bought and shared back.
    db.session.commit()
    close.close_due_cycles()
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    allocated = db.session.scalars(sa.select(OrderLine.quantity_allocated)).all()
    assert sum(allocated) == Decimal(5)
    sheet = db.session.scalar(sa.select(Document).where(Document.kind == "repackaging"))
    text = pdf_text(sheet.path)
    assert "Fiche de reconditionnement" in text and "Riz complet" in text and "1 colis de 5 kg" in text
    assert all(f"Famille {n:04d}" in text for n in range(1, 5))
    po = db.session.scalar(sa.select(Document).where(Document.kind == "purchase_order"))
    assert "1×5" in pdf_text(po.path).replace(" ", "")  # one whole case of 5 kg


def test_repackaging_chunks_group_small_products_and_split_big_ones():
    from types import SimpleNamespace

    from orders.documents import REPACK_PORTIONS, _repack_chunks

    def product(portions):
        return SimpleNamespace(cases=[SimpleNamespace(portions=[None] * portions)])

    sizes = [10, 200, 150, REPACK_PORTIONS * 2 + 100, 5]
    assert _repack_chunks([product(n) for n in sizes]) == [
        "chunk:repack:0:1:0", "chunk:repack:2:2:0",
        "chunk:repack:3:3:0", "chunk:repack:3:3:1", "chunk:repack:3:3:2",
        "chunk:repack:4:4:0",
    ]


def test_documents_name_units_in_french(app):
    """Volunteers read "2 paniers" and "3 pièces" on the slips, not the code's unit names."""
    data = make_cycle(households=2, slots=1, producers=1, products_per_producer=2, lines=2)
    for offer_id, unit in zip(data.offer_ids, ("basket", "piece")):
        db.session.get(Offer, offer_id).product.unit = unit
    db.session.execute(sa.update(OrderLine).where(OrderLine.order_id.in_(data.order_ids)).values(quantity=Decimal(2)))
    db.session.commit()
    close.close_due_cycles()
    db.session.commit()
    assert close.finalize_cycle(data.cycle_id, inline=True).status == "finalized"
    slips = db.session.scalar(sa.select(Document).where(Document.kind == "bag_slips"))
    po = db.session.scalar(sa.select(Document).where(Document.kind == "purchase_order"))
    slips_text, po_text = pdf_text(slips.path), pdf_text(po.path)
    assert "2 paniers" in slips_text and "2 pièces" in slips_text
    assert "basket" not in slips_text + po_text and "piece" not in slips_text + po_text
    assert "panier" in po_text
