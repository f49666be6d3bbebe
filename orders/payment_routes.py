"""Pages of the payments area of orders (thin: form in, service call, redirect or render)."""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.decorators import roles_required
from app.extensions import csrf, db
from app.models import Household
from app.money import cents_to_input, format_cents
from app.timeutil import local_today
from orders import bp
from orders.ledger import balance_cents as household_balance_cents
from orders.models import Cycle, Order
from orders.payment_forms import (
    CancelPaymentForm,
    DeskPaymentForm,
    HandBackForm,
    PayForm,
    RefundForm,
    TopupForm,
)
from orders.payment_models import Payment, Receipt
from orders.payments import (
    PaymentAlreadyRecorded,
    PaymentError,
    amount_due_cents,
    balances_csv,
    cancel_desk_payment,
    cycle_money,
    cycle_money_csv,
    distribution_today,
    hand_back_credit,
    household_account,
    household_balances,
    household_payments,
    order_payments,
    record_desk_payment,
    record_topup,
    spendable_balance_cents,
)
from orders.receipts import awaiting_weight, receipt_for_order, render_receipt_pdf
from orders.stripe_checkout import (
    accept_flagged_payment,
    card_payments_enabled,
    handle_event,
    refund_to_card,
    refundable_card_payment,
    start_card_payment,
    verify_webhook,
)


@bp.app_context_processor
def _payment_helpers():
    """Templates (the order page's payment partial) ask what an order can be paid with."""
    return {"payment_options": payment_options}


def payment_options(order: Order) -> dict:
    """What the payment partial shows for an order: due, card offered, spendable balance, receipt."""
    due = amount_due_cents(order.id)
    return {
        "due_cents": due,
        "card": card_payments_enabled() and due > 0,
        "spendable_cents": spendable_balance_cents(order.household_id) if due > 0 else 0,
        "receipt": receipt_for_order(order.id),
        "form": PayForm(),
    }


def _absolute(path: str) -> str:
    """Links given to Stripe use BASE_URL, never the Host header a stranger could forge."""
    return current_app.config["BASE_URL"].rstrip("/") + path


def _own_order(order_id: int) -> Order:
    """The signed-in household's order, or 404 (another household's id looks like no order)."""
    order = db.session.get(Order, order_id)
    if order is None or not current_user.household_id or order.household_id != current_user.household_id:
        abort(404)
    return order


@bp.route("/solde")
@roles_required("member")
def account():
    """The household's account: balance, orders and what they owe, ledger history, receipts."""
    if not current_user.household_id:
        if current_user.has_role("coordinator"):
            return redirect(url_for("orders.balances"))
        abort(404)
    return render_template(
        "orders/payments/account.html",
        account=household_account(current_user.household_id),
        card_enabled=card_payments_enabled(),
        form=PayForm(),
        coordinator_view=False,
    )


@bp.route("/<int:order_id>/payer/carte", methods=["POST"])
@roles_required("member")
def pay_card(order_id: int):
    """Send the household to Stripe Checkout for what the order still owes."""
    order = _own_order(order_id)
    if not card_payments_enabled():
        abort(404)
    if not PayForm().validate_on_submit():
        abort(400)
    try:
        payment = start_card_payment(
            order.id,
            order.household_id,
            success_url=_absolute(url_for("orders.card_return", order_id=order.id)),
            cancel_url=_absolute(url_for("orders.account")),
        )
    except PaymentError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("orders.account"))
    db.session.commit()
    return redirect(payment.checkout_url, code=303)


@bp.route("/<int:order_id>/paiement/retour")
@roles_required("member")
def card_return(order_id: int):
    """Back from Stripe: the webhook, not this page, marks the order paid."""
    order = _own_order(order_id)
    return render_template(
        "orders/payments/card_return.html", order=order, due_cents=amount_due_cents(order.id)
    )


@bp.route("/<int:order_id>/payer/solde", methods=["POST"])
@roles_required("member")
def pay_balance(order_id: int):
    """Pay what the order owes from the household's balance (as much as the balance allows)."""
    order = _own_order(order_id)
    if not PayForm().validate_on_submit():
        abort(400)
    due = amount_due_cents(order.id)
    amount = min(due, spendable_balance_cents(order.household_id))
    if amount <= 0:
        amount = max(due, 1)  # let the service say why: already paid, or balance too low
    try:
        record_desk_payment(
            order.id, "balance", amount, received_by_id=current_user.id, household_id=current_user.household_id
        )
    except PaymentError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("orders.account"))
    db.session.commit()
    flash(_("Payé depuis votre solde."), "success")
    return redirect(url_for("orders.account"))


@bp.route("/stripe/webhook", methods=["POST"])
@csrf.exempt
def stripe_webhook():
    """Stripe's webhook: signature checked by Stripe's library, each event applied once."""
    payload = request.get_data()
    try:
        event = verify_webhook(payload, request.headers.get("Stripe-Signature"))
    except ValueError:
        return {"error": "invalid signature"}, 400
    try:
        result = handle_event(event.to_dict())
    except (KeyError, TypeError, ValueError):
        # Signed by Stripe but not shaped like an event we know: refuse it and write nothing.
        db.session.rollback()
        current_app.logger.warning("malformed Stripe event %s", getattr(event, "id", "?"))
        return {"error": "malformed event"}, 400
    db.session.commit()
    return {"received": True, "outcome": result.outcome}, 200


@bp.route("/recus/<int:receipt_id>.pdf")
@login_required
def receipt_pdf(receipt_id: int):
    """A receipt as PDF, for its household or for the volunteers and coordinators."""
    receipt = db.session.get(Receipt, receipt_id)
    if receipt is None:
        abort(404)
    if receipt.household_id != current_user.household_id and not current_user.has_role("volunteer"):
        abort(404)
    pdf = render_receipt_pdf(receipt.id)
    return Response(
        pdf.data,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="recu-{receipt.label}.pdf"'},
    )


@bp.route("/soldes")
@roles_required("coordinator")
def balances():
    """Every household's balance, with a CSV export."""
    if request.args.get("format") == "csv":
        return Response(
            balances_csv(),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="soldes.csv"'},
        )
    return render_template("orders/payments/balances.html", rows=household_balances())


@bp.route("/soldes/<int:household_id>")
@roles_required("coordinator")
def household_ledger(household_id: int):
    """One household's account as the coordinator sees it, with refund to card."""
    household = db.session.get(Household, household_id) or abort(404)
    account_data = household_account(household_id)
    payment = refundable_card_payment(household_id)
    return render_template(
        "orders/payments/account.html",
        account=account_data,
        household=household,
        coordinator_view=True,
        refund_payment=payment if account_data.spendable_cents > 0 else None,
        refund_form=RefundForm(),
        card_enabled=False,
        form=PayForm(),
        payments=household_payments(household_id),
    )


@bp.route("/soldes/<int:household_id>/versement", methods=["GET", "POST"])
@roles_required("coordinator")
def topup(household_id: int):
    """Record money handed to the coordinator to keep on the household's account."""
    household = db.session.get(Household, household_id) or abort(404)
    form = TopupForm()
    if request.method == "GET":
        form.token.data = secrets.token_hex(16)
        form.method.data = "cash"
    back = url_for("orders.household_ledger", household_id=household.id)
    # On a distribution day, money handed in goes into that distribution's till (as a hand-back comes out of it).
    distribution = distribution_today(household.id)
    if form.validate_on_submit():
        try:
            record_topup(household.id, form.amount.cents, method=form.method.data, token=form.token.data or "",
                         created_by_id=current_user.id, note=form.note.data,
                         cheque_number=form.cheque_number.data, cheque_bank=form.cheque_bank.data,
                         cycle_id=distribution.id if distribution else None)
        except PaymentAlreadyRecorded as error:
            db.session.rollback()
            flash(str(error), "warning")
            return redirect(back)
        except PaymentError as error:
            db.session.rollback()
            form.amount.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Versement enregistré."), "success")
            return redirect(back)
    return render_template("orders/payments/topup.html", form=form, household=household, back=back,
                           distribution=distribution)


@bp.route("/soldes/<int:household_id>/rembourser", methods=["POST"])
@roles_required("coordinator")
def refund_card(household_id: int):
    """Send part of a positive balance back to the card the household paid with."""
    db.session.get(Household, household_id) or abort(404)
    payment = refundable_card_payment(household_id) or abort(404)
    form = RefundForm()
    if not form.validate_on_submit():
        for error in form.amount.errors:
            flash(str(error), "error")
        return redirect(url_for("orders.household_ledger", household_id=household_id))
    try:
        refund_to_card(payment.id, form.amount.cents, created_by_id=current_user.id)
    except PaymentError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(_("Remboursement envoyé sur la carte."), "success")
    return redirect(url_for("orders.household_ledger", household_id=household_id))


@bp.route("/<int:order_id>/paiement-accueil", methods=["GET", "POST"])
@roles_required("volunteer")
def desk_payment(order_id: int):
    """A volunteer records a payment at the café: cash, cheque, or from the household balance."""
    order = db.session.get(Order, order_id) or abort(404)
    household = db.session.get(Household, order.household_id)
    form = DeskPaymentForm()
    # Cash and cheques taken today go into the till the desk would use for this bag, when it is held today.
    from pickup.services import till_today

    till = till_today(order.id)
    estimated = awaiting_weight(order)
    if request.method == "GET":
        form.token.data = secrets.token_hex(16)
        # As at the desk: cash chosen and the amount due typed in, unless it is an estimate (weigh first).
        form.method.data = "cash"
        due = amount_due_cents(order.id)
        if due > 0 and not estimated:
            form.amount.data = cents_to_input(due)
    if form.validate_on_submit():
        try:
            record_desk_payment(order.id, form.method.data, form.amount.cents, received_by_id=current_user.id,
                                cheque_number=form.cheque_number.data, cheque_bank=form.cheque_bank.data,
                                token=form.token.data or "",
                                cycle_id=till.id if till and not form.outside_till.data else None)
        except PaymentAlreadyRecorded as error:
            db.session.rollback()
            flash(str(error), "warning")
            return redirect(url_for("orders.desk_payment", order_id=order.id))
        except PaymentError as error:
            db.session.rollback()
            form.amount.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Paiement enregistré."), "success")
            return redirect(url_for("orders.desk_payment", order_id=order.id))
    payments = order_payments(order.id)
    return render_template(
        "orders/payments/desk_payment.html", form=form, order=order, household=household,
        due_cents=amount_due_cents(order.id), spendable_cents=spendable_balance_cents(order.household_id),
        receipt=receipt_for_order(order.id), payments=payments, till=till, estimated=estimated,
        till_days=dict(db.session.execute(sa.select(Cycle.id, Cycle.distribution_date).where(
            Cycle.id.in_({p.cycle_id for p in payments if p.cycle_id}))).all()),
    )


@bp.route("/paiements/<int:payment_id>/annuler", methods=["GET", "POST"])
@roles_required("coordinator")
def cancel_payment(payment_id: int):
    """A coordinator cancels a cash, cheque or balance payment recorded by mistake, saying why."""
    payment = db.session.get(Payment, payment_id) or abort(404)
    form = CancelPaymentForm()
    if request.method == "GET":
        form.token.data = secrets.token_hex(16)
    back = url_for("orders.household_ledger", household_id=payment.household_id)
    if form.validate_on_submit():
        try:
            cancel_desk_payment(payment.id, note=form.note.data, cancelled_by_id=current_user.id,
                                token=form.token.data or "")
        except PaymentAlreadyRecorded as error:
            db.session.rollback()
            flash(str(error), "warning")
            return redirect(back)
        except PaymentError as error:
            db.session.rollback()
            form.note.errors.append(str(error))
        else:
            db.session.commit()
            order = db.session.get(Order, payment.order_id) if payment.order_id else None
            if order is not None and order.status == "confirmed":
                flash(_("Paiement annulé : la commande n° %(id)s doit de nouveau %(due)s.", id=payment.order_id,
                        due=format_cents(amount_due_cents(payment.order_id))), "success")
            else:
                flash(_("Paiement annulé ; l'avoir du foyer est réduit d'autant."), "success")
            return redirect(back)
    return render_template("orders/payments/cancel_payment.html", form=form, payment=payment,
                           household=db.session.get(Household, payment.household_id), back=back)


@bp.route("/soldes/<int:household_id>/rendre", methods=["GET", "POST"])
@roles_required("coordinator")
def hand_back(household_id: int):
    """A coordinator gives a household's credit back in cash or by cheque, with a note."""
    household = db.session.get(Household, household_id) or abort(404)
    form = HandBackForm()
    if request.method == "GET":
        form.token.data = secrets.token_hex(16)
        form.method.data = "cash"
    back = url_for("orders.household_ledger", household_id=household.id)
    # On a distribution day, cash handed back comes out of that distribution's till.
    distribution = distribution_today(household.id)
    if form.validate_on_submit():
        try:
            hand_back_credit(household.id, form.amount.cents, form.method.data, note=form.note.data,
                             token=form.token.data or "", created_by_id=current_user.id,
                             cheque_number=form.cheque_number.data,
                             cycle_id=distribution.id if distribution else None)
        except PaymentAlreadyRecorded as error:
            db.session.rollback()
            flash(str(error), "warning")
            return redirect(back)
        except PaymentError as error:
            db.session.rollback()
            form.amount.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Remboursement enregistré : %(amount)s rendus au foyer.", amount=format_cents(form.amount.cents)),
                  "success")
            return redirect(back)
    return render_template("orders/payments/hand_back.html", form=form, household=household, back=back,
                           balance_cents=household_balance_cents(household.id), distribution=distribution)


@bp.route("/paiements/<int:payment_id>/accepter", methods=["POST"])
@roles_required("coordinator")
def accept_payment(payment_id: int):
    """Count a flagged card payment after checking it in Stripe's dashboard."""
    if not PayForm().validate_on_submit():
        abort(400)
    try:
        accept_flagged_payment(payment_id, accepted_by_id=current_user.id)
    except PaymentError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(_("Paiement accepté : le montant reçu est compté."), "success")
    return redirect(url_for("orders.money"))


@bp.route("/argent")
@roles_required("coordinator")
def money():
    """The coordinator's money view of a cycle: due, paid by method, still owed, owed to producers."""
    cycles = db.session.scalars(
        sa.select(Cycle).where(Cycle.status != "draft").order_by(Cycle.distribution_date.desc()).limit(30)
    ).all()
    # By default the latest distribution held (today's on distribution day), not next week's still open.
    today = local_today()
    shown = next((c for c in cycles if c.distribution_date <= today), cycles[-1] if cycles else None)
    cycle_id = request.args.get("cycle", type=int) or (shown.id if shown else None)
    cycle = db.session.get(Cycle, cycle_id) if cycle_id else None
    if cycle_id and cycle is None:
        abort(404)
    if cycle is not None and request.args.get("format") == "csv":
        return Response(
            cycle_money_csv(cycle.id),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="argent-{cycle.distribution_date}.csv"'},
        )
    return render_template(
        "orders/payments/money.html",
        cycles=cycles,
        cycle=cycle,
        summary=cycle_money(cycle.id) if cycle else None,
        flagged_all=db.session.scalars(sa.select(Payment).where(Payment.status == "flagged")).all(),
        form=PayForm(),
    )
