"""Pages of the contracts and bulk areas of orders (thin: form in, service call, redirect or render)."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from wtforms.fields.choices import SelectChoice

from app.auth.decorators import roles_required
from app.db import utcnow
from app.extensions import db
from app.models import Household
from app.search import search_households
from orders import bp
from orders.bulk import (
    bulk_progress,
    cases_to_order,
    order_bulk_lines,
    repackaging_rows,
)
from orders.contract_forms import (
    HANDOVER_BY_VOLUNTEER,
    SHARE_BY_VOLUNTEER,
    AbsenceForm,
    ConfirmForm,
    ContractOfferForm,
    HouseholdSearchForm,
    InstalmentPlanForm,
    MemberSubscribeForm,
    SubscribeForm,
    VolunteerAbsenceForm,
)
from orders.contract_models import Contract, ContractAbsence, ContractInstalment, ContractOffer
from orders.contracts import (
    ContractError,
    InstalmentInput,
    baskets_received,
    cancel_absence,
    cancel_contract,
    contract_view,
    create_contract_offer,
    declare_absence_on,
    household_choices,
    household_contracts,
    mark_instalment_passed_on,
    mark_instalment_received,
    open_offers,
    producer_distributions,
    record_instalments,
    season_subscribers,
    set_subscriptions_open,
    subscribe,
)
from orders.models import Cycle
from pickup.models import Site
from producers.models import Product


@bp.app_template_global("bulk_progress")
def bulk_progress_global(cycle_id):
    """Case progress of a cycle, for partials included by other pages."""
    return bulk_progress(cycle_id) if cycle_id else []


@bp.app_template_global("order_bulk_lines")
def order_bulk_lines_global(order_id):
    """An order's bulk lines with their allocation, for the order page's partial."""
    return order_bulk_lines(order_id) if order_id else []


def _flash_error(error: ContractError) -> None:
    """Show a refused operation's French message."""
    flash(str(error), "error")


def _form_errors(form) -> None:
    """Flash every field error of a form posted from a list page (rows of a field list included)."""

    def messages(errors):
        if isinstance(errors, dict):
            for value in errors.values():
                yield from messages(value)
        elif isinstance(errors, (list, tuple)):
            for value in errors:
                yield from messages(value)
        elif errors:
            yield str(errors)

    for message in dict.fromkeys(messages(form.errors)):
        flash(message, "error")


# --- member --------------------------------------------------------------------------------------


@bp.route("/contrats")
@roles_required("member")
def contracts():
    """The household's AMAP contracts, their schedules, and the offers open for subscription."""
    household_id = current_user.household_id
    if not household_id:
        if current_user.has_role("volunteer"):
            return redirect(url_for("orders.contract_admin"))
        abort(403)
    views = household_contracts(household_id)
    mine = {v.offer.id for v in views}
    offers = [o for o in open_offers() if o.id not in mine]
    products = {p.id: p for p in db.session.scalars(sa.select(Product).where(
        Product.id.in_([o.product_id for o in offers] or [0])))}
    return render_template(
        "orders/contracts/index.html", views=views, offers=offers, products=products,
        received=baskets_received(household_id), subscribe_form=MemberSubscribeForm(),
        absence_form=AbsenceForm(), cancel_form=ConfirmForm(),
        share_hint=SHARE_BY_VOLUNTEER, handover_hint=HANDOVER_BY_VOLUNTEER, now=utcnow(),
    )


@bp.route("/contrats/inscription", methods=["POST"])
@roles_required("member")
def contract_subscribe():
    """A household subscribes itself, alone: a shared basket is set up by a volunteer with both households."""
    form = MemberSubscribeForm()
    if not current_user.household_id:
        abort(403)
    if not form.validate_on_submit():
        _form_errors(form)
        return redirect(url_for("orders.contracts"))
    try:
        subscribe(int(form.offer_id.data), current_user.household_id, quantity=form.quantity.data,
                  subscribed_by_id=current_user.id)
    except (ContractError, ValueError) as error:
        db.session.rollback()
        _flash_error(error)
        return redirect(url_for("orders.contracts"))
    db.session.commit()
    flash(_("Inscription enregistrée : vos paniers sont dans vos commandes."), "success")
    return redirect(url_for("orders.contracts"))


def _season_day(text: str | None) -> date:
    """The date a schedule row's form sent back; ContractError (French) when it is not a date."""
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        raise ContractError(_("Contrat ou distribution inconnus.")) from None


@bp.route("/contrats/absence", methods=["POST"])
@roles_required("member")
def contract_absence():
    """A household declares it will miss a distribution: its basket is not brought.

    Handing the basket to another household would put it in that household's order: a volunteer
    does it, with the household that collects it (see contract_absence_for).
    """
    form = AbsenceForm()
    if not current_user.household_id:
        abort(403)
    if not form.validate_on_submit():
        _form_errors(form)
        return redirect(url_for("orders.contracts"))
    try:
        declare_absence_on(int(form.contract_id.data), _season_day(form.day.data), current_user.household_id,
                           "skip", declared_by_id=current_user.id)
    except (ContractError, ValueError) as error:
        db.session.rollback()
        _flash_error(error)
        return redirect(url_for("orders.contracts"))
    db.session.commit()
    flash(_("Absence enregistrée : le producteur apportera un panier de moins."), "success")
    return redirect(url_for("orders.contracts"))


@bp.route("/contrats/absence/<int:absence_id>/annuler", methods=["POST"])
@roles_required("member")
def contract_absence_cancel(absence_id: int):
    """Take back an absence before the deadline."""
    if not ConfirmForm().validate_on_submit() or not current_user.household_id:
        abort(400)
    try:
        cancel_absence(absence_id, current_user.household_id)
    except ContractError as error:
        db.session.rollback()
        _flash_error(error)
        return redirect(url_for("orders.contracts"))
    db.session.commit()
    flash(_("Absence annulée : vous récupérez votre panier."), "success")
    return redirect(url_for("orders.contracts"))


# --- volunteers and coordinators -----------------------------------------------------------------


def _offer_form() -> ContractOfferForm:
    """The new-offer form with basket products and sites to choose from."""
    form = ContractOfferForm()
    baskets = db.session.scalars(
        sa.select(Product).where(Product.is_contract_basket.is_(True), Product.active.is_(True)).order_by(Product.name)
    ).all()
    form.product_id.choices = [SelectChoice(p.id, f"{p.name} ({p.producer.name})") for p in baskets]
    form.site_id.choices = [SelectChoice(s.id, s.name) for s in db.session.scalars(sa.select(Site).order_by(Site.name))]
    return form


@bp.route("/contrats/gestion", methods=["GET", "POST"])
@roles_required("volunteer")
def contract_admin():
    """Season offers with their subscriber counts; coordinators open new ones here."""
    form = _offer_form() if current_user.has_role("coordinator") else None
    if form is not None and form.validate_on_submit():
        try:
            offer = create_contract_offer(
                form.product_id.data, form.site_id.data, form.name.data, form.first_date.data,
                form.last_date.data, form.every_weeks.data, getattr(form.price, "cents", None) or 0,
                form.absences_allowed.data, form.shareable.data,
            )
        except ContractError as error:
            db.session.rollback()
            form.name.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Contrat « %(name)s » ouvert aux inscriptions.", name=offer.name), "success")
            return redirect(url_for("orders.contract_offer_detail", offer_id=offer.id))
    offers = db.session.scalars(sa.select(ContractOffer).order_by(ContractOffer.first_date.desc())).all()
    counts = dict(db.session.execute(
        sa.select(Contract.contract_offer_id, sa.func.count())
        .where(Contract.status == "active").group_by(Contract.contract_offer_id)
    ).all())
    status = 400 if form is not None and form.errors else 200
    return render_template("orders/contracts/admin.html", form=form, offers=offers, counts=counts), status


@bp.route("/contrats/offre/<int:offer_id>", methods=["GET", "POST"])
@roles_required("volunteer")
def contract_offer_detail(offer_id: int):
    """A season offer's subscribers; a volunteer subscribes a household on its behalf here."""
    offer = db.session.get(ContractOffer, offer_id) or abort(404)
    form = SubscribeForm(offer_id=str(offer.id))
    form.co_holder_id.choices = _household_select(_("— personne —"))
    search = HouseholdSearchForm(request.args)
    found = search_households(search.q.data).households if search.q.data else []
    # The search narrows the list to the households it found; the form posts back to the same address.
    form.household_id.choices = _household_select(_("— choisir un foyer —"), found if search.q.data else None)
    if form.validate_on_submit():
        try:
            household = db.session.get(Household, form.household_id.data)
            if household is None or not household.active:
                raise ContractError(_("Choisissez le foyer à inscrire."))
            # Only volunteers link two households: they check with both that they agree to share.
            subscribe(offer.id, household.id, quantity=form.quantity.data, co_holder_id=form.co_holder_id.data,
                      subscribed_by_id=current_user.id)
        except ContractError as error:
            db.session.rollback()
            form.household_id.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Foyer %(name)s inscrit.", name=household.name), "success")
            return redirect(url_for("orders.contract_offer_detail", offer_id=offer.id))
    status = 400 if form.errors else 200
    return render_template("orders/contracts/offer.html", offer=offer,
                           product=db.session.get(Product, offer.product_id), subscribers=season_subscribers(offer.id),
                           form=form, search=search, found=found, confirm=ConfirmForm()), status


@bp.route("/contrats/contrat/<int:contract_id>", methods=["GET", "POST"])
@roles_required("volunteer")
def contract_detail(contract_id: int):
    """One contract: schedules of its households and their instalments (recorded by volunteers)."""
    contract = db.session.get(Contract, contract_id) or abort(404)
    form = InstalmentPlanForm()
    if form.validate_on_submit():
        rows = [
            InstalmentInput(getattr(r.amount, "cents", None) or 0, r.method.data, r.cheque_number.data, r.bank.data,
                            r.cashing_month.data)
            for r in (entry.form for entry in form.rows)
        ]
        try:
            record_instalments(contract.id, int(form.household_id.data), rows, recorded_by_id=current_user.id)
        except (ContractError, ValueError) as error:
            db.session.rollback()
            flash(str(error), "error")
        else:
            db.session.commit()
            flash(_("Versements enregistrés."), "success")
            return redirect(url_for("orders.contract_detail", contract_id=contract.id))
    elif form.errors:
        _form_errors(form)
    ids = [contract.household_id] + ([contract.co_holder_id] if contract.co_holder_id else [])
    views = [(db.session.get(Household, hid), contract_view(contract, hid)) for hid in ids]
    return render_template("orders/contracts/contract.html", contract=contract, views=views, form=form,
                           confirm=ConfirmForm(), absence_form=_volunteer_absence_form(), now=utcnow())


def _volunteer_absence_form() -> VolunteerAbsenceForm:
    """The volunteer's absence form, with the households that may collect a basket."""
    form = VolunteerAbsenceForm()
    form.handed_to_id.choices = _household_select(_("— choisir un foyer —"))
    return form


def _household_select(none_label: str, households: list[Household] | None = None) -> list[SelectChoice]:
    """A "none" choice, then these households (default: every active one) by name (volunteer pages only)."""
    return [SelectChoice("", none_label)] + [SelectChoice(hid, label) for hid, label in household_choices(households)]


@bp.route("/contrats/contrat/<int:contract_id>/absence", methods=["POST"])
@roles_required("volunteer")
def contract_absence_for(contract_id: int):
    """A volunteer declares an absence for one of the contract's households (at the café)."""
    contract = db.session.get(Contract, contract_id) or abort(404)
    form = _volunteer_absence_form()
    household_id = request.form.get("household_id", type=int)
    if not form.validate_on_submit() or household_id not in (contract.household_id, contract.co_holder_id):
        _form_errors(form)
        return redirect(url_for("orders.contract_detail", contract_id=contract.id))
    handed_to_id = form.handed_to_id.data if form.kind.data == "handover" else None
    try:
        declare_absence_on(contract.id, _season_day(form.day.data), household_id, form.kind.data,
                           handed_to_id=handed_to_id, declared_by_id=current_user.id)
    except (ContractError, ValueError) as error:
        db.session.rollback()
        _flash_error(error)
    else:
        db.session.commit()
        if handed_to_id:
            flash(_("Absence enregistrée : %(name)s récupérera le panier.",
                    name=db.session.get(Household, handed_to_id).name), "success")
        else:
            flash(_("Absence enregistrée."), "success")
    return redirect(url_for("orders.contract_detail", contract_id=contract.id))


@bp.route("/contrats/contrat/<int:contract_id>/absence/<int:absence_id>/annuler", methods=["POST"])
@roles_required("volunteer")
def contract_absence_cancel_for(contract_id: int, absence_id: int):
    """A volunteer takes back an absence entered for a household (a mistake, or plans changed), before the deadline."""
    absence = db.session.get(ContractAbsence, absence_id)
    if absence is None or absence.contract_id != contract_id:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        cancel_absence(absence.id, absence.household_id)
    except ContractError as error:
        db.session.rollback()
        _flash_error(error)
    else:
        db.session.commit()
        flash(_("Absence annulée : le foyer récupère son panier."), "success")
    return redirect(url_for("orders.contract_detail", contract_id=contract_id))


@bp.route("/contrats/offre/<int:offer_id>/inscriptions", methods=["POST"])
@roles_required("coordinator")
def contract_offer_toggle(offer_id: int):
    """Open or close a season offer to new subscriptions."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    offer = db.session.get(ContractOffer, offer_id) or abort(404)
    set_subscriptions_open(offer.id, not offer.open_for_subscription)
    db.session.commit()
    flash(_("Inscriptions ouvertes.") if offer.open_for_subscription else _("Inscriptions closes."), "success")
    return redirect(url_for("orders.contract_offer_detail", offer_id=offer.id))


@bp.route("/contrats/contrat/<int:contract_id>/resilier", methods=["POST"])
@roles_required("coordinator")
def contract_cancel(contract_id: int):
    """End a contract: its baskets leave the cycles still open."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    contract = db.session.get(Contract, contract_id) or abort(404)
    if request.form.get("confirm") != "yes":
        flash(_("Cochez la case pour confirmer la résiliation."), "error")
        return redirect(url_for("orders.contract_detail", contract_id=contract.id))
    if cancel_contract(contract.id):
        db.session.commit()
        flash(_("Contrat résilié : ses paniers sont retirés des commandes encore ouvertes."), "success")
    return redirect(url_for("orders.contract_offer_detail", offer_id=contract.contract_offer_id))


@bp.route("/contrats/versement/<int:instalment_id>/<any(recu, remis):step>", methods=["POST"])
@roles_required("volunteer")
def contract_instalment_step(instalment_id: int, step: str):
    """Mark an instalment received, or passed on to the producer."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    instalment = db.session.get(ContractInstalment, instalment_id) or abort(404)
    mark = mark_instalment_received if step == "recu" else mark_instalment_passed_on
    if mark(instalment.id, current_user.id):
        db.session.commit()
        flash(_("Versement reçu.") if step == "recu" else _("Versement remis au producteur."), "success")
    else:
        flash(_("Ce versement était déjà noté ainsi (ou pas encore reçu)."), "warning")
    return redirect(url_for("orders.contract_detail", contract_id=instalment.contract_id))


# --- producer ------------------------------------------------------------------------------------


@bp.route("/contrats/producteur")
@roles_required("producer")
def contract_producer():
    """A producer's baskets to bring at each distribution and its subscribers for the season."""
    if not current_user.producer_id:
        abort(403)
    offers = db.session.scalars(
        sa.select(ContractOffer).where(ContractOffer.producer_id == current_user.producer_id)
        .order_by(ContractOffer.first_date.desc())
    ).all()
    # Contracts are nominative agreements with the producer: it sees its subscribers' names here.
    seasons = [(offer, season_subscribers(offer.id)) for offer in offers]
    return render_template("orders/contracts/producer.html",
                           distributions=producer_distributions(current_user.producer_id), seasons=seasons)


# --- bulk ----------------------------------------------------------------------------------------


@bp.route("/vrac")
@login_required
def bulk_cases():
    """How full each bulk case is in the open cycles (no household names)."""
    from orders.services import current_cycle

    cycle = current_cycle()
    return render_template("orders/bulk/cases.html", cycle=cycle,
                           bulk_rows=bulk_progress(cycle.id) if cycle else [])


@bp.route("/vrac/<int:cycle_id>/reconditionnement")
@roles_required("volunteer")
def bulk_repackaging(cycle_id: int):
    """The repackaging sheet on screen and the cases ordered from suppliers."""
    cycle = db.session.get(Cycle, cycle_id) or abort(404)
    return render_template("orders/bulk/repackaging.html", cycle=cycle, products=repackaging_rows(cycle.id),
                           cases=cases_to_order(cycle.id))
