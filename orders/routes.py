"""Pages of the ordering part: the cart, history, assisted ordering, cycles and price tiers."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from app.auth.decorators import roles_required
from app.db import utcnow
from app.extensions import db
from app.models import Household, PriceTier
from app.outbox import request_delivery
from app.search import search_households
from app.templating import money
from app.timeutil import local_zone, to_local
from orders import bp
from orders.contracts import absence_cycle_ids
from orders.forms import (
    AssignTierForm,
    CartForm,
    ConfirmForm,
    HouseholdSearchForm,
    MoveCycleForm,
    TierForm,
    read_cart,
)
from orders.models import Cycle, Order
from orders.pricing import households_per_tier, no_tier_label, tier_takings
from orders.services import (
    CycleRefused,
    OrderRefused,
    SavedOrder,
    cancel_cycle,
    cart_page,
    current_cycle,
    generate_cycles,
    household_orders,
    households_without_email,
    move_cycle,
    next_opening,
    notify_assisted_order,
    open_due_cycles,
    order_with_lines,
    save_cart,
)
from pickup.models import Site


def _slot_label(slot) -> str:
    """'16:30 – 17:00 (3 places)' for the slot select."""
    left = slot.capacity - slot.booked
    places = _("complet") if left <= 0 else ngettext("%(num)d place restante", "%(num)d places restantes", left)
    return f"{to_local(slot.starts_at):%H:%M} – {to_local(slot.ends_at):%H:%M} ({places})"


def _cart(household_id: int, by_volunteer: bool, template: str):
    """Show and save a household's cart in the open cycle (shared by the member and the volunteer)."""
    form = CartForm()
    errors: list[str] = []
    field_errors: dict[int, str] = {}
    if form.validate_on_submit():
        try:
            quantities, shown, field_errors = read_cart(request.form)
            # The cycle the page showed: the service refuses it if it has closed since.
            posted_cycle = int(form.cycle_id.data) if form.cycle_id.data else getattr(current_cycle(), "id", None)
            if posted_cycle is not None and not 0 < posted_cycle < 2**31:
                raise ValueError("cycle id")
        except ValueError:
            abort(400)
        if posted_cycle is not None and not field_errors:
            share = form.share_percent.data * 100 if form.share_percent.data is not None else None
            try:
                saved = save_cart(posted_cycle, household_id, quantities, form.slot_id.data or None,
                                  current_user.id, by_volunteer, chosen_share_bp=share, expected_prices=shown,
                                  in_savepoint=False)
                db.session.commit()
            except OrderRefused as refused:
                db.session.rollback()
                errors = refused.messages
            else:
                return _saved(saved, by_volunteer, household_id)
    cycle = current_cycle()
    if cycle is None:
        return render_template("orders/no_cycle.html", errors=errors, upcoming=next_opening(),
                               assisting=by_volunteer), 422 if errors else 200
    page = cart_page(cycle.id, household_id)
    form = CartForm.for_page()
    if request.method == "POST":
        form.validate()  # the posted values and their errors, shown again
    form.cycle_id.data = cycle.id
    form.slot_id.choices = [(s.id, _slot_label(s)) for s in page.slots]
    if request.method == "GET" or not form.slot_id.data:
        form.slot_id.data = page.order.slot_id if page.order and page.order.slot_id else None
    if page.share_bp is not None and form.share_percent.data is None:
        form.share_percent.data = page.share_bp // 100
    status = 422 if errors or field_errors or form.errors else 200
    return render_template(template, page=page, form=form, errors=errors, field_errors=field_errors,
                           posted=request.form if request.method == "POST" else {},
                           saved_notice=_saved_notice(page.order) if request.method == "GET" else None), status


def _saved(saved: SavedOrder, by_volunteer: bool, household_id: int):
    """Go back to the cart, which says the order is saved (the busiest POST leaves the session cookie alone)."""
    if by_volunteer and notify_assisted_order(saved.id):
        db.session.commit()
        request_delivery()
    if by_volunteer:
        return redirect(url_for("orders.assist_order", household_id=household_id, enregistree=1))
    return redirect(url_for("orders.cart", enregistree=1))


def _saved_notice(order) -> str | None:
    """What the cart page says right after a save (?enregistree=1), from the order as it now stands."""
    if order is None or not request.args.get("enregistree"):
        return None
    if order.status == "cancelled":
        return _("Votre commande est vide : elle est annulée.")
    return _("Commande enregistrée : %(total)s.", total=money(order.total_cents))


@bp.route("/panier", methods=["GET", "POST"])
@roles_required("member")
def cart():
    """The household's cart in the open cycle."""
    if not current_user.household_id:
        abort(403)
    return _cart(current_user.household_id, False, "orders/cart.html")


@bp.route("/mes-commandes")
@roles_required("member")
def history():
    """The household's orders with their totals."""
    if not current_user.household_id:
        abort(403)
    return render_template("orders/history.html", rows=household_orders(current_user.household_id),
                           absences=absence_cycle_ids(current_user.household_id))


@bp.route("/commande/<int:order_id>")
@roles_required("member", "volunteer")
def order_detail(order_id: int):
    """One order: lines, totals, slot (a household sees only its own)."""
    found = order_with_lines(order_id)
    if found is None:
        abort(404)
    order, lines = found
    if order.household_id != current_user.household_id and not current_user.has_role("volunteer"):
        abort(404)
    cycle = db.session.get(Cycle, order.cycle_id)
    from pickup.models import Slot

    slot = db.session.get(Slot, order.slot_id) if order.slot_id else None
    return render_template("orders/order_detail.html", order=order, lines=lines, cycle=cycle, slot=slot)


@bp.route("/au-cafe")
@roles_required("volunteer")
def assist():
    """A volunteer searches a household to order on its behalf."""
    form = HouseholdSearchForm(request.args)
    found = search_households(form.q.data) if request.args and form.validate() else None
    return render_template("orders/assist.html", form=form, found=found)


@bp.route("/au-cafe/foyer/<int:household_id>", methods=["GET", "POST"])
@roles_required("volunteer")
def assist_order(household_id: int):
    """The cart of a household, filled by a volunteer at the café."""
    household = db.session.get(Household, household_id)
    if household is None or not household.active:
        abort(404)
    return _cart(household_id, True, "orders/assist_cart.html")


# --------------------------------------------------------------------------- coordinator: cycles


@bp.route("/cycles")
@roles_required("coordinator")
def cycles():
    """Every cycle with its status and deadline."""
    rows = db.session.scalars(sa.select(Cycle).order_by(Cycle.distribution_date.desc()).limit(60)).all()
    sites = dict(db.session.execute(sa.select(Site.id, Site.name)).all())
    return render_template("orders/cycles.html", cycles=rows, sites=sites, form=ConfirmForm())


@bp.route("/cycles/generer", methods=["POST"])
@roles_required("coordinator")
def cycles_generate():
    """Create the coming cycles now (beat does it too) and open those due."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    created = generate_cycles()
    opened = open_due_cycles()
    db.session.commit()
    flash(ngettext("%(num)s distribution créée", "%(num)s distributions créées", len(created)) + ", "
          + ngettext("%(num)s ouverte.", "%(num)s ouvertes.", opened), "success")
    return redirect(url_for("orders.cycles"))


def _local_naive(moment: datetime) -> datetime:
    """For datetime-local inputs: the Paris wall-clock time without zone."""
    return to_local(moment).replace(tzinfo=None)


@bp.route("/cycles/<int:cycle_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def cycle_edit(cycle_id: int):
    """Move a distribution, or cancel it."""
    cycle = db.session.get(Cycle, cycle_id) or abort(404)
    form = MoveCycleForm()
    if form.validate_on_submit():
        try:
            move_cycle(cycle_id, *(f.data.replace(tzinfo=local_zone()) for f in
                                   (form.opens_at, form.closes_at, form.starts_at, form.ends_at)))
            db.session.commit()
        except CycleRefused as refused:
            db.session.rollback()
            flash(str(refused), "error")
        else:
            request_delivery()  # households whose pickup time or deadline changed
            if cycle.closes_at <= utcnow():
                flash(_("Distribution déplacée. Sa date limite est passée : les commandes se closent dans la "
                        "minute (ou tout de suite avec « Clore les commandes maintenant »)."), "success")
            else:
                flash(_("Distribution déplacée. Les foyers concernés reçoivent un e-mail ; prévenez par téléphone "
                        "ceux de la liste « Foyers sans e-mail »."), "success")
            return redirect(url_for("orders.cycle_edit", cycle_id=cycle_id))
    elif request.method == "GET":
        form.opens_at.data, form.closes_at.data = _local_naive(cycle.opens_at), _local_naive(cycle.closes_at)
        form.starts_at.data = _local_naive(cycle.distribution_starts_at)
        form.ends_at.data = _local_naive(cycle.distribution_ends_at)
    orders = db.session.scalar(sa.select(sa.func.count(Order.id)).where(
        Order.cycle_id == cycle_id, Order.status == "confirmed"))
    return render_template("orders/cycle_edit.html", cycle=cycle, form=form, cancel_form=ConfirmForm(), orders=orders,
                           unreached=households_without_email(cycle_id))


@bp.route("/cycles/<int:cycle_id>/clore", methods=["POST"])
@roles_required("coordinator")
def cycle_close_now(cycle_id: int):
    """Stop orders before the deadline and start the finalisation, once the box saying so is ticked."""
    from orders import close

    if not ConfirmForm().validate_on_submit():
        abort(400)
    if request.form.get("sure") != "y":
        flash(_("Cochez la case pour confirmer : les commandes restent ouvertes."), "error")
        return redirect(url_for("orders.cycle_edit", cycle_id=cycle_id))
    if db.session.get(Cycle, cycle_id) is None:
        abort(404)
    if not close.close_cycle(cycle_id, force=True):
        db.session.rollback()
        flash(_("Cette commande de la semaine n'est pas ouverte : rien n'a changé."), "error")
        return redirect(url_for("orders.cycle_edit", cycle_id=cycle_id))
    db.session.commit()
    if close.enqueue("finalize_cycle", cycle_id):
        flash(_("Commandes closes. La finalisation est lancée : bons de commande et listes arrivent ici dans "
                "un moment."), "success")
    else:
        flash(_("Commandes closes, mais aucun worker n'est joignable : lancez « flask cycles finalize %(id)s ».",
                id=cycle_id), "error")
    return redirect(url_for("orders.cycle_documents", cycle_id=cycle_id))


@bp.route("/cycles/<int:cycle_id>/annuler", methods=["POST"])
@roles_required("coordinator")
def cycle_cancel(cycle_id: int):
    """Cancel a distribution that has not closed, once the box saying so is ticked (no JavaScript
    needed: a button alone cancelled every order of the week in one tap)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if request.form.get("sure") != "y":
        flash(_("Cochez la case pour confirmer l'annulation : rien n'a été annulé."), "error")
        return redirect(url_for("orders.cycle_edit", cycle_id=cycle_id))
    try:
        cancel_cycle(cycle_id)
        db.session.commit()
    except CycleRefused as refused:
        db.session.rollback()
        flash(str(refused), "error")
    else:
        request_delivery()  # each household is told
        flash(_("Distribution annulée. Les foyers reçoivent un e-mail ; prévenez par téléphone ceux de la "
                "liste « Foyers sans e-mail »."), "success")
    return redirect(url_for("orders.cycle_edit", cycle_id=cycle_id))



# --------------------------------------------------------------------------- coordinator: price tiers


def _tier_from_form(form: TierForm, tier: PriceTier) -> str | None:
    """Copy the form into the tier; a French error for a bad markup."""
    try:
        markup = Decimal((form.markup_percent.data or "0").replace(",", ".").strip())
    except InvalidOperation:
        return _("La majoration doit être un nombre (ex. 10).")
    if not markup.is_finite() or markup <= -100 or markup > 1000 or (markup * 100) % 1:
        return _("La majoration doit être entre -99,99 et 1000 %.")
    tier.name = form.name.data.strip()
    tier.markup_bp = int(markup * 100)
    tier.pay_what_you_can = form.pay_what_you_can.data
    tier.minimum_bp = (form.minimum_percent.data if form.minimum_percent.data is not None else 100) * 100
    if form.is_default.data:
        db.session.execute(sa.update(PriceTier).values(is_default=False))
    tier.is_default = form.is_default.data
    return None


@bp.route("/tarifs", methods=["GET", "POST"])
@bp.route("/tarifs/<int:tier_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def tiers(tier_id: int | None = None):
    """Solidarity price tiers: list, create, edit."""
    tier = db.session.get(PriceTier, tier_id) if tier_id else PriceTier()
    if tier is None:
        abort(404)
    form = TierForm(obj=None if request.method == "POST" else tier if tier_id else None)
    if tier_id and request.method == "GET":
        form.markup_percent.data = f"{tier.markup_bp / 100:g}"
        form.minimum_percent.data = tier.minimum_bp // 100
    if form.validate_on_submit():
        error = _tier_from_form(form, tier)
        clash = db.session.scalar(sa.select(PriceTier.id).where(PriceTier.name == form.name.data.strip(),
                                                                PriceTier.id != (tier_id or 0)))
        if clash:
            error = _("Un tarif porte déjà ce nom.")
        if error is None:
            db.session.add(tier)
            db.session.commit()
            flash(_("Tarif enregistré."), "success")
            return redirect(url_for("orders.tiers"))
        db.session.rollback()
        form.markup_percent.errors = [error]
    all_tiers = db.session.scalars(sa.select(PriceTier).order_by(PriceTier.name)).all()
    return render_template("orders/tiers.html", form=form, tiers=all_tiers, counts=households_per_tier(all_tiers),
                           editing=tier_id)


@bp.route("/tarifs/foyers", methods=["GET", "POST"])
@roles_required("coordinator")
def tier_households():
    """Find households and put them in a tier."""
    tiers_list = db.session.scalars(sa.select(PriceTier).order_by(PriceTier.name)).all()
    assign = AssignTierForm()
    if assign.validate_on_submit():
        household = db.session.get(Household, int(assign.household_id.data)) if \
            assign.household_id.data.isdigit() and len(assign.household_id.data) <= 9 else None
        if household is None:
            abort(404)
        if assign.tier_id.data and db.session.get(PriceTier, assign.tier_id.data) is None:
            abort(400)
        household.price_tier_id = assign.tier_id.data or None
        db.session.commit()
        flash(_("Tarif de %(name)s changé.", name=household.name), "success")
        return redirect(url_for("orders.tier_households", q=request.args.get("q", "")))
    search = HouseholdSearchForm(request.args)
    found = search_households(search.q.data, limit=50) if request.args.get("q") and search.validate() else None
    households = found.households if found else []
    choices = [(0, no_tier_label(tiers_list))] + [(t.id, t.name) for t in tiers_list]
    return render_template("orders/tier_households.html", search=search, households=households,
                           more=bool(found and found.more), choices=choices, assign=assign)


@bp.route("/cycles/<int:cycle_id>/tarifs")
@roles_required("coordinator")
def tier_report(cycle_id: int):
    """What each tier brought in during a cycle, against base prices."""
    cycle = db.session.get(Cycle, cycle_id) or abort(404)
    return render_template("orders/tier_report.html", cycle=cycle, rows=tier_takings(cycle_id))


@bp.app_template_global()
def order_status_label(status: str) -> str:
    """An order status in words."""
    return {"cart": _("en cours"), "confirmed": _("confirmée"), "cancelled": _("annulée")}.get(status, status)


@bp.app_template_global()
def cycle_status_label(status: str) -> str:
    """A cycle status in words."""
    return {"draft": _("à venir"), "open": _("ouverte"), "closed": _("close"), "finalized": _("finalisée"),
            "distributed": _("distribuée"), "archived": _("archivée"), "cancelled": _("annulée")}.get(status, status)



@bp.app_template_global()
def unit_label(unit: str, quantity=None) -> str:
    """A unit in words, plural when a quantity above one is given ("2 paniers", "1,5 kg")."""
    if quantity is not None and quantity > 1:
        return {"piece": _("pièces"), "kg": "kg", "l": "l", "bunch": _("bottes"), "basket": _("paniers")}.get(unit, unit)
    return {"piece": _("pièce"), "kg": "kg", "l": "l", "bunch": _("botte"), "basket": _("panier")}.get(unit, unit)
