"""Pages of the producers package: catalogue, per-cycle offers, demand, coordinator's producer admin."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from markupsafe import Markup

from app.auth.decorators import roles_required
from app.extensions import db
from app.money import cents_to_input, parse_euros
from app.search import folded_sort_key
from app.spreadsheet import BOM, decimal_cell
from app.templating import local_date, local_time, money
from orders.models import Cycle
from producers import bp
from producers.forms import ImportForm, OffersForm, ProducerForm, ProductForm
from producers.models import Offer, Producer, Product
from producers.services import (
    CatalogueError,
    DemandWeek,
    PhotoLimits,
    ProductData,
    cycles_around,
    delivery_csv,
    demand_csv,
    demand_page,
    demand_weeks,
    export_catalogue,
    households_ordering,
    import_catalogue_file,
    offers_at_another_price,
    parse_decimal,
    parse_offer_values,
    save_producer,
    save_product,
    set_offer,
    shrink_photo,
    store_photo,
)


def _producer_id() -> int:
    """The producer whose pages these are: the user's own, or the one a coordinator chose."""
    if current_user.producer_id and not request.args.get("producer_id"):
        return current_user.producer_id
    if current_user.has_role("coordinator"):
        raw = request.args.get("producer_id", "")
        if raw.isdigit() and len(raw) <= 9 and db.session.get(Producer, int(raw)) is not None:
            return int(raw)
        abort(404)
    if current_user.producer_id:
        return current_user.producer_id
    abort(403)


@bp.route("/catalogue")
@roles_required("producer")
def catalogue():
    """The producer's products, and the cycles it can make offers in."""
    producer_id = _producer_id()
    producer = db.session.get(Producer, producer_id)
    products = sorted(db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id)),
                      key=lambda p: (not p.active, folded_sort_key(p.name)))
    cycles = db.session.scalars(sa.select(Cycle).where(Cycle.status.in_(("draft", "open")))
                                .order_by(Cycle.closes_at).limit(8)).all()
    return render_template("producers/catalogue.html", producer=producer, products=products, cycles=cycles,
                           scope=_scope_args(producer_id))


def _scope_args(producer_id: int) -> dict:
    """URL arguments that keep a coordinator on the producer it chose."""
    return {"producer_id": producer_id} if current_user.producer_id != producer_id else {}


@bp.route("/catalogue/produit", methods=["GET", "POST"])
@bp.route("/catalogue/produit/<int:product_id>", methods=["GET", "POST"])
@roles_required("producer")
def product_edit(product_id: int | None = None):
    """Create or edit a product of the producer (another producer's product is not found)."""
    coordinator = current_user.has_role("coordinator")
    if product_id is not None and coordinator and not request.args.get("producer_id"):
        # A coordinator follows a link to a product: the product says whose it is.
        producer_id = db.session.scalar(sa.select(Product.producer_id).where(Product.id == product_id)) or abort(404)
    else:
        producer_id = _producer_id()
    product = None
    if product_id is not None:
        product = db.session.scalar(sa.select(Product).where(Product.id == product_id,
                                                             Product.producer_id == producer_id))
        if product is None:
            abort(404)
    form = ProductForm()
    if request.method == "GET" and product is not None:
        _fill_product_form(form, product)
    if form.validate_on_submit():
        old_price = product.price_cents if product is not None else None
        try:
            photo = _photo_from_form(form)  # a bad photo is refused before anything is saved
            saved = save_product(producer_id, _product_data(form), product_id, withdraw_ordered=coordinator)
            if photo is not None:
                store_photo(saved.id, *photo, current_app.config["INSTANCE_DIR"])
            db.session.commit()
        except CatalogueError as error:
            db.session.rollback()
            where = getattr(form, error.field or "name", form.name)
            where.errors = [*where.errors, str(error)]
        else:
            flash(_("Produit enregistré."), "success")
            if old_price is not None and saved.price_cents != old_price:
                _flash_weeks_at_another_price(saved, producer_id)
            return redirect(url_for("producers.catalogue", **_scope_args(producer_id)))
    return render_template("producers/product_edit.html", form=form, product=product), 422 if form.errors else 200


def _photo_from_form(form: ProductForm) -> tuple[bytes, str] | None:
    """The uploaded photo shrunk for keeping, with its suffix (None if none was chosen); CatalogueError if refused."""
    upload = form.photo.data
    if not upload or not getattr(upload, "filename", ""):
        return None
    limits = PhotoLimits.from_config(current_app.config)
    # One byte more than allowed is enough to know it is too heavy: the rest stays on disk, unread.
    return shrink_photo(upload.stream.read(limits.max_bytes + 1), limits)


def _flash_weeks_at_another_price(product: Product, producer_id: int) -> None:
    """Say which open or coming weeks still sell the product at another price, each linked to its offer page."""
    weeks = offers_at_another_price(product.id)
    if not weeks:
        return
    links = Markup(", ").join(
        Markup('<a href="{url}">{day} ({price})</a>').format(
            url=url_for("producers.offers", cycle_id=cycle.id, **_scope_args(producer_id)),
            day=_("distribution du %(day)s", day=local_date(cycle.distribution_date)), price=money(offer.price_cents))
        for cycle, offer in weeks)
    flash(Markup("{} {}").format(
        ngettext("%(name)s est maintenant à %(price)s au catalogue, mais l'offre de cette distribution garde son "
                 "prix (les paniers des foyers gardent le prix affiché). Pour le changer, ouvrez l'offre :",
                 "%(name)s est maintenant à %(price)s au catalogue, mais les offres de ces distributions gardent "
                 "leur prix (les paniers des foyers gardent le prix affiché). Pour le changer, ouvrez chaque offre :",
                 len(weeks), name=product.name, price=money(product.price_cents)), links), "warning")


def _fill_product_form(form: ProductForm, product: Product) -> None:
    """Show a product in the form, prices in euros with a comma."""
    fmt = decimal_cell
    form.name.data, form.unit.data = product.name, product.unit
    form.price.data = cents_to_input(product.price_cents)
    form.vat.data = fmt(Decimal(product.vat_rate_bp) / 100)
    form.sold_by_weight.data, form.active.data = product.sold_by_weight, product.active
    form.is_contract_basket.data = product.is_contract_basket
    form.case_size.data, form.portion_step.data = fmt(product.case_size), fmt(product.portion_step)
    form.description.data = product.description


def _product_data(form: ProductForm) -> ProductData:
    """ProductData from the form; CatalogueError with a French reason, on the field it is about."""
    try:
        price = parse_euros(form.price.data, signed=False)
    except ValueError:
        raise CatalogueError(_("Prix illisible (exemple : 2,50)."), "price") from None
    numbers = {}
    for name in ("vat", "case_size", "portion_step"):
        try:
            numbers[name] = parse_decimal(getattr(form, name).data)
        except ValueError as error:
            raise CatalogueError(_("« %(v)s » n'est pas un nombre.", v=str(error)), name) from None
    vat, case_size, step = numbers["vat"] or Decimal(0), numbers["case_size"], numbers["portion_step"]
    if vat > 100 or (vat * 100) % 1:
        raise CatalogueError(_("La TVA doit être entre 0 et 100 %."), "vat")
    return ProductData(name=form.name.data, unit=form.unit.data, price_cents=price, vat_rate_bp=int(vat * 100),
                       sold_by_weight=form.sold_by_weight.data, case_size=case_size, portion_step=step,
                       active=form.active.data, description=form.description.data,
                       is_contract_basket=form.is_contract_basket.data)


@bp.route("/photo/<path:name>")
@roles_required("member", "producer", "volunteer")
def photo(name: str):
    """A product photo from instance/photos."""
    return send_from_directory(Path(current_app.config["INSTANCE_DIR"]) / "photos", name)


@bp.route("/offre/<int:cycle_id>", methods=["GET", "POST"])
@roles_required("producer")
def offers(cycle_id: int):
    """What the producer offers in one cycle: which products, at what price, with what stock."""
    producer_id = _producer_id()
    cycle = db.session.get(Cycle, cycle_id) or abort(404)
    products = sorted(db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id,
                                                                  Product.active.is_(True))),
                      key=lambda p: folded_sort_key(p.name))
    current = {o.product_id: o for o in db.session.scalars(
        sa.select(Offer).where(Offer.cycle_id == cycle_id, Offer.product_id.in_([p.id for p in products])))}
    form = OffersForm()
    errors: list[str] = []
    if form.validate_on_submit():
        errors, withdrawn = _save_offers(cycle_id, producer_id, products, current)
        if not errors:
            db.session.commit()
            flash(_("Offre enregistrée."), "success")
            for name, households in withdrawn:
                flash(ngettext("%(name)s est retiré alors que %(num)d foyer l'avait commandé : à la clôture, il ne "
                               "lui sera ni livré ni facturé. Prévenez-le.",
                               "%(name)s est retiré alors que %(num)d foyers l'avaient commandé : à la clôture, il "
                               "ne leur sera ni livré ni facturé. Prévenez-les.", households, name=name), "warning")
            return redirect(url_for("producers.offers", cycle_id=cycle_id, **_scope_args(producer_id)))
        db.session.rollback()
    return render_template("producers/offers.html", cycle=cycle, products=products, current=current, form=form,
                           errors=errors, posted=request.form), 422 if errors else 200


def _save_offers(cycle_id: int, producer_id: int, products: list[Product],
                 current: dict[int, Offer]) -> tuple[list[str], list[tuple[str, int]]]:
    """Apply the offer table; French errors (nothing is kept if there are any), and the ordered offers
    a coordinator withdrew, with how many households ordered each."""
    errors, withdrawn = [], []
    coordinator = current_user.has_role("coordinator")
    for product in products:
        key = str(product.id)
        offered = request.form.get(f"o-{key}") == "1"
        try:
            price, cap = parse_offer_values(product.name, request.form.get(f"price-{key}"),
                                            request.form.get(f"cap-{key}"), offered)
            offer = current.get(product.id)
            withdrawing = coordinator and offer is not None and offer.active and not offered
            households = households_ordering(offer_id=offer.id) if withdrawing else 0
            set_offer(cycle_id, product.id, producer_id, offered, price, cap, withdraw_ordered=coordinator)
        except CatalogueError as error:
            errors.append(str(error))
        else:
            if households:
                withdrawn.append((product.name, households))
    return errors, withdrawn


def _demand_cycle(weeks: list[DemandWeek]) -> Cycle | None:
    """The cycle asked for (404 if there is none such), else the week to deliver, else the open one, else None."""
    # Imported here: orders.services imports this package's models.
    from orders.services import current_cycle

    raw = request.args.get("cycle_id", "")
    if not raw:
        return next((week.cycle for week in weeks if week.stage == "deliver"), None) or current_cycle()
    cycle = db.session.get(Cycle, int(raw)) if raw.isdigit() and len(raw) <= 9 else None
    return cycle or abort(404)


@bp.route("/demande", endpoint="demand")
@roles_required("producer")
def demand_view():
    """Demand of a week: live while households order, what to deliver once allocated (coordinator: any producer)."""
    weeks = demand_weeks()
    cycle = _demand_cycle(weeks)
    producer_id = None if current_user.has_role("coordinator") and not request.args.get("producer_id") \
        else _producer_id()
    scope = _scope_args(producer_id) if producer_id else {}
    if cycle is None:
        last, upcoming = cycles_around()
        return render_template("producers/demand_none.html", last=last, upcoming=upcoming, scope=scope)
    producer = db.session.get(Producer, producer_id) if producer_id else None
    with_names = current_user.has_role("coordinator") or bool(producer and producer.show_household_names)
    page = demand_page(cycle, producer_id, with_names=with_names)
    if request.args.get("format") == "csv":
        text = (delivery_csv if page.final else demand_csv)(page.rows, page.slots, local_time)
        stem = "a-livrer" if page.final else "demande"
        return Response(BOM + text, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{stem}-{cycle.distribution_date}.csv"'})
    return render_template("producers/demand.html", cycle=cycle, page=page, rows=page.rows, slots=page.slots,
                           producer=producer, with_names=with_names, scope=scope, weeks=weeks,
                           several_sites=len({week.cycle.site_id for week in weeks}) > 1)


# --------------------------------------------------------------------------- coordinator


@bp.route("/admin", methods=["GET", "POST"])
@bp.route("/admin/<int:producer_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def admin_producers(producer_id: int | None = None):
    """List producers; create or edit one."""
    producer = db.session.get(Producer, producer_id) if producer_id else None
    if producer_id and producer is None:
        abort(404)
    form = ProducerForm(obj=producer if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            saved = save_producer(form.name.data, form.kind.data, form.email.data, form.contact_name.data,
                                  form.phone.data, form.show_household_names.data, form.active.data, producer_id)
            db.session.commit()
        except CatalogueError as error:
            db.session.rollback()
            form.name.errors = [*form.name.errors, str(error)]
        else:
            flash(_("Producteur %(name)s enregistré.", name=saved.name), "success")
            return redirect(url_for("producers.admin_producers"))
    producers = sorted(db.session.scalars(sa.select(Producer)), key=lambda p: (not p.active, folded_sort_key(p.name)))
    return render_template("producers/admin_producers.html", producers=producers, form=form, editing=producer,
                           import_form=ImportForm()), 422 if form.errors else 200


@bp.route("/admin/<int:producer_id>/import", methods=["POST"])
@roles_required("coordinator")
def admin_import(producer_id: int):
    """Import a producer's catalogue from a CSV file and show what was rejected."""
    producer = db.session.get(Producer, producer_id) or abort(404)
    form = ImportForm()
    if not form.validate_on_submit() or not form.file.data:
        flash(_("Choisissez un fichier CSV."), "error")
        return redirect(url_for("producers.admin_producers", producer_id=producer_id))
    report = import_catalogue_file(producer_id, form.file.data.read())
    db.session.commit()
    return render_template("producers/import_report.html", producer=producer, report=report)


@bp.route("/admin/<int:producer_id>/export.csv")
@roles_required("coordinator")
def admin_export(producer_id: int):
    """A producer's catalogue as CSV (the import format)."""
    producer = db.session.get(Producer, producer_id) or abort(404)
    return Response(BOM + export_catalogue(producer_id), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="catalogue-{producer.id}.csv"'})
