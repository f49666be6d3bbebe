"""Invariants of the money side over random sequences of orders, payments, webhooks, shortages, refunds.

A hypothesis state machine drives the real services (desk payments, Stripe Checkout through the
library with the fake transport, webhook events duplicated and reordered, shortages, top-ups,
refunds to the card, balance settlement) and keeps its own independent model of the money:
line totals computed here, money in, refunds out. After every step:

* each charged order is charged exactly the sum of its line totals;
* each household's balance is the sum of its ledger;
* no money is created or lost: sum of balances == money in + top-ups - refunds out - charges;
* what each order still owes matches the model; receipts are numbered 1..n without gaps.
"""
from __future__ import annotations

import secrets
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.extensions import db
from orders.ledger import balance_cents, order_charged_cents, sync_order_charge
from orders.models import Order, OrderLine
from orders.payment_models import LedgerEntry, Payment, Receipt
from orders.payments import (
    PaymentError,
    amount_due_cents,
    cycle_money,
    record_desk_payment,
    record_topup,
    settle_balance_payments,
    spendable_balance_cents,
)
from orders.stripe_checkout import (
    handle_event,
    refund_to_card,
    refundable_card_payment,
    start_card_payment,
)
from tests.conftest import TEST_DB, empty_database
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
)
from tests.orders.test_stripe_fake import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripeHTTP,
    refund_event,
    session_event,
)

PRICES = st.integers(min_value=1, max_value=4_000)
QUANTITIES = st.sampled_from(["1", "2", "3", "0.5", "1.250", "0.333", "2.755"])


def model_line_total(price: int, quantity: Decimal) -> int:
    """The line total as the rules say: price x quantity, rounded half up once (computed here, not by the app)."""
    return int((Decimal(price) * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture()
def app_config(app_config):
    """Stripe keys configured (test-mode values)."""
    app_config.update(STRIPE_SECRET_KEY=SECRET_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    return app_config


def test_money_is_never_created_or_lost(app):
    """Run the machine with the test app."""
    fake = FakeStripeHTTP()
    app.extensions["stripe_http_client"] = fake

    class MoneyMachine(RuleBasedStateMachine):
        """Orders, payments, webhooks, shortages and refunds in random order."""

        def __init__(self):
            """A cycle, three households, two offers."""
            super().__init__()
            empty_database()
            db.session.remove()
            self.cycle = CycleFactory()
            self.households = [HouseholdFactory().id for _ in range(3)]
            self.offers = [OfferFactory(cycle_id=self.cycle.id).id for _ in range(2)]
            db.session.commit()
            self.orders: dict[int, list[list]] = {}  # order id -> [[line id, price, quantity]]
            self.paid: dict[int, int] = {}  # order id -> money kept for it (model)
            self.money_in = 0
            self.topups = 0
            self.refunds_out = 0
            self.events: list[dict] = []
            self.session_paid: set[str] = set()
            self.session_flagged: set[str] = set()

        def teardown(self):
            """Leave an empty database for the next example."""
            db.session.rollback()
            db.session.remove()
            empty_database()

        def total(self, order_id: int) -> int:
            """The model's total of an order."""
            return sum(model_line_total(price, qty) for _line, price, qty in self.orders[order_id])

        @rule(household=st.integers(0, 2), lines=st.lists(st.tuples(PRICES, QUANTITIES), min_size=1, max_size=3))
        def new_order(self, household, lines):
            """A household confirms an order (one per household per cycle)."""
            hid = self.households[household]
            if db.session.scalar(sa.select(Order.id).where(Order.household_id == hid)):
                return
            order = OrderFactory(household_id=hid, cycle_id=self.cycle.id)
            rows = []
            for n, (price, qty) in enumerate(lines):
                line = OrderLineFactory(order=order, offer_id=self.offers[n % 2] if n < 2 else OfferFactory(
                    cycle_id=self.cycle.id).id, unit_price_cents=price, base_price_cents=price,
                    quantity=Decimal(qty))
                rows.append([line.id, price, Decimal(qty)])
            order.total_cents = sum(model_line_total(p, q) for _l, p, q in rows)
            db.session.commit()
            self.orders[order.id] = rows
            self.paid[order.id] = 0

        @precondition(lambda self: self.orders)
        @rule(pick=st.integers(0, 50), method=st.sampled_from(["cash", "cheque", "balance"]),
              quarters=st.integers(1, 5))
        def desk_payment(self, pick, method, quarters):
            """A volunteer takes part or all of what is due (5 quarters: too much, refused)."""
            order_id = sorted(self.orders)[pick % len(self.orders)]
            due = amount_due_cents(order_id)
            amount = max(1, due * quarters // 4)
            if method == "balance":
                amount = min(amount, spendable_balance_cents(db.session.get_one(
                    Order, order_id).household_id)) or 1
            try:
                record_desk_payment(order_id, method, amount, received_by_id=None,
                                    cheque_number="123" if method == "cheque" else None,
                                    cheque_bank="CIC" if method == "cheque" else None)
            except PaymentError:
                db.session.rollback()
                assert amount > due or due == 0 or method == "balance"
                return
            db.session.commit()
            assert amount <= due
            self.paid[order_id] += amount
            if method != "balance":
                self.money_in += amount

        @precondition(lambda self: self.orders)
        @rule(pick=st.integers(0, 50), wrong_amount=st.booleans(), expire_too=st.booleans())
        def card_checkout(self, pick, wrong_amount, expire_too):
            """The household goes to Stripe; the events Stripe will send join the delivery pool."""
            order_id = sorted(self.orders)[pick % len(self.orders)]
            order = db.session.get_one(Order, order_id)
            try:
                payment = start_card_payment(order_id, order.household_id, success_url="http://x/ok",
                                             cancel_url="http://x/no")
            except PaymentError:
                db.session.rollback()
                assert amount_due_cents(order_id) == 0
                return
            db.session.commit()
            if any(e["data"]["object"]["id"] == payment.provider_reference for e in self.events):
                return  # the same session again (double click): its events are already in the pool
            self.events.append(session_event(
                payment, amount_total=payment.amount_cents + 1 if wrong_amount else None,
                payment_intent=f"pi_test_{payment.id:06d}"))
            if expire_too:
                self.events.append(session_event(payment, "checkout.session.expired"))

        @precondition(lambda self: self.events)
        @rule(pick=st.integers(0, 50))
        def deliver(self, pick):
            """Stripe delivers one event of the pool (any order, any number of times)."""
            event = self.events[pick % len(self.events)]
            obj = event["data"]["object"]
            if event["type"] == "charge.refunded":
                # Refunds made from this app are already counted: a report adds nothing.
                before = db.session.scalar(sa.select(sa.func.count(LedgerEntry.id)))
                handle_event(event)
                db.session.commit()
                assert db.session.scalar(sa.select(sa.func.count(LedgerEntry.id))) == before
                return
            before = db.session.scalar(sa.select(Payment).where(Payment.provider_reference == obj["id"]))
            status_before = before.status
            handle_event(event)
            db.session.commit()
            if event["type"] == "checkout.session.completed" and status_before in ("pending", "expired"):
                expected = db.session.get(Payment, before.id)
                if obj["amount_total"] == expected.amount_cents:
                    assert expected.status == "succeeded"
                    self.money_in += expected.amount_cents
                    self.paid[expected.order_id] += expected.amount_cents
                else:
                    assert expected.status == "flagged"

        @precondition(lambda self: self.orders)
        @rule(pick=st.integers(0, 50), line=st.integers(0, 2), keep=st.sampled_from(["0", "0.5", "0.9"]))
        def shortage(self, pick, line, keep):
            """Thursday: less than ordered was prepared; the charge follows."""
            order_id = sorted(self.orders)[pick % len(self.orders)]
            row = self.orders[order_id][line % len(self.orders[order_id])]
            new_qty = (row[2] * Decimal(keep)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
            db.session.get_one(OrderLine, row[0]).quantity_prepared = new_qty
            row[2] = new_qty
            sync_order_charge(order_id)
            db.session.commit()

        @rule(household=st.integers(0, 2), amount=st.integers(-500, 60_000))
        def topup(self, household, amount):
            """The coordinator records money handed in (negative or absurd amounts refused)."""
            try:
                record_topup(self.households[household], amount, method="cash", token=secrets.token_hex(8),
                             created_by_id=None)
            except PaymentError:
                db.session.rollback()
                assert amount <= 0 or amount > 50_000
                return
            db.session.commit()
            self.topups += amount

        @rule(household=st.integers(0, 2), share=st.integers(1, 3))
        def refund(self, household, share):
            """The coordinator sends part of a positive balance back to the card; Stripe reports it."""
            hid = self.households[household]
            payment = refundable_card_payment(hid)
            spendable = spendable_balance_cents(hid)
            if payment is None or spendable <= 0:
                return
            amount = max(1, min(spendable, payment.amount_cents - payment.refunded_cents) * share // 3)
            refund_to_card(payment.id, amount, created_by_id=None)
            db.session.commit()
            self.refunds_out += amount
            self.paid[payment.order_id] -= amount
            self.events.append(refund_event(payment.payment_intent, payment.amount_cents, payment.refunded_cents))

        @rule()
        def finalize(self):
            """The close pipeline charges every order and settles from balances."""
            settle_balance_payments(self.cycle.id)
            db.session.commit()
            for order_id in self.orders:
                self.paid[order_id] = None  # balance payments: re-read below

        @invariant()
        def money_is_accounted_for(self):
            """The four invariants (see the module docstring)."""
            db.session.expire_all()
            entries = db.session.execute(sa.select(LedgerEntry.household_id, LedgerEntry.amount_cents)).all()
            charged_total = 0
            for order_id in self.orders:
                charged = order_charged_cents(order_id)
                has_charge = db.session.scalar(sa.select(sa.func.count(LedgerEntry.id)).where(
                    LedgerEntry.order_id == order_id, LedgerEntry.kind.in_(("charge", "credit"))))
                if has_charge:
                    assert charged == self.total(order_id)
                    charged_total += charged
                payments = db.session.scalars(sa.select(Payment).where(
                    Payment.order_id == order_id, Payment.status == "succeeded")).all()
                kept = sum(p.amount_cents - p.refunded_cents for p in payments)
                if self.paid[order_id] is None:
                    self.paid[order_id] = kept
                assert kept == self.paid[order_id]
                assert amount_due_cents(order_id) == max(0, self.total(order_id) - kept)
            balances = 0
            for hid in self.households:
                own = sum(amount for household_id, amount in entries if household_id == hid)
                assert balance_cents(hid) == own
                balances += own
            assert balances == self.money_in + self.topups - self.refunds_out - charged_total
            numbers = sorted(db.session.scalars(sa.select(Receipt.number)))
            assert numbers == list(range(1, len(numbers) + 1))
            # The money page of each distribution adds up: due - paid + moved to balances = still owed.
            for cycle_id in set(db.session.scalars(sa.select(Order.cycle_id).where(Order.id.in_(self.orders)))):
                summary = cycle_money(cycle_id)
                assert summary.due_cents - summary.paid_cents + summary.credited_cents == summary.still_owed_cents

    run_state_machine_as_test(
        MoneyMachine,
        # Fewer examples on PostgreSQL, where emptying the schema between examples costs more.
        settings=settings(max_examples=30 if TEST_DB == "sqlite" else 12, stateful_step_count=30, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
