"""Receipts for paid orders: numbered without gaps per association, rendered to PDF on demand."""
from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.pdf import RenderedPdf, render_pdf
from orders.models import Order
from orders.payment_models import Payment, Receipt, ReceiptCounter


def association_name() -> str:
    """The association whose receipt numbers run without gaps (from the configuration)."""
    return current_app.config.get("ASSOCIATION_NAME") or "Panier commun"


def _ensure_counter(association: str) -> None:
    """Create the association's counter row if it is missing (never resets an existing one)."""
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        insert(ReceiptCounter)
        .values(association=association, last_number=0)
        .on_conflict_do_nothing(index_elements=["association"])
    )


def next_receipt_number(association: str) -> int:
    """Take the next number with one guarded UPDATE ... RETURNING (row lock until commit)."""
    _ensure_counter(association)
    # The UPDATE locks the counter row on PostgreSQL (SQLite: BEGIN IMMEDIATE holds the write
    # lock), so concurrent payers queue; the number is only kept if the transaction commits.
    return db.session.execute(
        sa.update(ReceiptCounter)
        .where(ReceiptCounter.association == association)
        .values(last_number=ReceiptCounter.last_number + 1)
        .returning(ReceiptCounter.last_number)
    ).scalar_one()


def issue_receipt_if_paid(order_id: int) -> Receipt | None:
    """Issue the order's receipt if it is fully paid and has none yet; the caller commits."""
    from orders.payments import amount_due_cents, paid_cents

    existing = db.session.scalar(sa.select(Receipt).where(Receipt.order_id == order_id))
    if existing is not None:
        return existing
    order = db.session.get(Order, order_id)
    if order is None or order.status != "confirmed" or order.total_cents <= 0:
        return None
    if amount_due_cents(order_id) > 0:
        return None
    association = association_name()
    # Number and receipt in one savepoint: if the insert loses a race for this order, the
    # number goes back with it, so the sequence keeps no gap.
    try:
        with db.session.begin_nested():
            number = next_receipt_number(association)
            receipt = Receipt(
                association=association,
                number=number,
                order_id=order_id,
                household_id=order.household_id,
                amount_cents=paid_cents(order_id),
            )
            db.session.add(receipt)
            db.session.flush()
    except IntegrityError:
        return db.session.scalar(sa.select(Receipt).where(Receipt.order_id == order_id))
    return receipt


def receipt_for_order(order_id: int) -> Receipt | None:
    """The order's receipt, if it was issued."""
    return db.session.scalar(sa.select(Receipt).where(Receipt.order_id == order_id))


def render_receipt_pdf(receipt_id: int) -> RenderedPdf:
    """The receipt as a PDF: association, number, household, lines, payments."""
    from app.models import Household
    from orders.models import Cycle
    from orders.payments import paid_cents

    receipt = db.session.get(Receipt, receipt_id)
    if receipt is None:
        raise LookupError(f"no receipt {receipt_id}")
    order = db.session.get(Order, receipt.order_id)
    payments = db.session.scalars(
        sa.select(Payment)
        .where(Payment.order_id == order.id, Payment.status == "succeeded")
        .order_by(Payment.completed_at, Payment.id)
    ).all()
    return render_pdf(
        "orders/payments/receipt_pdf.html",
        receipt=receipt,
        order=order,
        cycle=db.session.get(Cycle, order.cycle_id),
        household=db.session.get(Household, order.household_id),
        payments=payments,
        # The order shrank after it was paid (weighed lighter, items missing): the ledger kept the rest.
        credited_cents=max(0, paid_cents(order.id) - order.total_cents),
    )
