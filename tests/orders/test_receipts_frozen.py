"""Receipts never change once issued: what they print is frozen; a change of the order issues a new number."""
from __future__ import annotations

import copy
import tempfile
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Household
from config import TestConfig
from orders import close
from orders.ledger import sync_order_charge
from orders.models import OrderLine
from orders.payment_models import Payment, Receipt, ReceiptCounter
from orders.payments import amount_due_cents, record_desk_payment
from orders.receipts import receipt_for_order, refresh_receipt
from producers.models import Product
from tests.factories import HouseholdFactory, OfferFactory, OrderFactory, OrderLineFactory, ProductFactory, UserFactory
from tests.helpers import login
from tests.orders.test_bulk import Shop
from tests.orders.test_receipts import pdf_text


def receipts() -> list[Receipt]:
    """Every receipt, by number."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Receipt).order_by(Receipt.number)))


def row(text: str, label: str) -> str:
    """The line of a PDF's text that starts with a label, spaces squeezed (e.g. "Montant payé 20,46 €")."""
    return next(" ".join(line.split()) for line in text.splitlines() if line.strip().startswith(label))


def pdf(client, receipt: Receipt, tmp_path) -> str:
    """The receipt's PDF as its household reads it (narrow spaces made plain)."""
    response = client.get(f"/commandes/recus/{receipt.id}.pdf")
    assert response.status_code == 200
    return pdf_text(response.data, tmp_path).replace("\u202f", " ").replace("\xa0", " ")


@pytest.fixture()
def week(app):
    """An open week: the Foyer Benali orders apples 17,35 € and a member of it can read its receipts."""
    household = HouseholdFactory(name="Foyer Benali")
    user = UserFactory(email="samir@example.org", household=household, roles=["member"])
    order = OrderFactory(household_id=household.id)
    apples = OfferFactory(cycle_id=order.cycle_id, product=ProductFactory(name="Pommes Reinette", price_cents=347))
    line = OrderLineFactory(order=order, offer_id=apples.id, unit_price_cents=347, base_price_cents=347,
                            quantity=Decimal(5))
    order.total_cents = 1735
    db.session.commit()
    return user, order, line


def test_r000001_keeps_what_it_said_and_r000002_says_it_replaces_it(week, client, tmp_path):
    """The tester's receipt: 10,00 + 7,35 paid, then 3,11 more after the order grew."""
    user, order, line = week
    record_desk_payment(order.id, "cash", 1000, received_by_id=None)
    record_desk_payment(order.id, "cheque", 735, received_by_id=None, cheque_number="0042", cheque_bank="La Poste")
    db.session.commit()
    first = receipt_for_order(order.id)
    assert (first.label, first.revision, first.replaces_id, first.amount_cents) == ("R-000001", 1, None, 1735)
    frozen = copy.deepcopy(first.snapshot)
    assert frozen["total_cents"] == frozen["paid_cents"] == 1735
    assert [p["amount_cents"] for p in frozen["payments"]] == [1000, 735]

    # The household adds an item (3,11 €) and pays it: a new receipt, the first one unchanged.
    OrderLineFactory(order=order, offer_id=OfferFactory(cycle_id=order.cycle_id, product=ProductFactory(
        name="Miel de lavande", price_cents=311)).id, unit_price_cents=311, base_price_cents=311, quantity=Decimal(1))
    sync_order_charge(order.id)
    db.session.commit()
    assert len(receipts()) == 1  # owes 3,11: the replacement waits for the money
    record_desk_payment(order.id, "cash", 311, received_by_id=None)
    db.session.commit()
    first_again, second = receipts()
    assert first_again.snapshot == frozen and first_again.amount_cents == 1735
    assert (second.label, second.revision, second.replaces_id) == ("R-000002", 2, first.id)
    assert second.snapshot["total_cents"] == second.snapshot["paid_cents"] == 2046
    assert db.session.get(ReceiptCounter, client.application.config["ASSOCIATION_NAME"]).last_number == 2

    login(client, user.email)
    old = pdf(client, first_again, tmp_path)
    assert "Reçu n° R-000001" in old and "Miel de lavande" not in old
    assert row(old, "Montant payé") == "Montant payé 17,35 €" and "20,46" not in old and "3,11" not in old
    new = pdf(client, second, tmp_path)
    assert "Reçu n° R-000002" in new and "Ce reçu annule et remplace le reçu R-000001." in new
    assert "Miel de lavande" in new and "10,00" in new and "7,35" in new and "3,11" in new
    assert row(new, "Total de la commande") == "Total de la commande 20,46 €"
    assert row(new, "Montant payé") == "Montant payé 20,46 €"
    # The account page links the current receipt and says which one it replaces.
    account = client.get("/commandes/solde").get_data(as_text=True)
    assert "Reçu R-000002" in account and "remplace le reçu R-000001" in account


def test_a_receipt_prints_its_snapshot_whatever_is_renamed_or_changed_later(week, client, tmp_path):
    user, order, line = week
    record_desk_payment(order.id, "cash", 1735, received_by_id=None)
    db.session.commit()
    receipt = receipt_for_order(order.id)
    db.session.get(Household, order.household_id).name = "Foyer Martin-Benali"
    db.session.get(Product, line.offer.product_id).name = "Pommes Golden"
    db.session.commit()
    login(client, user.email)
    text = pdf(client, receipt, tmp_path)
    assert "Foyer Benali" in text and "Pommes Reinette" in text
    assert "Martin-Benali" not in text and "Golden" not in text
    assert len(receipts()) == 1  # a new name is no reason for a new number


def test_paid_before_weighing_the_receipt_waits_for_the_scale_then_a_new_weight_replaces_it(app, client, tmp_path):
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    user = UserFactory(email="marie@example.org", household_id=thursday.dupont.household_id, roles=["member"])
    apples = thursday.line(thursday.dupont, thursday.apples)
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    db.session.commit()
    assert receipts() == []  # 1,5 kg of apples ordered, not weighed yet: the price is not known

    pickup.record_weight(apples.id, Decimal("0.9"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    [first] = receipts()
    assert (first.snapshot["total_cents"], first.snapshot["paid_cents"], first.snapshot["credited_cents"]) == (
        438, 630, 192)
    frozen = copy.deepcopy(first.snapshot)

    # Weighed again (1,2 kg): the receipt that said 4,38 € stays; R-000002 says 5,34 €.
    pickup.record_weight(apples.id, Decimal("1.2"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    first_again, second = receipts()
    assert first_again.snapshot == frozen
    assert (second.replaces_id, second.snapshot["total_cents"], second.snapshot["credited_cents"]) == (
        first.id, 534, 96)
    login(client, user.email)
    old = pdf(client, first_again, tmp_path)
    assert "4,38" in old and "dont 1,92 € porté au crédit de votre solde" in old and "5,34" not in old
    new = pdf(client, second, tmp_path)
    assert "5,34" in new and "dont 0,96 € porté au crédit de votre solde" in new
    assert "Ce reçu annule et remplace le reçu R-000001." in new


def test_a_shortage_after_the_receipt_issues_a_replacement_with_the_credit(app):
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    record_desk_payment(thursday.martin.id, "cash", 750, received_by_id=None)  # 2 boxes of eggs + a salad
    db.session.commit()
    [first] = receipts()
    pickup.record_shortage(thursday.line(thursday.martin, thursday.salad).id, Decimal(0),
                           cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    first_again, second = receipts()
    assert first_again.snapshot == first.snapshot and first_again.snapshot["total_cents"] == 750
    salad = next(line for line in second.snapshot["lines"] if line["product"] == "Salade")
    assert salad["missing"] and salad["total_cents"] == 0
    assert (second.snapshot["total_cents"], second.snapshot["credited_cents"]) == (600, 150)


def test_a_receipt_issued_while_the_week_was_open_is_replaced_at_finalize_when_the_order_changed(app, client,
                                                                                                  tmp_path):
    shop = Shop()
    martin = shop.order("Famille Martin", rice=("20", "0"), oil=("4", "0"), minutes=1)
    shop.order("Famille Diallo", rice=("10", "0"), oil=("3", "0"), minutes=2)
    cycle_id, martin_id = shop.cycle.id, martin.id
    record_desk_payment(martin_id, "cash", 8400, received_by_id=None)
    db.session.commit()
    [first] = receipts()
    assert first.snapshot["total_cents"] == 8400
    assert close.close_cycle(cycle_id, force=True)
    db.session.commit()
    assert close.finalize_cycle(cycle_id, inline=True).status == "finalized"
    # Allocated 16,5 kg of rice and 3 bottles: 66,60 €; 17,40 € went to the balance.
    first_again, second = receipts()
    assert first_again.snapshot == first.snapshot
    assert (second.order_id, second.replaces_id) == (martin_id, first.id)
    assert (second.snapshot["total_cents"], second.snapshot["paid_cents"], second.snapshot["credited_cents"]) == (
        6660, 8400, 1740)
    rice = next(line for line in second.snapshot["lines"] if line["product"] == "Riz complet")
    assert Decimal(rice["quantity"]) == Decimal("16.5")
    # Running the finalize step again issues nothing more.
    from orders.payments import settle_balance_payments

    settle_balance_payments(cycle_id)
    db.session.commit()
    assert len(receipts()) == 2


def test_changes_rolled_back_issue_nothing_and_an_unchanged_order_keeps_its_receipt(week):
    _user, order, line = week
    record_desk_payment(order.id, "cash", 1735, received_by_id=None)
    db.session.commit()
    db.session.get(OrderLine, line.id).quantity = Decimal(1)
    sync_order_charge(order.id)
    db.session.rollback()
    db.session.commit()
    assert refresh_receipt(order.id).number == 1
    db.session.commit()
    assert [r.number for r in receipts()] == [1]
    assert amount_due_cents(order.id) == 0


def test_a_cancelled_distribution_replaces_the_receipt_with_what_went_to_the_balance(week, client, tmp_path):
    from orders.services import cancel_cycle

    user, order, _line = week
    record_desk_payment(order.id, "cash", 1735, received_by_id=None)
    db.session.commit()
    cancel_cycle(order.cycle_id)
    db.session.commit()
    first, second = receipts()
    assert first.snapshot["order_status"] == "confirmed"
    assert (second.snapshot["order_status"], second.snapshot["credited_cents"], second.snapshot["due_cents"]) == (
        "cancelled", 1735, 0)
    login(client, user.email)
    text = pdf(client, second, tmp_path)
    assert "Commande annulée." in text and "dont 17,35 € porté au crédit de votre solde" in text
    assert "Ce reçu annule et remplace le reçu R-000001." in text


@pytest.mark.postgres_only
def test_parallel_changes_and_payments_keep_numbers_without_gap_or_duplicate(app):
    """Ten orders paid at once, and the same order refreshed by four transactions at once."""
    orders = []
    for n in range(10):
        order = OrderFactory()
        OrderLineFactory(order=order, unit_price_cents=1000 + n, base_price_cents=1000 + n, quantity=Decimal(1))
        order.total_cents = 1000 + n
        orders.append(order)
    db.session.commit()
    record_desk_payment(orders[0].id, "cash", 1000, received_by_id=None)
    db.session.commit()
    # The first order shrinks behind the receipts' back (a Core UPDATE, as the allocation does).
    db.session.execute(sa.update(OrderLine).where(OrderLine.order_id == orders[0].id)
                       .values(quantity_allocated=Decimal("0.5")))
    db.session.commit()
    jobs = [("pay", o.id, o.total_cents) for o in orders[1:]] + [("refresh", orders[0].id, 0)] * 4
    barrier = threading.Barrier(len(jobs))
    errors = []

    def run(kind, order_id, amount):
        with app.app_context():
            barrier.wait()
            try:
                if kind == "pay":
                    record_desk_payment(order_id, "cash", amount, received_by_id=None)
                else:
                    refresh_receipt(order_id)
                db.session.commit()
            except Exception as error:  # noqa: BLE001 - reported below
                db.session.rollback()
                errors.append(repr(error))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    numbers = sorted(r.number for r in receipts())
    assert numbers == list(range(1, 12))  # 10 first receipts and one replacement
    first = [r for r in receipts() if r.order_id == orders[0].id]
    assert [r.revision for r in first] == [1, 2] and first[1].snapshot["credited_cents"] == 500


def test_migration_freezes_the_receipts_issued_before_it(fresh_database_url):
    """e30324cb596d: a receipt of the old schema gets its snapshot; cancelled payments become possible."""
    application = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=fresh_database_url,
                             INSTANCE_DIR=tempfile.mkdtemp(prefix="panier-migrate-"))
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "5b2e8c0d7a14"]).exit_code == 0
    rows = [
        "INSERT INTO household (id, name, active, created_at) VALUES (1, 'Foyer Benali', true, '2026-01-01 00:00:00')",
        "INSERT INTO producer (id, name, kind, show_household_names, active, created_at) "
        "VALUES (1, 'Ferme', 'farmer', false, true, '2026-01-01 00:00:00')",
        "INSERT INTO product (id, producer_id, name, name_key, unit, price_cents, vat_rate_bp, sold_by_weight, "
        "is_contract_basket, active, created_at) VALUES (1, 1, 'Pommes', 'pommes', 'kg', 320, 550, true, false, true, "
        "'2026-01-01 00:00:00')",
        "INSERT INTO site (id, name, timezone) VALUES (1, 'Café', 'Europe/Paris')",
        "INSERT INTO cycle (id, site_id, opens_at, closes_at, distribution_date, distribution_starts_at, "
        "distribution_ends_at, status, allocation_policy, created_at) VALUES (1, 1, '2026-01-01 08:00:00', "
        "'2026-01-05 22:59:00', '2026-01-08', '2026-01-08 15:30:00', '2026-01-08 18:30:00', 'distributed', "
        "'pro_rata', '2026-01-01 00:00:00')",
        "INSERT INTO offer (id, cycle_id, product_id, price_cents, reserved, active) VALUES (1, 1, 1, 320, 0, true)",
        'INSERT INTO "order" (id, cycle_id, household_id, status, entered_by_volunteer, total_cents, created_at, '
        "updated_at) VALUES (1, 1, 1, 'confirmed', false, 438, '2026-01-02 00:00:00', '2026-01-02 00:00:00')",
        "INSERT INTO order_line (id, order_id, offer_id, quantity, tolerance, quantity_allocated, quantity_prepared, "
        "unit_price_cents, base_price_cents, missing, ordered_at) VALUES (1, 1, 1, 1500, 0, 1500, 1369, 320, 320, "
        "false, '2026-01-02 00:00:00')",
        "INSERT INTO payment (id, order_id, household_id, method, amount_cents, status, provider_reference, "
        "cheque_bank, created_at, completed_at, refunded_cents) VALUES (1, 1, 1, 'cheque', 480, 'succeeded', '0042', "
        "'La Poste', '2026-01-08 16:00:00', '2026-01-08 16:00:00', 0)",
        "INSERT INTO receipt (id, association, number, order_id, household_id, amount_cents, issued_at) "
        "VALUES (1, 'Panier commun', 1, 1, 1, 480, '2026-01-08 16:00:00')",
    ]
    with application.app_context(), db.engine.begin() as conn:
        for row in rows:
            conn.execute(sa.text(row))
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        receipt = db.session.get(Receipt, 1)
        assert (receipt.revision, receipt.replaces_id, receipt.amount_cents) == (1, None, 480)
        snapshot = receipt.snapshot
        assert snapshot["lines"] == [{"product": "Pommes", "unit": "kg", "quantity": "1.369",
                                      "unit_price_cents": 320, "total_cents": 438, "missing": False}]
        assert (snapshot["total_cents"], snapshot["paid_cents"], snapshot["credited_cents"],
                snapshot["due_cents"]) == (438, 480, 42, 0)
        assert snapshot["payments"][0]["cheque_number"] == "0042"
        assert (snapshot["household"], snapshot["distribution_date"]) == ("Foyer Benali", "2026-01-08")
        # The cancelled status now holds, only with its note.
        db.session.execute(sa.text("UPDATE payment SET status = 'cancelled', cancel_note = 'mauvais foyer', "
                                   "cancelled_at = '2026-01-09 10:00:00' WHERE id = 1"))
        db.session.commit()
        assert db.session.get(Payment, 1).status == "cancelled"
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(sa.text("UPDATE payment SET cancel_note = NULL WHERE id = 1"))
            db.session.flush()
        db.session.rollback()
        db.session.remove()
        # Downgrading would lose the cancelled payment: refused, nothing changed.
        down = runner.invoke(args=["db", "downgrade", "5b2e8c0d7a14"])
        assert down.exit_code != 0
        # Read as SQL: on SQLite the later revisions' downgrades ran before this one refused.
        assert db.session.execute(sa.text("SELECT status FROM payment WHERE id = 1")).scalar_one() == "cancelled"
        db.session.remove()
        db.engine.dispose()


def _receipts():
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Receipt).order_by(Receipt.number)))


def test_a_paid_bag_with_a_product_never_weighed_gets_its_receipt_when_handed_out(app):
    """The receipt waits for the scale; handing the bag out (or ending the day) settles the price as it is."""
    from pickup import services as pickup
    from tests.factories import UserFactory
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    volunteer = UserFactory(email="v@example.org", roles=["volunteer"])
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    db.session.commit()
    assert _receipts() == []
    pickup.collect_bag(thursday.dupont.id, cycle_id=thursday.cycle.id, user_id=volunteer.id)
    db.session.commit()
    assert [r.order_id for r in _receipts()] == [thursday.dupont.id]


def test_a_paid_bag_never_weighed_gets_its_receipt_at_the_end_of_the_distribution(app):
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    db.session.commit()
    assert _receipts() == []
    pickup.end_distribution(thursday.cycle.id)
    db.session.commit()
    assert [r.order_id for r in _receipts()] == [thursday.dupont.id]


def test_a_product_partly_missing_reads_so_on_the_receipt_and_a_snapshot_issued_before_says_it_too(
        app, client, tmp_path):
    """0,3 kg of the 1,5 kg of apples came, the salad not at all: « manquant en partie », then « manquant »."""
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    user = UserFactory(email="marie@example.org", household_id=thursday.dupont.household_id, roles=["member"])
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    for product, received in ((thursday.apples, "0.3"), (thursday.salad, "0")):
        pickup.record_shortage(thursday.line(thursday.dupont, product).id, Decimal(received),
                               cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    [receipt] = receipts()
    login(client, user.email)
    text = pdf(client, receipt, tmp_path)
    assert row(text, "Pommes") == "Pommes (manquant en partie) 0,3 kg 3,20 € / kg 0,96 €"
    assert row(text, "Salade") == "Salade (manquant) 0 pièce 1,50 € / pièce 0,00 €"

    # A receipt frozen with the snapshot's first shape (no unit, no missing key) still prints.
    receipt.snapshot = {**receipt.snapshot, "lines": [
        {"product": "Pommes", "quantity": "0.300", "unit_price_cents": 320, "total_cents": 96, "missing": True},
        {"product": "Miel", "quantity": "1.000", "unit_price_cents": 500, "total_cents": 500}]}
    db.session.commit()
    text = pdf(client, receipt, tmp_path)
    assert row(text, "Pommes") == "Pommes (manquant en partie) 0,3 3,20 € 0,96 €"
    assert row(text, "Miel") == "Miel 1 5,00 € 5,00 €"
