"""Payments towards orders: what is due, desk payments (cash, cheque, balance), balance settlement."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.extensions import db
from app.money import format_cents, line_total_cents
from app.spreadsheet import euros_cell, french_csv, text_cell
from app.timeutil import local_today
from orders import ledger
from orders.models import Order, OrderLine
from orders.payment_models import HAND_BACK_PREFIX, LedgerEntry, Payment
from orders.receipts import refresh_cycle_receipts, refresh_receipt

DESK_METHODS = ("cash", "cheque", "balance")
#: What a volunteer puts in a distribution's till (card and balance never go through it).
TILL_METHODS = ("cash", "cheque")
#: No single desk payment is larger than this (a typo guard: 2 000,00 €).
MAX_DESK_PAYMENT_CENTS = 200_000
#: Cash handed over beyond what is due by more than this is a typo ("150" for 15,00 €), not change: no one
#: pays a bag with more than a 100 € note (100,00 €).
MAX_CHANGE_CENTS = 10_000


class PaymentError(ValueError):
    """A payment that cannot be recorded; the message is shown to the person as is (French)."""


class PaymentAlreadyRecorded(PaymentError):
    """The same form was sent again (double tap, slow connection): the first payment stands, nothing new."""


def _form_token(token: str | None) -> str:
    """The one-time token of a form, checked (8 to 64 letters or digits)."""
    token = (token or "").strip()
    if not (8 <= len(token) <= 64 and token.isalnum()):
        raise PaymentError(_("Le formulaire a expiré. Rechargez la page."))
    return token


#: What a payment brought in and kept: its amount minus what went back to the card.
KEPT_CENTS = Payment.amount_cents - Payment.refunded_cents


def paid_cents(order_id: int) -> int:
    """What has been paid for the order and kept: succeeded payments minus what went back to the card."""
    return _paid_by_order([order_id]).get(order_id, 0)


def _paid_by_order(order_ids) -> dict[int, int]:
    """paid_cents of each of these orders (absent when nothing was paid), in one query."""
    return {order_id: int(total or 0) for order_id, total in db.session.execute(
        sa.select(Payment.order_id, sa.func.sum(KEPT_CENTS))
        .where(Payment.order_id.in_(order_ids), Payment.status == "succeeded")
        .group_by(Payment.order_id)
    )}


def paid_by_order_subquery():
    """What each order has paid and kept (columns order_id, paid_cents), as a subquery to outer-join.

    The same sum as paid_cents, for a report that reads many orders in one query."""
    return (
        sa.select(Payment.order_id, sa.func.sum(KEPT_CENTS).label("paid_cents"))
        .where(Payment.status == "succeeded")
        .group_by(Payment.order_id)
        .subquery()
    )


def amount_due_cents(order_id: int) -> int:
    """The order total minus succeeded payments, never below 0 (only a confirmed order owes anything)."""
    order = db.session.get(Order, order_id)
    if order is None or order.status != "confirmed":
        return 0
    return max(0, order.total_cents - paid_cents(order_id))


def _owed_on_charged_orders(household_id: int) -> dict[int, int]:
    """What each charged order of the household still owes (charged minus paid, never below 0)."""
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
        return {}
    paid = _paid_by_order(list(charged))
    return {order_id: max(0, int(c) - paid.get(order_id, 0)) for order_id, c in charged.items()}


def amounts_due_cents(orders: Sequence[Order]) -> dict[int, int]:
    """What each of these orders still owes (as amount_due_cents), in one query for them all.

    Anything with the order's ``id``, ``status`` and ``total_cents`` will do (an Order, or a row that
    selected those columns)."""
    paid = _paid_by_order([order.id for order in orders]) if orders else {}
    return {
        order.id: max(0, order.total_cents - paid.get(order.id, 0)) if order.status == "confirmed" else 0
        for order in orders
    }


def spendable_balance_cents(household_id: int) -> int:
    """What the household may spend from its balance on an order.

    The balance nets every charged order; money still owed on a charged order is part of the
    balance's minus, so it is added back: spendable = balance + what charged orders still owe.
    """
    owed = sum(_owed_on_charged_orders(household_id).values())
    return max(0, ledger.balance_cents(household_id) + owed)


@dataclass
class DeskBalance:
    """The household's balance as the desk shows it on a distribution day."""

    #: The whole ledger (what « Mon solde » shows).
    balance_cents: int
    #: Charged but not yet paid on orders of later distributions: not due today.
    upcoming_owed_cents: int

    @property
    def until_now_cents(self) -> int:
        """The balance without the unpaid orders of distributions still to come."""
        return self.balance_cents + self.upcoming_owed_cents


def desk_balance(household_id: int, cycle_id: int) -> DeskBalance:
    """The balance at the desk of a distribution, apart from what later distributions will ask."""
    from orders.models import Cycle

    owed = _owed_on_charged_orders(household_id)
    upcoming = 0
    if owed:
        day = sa.select(Cycle.distribution_date).where(Cycle.id == cycle_id).scalar_subquery()
        later = set(db.session.scalars(
            sa.select(Order.id).join(Cycle, Cycle.id == Order.cycle_id)
            .where(Order.id.in_(owed.keys()), Cycle.distribution_date > day)
        ))
        upcoming = sum(cents for order_id, cents in owed.items() if order_id in later)
    return DeskBalance(ledger.balance_cents(household_id), upcoming)


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
    token: str | None = None,
    with_change: bool = False,
    cycle_id: int | None = None,
) -> Payment:
    """Record a payment taken at the café (cash, cheque) or from the household balance.

    Validates everything before writing; raises PaymentError with a French message. When
    ``household_id`` is given the order must be that household's. ``token`` is the one-time
    token of the form that was shown: the same form sent twice records one payment and raises
    PaymentAlreadyRecorded the second time. With ``with_change``, cash above what is due is what
    the household handed over: the payment is what is due (read under the order's lock) and the
    caller gives the rest back or keeps it (``amount_cents - payment.amount_cents``). A cheque or
    the balance is always the exact amount. ``cycle_id`` is the distribution whose till took cash or a
    cheque (None away from a distribution); the balance goes through no till. The caller commits.
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
    key = f"desk:{order_id}:{_form_token(token)}" if token is not None else None
    order = _locked_order(order_id)
    if household_id is not None and order.household_id != household_id:
        raise PaymentError(_("Cette commande n'est pas celle de ce foyer."))
    if key is not None and db.session.scalar(sa.select(Payment.id).where(Payment.idempotency_key == key)):
        raise PaymentAlreadyRecorded(_("Ce paiement est déjà enregistré."))
    if order.status != "confirmed":
        raise PaymentError(_("Cette commande est annulée.") if order.status == "cancelled"
                           else _("Cette commande n'est pas encore confirmée."))
    due = amount_due_cents(order_id)
    if due <= 0:
        raise PaymentError(_("Cette commande est déjà payée."))
    if amount_cents > due and method == "cash" and with_change:
        if amount_cents - due > MAX_CHANGE_CENTS:
            raise PaymentError(_("Le montant reçu dépasse de plus de %(max)s ce qui reste à payer (%(due)s) : "
                                 "vérifiez le montant.", max=format_cents(MAX_CHANGE_CENTS), due=format_cents(due)))
        amount_cents = due
    elif amount_cents > due and method == "cheque":
        # One cheque is one line of the till: it is never split into a payment and a top-up.
        raise PaymentError(_("Un chèque se fait du montant exact : %(due)s. Si le foyer veut donner plus, "
                             "enregistrez tout le chèque comme versement sur son compte, puis payez le sac "
                             "avec le solde.", due=format_cents(due)))
    elif amount_cents > due:
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
        idempotency_key=key,
        cycle_id=cycle_id if method in TILL_METHODS else None,
    )
    # Two copies of one form racing past the check above: the unique key lets one through.
    try:
        with db.session.begin_nested():
            db.session.add(payment)
    except IntegrityError:
        raise PaymentAlreadyRecorded(_("Ce paiement est déjà enregistré.")) from None
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
    refresh_receipt(order_id)
    return payment


def _describe(payment: Payment) -> str:
    """A short note for the ledger line (method and cheque details)."""
    if payment.method == "cheque":
        return f"chèque n° {payment.provider_reference} ({payment.cheque_bank})"
    return {"cash": "espèces", "card": "carte bancaire", "balance": "solde"}.get(payment.method, payment.method)



# --- corrections: a desk payment recorded by mistake, credit handed back ------------------------

#: Notes of corrections are kept with the ledger entry (300 characters with the prefix).
MAX_NOTE_LENGTH = 200
#: How credit goes back to a household outside the card: cash from the till, or the association's cheque.
HAND_BACK_METHODS = ("cash", "cheque")
#: How a household hands money in to keep on its account: by hand, as credit goes back.
TOPUP_METHODS = HAND_BACK_METHODS


def _required_note(note: str | None, message: str) -> str:
    """The coordinator's note, trimmed; PaymentError with ``message`` when there is none."""
    note = " ".join((note or "").split())
    if not note:
        raise PaymentError(message)
    return note[:MAX_NOTE_LENGTH]


def cancel_desk_payment(payment_id: int, *, note: str | None, cancelled_by_id: int | None,
                        token: str | None) -> Payment:
    """Cancel a cash, cheque or balance payment recorded by mistake; the caller commits.

    Nothing is deleted. The payment becomes ``cancelled`` by a guarded UPDATE (``WHERE status =
    'succeeded'``), so the same form sent twice, or two coordinators at once, cancel it once; the second
    gets PaymentAlreadyRecorded. An ``adjustment`` entry takes back from the balance what the payment
    brought in (a balance payment brought nothing in: its entry is 0 and only keeps the note in the
    history), the order owes again what the payment covered, and the receipt is replaced. ``token`` is
    the form's one-time token (refused when missing, as on the desk form). Card payments go back through
    Stripe (stripe_checkout.refund_to_card), never here.
    """
    _form_token(token)
    note = _required_note(note, _("Indiquez pourquoi ce paiement est annulé."))
    payment = db.session.scalar(sa.select(Payment).where(Payment.id == payment_id).with_for_update())
    if payment is None:
        raise PaymentError(_("Ce paiement n'existe pas."))
    if payment.method not in DESK_METHODS:
        raise PaymentError(_("Un paiement par carte ne s'annule pas ici : il se rembourse sur la carte."))
    if payment.status == "cancelled":
        raise PaymentAlreadyRecorded(_("Ce paiement est déjà annulé."))
    if payment.status != "succeeded":
        raise PaymentError(_("Ce paiement ne peut pas être annulé."))
    result = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.status == "succeeded")
        .values(status="cancelled", cancelled_at=utcnow(), cancelled_by_id=cancelled_by_id, cancel_note=note)
    )
    db.session.refresh(payment)
    if result.rowcount != 1:
        raise PaymentAlreadyRecorded(_("Ce paiement est déjà annulé."))
    ledger.record_entry(
        payment.household_id,
        0 if payment.method == "balance" else -payment.amount_cents,
        "adjustment",
        f"payment:{payment.id}:cancelled",
        order_id=payment.order_id,
        note=f"paiement annulé ({_describe(payment)}, {format_cents(payment.amount_cents)}) : {note}"[:300],
        created_by_id=cancelled_by_id,
    )
    _refuse_debt_no_order_shows(payment.household_id)
    if payment.order_id is not None:
        refresh_receipt(payment.order_id)
    return payment


def _refuse_debt_no_order_shows(household_id: int) -> None:
    """Refuse (the caller rolls back) when the household would owe more than its orders show as due.

    That happens when a cancelled payment's surplus went to the balance and was already spent on another
    order: that balance payment must be cancelled first, or the desk would collect less than is owed."""
    db.session.flush()
    orders = db.session.scalars(
        sa.select(Order).where(Order.household_id == household_id, Order.status == "confirmed")).all()
    shown = sum(amounts_due_cents(list(orders)).values())
    if ledger.balance_cents(household_id) + shown < 0:
        raise PaymentError(_("Une partie de ce paiement a déjà servi à payer une autre commande depuis le solde : "
                             "annulez d'abord ce paiement par le solde."))


def hand_back_credit(household_id: int, amount_cents: int, method: str, *, note: str | None, token: str | None,
                     created_by_id: int | None, cheque_number: str | None = None,
                     cycle_id: int | None = None) -> LedgerEntry:
    """Give a household's credit back in cash or by the association's cheque: one ``refund`` entry; the caller commits.

    At most the household's balance (what the ledger says it has with the association). ``token`` is
    the form's one-time token: the same form sent twice records one refund and raises
    PaymentAlreadyRecorded the second time. ``cycle_id`` is the distribution whose till the cash comes
    out of (see distribution_today), None away from a distribution.
    """
    from app.models import Household

    if method not in HAND_BACK_METHODS:
        raise PaymentError(_("Rendez l'argent en espèces ou par chèque."))
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise PaymentError(_("Le montant doit être supérieur à zéro."))
    cheque_number = (cheque_number or "").strip() or None
    if method == "cheque" and not cheque_number:
        raise PaymentError(_("Pour un chèque, indiquez son numéro."))
    note = _required_note(note, _("Indiquez pourquoi cet argent est rendu."))
    reference = f"{HAND_BACK_PREFIX}{household_id}:{_form_token(token)}"
    # The household's row lock (PostgreSQL; SQLite writes one at a time) queues two refunds of one balance.
    if db.session.scalar(sa.select(Household.id).where(Household.id == household_id).with_for_update()) is None:
        raise PaymentError(_("Ce foyer n'existe pas."))
    if db.session.scalar(sa.select(LedgerEntry.id).where(LedgerEntry.reference == reference)):
        raise PaymentAlreadyRecorded(_("Ce remboursement est déjà enregistré."))
    balance = ledger.balance_cents(household_id)
    if amount_cents > balance:
        raise PaymentError(_("On peut rendre au plus le solde du foyer (%(amount)s).",
                             amount=format_cents(max(0, balance))))
    # The method also opens the note, as before it had a column (the migration read it back from there).
    how = "rendu en espèces" if method == "cash" else f"rendu par chèque n° {cheque_number}"
    return ledger.record_entry(
        household_id, -amount_cents, "refund", reference,
        note=f"{how} : {note}"[:300], created_by_id=created_by_id,
        method=method, cheque_number=cheque_number if method == "cheque" else None, cycle_id=cycle_id,
    )


def distribution_today(household_id: int, today=None):
    """The distribution held today whose till a household's top-up or hand-back goes through, or None.

    A distribution held today (ended or not, as pickup.services.till_today counts an order's payment) in
    which the household has an order: the money went through that desk. Otherwise None: it went through no
    distribution's till.
    """
    from orders.models import Cycle

    today = today or local_today()
    return db.session.scalar(
        sa.select(Cycle).join(Order, Order.cycle_id == Cycle.id)
        .where(Cycle.distribution_date == today, Cycle.status.in_(("closed", "finalized", "distributed")),
               Order.household_id == household_id)
        .order_by(Cycle.id).limit(1)
    )


def household_payments(household_id: int) -> list[Payment]:
    """The household's payments that were made or cancelled, newest first (the coordinator's account view)."""
    return list(db.session.scalars(
        sa.select(Payment)
        .where(Payment.household_id == household_id, Payment.status.in_(("succeeded", "cancelled")))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
    ))


def order_payments(order_id: int) -> list[Payment]:
    """The order's payments that were made or cancelled, oldest first (the desk page)."""
    return list(db.session.scalars(
        sa.select(Payment)
        .where(Payment.order_id == order_id, Payment.status.in_(("succeeded", "cancelled")))
        .order_by(Payment.created_at, Payment.id)
    ))


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
        # A cancelled order that was charged gets its charge back as a credit here.
        ledger.sync_order_charge(order_id)
        if order.status != "confirmed":
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
        settled += 1
    # Receipts once every order is locked and charged (the counter's lock comes last, as in a desk
    # payment): the cycle is closed now, so those issued while it was open are replaced where it changed.
    refresh_cycle_receipts(cycle_id)
    return settled


# --- top-ups, accounts and reports --------------------------------------------------------

#: A top-up above this is almost certainly a typo (500,00 €).
MAX_TOPUP_CENTS = 50_000


def record_topup(
    household_id: int,
    amount_cents: int,
    *,
    method: str,
    token: str,
    created_by_id: int | None,
    note: str | None = None,
    cheque_number: str | None = None,
    cheque_bank: str | None = None,
    cycle_id: int | None = None,
) -> LedgerEntry:
    """Money handed in (cash, or a cheque with its number and bank), kept on the household's account.

    ``cycle_id`` is the distribution whose till took it (a top-up at the desk), None when the coordinator
    took it elsewhere. ``token`` is the form's one-time token: the same form sent twice records one
    top-up and raises PaymentAlreadyRecorded the second time. The caller commits.
    """
    from app.models import Household

    if db.session.get(Household, household_id) is None:
        raise PaymentError(_("Ce foyer n'existe pas."))
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool) or amount_cents <= 0:
        raise PaymentError(_("Le montant doit être supérieur à zéro."))
    if amount_cents > MAX_TOPUP_CENTS:
        raise PaymentError(_("Ce montant est trop élevé pour un versement (500,00 € au plus)."))
    if method not in TOPUP_METHODS:
        raise PaymentError(_("Choisissez espèces ou chèque."))
    # Cash keeps no cheque details, even if the form still had some typed in.
    cheque_number = ((cheque_number or "").strip() or None) if method == "cheque" else None
    cheque_bank = ((cheque_bank or "").strip() or None) if method == "cheque" else None
    if method == "cheque" and (not cheque_number or not cheque_bank):
        raise PaymentError(_("Pour un chèque, indiquez son numéro et sa banque."))
    reference = f"topup:{household_id}:{_form_token(token)}"
    # The household's row lock (PostgreSQL; SQLite writes one at a time) queues two copies of one form.
    db.session.scalar(sa.select(Household.id).where(Household.id == household_id).with_for_update())
    if db.session.scalar(sa.select(LedgerEntry.id).where(LedgerEntry.reference == reference)):
        raise PaymentAlreadyRecorded(_("Ce versement est déjà enregistré."))
    return ledger.record_entry(
        household_id,
        amount_cents,
        "topup",
        reference,
        note=(note or "").strip()[:300] or None,
        created_by_id=created_by_id,
        method=method,
        cheque_number=cheque_number,
        cheque_bank=cheque_bank,
        cycle_id=cycle_id,
    )


@dataclass
class HandedOver:
    """One top-up taken or one credit handed back at a distribution, with whose it was."""

    entry: LedgerEntry
    household_name: str
    bag_number: int | None

    @property
    def amount_cents(self) -> int:
        """What changed hands, always positive (a hand-back's entry is negative)."""
        return abs(self.entry.amount_cents)


@dataclass
class CashMovements:
    """Money that changed hands at a distribution outside order payments: top-ups in, credit handed back out."""

    topups: list[HandedOver]
    handed_back: list[HandedOver]

    @staticmethod
    def _by_method(rows: list[HandedOver]) -> dict[str, int]:
        """Cents per method, cash and cheque always present."""
        totals = {method: 0 for method in TOPUP_METHODS}
        for row in rows:
            totals[row.entry.method] = totals.get(row.entry.method, 0) + row.amount_cents
        return totals

    @staticmethod
    def _counts(rows: list[HandedOver]) -> dict[str, int]:
        """How many per method, cash and cheque always present."""
        counts = {method: 0 for method in TOPUP_METHODS}
        for row in rows:
            counts[row.entry.method] = counts.get(row.entry.method, 0) + 1
        return counts

    @property
    def topups_by_method(self) -> dict[str, int]:
        """Top-ups taken, cents per method."""
        return self._by_method(self.topups)

    @property
    def topup_counts(self) -> dict[str, int]:
        """How many top-ups per method."""
        return self._counts(self.topups)

    @property
    def handed_back_by_method(self) -> dict[str, int]:
        """Credit handed back, cents (positive) per method."""
        return self._by_method(self.handed_back)

    @property
    def handed_back_counts(self) -> dict[str, int]:
        """How many hand-backs per method."""
        return self._counts(self.handed_back)

    @property
    def topup_cheques(self) -> list[HandedOver]:
        """The households' cheques taken as top-ups (they are in the till with the payments' cheques)."""
        return [row for row in self.topups if row.entry.method == "cheque"]

    @property
    def net_cash_cents(self) -> int:
        """What these movements leave in the till's cash: cash top-ups minus cash handed back."""
        return self.topups_by_method["cash"] - self.handed_back_by_method["cash"]

    @property
    def any(self) -> bool:
        """Whether anything changed hands at all."""
        return bool(self.topups or self.handed_back)


def cash_movements(cycle_id: int) -> CashMovements:
    """The top-ups taken and the credit handed back at a distribution, oldest first (one query)."""
    from app.models import Household

    rows = db.session.execute(
        sa.select(LedgerEntry, Household.name, Order.bag_number)
        .join(Household, Household.id == LedgerEntry.household_id)
        .outerjoin(Order, sa.and_(Order.household_id == LedgerEntry.household_id,
                                  Order.cycle_id == LedgerEntry.cycle_id))
        .where(LedgerEntry.cycle_id == cycle_id, LedgerEntry.method.is_not(None),
               LedgerEntry.kind.in_(("topup", "refund")))
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    ).tuples().all()
    moved = [HandedOver(entry, name, bag_number) for entry, name, bag_number in rows]
    return CashMovements(topups=[row for row in moved if row.entry.kind == "topup"],
                         handed_back=[row for row in moved if row.entry.kind == "refund"])


@dataclass
class TillPayment:
    """A cash or cheque payment a distribution's till took, with the bag it paid."""

    payment: Payment
    household_name: str
    bag_number: int | None
    #: The order's distribution day when it is another distribution's bag (last week's, paid today), else None.
    other_day: date | None

    @property
    def kept_cents(self) -> int:
        """What the payment left in the till (cash and cheques are never refunded to a card)."""
        return self.payment.amount_cents - self.payment.refunded_cents


@dataclass
class Till:
    """What went through one distribution's till: the cash and cheque payments it took, whichever
    distribution's bags they paid, and the top-ups taken and credit handed back there."""

    cycle_id: int
    payments: list[TillPayment]
    handed_over: CashMovements

    def kept_cents(self, method: str) -> int:
        """The payments of one method the till took, in cents."""
        return sum(row.kept_cents for row in self.payments if row.payment.method == method)

    def count(self, method: str) -> int:
        """How many payments of one method the till took."""
        return sum(1 for row in self.payments if row.payment.method == method)

    @property
    def other_days(self) -> list[TillPayment]:
        """Payments for bags of other distributions (a bag handed out unpaid last week, paid here)."""
        return [row for row in self.payments if row.other_day is not None]

    @property
    def expected_cash_cents(self) -> int:
        """The cash that should be in the till: cash payments taken, plus cash top-ups, minus cash handed back."""
        return self.kept_cents("cash") + self.handed_over.net_cash_cents


def till(cycle_id: int) -> Till:
    """The till of a distribution: its cash and cheque payments (one query) and its top-ups and hand-backs."""
    from app.models import Household
    from orders.models import Cycle

    rows = db.session.execute(
        sa.select(Payment, Household.name, Order.bag_number, Order.cycle_id, Cycle.distribution_date)
        .join(Order, Order.id == Payment.order_id)
        .join(Cycle, Cycle.id == Order.cycle_id)
        .join(Household, Household.id == Payment.household_id)
        .where(Payment.cycle_id == cycle_id, Payment.status == "succeeded")
        .order_by(Payment.completed_at, Payment.id)
    ).tuples().all()
    payments = [TillPayment(payment, name, bag_number, day if order_cycle_id != cycle_id else None)
                for payment, name, bag_number, order_cycle_id, day in rows]
    return Till(cycle_id, payments, cash_movements(cycle_id))


@dataclass
class HouseholdBalance:
    """One line of the coordinator's balances page."""

    household_id: int
    name: str
    balance_cents: int


def household_balances() -> list[HouseholdBalance]:
    """Every household with its balance (sum of its ledger), by name; one query."""
    from app.models import Household

    rows = db.session.execute(
        sa.select(Household.id, Household.name, sa.func.coalesce(sa.func.sum(LedgerEntry.amount_cents), 0))
        .outerjoin(LedgerEntry, LedgerEntry.household_id == Household.id)
        .group_by(Household.id, Household.name)
        .order_by(Household.name, Household.id)
    ).all()
    return [HouseholdBalance(hid, name, int(total)) for hid, name, total in rows]


@dataclass
class OrderMoney:
    """An order seen from the money side."""

    order: Order
    paid_cents: int
    due_cents: int
    methods: dict[str, int] = field(default_factory=dict)
    household_name: str = ""

    @property
    def final_total_cents(self) -> int:
        """What the order costs in the end: its total, or nothing once cancelled (as ledger.order_target_cents)."""
        return self.order.total_cents if self.order.status == "confirmed" else 0

    @property
    def credited_cents(self) -> int:
        """Paid beyond the final total (weighed lighter, items missing, distribution cancelled): the ledger put
        it on the balance."""
        return max(0, self.paid_cents - self.final_total_cents)


@dataclass
class ProducerOwed:
    """What the association owes a producer for a cycle (line totals at base price), and the AMAP baskets it
    brings that the households paid it directly for the season (their cheques): listed, not owed again."""

    producer_id: int
    name: str
    owed_cents: int
    contract_cents: int = 0


@dataclass
class CycleMoney:
    """The coordinator's money view of one cycle."""

    cycle_id: int
    due_cents: int
    paid_by_method: dict[str, int]
    still_owed_cents: int
    refunded_cents: int
    flagged: list[Payment]
    orders: list[OrderMoney]
    producers: list[ProducerOwed]
    #: What went through this distribution's till: its payments (whichever bags they paid), top-ups, hand-backs.
    till: Till

    @property
    def handed_over(self) -> CashMovements:
        """Top-ups taken and credit handed back at this distribution (not order payments)."""
        return self.till.handed_over

    @property
    def expected_cash_cents(self) -> int:
        """The cash that should be in the till (as the volunteers' « Caisse du jour » says)."""
        return self.till.expected_cash_cents

    @property
    def paid_cents(self) -> int:
        """Everything paid and kept, all methods together."""
        return sum(self.paid_by_method.values())

    @property
    def credited_cents(self) -> int:
        """Paid beyond the orders' final totals, moved to the households' balances."""
        return sum(row.credited_cents for row in self.orders)

    @property
    def adds_up(self) -> bool:
        """Due minus paid plus what went to balances is what is still owed."""
        return self.due_cents - self.paid_cents + self.credited_cents == self.still_owed_cents


def cycle_money(cycle_id: int) -> CycleMoney:
    """Due, paid by method, still owed, refunds, flagged card payments, what each producer is owed, and the
    top-ups taken and credit handed back at the distribution."""
    from app.models import Household
    from producers.models import Offer, Producer, Product

    # Confirmed orders, and cancelled ones that money was taken for (it went to the balances): money that
    # came in for this distribution stays in its report.
    paid_for = sa.select(Payment.order_id).where(Payment.status == "succeeded")
    orders = db.session.scalars(
        sa.select(Order)
        .where(Order.cycle_id == cycle_id,
               sa.or_(Order.status == "confirmed", sa.and_(Order.status == "cancelled", Order.id.in_(paid_for))))
        .order_by(Order.bag_number, Order.id)
    ).all()
    order_ids = [o.id for o in orders]
    payments = db.session.scalars(
        sa.select(Payment).where(Payment.order_id.in_(order_ids)).order_by(Payment.id)
    ).all() if order_ids else []
    per_order: dict[int, dict[str, int]] = {oid: {} for oid in order_ids}
    paid_by_method = {"card": 0, "cash": 0, "cheque": 0, "balance": 0}
    refunded = 0
    flagged = []
    for p in payments:
        if p.status == "flagged":
            flagged.append(p)
        if p.status != "succeeded":
            continue
        kept = p.amount_cents - p.refunded_cents
        refunded += p.refunded_cents
        paid_by_method[p.method] += kept
        per_order[p.order_id][p.method] = per_order[p.order_id].get(p.method, 0) + kept
    rows = []
    for o in orders:
        row = OrderMoney(o, sum(per_order[o.id].values()), 0, per_order[o.id])
        row.due_cents = max(0, row.final_total_cents - row.paid_cents)
        rows.append(row)
    names = dict(
        db.session.execute(sa.select(Household.id, Household.name).where(
            Household.id.in_([o.household_id for o in orders]))).all()
    ) if orders else {}
    for row in rows:
        row.household_name = names.get(row.order.household_id, "")
    owed: dict[int, ProducerOwed] = {}
    confirmed_ids = [o.id for o in orders if o.status == "confirmed"]
    lines = db.session.execute(
        sa.select(OrderLine, Producer.id, Producer.name)
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .join(Producer, Producer.id == Product.producer_id)
        .where(OrderLine.order_id.in_(confirmed_ids))
    ).all() if confirmed_ids else []
    for line, producer_id, producer_name in lines:
        producer = owed.setdefault(producer_id, ProducerOwed(producer_id, producer_name, 0))
        cents = line_total_cents(line.base_price_cents, line.charged_quantity)
        if line.contract_id is not None:
            producer.contract_cents += cents  # the season's cheques went to the producer (orders.contracts)
        else:
            producer.owed_cents += cents
    producers = sorted(owed.values(), key=lambda p: p.name)
    return CycleMoney(
        cycle_id=cycle_id,
        due_cents=sum(o.total_cents for o in orders if o.status == "confirmed"),
        paid_by_method=paid_by_method,
        still_owed_cents=sum(r.due_cents for r in rows),
        refunded_cents=refunded,
        flagged=flagged,
        orders=rows,
        producers=producers,
        till=till(cycle_id),
    )


def cycle_money_csv(cycle_id: int) -> str:
    """The cycle's money view as CSV: one row per order, then one row per producer."""
    summary = cycle_money(cycle_id)
    out, writer = french_csv()
    writer.writerow(["type", "foyer", "commande", "sac", "total", "carte", "especes", "cheque", "solde", "reste_du",
                     "porte_au_solde"])
    for row in summary.orders:
        m = row.methods
        writer.writerow([
            "commande", text_cell(row.household_name), row.order.id, row.order.bag_number or "",
            euros_cell(row.final_total_cents),
            euros_cell(m.get("card", 0)), euros_cell(m.get("cash", 0)), euros_cell(m.get("cheque", 0)),
            euros_cell(m.get("balance", 0)), euros_cell(row.due_cents), euros_cell(row.credited_cents),
        ])
    paid = summary.paid_by_method
    writer.writerow(["total", "", "", "", euros_cell(summary.due_cents)]
                    + [euros_cell(paid.get(method, 0)) for method in ("card", "cash", "cheque", "balance")]
                    + [euros_cell(summary.still_owed_cents), euros_cell(summary.credited_cents)])
    writer.writerow([])
    writer.writerow(["type", "producteur", "du_au_producteur", "paniers_amap_regles_par_contrat"])
    for producer in summary.producers:
        writer.writerow(["producteur", text_cell(producer.name), euros_cell(producer.owed_cents),
                         euros_cell(producer.contract_cents)])
    moved = summary.handed_over
    writer.writerow([])
    writer.writerow(["type", "moyen", "montant", "nombre"])
    for kind, cents, counts in (("versement", moved.topups_by_method, moved.topup_counts),
                                ("avoir_rendu", moved.handed_back_by_method, moved.handed_back_counts)):
        for method, label in (("cash", "especes"), ("cheque", "cheque")):
            writer.writerow([kind, label, euros_cell(cents[method]), counts[method]])
    for method, label in (("cash", "paiements_especes"), ("cheque", "paiements_cheque")):
        writer.writerow(["caisse", label, euros_cell(summary.till.kept_cents(method)), summary.till.count(method)])
    writer.writerow(["caisse", "especes_attendues", euros_cell(summary.expected_cash_cents), ""])
    return out.getvalue()


def balances_csv() -> str:
    """Every household's balance as CSV."""
    out, writer = french_csv()
    writer.writerow(["foyer_id", "foyer", "solde"])
    for row in household_balances():
        writer.writerow([row.household_id, text_cell(row.name), euros_cell(row.balance_cents)])
    return out.getvalue()


@dataclass
class Account:
    """A household's account page: balance, ledger, orders with what they owe, receipts."""

    household_id: int
    balance_cents: int
    spendable_cents: int
    entries: list[LedgerEntry]
    orders: list[OrderMoney]
    receipts: dict[int, object]
    #: Distribution date of each order's cycle, by cycle id.
    distribution_dates: dict[int, object] = field(default_factory=dict)

    @property
    def owed_cents(self) -> int:
        """What the household's orders still owe, all together."""
        return sum(row.due_cents for row in self.orders)


def household_account(household_id: int) -> Account:
    """Everything the household's account page shows, newest first."""
    from orders.payment_models import Receipt

    entries = db.session.scalars(
        sa.select(LedgerEntry)
        .where(LedgerEntry.household_id == household_id)
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    ).all()
    orders = db.session.scalars(
        sa.select(Order)
        .where(Order.household_id == household_id, Order.status == "confirmed")
        .order_by(Order.created_at.desc(), Order.id.desc())
    ).all()
    rows = []
    for order in orders:
        paid = paid_cents(order.id)
        rows.append(OrderMoney(order, paid, max(0, order.total_cents - paid)))
    # The current receipt of each order: its latest revision (older ones were replaced).
    receipts = {
        r.order_id: r
        for r in db.session.scalars(
            sa.select(Receipt).where(Receipt.household_id == household_id).order_by(Receipt.order_id, Receipt.revision)
        ).all()
    }
    from orders.models import Cycle

    cycle_ids = {o.cycle_id for o in orders}
    dates = dict(
        db.session.execute(sa.select(Cycle.id, Cycle.distribution_date).where(Cycle.id.in_(cycle_ids))).all()
    ) if cycle_ids else {}
    return Account(
        distribution_dates=dates,
        household_id=household_id,
        balance_cents=sum(e.amount_cents for e in entries),
        spendable_cents=spendable_balance_cents(household_id),
        entries=list(entries),
        orders=rows,
        receipts=receipts,
    )
