"""Pages of the pickup package (thin: form in, service call, redirect or render)."""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from flask import (
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from werkzeug.exceptions import Conflict, NotFound
from wtforms.fields.choices import SelectChoice

from app.auth.decorators import roles_required
from app.db import utcnow
from app.extensions import db
from app.models import User
from app.money import cents_to_input, format_cents
from app.outbox import request_delivery
from orders.models import Cycle, Order, OrderLine
from pickup import bp, services
from pickup.forms import (
    NO_SHOW_OUTCOMES,
    CollectForm,
    DeskTopupForm,
    EndDistributionForm,
    NoShowOutcomeForm,
    PaymentForm,
    PreparedForm,
    RotaDefaultsForm,
    RotaNeededForm,
    RotaSignupForm,
    RotaWithdrawForm,
    SearchForm,
    ShortageForm,
    SlotForm,
    WeightForm,
)
from pickup.models import Site
from pickup.services import AlreadyRecorded, NeedsConfirmation, NotInDistribution, PickupError

#: The desk's slot filter for households that chose no slot.
NO_SLOT = "aucun"


def _refuse(status: int, message: str):
    """Stop with a plain French error page carrying this message."""
    error = (NotFound if status == 404 else Conflict)(description=message)
    error.panier_message = True
    raise error


#: The session key remembering the site whose distribution a volunteer's listing pages show.
CHOSEN_SITE = "pickup_site"


def _asked_site_id() -> int | None:
    """The site asked for by ?lieu=, or None when there is none or it cannot be an id."""
    raw = request.args.get("lieu", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) < 2**31:
        return int(raw)
    return None


def _chosen_distribution() -> tuple[Cycle | None, list[tuple[Cycle, Site]]]:
    """The distribution a listing page shows, and every site's one for the chooser.

    ?lieu= picks a site and is remembered for the volunteer's other pages; a site without a distribution
    being handled (or no site at all) falls back to the remembered one, then to the first.
    """
    choices = services.current_distribution_sites()
    by_site = {cycle.site_id: cycle for cycle, _site in choices}
    asked = _asked_site_id()
    if asked in by_site:
        session[CHOSEN_SITE] = asked
    cycle = by_site.get(asked) or by_site.get(session.get(CHOSEN_SITE))
    return cycle or (choices[0][0] if choices else None), choices


def _handled_cycle_or_404(cycle_id: int | None, message: str) -> tuple[Cycle, int | None]:
    """A distribution being handled (any site's), for pages that write, and the ?lieu= that lists it.

    Writes follow the bag, never the chooser: a volunteer with two sites open in two tabs writes where
    the form says. The lieu is None with a single site, whose pages never carry one.
    """
    cycles = services.current_distributions()
    if not cycles:
        _refuse(404, _("Aucune distribution en cours."))
    cycle = next((c for c in cycles if c.id == cycle_id), None)
    if cycle is None:
        _refuse(404, message)
    return cycle, (cycle.site_id if len(cycles) > 1 else None)


def _bag_cycle_or_404(order_id: int) -> tuple[Cycle, int | None]:
    """The distribution being handled that a bag belongs to, and its lieu (404 otherwise)."""
    order = db.session.get(Order, order_id)
    return _handled_cycle_or_404(order.cycle_id if order else None,
                                 _("Ce sac n'appartient pas à la distribution en cours."))


def _desk_cycle_or_404(order_id: int) -> tuple[Cycle, int | None]:
    """The distribution whose desk (and till) handles a bag, its own or a later one of its site (404 otherwise),
    and its lieu."""
    cycles = services.current_distributions()
    cycle = services.desk_distribution(order_id, cycles)
    if cycle is None:
        _refuse(404, _("Ce sac n'appartient pas à la distribution en cours."))
    return cycle, (cycle.site_id if len(cycles) > 1 else None)



# --------------------------------------------------------------------------- household's slot


def _household_id() -> int:
    """The signed-in member's household (403 without one)."""
    if not current_user.household_id:
        _refuse(404, _("Votre compte n'est rattaché à aucun foyer."))
    return current_user.household_id


def _slot_forms(choices: list[services.SlotChoice]) -> dict[int, SlotForm]:
    """One slot form per order, with the slots and places left as choices."""
    forms = {}
    for choice in choices:
        form = SlotForm(prefix=f"o{choice.order.id}", formdata=None)
        form.slot.choices = [SelectChoice(s.id, str(s.id)) for s in choice.slots]
        form.slot.data = choice.order.slot_id
        forms[choice.order.id] = form
    return forms


@bp.route("/mon-creneau")
@roles_required("member")
def my_slot():
    """The household's slot for each coming distribution, changeable until the deadline."""
    choices = services.household_slots(_household_id())
    return render_template("pickup/my_slot.html", choices=choices, forms=_slot_forms(choices))


@bp.route("/mon-creneau/<int:order_id>", methods=["POST"])
@roles_required("member")
def choose_slot(order_id: int):
    """Book or change the slot of one order."""
    household_id = _household_id()
    try:
        services.household_order(order_id, household_id)
    except NotInDistribution as error:
        _refuse(404, error.message)
    form = SlotForm(prefix=f"o{order_id}")
    form.slot.choices = [SelectChoice(s.id, str(s.id)) for s in services.slots_of_order(order_id)]
    if form.validate_on_submit():
        try:
            services.choose_slot(household_id, order_id, form.slot.data)
        except PickupError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash(_("C'est noté : votre créneau est enregistré."), "success")
    else:
        for message in form.slot.errors:
            flash(message, "error")
    return redirect(url_for("pickup.my_slot"))


@bp.route("/mon-creneau/<int:order_id>/creneau.ics")
@roles_required("member")
def slot_ics(order_id: int):
    """The household's slot as a calendar file."""
    from pickup.ics import slot_calendar

    try:
        order = services.household_order(order_id, _household_id())
    except NotInDistribution as error:
        _refuse(404, error.message)
    if order.slot_id is None:
        _refuse(404, _("Choisissez d'abord un créneau."))
    body = slot_calendar(order.id, current_app.config.get("BASE_URL", ""))
    return Response(body, mimetype="text/calendar", headers={
        "Content-Disposition": f'attachment; filename="retrait-panier-{order.id}.ics"',
    })


# --------------------------------------------------------------------------- preparation


@bp.route("/preparation")
@roles_required("volunteer")
def prepare():
    """Bags to prepare, slot by slot, for the current distribution (of the chosen site)."""
    cycle, choices = _chosen_distribution()
    groups = services.bags_by_slot(cycle.id) if cycle else []
    return render_template("pickup/prepare.html", cycle=cycle, choices=choices, groups=groups)


def _render_bag(order_id: int, status: int = 200, forms: dict | None = None, ticked: set[int] | None = None):
    """The preparation page of one bag, with per-line forms (errors kept on the line that had them)."""
    cycle, lieu = _bag_cycle_or_404(order_id)
    try:
        bag = services.get_bag(order_id, cycle.id)
    except NotInDistribution as error:
        _refuse(404, error.message)
    forms = forms or {}
    weight_forms, shortage_forms = {}, {}
    for line in bag.lines:
        if line.offer.product.sold_by_weight:
            weight_forms[line.id] = forms.get(("w", line.id)) or WeightForm(prefix=f"w{line.id}", formdata=None)
        shortage_forms[line.id] = forms.get(("s", line.id)) or ShortageForm(prefix=f"s{line.id}", formdata=None)
    return render_template(
        "pickup/prepare_bag.html", cycle=cycle, lieu=lieu, bag=bag, weight_forms=weight_forms,
        shortage_forms=shortage_forms, prepared_form=forms.get("prepared") or PreparedForm(),
        ticked=ticked or set(), expected=services.expected_quantity, to_pack=services.quantity_to_pack,
        refusals=_undrawn_errors(bag, forms),
    ), status


def _undrawn_errors(bag: services.Bag, forms: dict) -> list[str]:
    """Errors of submitted forms the page does not draw for this bag (a bag handed out shows no form)."""
    drawn = set()
    if bag.status != "collected":
        drawn = {key for key in forms if key != "prepared"}
        if bag.status in ("todo", "prepared"):
            drawn.add("prepared")
    messages = []
    for key, form in forms.items():
        if key not in drawn:
            messages.extend(str(e) for errors in form.errors.values() for e in errors)
    return messages


@bp.route("/preparation/sac/<int:order_id>")
@roles_required("volunteer")
def prepare_bag(order_id: int):
    """One bag: tick the products, weigh, report what is missing, mark it ready."""
    return _render_bag(order_id)


def _line_bag_or_404(line_id: int) -> tuple[int, Cycle]:
    """The bag of a line and the distribution being handled it belongs to (404 otherwise)."""
    line = db.session.get(OrderLine, line_id)
    cycle, _lieu = _handled_cycle_or_404(line.order.cycle_id if line else None,
                                         _("Ce produit n'appartient pas à la distribution en cours."))
    return line.order_id, cycle


@bp.route("/preparation/ligne/<int:line_id>/poids", methods=["POST"])
@roles_required("volunteer")
def record_weight(line_id: int):
    """Record the weight packed; a suspicious weight asks to be confirmed."""
    order_id, cycle = _line_bag_or_404(line_id)
    form = WeightForm(prefix=f"w{line_id}")
    if form.validate_on_submit():
        try:
            services.record_weight(line_id, form.weight.quantity, cycle_id=cycle.id, user_id=current_user.id,
                                   confirmed=form.confirm.data)
        except NeedsConfirmation as error:
            db.session.rollback()
            form.confirm.errors = [error.message]
            form.needs_confirm = True
            return _render_bag(order_id, 422, forms={("w", line_id): form})
        except PickupError as error:
            db.session.rollback()
            form.weight.errors = [error.message]
            return _render_bag(order_id, 422, forms={("w", line_id): form})
        db.session.commit()
        request_delivery()
        flash(_("Poids enregistré."), "success")
        return redirect(url_for("pickup.prepare_bag", order_id=order_id) + f"#ligne-{line_id}")
    return _render_bag(order_id, 422, forms={("w", line_id): form})


@bp.route("/preparation/ligne/<int:line_id>/manque", methods=["POST"])
@roles_required("volunteer")
def record_shortage(line_id: int):
    """A product is missing or short: the household is credited and told."""
    order_id, cycle = _line_bag_or_404(line_id)
    form = ShortageForm(prefix=f"s{line_id}")
    if form.validate_on_submit():
        try:
            services.record_shortage(line_id, form.received.quantity, cycle_id=cycle.id, user_id=current_user.id)
        except PickupError as error:
            db.session.rollback()
            form.received.errors = [error.message]
            return _render_bag(order_id, 422, forms={("s", line_id): form})
        db.session.commit()
        request_delivery()
        flash(_("Manque enregistré : le foyer est remboursé de la différence et prévenu."), "success")
        return redirect(url_for("pickup.prepare_bag", order_id=order_id) + f"#ligne-{line_id}")
    return _render_bag(order_id, 422, forms={("s", line_id): form})


@bp.route("/preparation/sac/<int:order_id>/pret", methods=["POST"])
@roles_required("volunteer")
def mark_prepared(order_id: int):
    """The bag is ready once every product is ticked."""
    cycle, lieu = _bag_cycle_or_404(order_id)
    form = PreparedForm()
    ticked = {int(v) for v in request.form.getlist("line") if v.isdigit()}
    if form.validate_on_submit():
        try:
            services.mark_prepared(order_id, ticked, cycle_id=cycle.id, user_id=current_user.id)
        except NotInDistribution as error:
            db.session.rollback()
            _refuse(404, error.message)
        except PickupError as error:
            db.session.rollback()
            form.submit.errors = [error.message]
            return _render_bag(order_id, 422, forms={"prepared": form}, ticked=ticked)
        db.session.commit()
        request_delivery()
        flash(_("Sac prêt."), "success")
        return redirect(url_for("pickup.prepare", lieu=lieu))
    return _render_bag(order_id, 400, ticked=ticked)


# --------------------------------------------------------------------------- hand-out desk


@bp.route("/accueil")
@roles_required("volunteer")
def desk():
    """Find a household by name, bag number or slot (in the chosen site's distribution)."""
    cycle, choices = _chosen_distribution()
    form = SearchForm(request.args)
    slot_id = request.args.get("slot", type=int)
    # Households with only an AMAP basket may have no slot: "?slot=aucun" lists them.
    no_slot = request.args.get("slot") == NO_SLOT
    groups = services.bags_by_slot(cycle.id) if cycle else []
    results, dues = None, {}
    if cycle and (form.q.data or slot_id or no_slot):
        from orders.payments import amounts_due_cents

        results = services.find_bags(cycle.id, form.q.data or "", slot_id, no_slot=no_slot)
        dues = amounts_due_cents([bag.order for bag in results])
    return render_template("pickup/desk.html", cycle=cycle, choices=choices, form=form, groups=groups,
                           results=results, dues=dues, slot_id=NO_SLOT if no_slot else slot_id, no_slot=NO_SLOT,
                           today=services.paris_today())


def _card_payments_enabled() -> bool:
    """Whether households can pay by card (Stripe configured), per the payments module."""
    try:
        from orders.stripe_checkout import card_payments_enabled
    except ImportError:
        return bool(current_app.config.get("STRIPE_SECRET_KEY"))
    return card_payments_enabled()


def _render_desk_bag(order_id: int, status: int = 200, payment_form: PaymentForm | None = None):
    """What the household collects and still owes, with payment and hand-over buttons."""
    from orders.payments import amount_due_cents, desk_balance

    cycle, lieu = _desk_cycle_or_404(order_id)
    try:
        bag = services.get_desk_bag(order_id, cycle.id)
    except NotInDistribution as error:
        _refuse(404, error.message)
    due = amount_due_cents(order_id)
    if payment_form is None:
        payment_form = PaymentForm(formdata=None)
        payment_form.token.data = secrets.token_hex(16)
        payment_form.method.data = "cash"
        # An estimate is not offered as the amount to take: the bag is weighed first (the page says so).
        if due and not bag.amount_estimated:
            payment_form.amount.data = cents_to_input(due)
    collector = db.session.get(User, bag.pickup.collected_by_id) if (
        bag.pickup and bag.pickup.collected_by_id) else None
    card_enabled = _card_payments_enabled()
    from orders.payments import amounts_due_cents

    others = services.other_bags_to_settle(bag, cycle.id)
    return render_template(
        "pickup/desk_bag.html", cycle=cycle, lieu=lieu, bag=bag, due=due, others=others,
        other_dues=amounts_due_cents([other.order for other in others]) if others else {},
        balance=desk_balance(bag.household.id, cycle.id),
        payment_form=payment_form, collect_form=CollectForm(), collector=collector, card_enabled=card_enabled,
        expected=services.expected_quantity, today=services.paris_today(), till=services.till_today(order_id),
    ), status


@bp.route("/accueil/sac/<int:order_id>")
@roles_required("volunteer")
def desk_bag(order_id: int):
    """One household at the desk."""
    return _render_desk_bag(order_id)


@bp.route("/accueil/sac/<int:order_id>/paiement", methods=["POST"])
@roles_required("volunteer")
def desk_pay(order_id: int):
    """Take cash, a cheque or the balance for a bag."""
    cycle, _lieu = _desk_cycle_or_404(order_id)
    form = PaymentForm()
    if form.validate_on_submit():
        try:
            paid = services.desk_payment(
                order_id, cycle_id=cycle.id, method=form.method.data, amount_cents=form.amount.cents,
                user_id=current_user.id, cheque_number=form.cheque_number.data, cheque_bank=form.cheque_bank.data,
                token=form.token.data or "", keep_change=form.change.data == "keep",
            )
        except NotInDistribution as error:
            db.session.rollback()
            _refuse(404, error.message)
        except AlreadyRecorded as error:
            db.session.rollback()
            flash(error.message, "warning")
            return redirect(url_for("pickup.desk_bag", order_id=order_id))
        except PickupError as error:
            db.session.rollback()
            form.submit.errors = [error.message]
            return _render_desk_bag(order_id, 422, form)
        db.session.commit()
        _flash_paid(paid)
        return redirect(url_for("pickup.desk_bag", order_id=order_id))
    return _render_desk_bag(order_id, 422, form)


def _flash_paid(paid: services.DeskPaid) -> None:
    """Say the payment is recorded and, when cash was handed over beyond what was due, what to do with the rest."""
    amount = format_cents(paid.payment.amount_cents)
    if paid.change_cents:
        flash(_("Paiement enregistré : %(amount)s (reçu %(received)s).", amount=amount,
                received=format_cents(paid.received_cents)), "success")
        # Its own message, in the warning colour: the volunteer must not forget the change.
        flash(_("À rendre : %(change)s", change=format_cents(paid.change_cents)), "warning")
    elif paid.kept_cents:
        flash(_("Paiement enregistré : %(amount)s. Monnaie gardée sur le compte du foyer : %(kept)s.", amount=amount,
                kept=format_cents(paid.kept_cents)), "success")
    else:
        flash(_("Paiement enregistré."), "success")


def _render_desk_topup(order_id: int, form: DeskTopupForm, status: int = 200):
    """The top-up form for the bag's household, with its balance."""
    from orders.payments import MAX_TOPUP_CENTS, desk_balance

    cycle, lieu = _desk_cycle_or_404(order_id)
    try:
        bag = services.get_desk_bag(order_id, cycle.id)
    except NotInDistribution as error:
        _refuse(404, error.message)
    return render_template("pickup/desk_topup.html", cycle=cycle, lieu=lieu, bag=bag, form=form,
                           balance=desk_balance(bag.household.id, cycle.id), max_cents=MAX_TOPUP_CENTS), status


@bp.route("/accueil/sac/<int:order_id>/versement", methods=["GET", "POST"])
@roles_required("volunteer")
def desk_topup(order_id: int):
    """Money the household hands in to keep on its account, counted in this distribution's till."""
    cycle, _lieu = _desk_cycle_or_404(order_id)
    form = DeskTopupForm()
    if request.method == "GET":
        form.token.data = secrets.token_hex(16)
        form.method.data = "cash"
        return _render_desk_topup(order_id, form)
    if not form.validate_on_submit():
        return _render_desk_topup(order_id, form, 422)
    try:
        services.desk_topup(order_id, cycle_id=cycle.id, method=form.method.data, amount_cents=form.amount.cents,
                            user_id=current_user.id, cheque_number=form.cheque_number.data,
                            cheque_bank=form.cheque_bank.data, token=form.token.data or "")
    except NotInDistribution as error:
        db.session.rollback()
        _refuse(404, error.message)
    except AlreadyRecorded as error:
        db.session.rollback()
        flash(error.message, "warning")
        return redirect(url_for("pickup.desk_bag", order_id=order_id))
    except PickupError as error:
        db.session.rollback()
        form.submit.errors = [error.message]
        return _render_desk_topup(order_id, form, 422)
    db.session.commit()
    flash(_("Versement enregistré : %(amount)s gardés sur le compte du foyer.", amount=format_cents(form.amount.cents)),
          "success")
    return redirect(url_for("pickup.desk_bag", order_id=order_id))


@bp.route("/accueil/sac/<int:order_id>/remis", methods=["POST"])
@roles_required("volunteer")
def collect(order_id: int):
    """The bag is handed over (once only), even unprepared or unpaid, with a warning saying so."""
    cycle, lieu = _desk_cycle_or_404(order_id)
    form = CollectForm()
    if not form.validate_on_submit():
        _refuse(409, _("Le formulaire a expiré. Rechargez la page."))
    try:
        # Read before: once handed out, nothing is weighed any more and the estimate is the price.
        unweighed = [line.offer.product.name for line in services.get_desk_bag(order_id, cycle.id).lines_to_weigh]
        pickup = services.collect_bag(order_id, cycle_id=cycle.id, user_id=current_user.id)
    except NotInDistribution as error:
        db.session.rollback()
        _refuse(404, error.message)
    except PickupError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("pickup.desk_bag", order_id=order_id))
    db.session.commit()
    # Handing out is allowed anyway (the café decides); the volunteer is told what is left to settle.
    warnings = services.handover_warnings(pickup, earlier=db.session.get(Order, order_id).cycle_id != cycle.id,
                                          unweighed=unweighed)
    if warnings:
        flash(_("Sac remis. Attention : %(what)s.", what=" ; ".join(warnings)), "warning")
    else:
        flash(_("Sac remis. Bonne semaine !"), "success")
    return redirect(url_for("pickup.desk", lieu=lieu))


@bp.route("/distribution/<int:cycle_id>/fin", methods=["GET", "POST"])
@roles_required("volunteer")
def end_distribution(cycle_id: int):
    """End of the afternoon: bags not collected become no-shows, once the volunteer has confirmed."""
    cycle, lieu = _handled_cycle_or_404(cycle_id, _("Cette distribution n'est pas celle en cours."))
    if request.method == "GET":
        if cycle.distribution_date > services.paris_today():
            _refuse(409, _("Cette distribution n'a pas encore eu lieu : elle se termine le jour même, pas avant."))
        # One tap marks many bags: the volunteer first sees how many and which.
        return render_template("pickup/end_distribution.html", cycle=cycle, lieu=lieu,
                               bags=services.bags_left(cycle.id), end_form=EndDistributionForm(), now=utcnow())
    if not EndDistributionForm().validate_on_submit():
        _refuse(409, _("Le formulaire a expiré. Rechargez la page."))
    if cycle.status == "distributed":
        flash(_("Cette distribution est déjà terminée."), "warning")
        return redirect(url_for("pickup.desk", lieu=lieu))
    try:
        count = services.end_distribution(cycle_id)
    except PickupError as error:
        db.session.rollback()
        _refuse(409, error.message)
    db.session.commit()
    flash(ngettext("Distribution terminée : %(num)s sac non récupéré.",
                   "Distribution terminée : %(num)s sacs non récupérés.", count), "success")
    if current_user.has_role("coordinator"):
        return redirect(url_for("pickup.no_shows"))
    return redirect(url_for("pickup.desk", lieu=lieu))


@bp.route("/caisse")
@roles_required("volunteer")
def cash_summary():
    """The day's till, read-only: cash, cheques with number and bank, card, balance."""
    cycle, choices = _chosen_distribution()
    summary = services.cash_summary(cycle.id) if cycle else None
    return render_template("pickup/cash_summary.html", cycle=cycle, choices=choices, summary=summary,
                           labels=services.PAYMENT_METHOD_LABELS)


# --------------------------------------------------------------------------- coordinator: board, no-shows


@bp.route("/tableau")
@roles_required("coordinator")
def board():
    """The live board of the distribution (the page reloads itself)."""
    cycle, choices = _chosen_distribution()
    data = services.board(cycle.id) if cycle else None
    page = render_template("pickup/board.html", cycle=cycle, choices=choices, board=data,
                           labels=services.PAYMENT_METHOD_LABELS)
    # The header reloads the board even where a browser ignores the meta tag in the body.
    return page, 200, {"Refresh": "30"}


@bp.route("/non-recuperes")
@roles_required("coordinator")
def no_shows():
    """Bags nobody came for, and what was done with them."""
    bags = services.no_show_bags()
    forms = {}
    for bag in bags:
        forms[bag.order.id] = NoShowOutcomeForm(prefix=f"n{bag.order.id}", formdata=None)
    cycles = {bag.order.cycle_id: db.session.get(Cycle, bag.order.cycle_id) for bag in bags}
    return render_template("pickup/no_shows.html", bags=bags, forms=forms, cycles=cycles)


@bp.route("/non-recuperes/<int:order_id>", methods=["POST"])
@roles_required("coordinator")
def no_show_outcome(order_id: int):
    """Record what was done with a bag nobody came for."""
    form = NoShowOutcomeForm(prefix=f"n{order_id}")
    if form.validate_on_submit():
        label = NO_SHOW_OUTCOMES[form.outcome.data]
        text = f"{label} — {form.note.data.strip()}" if form.note.data and form.note.data.strip() else str(label)
        try:
            services.record_no_show_outcome(order_id, text)
        except NotInDistribution as error:
            db.session.rollback()
            _refuse(404, error.message)
        db.session.commit()
        flash(_("C'est noté."), "success")
    else:
        for message in form.outcome.errors:
            flash(message, "error")
    return redirect(url_for("pickup.no_shows") + f"#sac-{order_id}")


@bp.route("/manques")
@roles_required("producer", "coordinator")
def shortfalls():
    """What producers did not deliver, per cycle (a producer sees only its own)."""
    producer_id = None
    if not current_user.has_role("coordinator"):
        if not current_user.producer_id:
            _refuse(404, _("Votre compte n'est rattaché à aucun producteur."))
        producer_id = current_user.producer_id
    rows = services.shortfalls(producer_id=producer_id)
    return render_template("pickup/shortfalls.html", rows=rows, own=producer_id is not None)


# --------------------------------------------------------------------------- rota


@bp.route("/permanences")
@roles_required("volunteer")
def rota():
    """Roles of the coming distributions: sign up, withdraw, and (coordinator) how many are needed."""
    overview = services.rota_overview()
    db.session.commit()  # the roles of a new distribution were just created from the defaults
    needed_forms = {}
    if current_user.has_role("coordinator"):
        for _cycle, roles in overview:
            for role in roles:
                form = RotaNeededForm(prefix=f"r{role.id}", formdata=None)
                form.needed.data = role.needed
                needed_forms[role.id] = form
    return render_template(
        "pickup/rota.html", overview=overview, labels=services.ROLE_LABELS, signup_form=RotaSignupForm(),
        withdraw_form=RotaWithdrawForm(), needed_forms=needed_forms,
    )


def _rota_change(change, rota_role_id: int, success: str):
    """Run a sign-up or withdrawal for the signed-in volunteer, then back to the rota."""
    if not RotaSignupForm().validate_on_submit():
        _refuse(409, _("Le formulaire a expiré. Rechargez la page."))
    try:
        change(rota_role_id, current_user.id)
    except NotInDistribution as error:
        db.session.rollback()
        _refuse(404, error.message)
    except PickupError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        flash(success, "success")
    return redirect(url_for("pickup.rota") + f"#role-{rota_role_id}")


@bp.route("/permanences/<int:rota_role_id>/inscription", methods=["POST"])
@roles_required("volunteer")
def rota_sign_up(rota_role_id: int):
    """Sign up for a role."""
    return _rota_change(services.sign_up, rota_role_id, _("Merci, vous êtes inscrit·e."))


@bp.route("/permanences/<int:rota_role_id>/desinscription", methods=["POST"])
@roles_required("volunteer")
def rota_withdraw(rota_role_id: int):
    """Withdraw from a role."""
    return _rota_change(services.withdraw, rota_role_id, _("Vous êtes désinscrit·e."))


@bp.route("/permanences/<int:rota_role_id>/besoin", methods=["POST"])
@roles_required("coordinator")
def rota_needed(rota_role_id: int):
    """The coordinator sets how many people a role needs."""
    form = RotaNeededForm(prefix=f"r{rota_role_id}")
    if form.validate_on_submit():
        try:
            services.set_needed(rota_role_id, form.needed.data)
        except NotInDistribution as error:
            _refuse(404, error.message)
        except PickupError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash(_("Nombre de personnes enregistré."), "success")
    else:
        for message in form.needed.errors:
            flash(message, "error")
    return redirect(url_for("pickup.rota") + f"#role-{rota_role_id}")


@bp.route("/permanences/participation")
@roles_required("coordinator")
def rota_participation():
    """How often each volunteer helped."""
    return render_template("pickup/participation.html", rows=services.participation())


@bp.route("/permanences/reglages", methods=["GET", "POST"])
@roles_required("coordinator")
def rota_defaults():
    """The usual number of people per role at each site; new distributions start from it."""
    from pickup.models import ROTA_ROLES, Site

    sites = list(db.session.scalars(sa.select(Site).order_by(Site.name)))
    site_id = request.args.get("site", type=int) or (sites[0].id if sites else None)
    site = db.session.get(Site, site_id) if site_id else None
    if site is None:
        _refuse(404, _("Aucun lieu de retrait."))
    form = RotaDefaultsForm(data=services.rota_defaults(site.id))
    if form.validate_on_submit():
        for role in ROTA_ROLES:
            services.set_rota_default(site.id, role, form[role].data)
        db.session.commit()
        flash(_("Réglages enregistrés : ils valent pour les distributions dont le planning n'est pas encore créé."),
              "success")
        return redirect(url_for("pickup.rota_defaults", site=site.id))
    return render_template("pickup/rota_defaults.html", form=form, site=site, sites=sites)
