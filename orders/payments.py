"""Payments towards orders: what is due, desk payments (cash, cheque, balance), balance settlement."""
from __future__ import annotations

import sqlalchemy as sa
from flask_babel import gettext as _

from app.db import utcnow
from app.extensions import db
from app.money import format_cents
from orders import ledger
from orders.models import Order
from orders.payment_models import LedgerEntry, Payment

DESK_METHODS = ("cash", "cheque", "balance")
#: No single desk payment is larger than this (a typo guard: 2 000,00 €).
MAX_DESK_PAYMENT_CENTS = 200_000


class PaymentError(ValueError):
    """A payment that cannot be recorded; the message is shown to the person as is (French)."""


def paid_cents(order_id: int) -> int:
    """What has been paid for the order and kept: succeeded payments minus what went back to the card."""
    total = db.session.scalar(
        sa.select(
            sa.func.coalesce(sa.func.sum(Payment.amount_cents - Payment.refunded_cents), 0)
        ).where(Payment.order_id == order_id, Payment.status == "succeeded")
    )
    return int(total or 0)


def amount_due_cents(order_id: int) -> int:
    """The order total minus succeeded payments, never below 0 (a cancelled order owes nothing)."""
    order = db.session.get(Order, order_id)
    if order is None or order.status == "cancelled":
        return 0
    return max(0, order.total_cents - paid_cents(order_id))


def spendable_balance_cents(household_id: int) -> int:
    """What the household may spend from its balance on an order.

    The balance nets every charged order; money still owed on a charged order is part of the
    balance's minus, so it is added back: spendable = balance + what charged orders still owe.
    """
    charged = dict(
        db.session.execute(
            sa.select(LedgerEntry.order_id, -sa.func.sum(LedgerEntry.amount_cents))
            .where(
                LedgerEntry.household_id == household_id,
                LedgerEntry.order_id.is_not(None),
                LedgerEntry.kind.in_(("charge", "credit")),
            )
            .group_by(LedgerEntry.order_id)
        ).all()
    )
    if not charged:
        return max(0, ledger.balance_cents(household_id))
    paid = dict(
        db.session.execute(
            sa.select(Payment.order_id, sa.func.sum(Payment.amount_cents - Payment.refunded_cents))
            .where(Payment.order_id.in_(charged.keys()), Payment.status == "succeeded")
            .group_by(Payment.order_id)
        ).all()
    )
    owed = sum(max(0, int(c) - int(paid.get(order_id) or 0)) for order_id, c in charged.items())
    return max(0, ledger.balance_cents(household_id) + owed)


def _locked_order(order_id: int) -> Order:
    """The order, row-locked on PostgreSQL so two payments of one order queue up."""
    order = db.session.scalar(sa.select(Order).where(Order.id == order_id).with_for_update())
    if order is None:
        raise PaymentError(_("Cette commande n'existe pas."))
    return order


def record_desk_payment(
    order_id: int,
    method: str,
    amount_cents: int,
    *,
    received_by_id: int | None,
    cheque_number: str | None = None,
    cheque_bank: str | None = None,
    household_id: int | None = None,
) -> Payment:
    """Record a payment taken at the café (cash, cheque) or from the household balance.

    Validates everything before writing; raises PaymentError with a French message. When
    ``household_id`` is given the order must be that household's. The caller commits.
    """
    if method not in DESK_METHODS:
        raise PaymentError(_("Moyen de paiement inconnu."))
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise PaymentError(_("Le montant doit être supérieur à zéro."))
    if amount_cents > MAX_DESK_PAYMENT_CENTS:
        raise PaymentError(_("Ce montant est trop élevé pour une commande."))
    cheque_number = (cheque_number or "").strip() or None
    cheque_bank = (cheque_bank or "").strip() or None
    if method == "cheque" and (not cheque_number or not cheque_bank):
        raise PaymentError(_("Pour un chèque, indiquez son numéro et sa banque."))
    order = _locked_order(order_id)
    if household_id is not None and order.household_id != household_id:
        raise PaymentError(_("Cette commande n'est pas celle de ce foyer."))
    if order.status == "cancelled":
        raise PaymentError(_("Cette commande est annulée."))
    due = amount_due_cents(order_id)
    if due <= 0:
        raise PaymentError(_("Cette commande est déjà payée."))
    if amount_cents > due:
        raise PaymentError(
            _("Le montant dépasse ce qui reste à payer (%(due)s).", due=format_cents(due))
        )
    # Charging the order now keeps a positive balance equal to money the household may spend.
    ledger.sync_order_charge(order_id)
    if method == "balance":
        available = spendable_balance_cents(order.household_id)
        if amount_cents > available:
            raise PaymentError(
                _("Le solde disponible (%(available)s) ne suffit pas.", available=format_cents(available))
            )
    payment = Payment(
        order_id=order_id,
        household_id=order.household_id,
        method=method,
        amount_cents=amount_cents,
        status="succeeded",
        provider_reference=cheque_number,
        cheque_bank=cheque_bank,
        received_by_id=received_by_id,
        completed_at=utcnow(),
    )
    db.session.add(payment)
    db.session.flush()
    if method != "balance":
        ledger.record_entry(
            order.household_id,
            amount_cents,
            "payment",
            f"payment:{payment.id}",
            order_id=order_id,
            note=_describe(payment),
            created_by_id=received_by_id,
        )
    _issue_receipt_if_paid(order_id)
    return payment


def _describe(payment: Payment) -> str:
    """A short note for the ledger line (method and cheque details)."""
    if payment.method == "cheque":
        return f"chèque n° {payment.provider_reference} ({payment.cheque_bank})"
    return {"cash": "espèces", "card": "carte bancaire", "balance": "solde"}.get(payment.method, payment.method)


def _issue_receipt_if_paid(order_id: int) -> None:
    """Issue the order's receipt once it is fully paid (receipts module, imported lazily)."""
    from orders.receipts import issue_receipt_if_paid

    issue_receipt_if_paid(order_id)


def settle_balance_payments(cycle_id: int) -> int:
    """At finalize: charge every order of the cycle and pay what is due from spendable balances.

    Safe to run twice (a second run finds nothing more to pay). Returns the number of balance
    payments recorded. The caller commits.
    """
    order_ids = db.session.scalars(
        sa.select(Order.id).where(Order.cycle_id == cycle_id).order_by(Order.id)
    ).all()
    settled = 0
    for order_id in order_ids:
        order = _locked_order(order_id)
        # A cancelled order that was paid gets its charge back as a credit here.
        ledger.sync_order_charge(order_id)
        if order.status == "cancelled":
            continue
        due = amount_due_cents(order_id)
        if due <= 0:
            continue
        amount = min(due, spendable_balance_cents(order.household_id))
        if amount <= 0:
            continue
        db.session.add(
            Payment(
                order_id=order_id,
                household_id=order.household_id,
                method="balance",
                amount_cents=amount,
                status="succeeded",
                completed_at=utcnow(),
            )
        )
        db.session.flush()
        _issue_receipt_if_paid(order_id)
        settled += 1
    return settled
