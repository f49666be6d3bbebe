"""Money: the household ledger and payments."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, utcnow
from app.extensions import db


class LedgerEntry(db.Model):
    """A signed movement on a household's account; the balance is the sum of its entries."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    #: Positive: money the household has with the association (payment, credit, top-up).
    #: Negative: what it owes (charge for an order).
    amount_cents: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(12))
    #: What the entry is about, unique per kind so a retry records nothing twice
    #: (e.g. "order:12:charge", "line:88:missing", "stripe:evt_...").
    reference: Mapped[str] = mapped_column(sa.String(120))
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("order.id"), index=True)
    note: Mapped[str | None] = mapped_column(sa.String(300))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Money handed over outside an order payment (a top-up in, credit handed back out): cash or cheque.
    #: NULL on every other entry, and on top-ups recorded before the method was asked (« non précisé »).
    method: Mapped[str | None] = mapped_column(sa.String(10))
    #: Cheque: its number (the household's for a top-up, the association's for a hand-back).
    cheque_number: Mapped[str | None] = mapped_column(sa.String(40))
    #: Cheque of a top-up: the household's bank.
    cheque_bank: Mapped[str | None] = mapped_column(sa.String(80))
    #: The distribution whose till the money went into or came out of; NULL away from a distribution.
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cycle.id"), index=True)

    __table_args__ = (
        sa.UniqueConstraint("reference", name="uq_ledger_entry_reference"),
        sa.CheckConstraint(
            "kind IN ('payment', 'charge', 'credit', 'refund', 'adjustment', 'topup')", name="known_kind"
        ),
        # Only top-ups and refunds move money by hand; a cheque always has its number.
        sa.CheckConstraint(
            "method IS NULL OR (method IN ('cash', 'cheque') AND kind IN ('topup', 'refund'))", name="known_method"
        ),
        sa.CheckConstraint("method IS NULL OR method <> 'cheque' OR cheque_number IS NOT NULL",
                           name="cheque_with_number"),
    )


#: The reference of a credit handed back in cash or by cheque starts with this (orders.payments.hand_back_credit).
HAND_BACK_PREFIX = "handback:"


class Payment(db.Model):
    """A payment towards an order: card (Stripe), cash, cheque or balance."""

    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("order.id"), index=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    method: Mapped[str] = mapped_column(sa.String(10))
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(12), default="pending")
    #: Stripe Checkout Session id, or the cheque number.
    provider_reference: Mapped[str | None] = mapped_column(sa.String(120), index=True)
    cheque_bank: Mapped[str | None] = mapped_column(sa.String(80))
    received_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Card: the key sent to Stripe when creating the Checkout Session; one session per key.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(120), unique=True)
    #: Card: where the household is sent to pay (Stripe's hosted page).
    checkout_url: Mapped[str | None] = mapped_column(sa.String(1000))
    #: Card: the PaymentIntent behind the session, learnt from the webhook; charge.refunded names it.
    payment_intent: Mapped[str | None] = mapped_column(sa.String(120), index=True)
    #: Card: what has gone back to the card so far (cents); moved only upwards by guarded UPDATEs.
    refunded_cents: Mapped[int] = mapped_column(default=0)
    #: Card, flagged: the amount Stripe reported, when it differs from what was asked.
    received_cents: Mapped[int | None]
    #: Why the payment was flagged for the coordinator.
    flag_reason: Mapped[str | None] = mapped_column(sa.String(300))
    #: Desk payments recorded by mistake (wrong household, wrong method) are cancelled, never deleted:
    #: status "cancelled", a reversing ledger entry, and who did it, when and why.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    cancel_note: Mapped[str | None] = mapped_column(sa.String(300))
    #: Cash or cheque: the distribution whose till took it, which may be a later one than the order's
    #: (last week's bag paid today). NULL for card and balance, and for money received away from a
    #: distribution (a cheque sent to the coordinator).
    cycle_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cycle.id"), index=True)

    __table_args__ = (
        sa.CheckConstraint("method IN ('card', 'cash', 'cheque', 'balance')", name="known_method"),
        sa.CheckConstraint("cycle_id IS NULL OR method IN ('cash', 'cheque')", name="till_for_cash_or_cheque"),
        sa.CheckConstraint("refunded_cents >= 0 AND refunded_cents <= amount_cents", name="refund_within_amount"),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'expired', 'refunded', 'flagged', 'cancelled')",
            name="known_status",
        ),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        # Only a desk payment is cancelled (a card payment goes back through Stripe), always with its reason.
        sa.CheckConstraint(
            "status <> 'cancelled' OR (method IN ('cash', 'cheque', 'balance') "
            "AND cancel_note IS NOT NULL AND cancelled_at IS NOT NULL)",
            name="cancelled_desk_payment_with_note",
        ),
    )


class ReceiptCounter(db.Model):
    """The last receipt number issued by an association; moved only by a guarded UPDATE."""

    __tablename__ = "receipt_counter"

    association: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    last_number: Mapped[int] = mapped_column(default=0)

    __table_args__ = (sa.CheckConstraint("last_number >= 0", name="last_number_not_negative"),)


class Receipt(db.Model):
    """A receipt for a paid order, numbered without gaps per association, never changed once issued.

    What it shows is frozen in ``snapshot`` when it is issued (orders.receipts). When the order or its
    payments change afterwards, a new receipt with the next number replaces it (``replaces_id``); the
    old row stays as it was.
    """

    __tablename__ = "receipt"

    id: Mapped[int] = mapped_column(primary_key=True)
    association: Mapped[str] = mapped_column(sa.String(120))
    number: Mapped[int]
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("order.id"), index=True)
    #: 1 for the order's first receipt, then 2, 3... for each one that replaces the previous.
    revision: Mapped[int] = mapped_column(default=1)
    #: The receipt this one replaces (the order's previous revision); a receipt is replaced at most once.
    replaces_id: Mapped[int | None] = mapped_column(sa.ForeignKey("receipt.id"), unique=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    #: What the household had paid for the order when the receipt was issued (cents); equals the snapshot's.
    amount_cents: Mapped[int]
    #: Everything the receipt prints, frozen at issue: lines, total, payments, paid, credited, due
    #: (orders.receipts.order_snapshot). The PDF is always rendered from it, never from the order.
    snapshot: Mapped[dict] = mapped_column(sa.JSON)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("association", "number", name="uq_receipt_association_number"),
        # Two issuers racing for the same order: one revision wins, the other's number is rolled back.
        sa.UniqueConstraint("order_id", "revision", name="uq_receipt_order_revision"),
        sa.CheckConstraint("number > 0", name="number_positive"),
        sa.CheckConstraint(
            "(revision = 1 AND replaces_id IS NULL) OR (revision > 1 AND replaces_id IS NOT NULL)",
            name="revision_replaces",
        ),
    )

    @property
    def label(self) -> str:
        """The printed number, e.g. "R-000042"."""
        return f"R-{self.number:06d}"


class StripeEvent(db.Model):
    """A Stripe webhook event, stored once by its id so a redelivery applies nothing twice."""

    __tablename__ = "stripe_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(120), unique=True)
    type: Mapped[str] = mapped_column(sa.String(80))
    #: applied, ignored, or deferred (waits for the event it depends on, e.g. a refund before payment).
    status: Mapped[str] = mapped_column(sa.String(12), default="applied")
    #: The PaymentIntent the event is about, so deferred events can be found again.
    payment_intent: Mapped[str | None] = mapped_column(sa.String(120), index=True)
    payload: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('applied', 'ignored', 'deferred')", name="known_status"),
    )
