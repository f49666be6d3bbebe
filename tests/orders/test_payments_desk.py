"""Paying at the desk: cash, cheque with number and bank, from the balance; bad input refused."""
from decimal import Decimal

import pytest

from app.extensions import db
from orders.ledger import balance_cents, record_entry
from orders.payment_models import LedgerEntry, Payment, Receipt
from orders.payments import (
    PaymentError,
    amount_due_cents,
    record_desk_payment,
    settle_balance_payments,
    spendable_balance_cents,
)
from tests.factories import (
    HouseholdFactory,
    OrderFactory,
    OrderLineFactory,
    UserFactory,
)


def make_order(total_cents=1250, **kwargs):
    """A confirmed order of one line worth total_cents."""
    order = OrderFactory(**kwargs)
    OrderLineFactory(order=order, unit_price_cents=total_cents, base_price_cents=total_cents, quantity=Decimal(1))
    order.total_cents = total_cents
    db.session.flush()
    return order


def counts():
    """Rows that a refused payment must not add."""
    return (db.session.query(Payment).count(), db.session.query(LedgerEntry).count(),
            db.session.query(Receipt).count())


def test_cash_payment_settles_the_order_and_issues_a_receipt(app):
    volunteer = UserFactory(roles=["volunteer"])
    order = make_order(1250)
    payment = record_desk_payment(order.id, "cash", 1250, received_by_id=volunteer.id)
    db.session.commit()
    assert payment.status == "succeeded"
    assert amount_due_cents(order.id) == 0
    assert balance_cents(order.household_id) == 0  # +12,50 paid, -12,50 charged
    receipt = db.session.query(Receipt).one()
    assert (receipt.number, receipt.amount_cents, receipt.order_id) == (1, 1250, order.id)


def test_partial_cash_then_cheque(app):
    order = make_order(3000)
    record_desk_payment(order.id, "cash", 1000, received_by_id=None)
    assert amount_due_cents(order.id) == 2000
    assert balance_cents(order.household_id) == -2000
    assert db.session.query(Receipt).count() == 0
    payment = record_desk_payment(order.id, "cheque", 2000, received_by_id=None,
                                  cheque_number=" 0012345 ", cheque_bank="Crédit Mutuel")
    db.session.commit()
    assert (payment.provider_reference, payment.cheque_bank) == ("0012345", "Crédit Mutuel")
    assert amount_due_cents(order.id) == 0
    assert db.session.query(Receipt).count() == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "cheque", "amount_cents": 1250, "cheque_bank": "La Poste"}, "numéro et sa banque"),
        ({"method": "cheque", "amount_cents": 1250, "cheque_number": "12"}, "numéro et sa banque"),
        ({"method": "cash", "amount_cents": 0}, "supérieur à zéro"),
        ({"method": "cash", "amount_cents": -500}, "supérieur à zéro"),
        ({"method": "cash", "amount_cents": 1251}, "dépasse ce qui reste à payer"),
        ({"method": "bitcoin", "amount_cents": 1250}, "Moyen de paiement inconnu"),
        ({"method": "balance", "amount_cents": 1250}, "ne suffit pas"),
    ],
)
def test_bad_desk_payments_are_refused_in_french_and_write_nothing(app, kwargs, message):
    order = make_order(1250)
    db.session.commit()
    before = counts()
    with pytest.raises(PaymentError, match=message):
        record_desk_payment(order.id, received_by_id=None, **kwargs)
    db.session.rollback()
    assert counts() == before


def test_already_paid_and_other_household_refused(app):
    order = make_order(800)
    record_desk_payment(order.id, "cash", 800, received_by_id=None)
    db.session.commit()
    before = counts()
    with pytest.raises(PaymentError, match="déjà payée"):
        record_desk_payment(order.id, "cash", 100, received_by_id=None)
    other = HouseholdFactory()
    unpaid = make_order(500)
    db.session.commit()
    before = counts()
    with pytest.raises(PaymentError, match="pas celle de ce foyer"):
        record_desk_payment(unpaid.id, "cash", 500, received_by_id=None, household_id=other.id)
    db.session.rollback()
    assert counts() == before


def test_pay_from_balance_only_up_to_the_balance(app):
    household = HouseholdFactory()
    record_entry(household.id, 1000, "topup", "topup:test:1")
    order = make_order(1500, household_id=household.id)
    assert spendable_balance_cents(household.id) == 1000
    with pytest.raises(PaymentError, match="ne suffit pas"):
        record_desk_payment(order.id, "balance", 1500, received_by_id=None)
    record_desk_payment(order.id, "balance", 1000, received_by_id=None)
    db.session.commit()
    assert amount_due_cents(order.id) == 500
    assert balance_cents(household.id) == -500  # 10,00 top-up - 15,00 charge
    assert spendable_balance_cents(household.id) == 0
    record_desk_payment(order.id, "cash", 500, received_by_id=None)
    assert balance_cents(household.id) == 0
    assert db.session.query(Receipt).count() == 1


def test_settle_balance_payments_at_finalize_is_idempotent(app):
    rich, poor = HouseholdFactory(), HouseholdFactory()
    record_entry(rich.id, 2000, "topup", "topup:rich")
    record_entry(poor.id, 300, "topup", "topup:poor")
    first = make_order(1200, household_id=rich.id)
    cycle_id = first.cycle_id
    second = make_order(1000, household_id=poor.id, cycle_id=cycle_id)
    assert settle_balance_payments(cycle_id) == 2
    assert settle_balance_payments(cycle_id) == 0
    db.session.commit()
    assert amount_due_cents(first.id) == 0
    assert amount_due_cents(second.id) == 700
    assert balance_cents(rich.id) == 800
    assert balance_cents(poor.id) == -700


def test_same_form_token_records_one_payment(app):
    from orders.payments import PaymentAlreadyRecorded

    order = make_order(2000)
    record_desk_payment(order.id, "cash", 500, received_by_id=None, token="a1b2c3d4e5f6")
    db.session.commit()
    before = counts()
    with pytest.raises(PaymentAlreadyRecorded, match="Ce paiement est déjà enregistré."):
        record_desk_payment(order.id, "cash", 500, received_by_id=None, token="a1b2c3d4e5f6")
    db.session.rollback()
    assert counts() == before and amount_due_cents(order.id) == 1500
    # Another form (another token) is another payment; a token that is not one is refused.
    record_desk_payment(order.id, "cash", 500, received_by_id=None, token="f6e5d4c3b2a1")
    db.session.commit()
    with pytest.raises(PaymentError, match="Le formulaire a expiré"):
        record_desk_payment(order.id, "cash", 500, received_by_id=None, token="")
    db.session.rollback()
    assert amount_due_cents(order.id) == 1000
