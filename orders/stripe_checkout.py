"""Card payments through Stripe Checkout: sessions, webhook events applied once, refunds to the card.

The order is marked paid by the webhook only (never by the browser coming back). Each event is
stored once by its id (StripeEvent) and every state change is a guarded UPDATE, so deliveries
may repeat and arrive in any order: an ``expired`` after a ``completed`` changes nothing, and a
``charge.refunded`` that arrives before the payment it refunds waits (``deferred``) until it does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
import stripe
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from app.db import utcnow
from app.extensions import db
from app.money import format_cents
from orders import ledger
from orders.models import Order
from orders.payment_models import Payment, StripeEvent
from orders.payments import PaymentError, amount_due_cents, spendable_balance_cents

CURRENCY = "eur"
HANDLED_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
)


def card_payments_enabled() -> bool:
    """Card payment is offered only when a Stripe secret key is configured."""
    return bool(current_app.config.get("STRIPE_SECRET_KEY"))


def stripe_client(http_client: stripe.HTTPClient | None = None) -> stripe.StripeClient:
    """A Stripe client with the configured key; tests pass their own HTTP client, nothing else."""
    key = current_app.config.get("STRIPE_SECRET_KEY")
    if not key:
        raise PaymentError(_("Le paiement par carte n'est pas disponible."))
    http_client = http_client or current_app.extensions.get("stripe_http_client")
    return stripe.StripeClient(key, http_client=http_client, max_network_retries=2)


def _order_version(order: Order) -> str:
    """A token that changes whenever the order changes (its last update, to the microsecond)."""
    stamp = order.updated_at or order.created_at
    return str(int(stamp.timestamp() * 1_000_000)) if stamp else "0"


def checkout_idempotency_key(order: Order, due_cents: int) -> str:
    """One key per order, amount, order version and attempt: a double click makes one session."""
    # Every card attempt that is over (paid, failed, expired, flagged) moves the key on, so a
    # household can always try again; only a still-open session is found again.
    attempts = db.session.scalar(
        sa.select(sa.func.count(Payment.id)).where(
            Payment.order_id == order.id,
            Payment.method == "card",
            Payment.status != "pending",
        )
    )
    return f"panier-checkout-{order.id}-{due_cents}-{_order_version(order)}-{attempts}"


def start_card_payment(
    order_id: int,
    household_id: int,
    *,
    success_url: str,
    cancel_url: str,
    http_client: stripe.HTTPClient | None = None,
) -> Payment:
    """Create (or find again) the Checkout Session for what the order still owes; the caller commits.

    Returns the pending Payment whose ``checkout_url`` the household is sent to.
    """
    order = db.session.get(Order, order_id)
    if order is None or order.household_id != household_id:
        raise PaymentError(_("Cette commande n'est pas celle de ce foyer."))
    if order.status != "confirmed":
        raise PaymentError(_("Cette commande est annulée.") if order.status == "cancelled"
                           else _("Cette commande n'est pas encore confirmée."))
    due = amount_due_cents(order_id)
    if due <= 0:
        raise PaymentError(_("Cette commande est déjà payée."))
    key = checkout_idempotency_key(order, due)
    existing = db.session.scalar(sa.select(Payment).where(Payment.idempotency_key == key))
    if existing is not None:
        return existing
    household = order.household_id
    from app.models import Household

    email = (db.session.get(Household, household).contact_emails() or [None])[0]
    params: dict = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": CURRENCY,
                    "unit_amount": due,
                    "product_data": {"name": _("Commande n° %(id)s", id=order.id)},
                },
            }
        ],
        "client_reference_id": str(order.id),
        "metadata": {"order_id": str(order.id), "household_id": str(household)},
        "payment_intent_data": {"metadata": {"order_id": str(order.id)}},
        "success_url": success_url,
        "cancel_url": cancel_url,
        "locale": "fr",
    }
    if email:
        params["customer_email"] = email
    try:
        session = stripe_client(http_client).v1.checkout.sessions.create(
            params=params, options={"idempotency_key": key}
        )
    except stripe.StripeError as error:
        current_app.logger.warning("stripe checkout session failed for order %s: %s", order_id, error)
        raise PaymentError(_("Le paiement par carte est indisponible pour le moment. Réessayez plus tard.")) from error
    payment = Payment(
        order_id=order.id,
        household_id=household,
        method="card",
        amount_cents=due,
        status="pending",
        provider_reference=session.id,
        idempotency_key=key,
        checkout_url=session.url,
    )
    # Two clicks at once both reach Stripe with the same key and get the same session; the
    # unique key lets one row in and the other finds it.
    try:
        with db.session.begin_nested():
            db.session.add(payment)
    except IntegrityError:
        payment = db.session.scalar(sa.select(Payment).where(Payment.idempotency_key == key))
    _expire_older_sessions(payment, http_client)
    return payment


def _expire_older_sessions(current: Payment, http_client: stripe.HTTPClient | None) -> None:
    """Close the order's older open sessions (made before the order changed) so it is not paid twice."""
    older = db.session.scalars(
        sa.select(Payment).where(
            Payment.order_id == current.order_id,
            Payment.method == "card",
            Payment.status == "pending",
            Payment.id != current.id,
            Payment.provider_reference.is_not(None),
        )
    ).all()
    for payment in older:
        try:
            stripe_client(http_client).v1.checkout.sessions.expire(payment.provider_reference)
        except stripe.StripeError:
            continue  # already completed or gone: its webhook settles it
        db.session.execute(
            sa.update(Payment).where(Payment.id == payment.id, Payment.status == "pending").values(status="expired")
        )


# --- webhook -------------------------------------------------------------------------------


@dataclass
class WebhookResult:
    """What the webhook did with one delivery."""

    event_id: str
    type: str
    outcome: str  # applied, ignored, deferred, duplicate, flagged


def verify_webhook(payload: bytes, signature: str | None) -> stripe.Event:
    """Check the Stripe-Signature header with Stripe's library; raises ValueError when it fails."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise ValueError("no webhook secret configured")
    try:
        return stripe.Webhook.construct_event(payload, signature, secret)
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(str(error)) from error


def handle_event(event: dict) -> WebhookResult:
    """Apply one verified event at most once; the caller commits."""
    event_id, event_type = event["id"], event["type"]
    obj = event["data"]["object"]
    record = StripeEvent(
        event_id=event_id,
        type=event_type,
        status="ignored",
        payment_intent=obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None,
        payload=json.dumps(event, sort_keys=True),
    )
    try:
        with db.session.begin_nested():
            db.session.add(record)
    except IntegrityError:
        return WebhookResult(event_id, event_type, "duplicate")
    outcome = _apply(event_type, obj)
    record.status = outcome if outcome in ("applied", "ignored", "deferred") else "applied"
    if record.status != "deferred":
        record.applied_at = utcnow()
    return WebhookResult(event_id, event_type, outcome)


def _apply(event_type: str, obj: dict) -> str:
    """Dispatch one event; returns applied, ignored, deferred or flagged."""
    if event_type not in HANDLED_EVENTS:
        return "ignored"
    if event_type == "charge.refunded":
        return _reconcile_refund(obj)
    payment = _payment_for_session(obj)
    if payment is None:
        return "ignored"
    if obj.get("payment_intent") and not payment.payment_intent:
        payment.payment_intent = obj["payment_intent"]
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if obj.get("payment_status") not in ("paid", "no_payment_required"):
            # Bank transfers and the like: completed now, paid later (async_payment_succeeded).
            return "applied"
        return _mark_paid(payment, obj)
    new_status = "failed" if event_type == "checkout.session.async_payment_failed" else "expired"
    db.session.execute(
        sa.update(Payment).where(Payment.id == payment.id, Payment.status == "pending").values(status=new_status)
    )
    return "applied"


def _payment_for_session(session: dict) -> Payment | None:
    """Our Payment row for a Checkout Session (made again from the session if it was lost)."""
    payment = db.session.scalar(sa.select(Payment).where(Payment.provider_reference == session["id"]))
    if payment is not None:
        return payment
    order_id = (session.get("metadata") or {}).get("order_id") or session.get("client_reference_id")
    order = db.session.get(Order, int(order_id)) if order_id and str(order_id).isdigit() else None
    if order is None or not session.get("amount_total"):
        return None
    if str((session.get("metadata") or {}).get("household_id")) != str(order.household_id):
        return None  # not a session this app made for that order
    # The session was created but our row was not committed: rebuild it so the money is not lost.
    payment = Payment(
        order_id=order.id,
        household_id=order.household_id,
        method="card",
        amount_cents=int(session["amount_total"]),
        status="pending",
        provider_reference=session["id"],
        checkout_url=session.get("url"),
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def _mismatch(payment: Payment, session: dict) -> str | None:
    """Why a paid session does not match the payment we asked for, if it does not."""
    metadata = session.get("metadata") or {}
    if str(metadata.get("order_id")) != str(payment.order_id):
        return f"session for order {metadata.get('order_id')!r}, payment for order {payment.order_id}"
    if (session.get("currency") or "").lower() != CURRENCY:
        return f"currency {session.get('currency')!r}"
    if session.get("amount_total") != payment.amount_cents:
        return f"amount {session.get('amount_total')} instead of {payment.amount_cents}"
    return None


def _mark_paid(payment: Payment, session: dict) -> str:
    """Guarded pending -> succeeded, then the ledger entry, receipt and any deferred refunds."""
    reason = _mismatch(payment, session)
    if reason:
        db.session.execute(
            sa.update(Payment)
            .where(Payment.id == payment.id, Payment.status.in_(("pending", "failed", "expired")))
            .values(status="flagged", flag_reason=reason[:300], received_cents=session.get("amount_total"))
        )
        db.session.refresh(payment)
        return "flagged"
    # Money that arrived is real even if an expiry or failure was delivered first.
    result = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.status.in_(("pending", "failed", "expired")))
        .values(status="succeeded", completed_at=utcnow())
    )
    db.session.refresh(payment)
    if result.rowcount != 1:
        return "applied"
    ledger.sync_order_charge(payment.order_id)
    ledger.record_entry(
        payment.household_id,
        payment.amount_cents,
        "payment",
        f"stripe:{session['id']}",
        order_id=payment.order_id,
        note="carte bancaire",
    )
    from orders.receipts import refresh_receipt

    refresh_receipt(payment.order_id)
    if payment.payment_intent:
        _apply_deferred(payment.payment_intent)
    return "applied"


def _apply_deferred(payment_intent: str) -> None:
    """Apply the events that were waiting for this payment (a refund delivered before it)."""
    waiting = db.session.scalars(
        sa.select(StripeEvent)
        .where(StripeEvent.payment_intent == payment_intent, StripeEvent.status == "deferred")
        .order_by(StripeEvent.id)
    ).all()
    for record in waiting:
        event = json.loads(record.payload)
        outcome = _apply(record.type, event["data"]["object"])
        if outcome != "deferred":
            record.status = outcome if outcome in ("applied", "ignored") else "applied"
            record.applied_at = utcnow()


def _reconcile_refund(charge: dict) -> str:
    """Bring our record of what went back to the card up to Stripe's cumulative amount_refunded."""
    payment_intent = charge.get("payment_intent")
    payment = (
        db.session.scalar(sa.select(Payment).where(Payment.payment_intent == payment_intent))
        if payment_intent
        else None
    )
    if payment is None or payment.status == "pending":
        return "deferred"
    if payment.status != "succeeded":
        return "ignored"  # a flagged payment never reached the ledger; the coordinator sorts it out
    refunded = min(int(charge.get("amount_refunded") or 0), payment.amount_cents)
    previous = payment.refunded_cents
    if refunded <= previous:
        return "applied"
    result = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.refunded_cents == previous)
        .values(refunded_cents=refunded)
    )
    if result.rowcount != 1:
        return "applied"
    db.session.refresh(payment)
    ledger.record_entry(
        payment.household_id,
        -(refunded - previous),
        "refund",
        f"stripe:{payment.payment_intent}:refunded:{refunded}",
        order_id=payment.order_id,
        note="remboursement sur la carte",
    )
    return "applied"


# --- refunds chosen by the coordinator -------------------------------------------------------


def refundable_card_payment(household_id: int) -> Payment | None:
    """The household's most recent card payment that still has money to send back."""
    return db.session.scalar(
        sa.select(Payment)
        .where(
            Payment.household_id == household_id,
            Payment.method == "card",
            Payment.status == "succeeded",
            Payment.payment_intent.is_not(None),
            Payment.refunded_cents < Payment.amount_cents,
        )
        .order_by(Payment.completed_at.desc(), Payment.id.desc())
    )


def refund_to_card(
    payment_id: int,
    amount_cents: int,
    *,
    created_by_id: int | None,
    http_client: stripe.HTTPClient | None = None,
) -> Payment:
    """Send part of the household's positive balance back to the card it paid with; the caller commits."""
    payment = db.session.scalar(sa.select(Payment).where(Payment.id == payment_id).with_for_update())
    if payment is None or payment.method != "card" or payment.status != "succeeded" or not payment.payment_intent:
        raise PaymentError(_("Ce paiement ne peut pas être remboursé sur la carte."))
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        raise PaymentError(_("Le montant doit être supérieur à zéro."))
    refundable = min(payment.amount_cents - payment.refunded_cents, spendable_balance_cents(payment.household_id))
    if amount_cents > refundable:
        raise PaymentError(
            _("On peut rembourser au plus %(amount)s sur cette carte.", amount=format_cents(max(0, refundable)))
        )
    previous = payment.refunded_cents
    try:
        refund = stripe_client(http_client).v1.refunds.create(
            params={
                "payment_intent": payment.payment_intent,
                "amount": amount_cents,
                "metadata": {"order_id": str(payment.order_id), "payment_id": str(payment.id)},
            },
            options={"idempotency_key": f"panier-refund-{payment.id}-{previous}-{amount_cents}"},
        )
    except stripe.StripeError as error:
        current_app.logger.warning("stripe refund failed for payment %s: %s", payment_id, error)
        raise PaymentError(_("Stripe a refusé le remboursement. Réessayez plus tard.")) from error
    # The charge.refunded webhook may have been applied meanwhile: then it wrote the entry.
    result = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.refunded_cents == previous)
        .values(refunded_cents=previous + amount_cents)
    )
    db.session.refresh(payment)
    if result.rowcount == 1:
        ledger.record_entry(
            payment.household_id,
            -amount_cents,
            "refund",
            f"stripe:{payment.payment_intent}:refunded:{previous + amount_cents}",
            order_id=payment.order_id,
            note=f"remboursement sur la carte ({refund.id})",
            created_by_id=created_by_id,
        )
    return payment


def accept_flagged_payment(payment_id: int, *, accepted_by_id: int | None) -> Payment:
    """The coordinator checked a flagged card payment: count what Stripe received; the caller commits."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status != "flagged" or not payment.received_cents or payment.received_cents <= 0:
        raise PaymentError(_("Ce paiement n'est pas à vérifier."))
    result = db.session.execute(
        sa.update(Payment)
        .where(Payment.id == payment.id, Payment.status == "flagged")
        .values(status="succeeded", amount_cents=payment.received_cents, completed_at=utcnow())
    )
    db.session.refresh(payment)
    if result.rowcount != 1:
        raise PaymentError(_("Ce paiement n'est pas à vérifier."))
    ledger.sync_order_charge(payment.order_id)
    ledger.record_entry(
        payment.household_id,
        payment.amount_cents,
        "payment",
        f"stripe:{payment.provider_reference}",
        order_id=payment.order_id,
        note="carte bancaire (vérifié par le coordinateur)",
        created_by_id=accepted_by_id,
    )
    from orders.receipts import refresh_receipt

    refresh_receipt(payment.order_id)
    if payment.payment_intent:
        _apply_deferred(payment.payment_intent)
    return payment
