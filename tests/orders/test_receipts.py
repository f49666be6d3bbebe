"""Receipts: one per paid order, numbered without gaps per association, readable PDF."""
import subprocess
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.payment_models import Receipt, ReceiptCounter
from orders.payments import PaymentError, record_desk_payment
from tests.factories import (
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login


def make_order(total_cents, **kwargs):
    """A confirmed order with one line worth total_cents."""
    order = OrderFactory(**kwargs)
    OrderLineFactory(order=order, unit_price_cents=total_cents, base_price_cents=total_cents, quantity=Decimal(1))
    order.total_cents = total_cents
    db.session.flush()
    return order


def pdf_text(data: bytes, tmp_path) -> str:
    """The text of a PDF, as pdftotext reads it."""
    path = tmp_path / "recu.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def pdf_pages(data: bytes, tmp_path) -> int:
    """The page count pdfinfo reports."""
    path = tmp_path / "count.pdf"
    path.write_bytes(data)
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def test_receipts_are_numbered_in_payment_order_and_only_for_paid_orders(app):
    orders = [make_order(1000 + i) for i in range(3)]
    record_desk_payment(orders[1].id, "cash", 1001, received_by_id=None)
    record_desk_payment(orders[0].id, "cash", 500, received_by_id=None)  # partly paid: no receipt yet
    record_desk_payment(orders[2].id, "cash", 1002, received_by_id=None)
    record_desk_payment(orders[0].id, "cheque", 500, received_by_id=None, cheque_number="77", cheque_bank="CIC")
    db.session.commit()
    numbers = {r.order_id: r.number for r in db.session.scalars(sa.select(Receipt))}
    assert numbers == {orders[1].id: 1, orders[2].id: 2, orders[0].id: 3}
    assert db.session.get(ReceiptCounter, app.config["ASSOCIATION_NAME"]).last_number == 3


def test_a_refused_payment_takes_no_number(app):
    first, second = make_order(700), make_order(800)
    record_desk_payment(first.id, "cash", 700, received_by_id=None)
    db.session.commit()
    with pytest.raises(PaymentError):
        record_desk_payment(first.id, "cash", 700, received_by_id=None)
    db.session.rollback()
    record_desk_payment(second.id, "cash", 800, received_by_id=None)
    db.session.commit()
    assert sorted(db.session.scalars(sa.select(Receipt.number))) == [1, 2]


def test_receipt_pdf_for_the_household_only(app, client, tmp_path):
    household = HouseholdFactory(name="Foyer Benali")
    user = UserFactory(email="samir@example.org", household=household, roles=["member"])
    product = ProductFactory(name="Pommes Reinette", unit="kg", price_cents=320)
    order = OrderFactory(household_id=household.id)
    OrderLineFactory(order=order, offer_id=OfferFactory(product=product, cycle_id=order.cycle_id).id,
                     unit_price_cents=320, base_price_cents=320, quantity=Decimal("2.500"))
    order.total_cents = 800
    db.session.flush()
    record_desk_payment(order.id, "cheque", 800, received_by_id=None, cheque_number="0042", cheque_bank="La Poste")
    stranger = UserFactory(email="other@example.org", household=HouseholdFactory(), roles=["member"])
    db.session.commit()
    receipt = db.session.scalars(sa.select(Receipt)).one()

    login(client, user.email)
    account = client.get("/commandes/solde").get_data(as_text=True)
    assert "Reçu R-000001" in account
    response = client.get(f"/commandes/recus/{receipt.id}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    text = pdf_text(response.data, tmp_path)
    assert "Reçu n° R-000001" in text
    assert app.config["ASSOCIATION_NAME"] in text
    assert "Foyer Benali" in text
    assert "Pommes Reinette" in text
    assert "Pommes Reinette 2,5 kg 3,20 € / kg 8,00 €" in " ".join(text.split())  # with their unit
    assert "Chèque n° 0042 (La Poste)" in text
    assert pdf_pages(response.data, tmp_path) == 1

    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, stranger.email)
    assert client.get(f"/commandes/recus/{receipt.id}.pdf").status_code == 404


@pytest.mark.postgres_only
def test_parallel_payers_get_numbers_without_gap_or_duplicate(app):
    """Twelve households pay at once, and two volunteers take the same order twice at once."""
    orders = [make_order(1500 + i) for i in range(12)]
    db.session.commit()
    ids = [(o.id, o.total_cents) for o in orders]
    # The first order is paid twice in parallel: one must win, the other be refused.
    jobs = ids + [ids[0]]
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []
    lock = threading.Lock()

    def pay(order_id: int, amount: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                record_desk_payment(order_id, "cash", amount, received_by_id=None)
                db.session.commit()
                result = "paid"
            except PaymentError:
                db.session.rollback()
                result = "refused"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=pay, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["paid"] * 12 + ["refused"]
    db.session.expire_all()
    numbers = sorted(db.session.scalars(sa.select(Receipt.number)))
    assert numbers == list(range(1, 13))
    assert db.session.get(ReceiptCounter, app.config["ASSOCIATION_NAME"]).last_number == 12
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 12


def test_receipt_says_how_much_of_the_payment_went_to_the_balance(app, client, tmp_path):
    from orders.ledger import balance_cents
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    user = UserFactory(email="marie@example.org", household_id=thursday.dupont.household_id, roles=["member"])
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    apples = thursday.line(thursday.dupont, thursday.apples)
    pickup.record_weight(apples.id, Decimal("0.9"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    receipt = db.session.scalars(sa.select(Receipt)).one()
    assert balance_cents(thursday.dupont.household_id) == 192

    login(client, user.email)
    text = pdf_text(client.get(f"/commandes/recus/{receipt.id}.pdf").data, tmp_path)
    assert "Total de la commande" in text and "4,38" in text
    assert "Montant payé" in text and "6,30" in text
    assert "dont 1,92 € porté au crédit de votre solde" in text.replace("\xa0", " ")
