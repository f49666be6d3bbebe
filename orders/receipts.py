"""Receipts for paid orders: numbered without gaps per association, frozen when issued, replaced but never edited.

When a receipt is issued
    Once the order is paid in full and its price is known: no product sold by weight is still waiting
    to be weighed (unless the bag was handed out or the distribution is over, when the price is what it
    is). A household that pays before Thursday for apples sold by weight gets its receipt once they are
    weighed. (Orders paid in full while the week is still open get theirs at payment, as before: the
    desk, the card webhook and the account page rely on it.)

What a receipt shows never changes
    Everything it prints (lines with quantities and amounts, total, payments, what was paid, what went
    to the balance, what is still due, household, distribution) is frozen in ``Receipt.snapshot`` when
    it is issued, and the PDF is always rendered from that snapshot, never from the order.

When the order or its payments change afterwards
    (the cart changed before the close, bulk allocated less, a lighter weight, a missing product, more
    paid, a desk payment cancelled, a card refund, the distribution cancelled) a new receipt is issued
    with the next number; it says which one it replaces, and the old row stays as it was. A change that
    leaves the order owing money waits for the payment, unless the last receipt now claims more money
    than was kept, or an order that was cancelled: then the replacement is issued at once.

Who calls it
    Payments call ``refresh_receipt`` (desk, card webhook, balance); finalize refreshes every order
    of the cycle (``refresh_cycle_receipts``). Changes made elsewhere (weighing, shortages at the
    distribution, a cancelled distribution, card refunds) are caught at commit: the session hooks at the
    end of this module note the orders whose lines, payments or ledger entries were written through the
    ORM and refresh their receipts before the transaction commits, in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import chain

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.extensions import db
from app.money import line_total_cents
from app.pdf import RenderedPdf, render_pdf
from orders.models import Order, OrderLine
from orders.payment_models import LedgerEntry, Payment, Receipt, ReceiptCounter

#: Bumped when the snapshot's shape changes; render_receipt_pdf reads every version ever written.
SNAPSHOT_VERSION = 1
#: What a receipt says about goods and money: when any of these differs, the receipt is replaced.
#: (The household's name or the distribution date changing later does not make a receipt wrong.)
CONTENT_KEYS = ("order_status", "lines", "total_cents", "payments", "paid_cents", "credited_cents", "due_cents")


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


# --- what a receipt shows --------------------------------------------------------------------


def order_snapshot(order_id: int) -> dict:
    """What a receipt of the order would print now, as plain JSON values (cents, quantities as text).

    Self-consistent by construction: the total is the sum of the printed line totals, the amount paid
    the sum of the printed payments (what each kept), and credited and due follow from those two.
    """
    from app.models import Household
    from orders.models import Cycle
    from producers.models import Offer, Product

    order = db.session.scalar(
        sa.select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    )
    if order is None:
        raise LookupError(f"no order {order_id}")
    confirmed = order.status == "confirmed"
    lines = []
    if confirmed:
        rows = db.session.execute(
            sa.select(OrderLine, Product.name, Product.unit)
            .join(Offer, Offer.id == OrderLine.offer_id)
            .join(Product, Product.id == Offer.product_id)
            .where(OrderLine.order_id == order_id)
            .order_by(OrderLine.id)
            # Core UPDATEs (cart, allocation) may have left stale copies in the session.
            .execution_options(populate_existing=True)
        ).all()
        for line, name, unit in rows:
            quantity = line.charged_quantity
            lines.append({
                "product": name,
                "unit": unit,
                "quantity": str(quantity),
                "unit_price_cents": line.unit_price_cents,
                "total_cents": line_total_cents(line.unit_price_cents, quantity),
                "missing": bool(line.missing),
            })
    payments = [
        {
            "id": p.id,
            "at": (p.completed_at or p.created_at).isoformat(),
            "method": p.method,
            "amount_cents": p.amount_cents,
            "refunded_cents": p.refunded_cents,
            "cheque_number": p.provider_reference if p.method == "cheque" else None,
            "cheque_bank": p.cheque_bank if p.method == "cheque" else None,
        }
        for p in db.session.scalars(
            sa.select(Payment)
            .where(Payment.order_id == order_id, Payment.status == "succeeded")
            .order_by(Payment.completed_at, Payment.id)
            .execution_options(populate_existing=True)
        )
    ]
    total = sum(line["total_cents"] for line in lines)
    paid = sum(p["amount_cents"] - p["refunded_cents"] for p in payments)
    cycle = db.session.get(Cycle, order.cycle_id)
    household = db.session.get(Household, order.household_id)
    return {
        "version": SNAPSHOT_VERSION,
        "order_id": order.id,
        "household": household.name if household else "",
        "distribution_date": cycle.distribution_date.isoformat() if cycle else None,
        "order_status": order.status,
        "lines": lines,
        "total_cents": total,
        "payments": payments,
        "paid_cents": paid,
        # What the ledger put on the balance: all of it for a cancelled order, else what exceeds the total.
        "credited_cents": max(0, paid - total) if confirmed else paid,
        "due_cents": max(0, total - paid) if confirmed else 0,
        "replaces": None,
    }


def _content(snapshot: dict) -> dict:
    """The part of a snapshot that decides whether a receipt still tells the truth."""
    return {key: snapshot.get(key) for key in CONTENT_KEYS}


def awaiting_weight(order: Order) -> bool:
    """Whether a product sold by weight is still to be weighed, so the order's price is not known yet.

    Not once the bag was handed out or the distribution is over: the price is then what it is. An AMAP
    basket (free here, paid with the season) weighs nothing on the price.
    """
    from orders.models import Cycle
    from pickup.models import Pickup
    from producers.models import Offer, Product

    cycle_status = db.session.scalar(sa.select(Cycle.status).where(Cycle.id == order.cycle_id))
    if cycle_status in ("distributed", "archived"):
        return False
    unweighed = db.session.scalar(
        sa.select(sa.func.count(OrderLine.id))
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .where(
            OrderLine.order_id == order.id,
            Product.sold_by_weight.is_(True),
            OrderLine.quantity_prepared.is_(None),
            OrderLine.missing.is_(False),
            OrderLine.unit_price_cents > 0,
            sa.func.coalesce(OrderLine.quantity_allocated, OrderLine.quantity) > 0,
        )
    )
    if not unweighed:
        return False
    collected = db.session.scalar(
        sa.select(Pickup.collected_at).where(Pickup.order_id == order.id)
    )
    return collected is None


def _receipt_wanted(order: Order, snapshot: dict, latest: Receipt | None) -> bool:
    """Whether the order needs a (new) receipt now; see the module docstring for the rules."""
    if latest is None:
        return (snapshot["order_status"] == "confirmed" and snapshot["total_cents"] > 0
                and snapshot["due_cents"] == 0 and not awaiting_weight(order))
    before = latest.snapshot or {}
    if _content(snapshot) == _content(before):
        return False
    if snapshot["paid_cents"] < before.get("paid_cents", 0) or snapshot["order_status"] != before.get("order_status"):
        # The last receipt now states money or an order that no longer holds: replace it at once.
        return True
    return snapshot["due_cents"] == 0 and not awaiting_weight(order)


def receipt_for_order(order_id: int) -> Receipt | None:
    """The order's current receipt (its latest revision), if one was issued."""
    return db.session.scalar(
        sa.select(Receipt).where(Receipt.order_id == order_id).order_by(Receipt.revision.desc()).limit(1)
    )


def refresh_receipt(order_id: int) -> Receipt | None:
    """Issue the order's receipt, or the one that replaces it, if what it would show is due and new.

    Returns the order's current receipt (None while it has none). Safe to call any number of times: a
    receipt is issued only when the snapshot differs from the latest one. The caller commits.
    """
    order = db.session.get(Order, order_id)
    if order is None:
        return None
    latest = receipt_for_order(order_id)
    snapshot = order_snapshot(order_id)
    if not _receipt_wanted(order, snapshot, latest):
        return latest
    snapshot["replaces"] = latest.label if latest is not None else None
    association = association_name()
    # Number and receipt in one savepoint: if the insert loses a race for this order (the same revision
    # issued by a concurrent transaction), the number goes back with it, so the sequence keeps no gap.
    try:
        with db.session.begin_nested():
            receipt = Receipt(
                association=association,
                number=next_receipt_number(association),
                order_id=order_id,
                revision=latest.revision + 1 if latest is not None else 1,
                replaces_id=latest.id if latest is not None else None,
                household_id=order.household_id,
                amount_cents=snapshot["paid_cents"],
                snapshot=snapshot,
                issued_at=utcnow(),
            )
            db.session.add(receipt)
            db.session.flush()
    except IntegrityError:
        return receipt_for_order(order_id)
    return receipt


def refresh_receipts(order_ids) -> int:
    """refresh_receipt for each of these orders that was ever paid or has a receipt; returns how many were issued.

    Orders never paid and without a receipt cannot need one: they are skipped with one query for all.
    """
    order_ids = sorted(set(order_ids))
    if not order_ids:
        return 0
    candidates = set(db.session.scalars(
        sa.select(Payment.order_id).where(Payment.order_id.in_(order_ids), Payment.status.in_(("succeeded", "cancelled")))
        .union(sa.select(Receipt.order_id).where(Receipt.order_id.in_(order_ids)))
    ))
    issued = 0
    for order_id in order_ids:
        if order_id not in candidates:
            continue
        before = receipt_for_order(order_id)
        after = refresh_receipt(order_id)
        if after is not None and (before is None or after.id != before.id):
            issued += 1
    return issued


def refresh_cycle_receipts(cycle_id: int) -> int:
    """Bring every receipt of the cycle's orders up to date (at finalize); returns how many were issued."""
    return refresh_receipts(db.session.scalars(sa.select(Order.id).where(Order.cycle_id == cycle_id)).all())


def receipts_of_order(order_id: int) -> list[Receipt]:
    """Every receipt of the order, oldest first (the last one is the current one)."""
    return list(db.session.scalars(
        sa.select(Receipt).where(Receipt.order_id == order_id).order_by(Receipt.revision)
    ))


# --- the PDF ---------------------------------------------------------------------------------


@dataclass
class _Line:
    """A snapshot line as the template prints it."""

    product: str
    unit: str
    quantity: Decimal
    unit_price_cents: int
    total_cents: int
    missing: bool

    @property
    def partly_missing(self) -> bool:
        """Short but something was received: the quantity printed is what came, as the order page says.

        Read from the quantity every snapshot already holds, so receipts issued before say it too.
        """
        return self.missing and self.quantity > 0


@dataclass
class _Payment:
    """A snapshot payment as the template prints it."""

    at: datetime
    method: str
    amount_cents: int
    refunded_cents: int
    cheque_number: str | None
    cheque_bank: str | None


def _printed(snapshot: dict) -> dict:
    """The snapshot with quantities as Decimals and dates as dates, for the template's filters."""
    day = snapshot.get("distribution_date")
    return {
        **snapshot,
        "distribution_date": date.fromisoformat(day) if day else None,
        "lines": [_Line(line["product"], line.get("unit", ""), Decimal(line["quantity"]), line["unit_price_cents"],
                        line["total_cents"], bool(line.get("missing"))) for line in snapshot.get("lines", [])],
        "payments": [_Payment(datetime.fromisoformat(p["at"]), p["method"], p["amount_cents"],
                              p.get("refunded_cents", 0), p.get("cheque_number"), p.get("cheque_bank"))
                     for p in snapshot.get("payments", [])],
    }


def render_receipt_pdf(receipt_id: int) -> RenderedPdf:
    """The receipt as a PDF, from its snapshot only: what it showed when issued, whatever happened since."""
    receipt = db.session.get(Receipt, receipt_id)
    if receipt is None:
        raise LookupError(f"no receipt {receipt_id}")
    return render_pdf("orders/payments/receipt_pdf.html", receipt=receipt, shown=_printed(receipt.snapshot))


# --- receipts follow the orders changed in a transaction ----------------------------------------

#: session.info key: ids of the orders whose lines, payments or ledger entries this transaction wrote.
_CHANGED = "panier_receipt_orders"
_REFRESHING = "panier_refreshing_receipts"


def _order_id_of(obj) -> int | None:
    """The order an ORM object written in a flush belongs to, read without loading anything."""
    values = sa.inspect(obj).dict
    if isinstance(obj, Order):
        return values.get("id")
    if isinstance(obj, (OrderLine, Payment, LedgerEntry)):
        return values.get("order_id")
    return None


def _note_changed_orders(session, _flush_context) -> None:
    """After each flush: remember the orders whose lines, payments or ledger entries were written."""
    changed = {_order_id_of(obj) for obj in chain(session.new, session.dirty, session.deleted)}
    changed.discard(None)
    if changed:
        session.info.setdefault(_CHANGED, set()).update(changed)


def _refresh_changed_receipts(session) -> None:
    """Before commit: the receipts of the orders this transaction changed are brought up to date in it.

    This is what keeps a receipt true when an order changes in code that does not know about receipts
    (weighing and shortages at the distribution, a cancelled distribution, a card refund).
    """
    if session.info.get(_REFRESHING) or not has_app_context():
        return
    if session.in_nested_transaction():
        # SQLAlchemy also calls before_commit when a SAVEPOINT is released: refreshing there would take the
        # receipt counter's lock in the middle of the caller's order locks (a deadlock with finalize). The
        # orders noted stay for the real commit.
        return
    if not db.session.registry.has() or db.session.registry() is not session:
        return  # another session than the application's: not ours to extend
    session.flush()
    changed = session.info.pop(_CHANGED, None)
    if not changed:
        return
    session.info[_REFRESHING] = True
    try:
        refresh_receipts(changed)
        session.flush()
    finally:
        session.info.pop(_REFRESHING, None)
        session.info.pop(_CHANGED, None)


def _forget_changed_orders(session, transaction) -> None:
    """A transaction that ends (committed or rolled back) leaves nothing for the next one."""
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)


sa.event.listen(db.session, "after_flush", _note_changed_orders)
sa.event.listen(db.session, "before_commit", _refresh_changed_receipts)
sa.event.listen(db.session, "after_transaction_end", _forget_changed_orders)
