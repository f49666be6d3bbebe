"""The household ledger: balance is the sum of entries, charges follow the order total."""
from decimal import Decimal

import pytest

from app.extensions import db
from orders.ledger import (
    balance_cents,
    order_charged_cents,
    record_entry,
    sync_order_charge,
)
from orders.payment_models import LedgerEntry
from tests.factories import HouseholdFactory, OrderFactory, OrderLineFactory


def _order(prices_quantities, **kwargs):
    """An order with lines (unit price cents, quantity) and its total set."""
    order = OrderFactory(**kwargs)
    for price, qty in prices_quantities:
        OrderLineFactory(order=order, unit_price_cents=price, base_price_cents=price, quantity=Decimal(qty))
    order.total_cents = sum(line.total_cents for line in order.lines)
    db.session.flush()
    return order


def test_balance_is_sum_of_entries_and_reference_is_idempotent(app):
    household = HouseholdFactory()
    record_entry(household.id, 1500, "topup", "topup:1")
    record_entry(household.id, 1500, "topup", "topup:1")
    record_entry(household.id, -300, "adjustment", "adj:1", note="erreur de caisse")
    db.session.commit()
    assert balance_cents(household.id) == 1200
    assert db.session.query(LedgerEntry).count() == 2


def test_entry_signs_are_checked(app):
    household = HouseholdFactory()
    with pytest.raises(ValueError):
        record_entry(household.id, 500, "charge", "bad:1")
    with pytest.raises(ValueError):
        record_entry(household.id, -500, "topup", "bad:2")
    with pytest.raises(TypeError):
        record_entry(household.id, 5.0, "topup", "bad:3")


def test_sync_order_charge_follows_shrinking_and_growing_order(app):
    order = _order([(250, "2"), (1234, "0.5")])  # 5,00 + 6,17
    assert order.total_cents == 1117
    assert sync_order_charge(order.id) == 1117
    assert sync_order_charge(order.id) == 0
    assert balance_cents(order.household_id) == -1117

    # A missing item on Thursday: credit for the difference.
    line = order.lines[0]
    line.quantity_prepared = Decimal(1)
    db.session.flush()
    assert sync_order_charge(order.id) == -250
    assert order.total_cents == 867
    assert order_charged_cents(order.id) == 867
    kinds = [e.kind for e in db.session.query(LedgerEntry).order_by(LedgerEntry.id)]
    assert kinds == ["charge", "credit"]

    # Heavier than ordered: charged more.
    order.lines[1].quantity_prepared = Decimal("0.750")
    db.session.flush()
    assert sync_order_charge(order.id) == 309  # 9,26 - 6,17 (rounded once on the line: 925.5 -> 926)
    assert balance_cents(order.household_id) == -(250 + 926)


def test_cancelled_order_is_credited_back(app):
    order = _order([(1000, "1")])
    sync_order_charge(order.id)
    order.status = "cancelled"
    db.session.flush()
    assert sync_order_charge(order.id) == -1000
    assert balance_cents(order.household_id) == 0


def test_first_charge_of_a_shrunk_order_shows_the_credit(app):
    """Bulk allocated below the order before it was ever charged: charge ordered, credit the rest."""
    order = _order([(400, "5"), (250, "2")])  # 20,00 + 5,00
    order.lines[0].quantity_allocated = Decimal("3.5")  # 14,00: the case was not filled
    db.session.flush()
    assert sync_order_charge(order.id) == 1900
    entries = [(e.kind, e.amount_cents, e.note) for e in db.session.query(LedgerEntry).order_by(LedgerEntry.id)]
    assert entries == [
        ("charge", -2500, None),
        ("credit", 600, "avoir : produits manquants ou attribués en moins"),
    ]
    assert balance_cents(order.household_id) == -1900
    assert sync_order_charge(order.id) == 0
