"""The household ledger: signed entries in cents whose sum is the household's balance.

Accounting rules (every euro is accounted for):

* An entry is a movement on the household's account with the association, in integer cents.
  Positive means money the household has with the association, negative what it owes.
  ``balance_cents(household) == SUM(amount_cents)`` of its entries, always; nothing else is stored.
* kinds:
    - ``payment`` (+): money that came in for an order: card (after Stripe's webhook), cash, cheque.
      A payment from the balance moves no money and writes no payment entry (see below).
    - ``charge`` (-) / ``credit`` (+): what the order costs. For each order,
      ``SUM(charge and credit entries of the order) == -order.total_cents`` once it is charged;
      ``sync_order_charge`` keeps that true by adding one entry for the difference
      (``charge`` when the order grows, ``credit`` when it shrinks: missing items, bulk allocated
      below the order, a lighter weight). An order is charged when its cycle is finalized, or
      earlier when a payment is recorded for it (so a payment and the charge it covers land
      together and a positive balance is always money the household may spend).
    - ``refund`` (-): money that went back out: a Stripe refund to the card, or credit handed back
      in cash or by the association's cheque (``method``, and ``cycle_id`` when it left a distribution's till).
    - ``topup`` (+): money handed to the coordinator, or to a volunteer at the desk, to keep on the
      account; with its ``method`` (cash, cheque) and the distribution whose till took it (``cycle_id``).
    - ``adjustment`` (+/-): a coordinator's correction, with a note.
* Hence, summed over all households:
  ``SUM(balances) == payments in + top-ups - refunds out - net charges (+ adjustments)``.
* Example: an order of 20,00 € paid by card before close: +20,00 payment and -20,00 charge
  (balance 0). A missing item of 3,00 € found on Thursday: ``sync_order_charge`` adds a
  +3,00 credit; the balance is +3,00, spent on a later order, or sent back to the card by a
  coordinator (-3,00 refund).
* Every entry has a unique ``reference`` so a retried call records nothing twice.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.money import line_total_cents
from orders.models import Order, OrderLine
from orders.payment_models import LedgerEntry

LEDGER_KINDS = ("payment", "charge", "credit", "refund", "adjustment", "topup")
#: Signs each kind may carry (adjustments may go either way).
_SIGNS = {
    "payment": 1, "credit": 1, "topup": 1, "charge": -1, "refund": -1,
}


def balance_cents(household_id: int) -> int:
    """The household's balance: the sum of its ledger entries (cents, positive = in its favour)."""
    return balances_cents([household_id])[household_id]


def balances_cents(household_ids) -> dict[int, int]:
    """balance_cents of each of these households, in one query."""
    totals = dict(db.session.execute(
        sa.select(LedgerEntry.household_id, sa.func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.household_id.in_(household_ids)).group_by(LedgerEntry.household_id)
    ).all())
    return {household_id: int(totals.get(household_id) or 0) for household_id in household_ids}


def record_entry(
    household_id: int,
    amount_cents: int,
    kind: str,
    reference: str,
    *,
    order_id: int | None = None,
    note: str | None = None,
    created_by_id: int | None = None,
    method: str | None = None,
    cheque_number: str | None = None,
    cheque_bank: str | None = None,
    cycle_id: int | None = None,
) -> LedgerEntry:
    """Add one ledger entry, or return the existing one with the same reference (idempotent).

    ``method``, the cheque's details and ``cycle_id`` are for money handed over by hand (a top-up, credit
    handed back): how, and at which distribution's till.
    """
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        raise TypeError("ledger amounts are integer cents")
    sign = _SIGNS.get(kind)
    if sign is not None and amount_cents * sign < 0:
        raise ValueError(f"a {kind} entry cannot be {amount_cents} cents")
    existing = db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.reference == reference))
    if existing is not None:
        return existing
    entry = LedgerEntry(
        household_id=household_id,
        amount_cents=amount_cents,
        kind=kind,
        reference=reference,
        order_id=order_id,
        note=note,
        created_by_id=created_by_id,
        method=method,
        cheque_number=cheque_number,
        cheque_bank=cheque_bank,
        cycle_id=cycle_id,
    )
    # A concurrent writer may insert the same reference between our read and our insert:
    # the savepoint keeps the caller's transaction usable and we return the winner's entry.
    try:
        with db.session.begin_nested():
            db.session.add(entry)
    except IntegrityError:
        return db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.reference == reference))
    return entry


def order_charged_cents(order_id: int) -> int:
    """What the order is charged so far: minus the sum of its charge and credit entries."""
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_cents), 0)).where(
            LedgerEntry.order_id == order_id, LedgerEntry.kind.in_(("charge", "credit"))
        )
    )
    return -int(total or 0)


def order_target_cents(order: Order) -> int:
    """What an order should cost: the sum of its line totals if confirmed, else nothing."""
    if order.status != "confirmed":
        return 0
    return sum(line.total_cents for line in order.lines)


def sync_order_charge(order_id: int, *, credit_note: str | None = None) -> int:
    """Make the order's charge equal its total with one entry for the difference; returns the delta.

    The delta is what the household owes more (positive, a ``charge``) or less (negative, a
    ``credit``). Order.total_cents is refreshed from the lines first, by the same rule as the
    order service (sum of line totals). ``credit_note`` replaces the note of a credit written now
    (e.g. ``CANCELLED_NOTE`` when the distribution is cancelled).
    """
    # Lock the order row (PostgreSQL) so two syncs of the same order cannot both add the delta.
    # populate_existing: bulk UPDATEs elsewhere (allocation, close) may have left stale objects.
    order = db.session.scalar(
        sa.select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
    )
    if order is None:
        raise LookupError(f"no order {order_id}")
    lines = db.session.scalars(
        sa.select(OrderLine).where(OrderLine.order_id == order_id).execution_options(populate_existing=True)
    ).all()
    lines_total = sum(line.total_cents for line in lines)
    if order.status == "confirmed" and order.total_cents != lines_total:
        order.total_cents = lines_total
    # Only a confirmed order costs anything; a cancelled (or never confirmed) one is credited back.
    target = lines_total if order.status == "confirmed" else 0
    charged = order_charged_cents(order_id)
    delta = target - charged
    if delta == 0:
        return 0
    # The reference names the state reached, so a retry of the same sync adds nothing.
    seq = db.session.scalar(
        sa.select(sa.func.count(LedgerEntry.id)).where(
            LedgerEntry.order_id == order_id, LedgerEntry.kind.in_(("charge", "credit"))
        )
    )
    ordered = sum(line_total_cents(line.unit_price_cents, line.quantity) for line in lines)
    if seq == 0 and order.status == "confirmed" and ordered > target:
        # First charge of an order that already shrank (bulk allocated below the order, missing
        # items): charge what was ordered and credit the difference, so the household sees why.
        _entry(order, ordered, "charge", 1, ordered, note=None)
        _entry(order, target - ordered, "credit", 2, target, note=_CREDIT_NOTE)
        return delta
    kind = "charge" if delta > 0 else "credit"
    note = (credit_note or _CREDIT_NOTE) if kind == "credit" else ("complément de commande" if seq else None)
    _entry(order, delta, kind, seq + 1, target, note=note)
    return delta


#: The note on a credit: what the household got less of (shown on its account page).
_CREDIT_NOTE = "avoir : produits manquants ou attribués en moins"
#: The note on the credit that takes back the charge of an order whose distribution was cancelled.
CANCELLED_NOTE = "avoir : distribution annulée"


def _entry(order: Order, delta: int, kind: str, seq: int, state: int, *, note: str | None) -> None:
    """One charge (delta > 0) or credit (delta < 0) entry of an order, referenced by the state it reaches."""
    record_entry(
        order.household_id,
        -delta,
        kind,
        f"order:{order.id}:{kind}:{seq}:{state}",
        order_id=order.id,
        note=note,
    )
