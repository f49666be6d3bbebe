"""Coordinator pages for pickup sites and their weekly rhythms (which create the distributions)."""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from app.auth.decorators import roles_required
from app.extensions import db
from orders import bp
from orders.forms import WEEKDAYS, ScheduleForm, SiteForm
from orders.models import Schedule
from orders.services import CycleRefused, ScheduleValues, save_schedule, save_site
from pickup.models import Site


@bp.route("/rythmes")
@roles_required("coordinator")
def schedules():
    """Every pickup site with its weekly rhythms."""
    sites = db.session.scalars(sa.select(Site).order_by(Site.name)).all()
    rows = db.session.scalars(sa.select(Schedule).order_by(Schedule.site_id, Schedule.name)).all()
    by_site = {site.id: [s for s in rows if s.site_id == site.id] for site in sites}
    return render_template("orders/schedules.html", sites=sites, by_site=by_site)


@bp.route("/rythmes/lieu", methods=["GET", "POST"])
@bp.route("/rythmes/lieu/<int:site_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def site_edit(site_id: int | None = None):
    """Create or change a pickup site."""
    site = db.session.get(Site, site_id) if site_id else None
    if site_id and site is None:
        abort(404)
    form = SiteForm(obj=site if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            save_site(site_id, form.name.data, form.address.data)
            db.session.commit()
        except CycleRefused as refused:
            db.session.rollback()
            form.name.errors = [str(refused)]
        else:
            flash(_("Lieu enregistré."), "success")
            return redirect(url_for("orders.schedules"))
    return render_template("orders/site_edit.html", form=form, site=site)


@bp.route("/rythmes/nouveau", methods=["GET", "POST"])
@bp.route("/rythmes/<int:schedule_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def schedule_edit(schedule_id: int | None = None):
    """Create or change a weekly rhythm; the coming distributions are created at once."""
    schedule = db.session.get(Schedule, schedule_id) if schedule_id else None
    if schedule_id and schedule is None:
        abort(404)
    form = ScheduleForm(obj=schedule if request.method == "GET" else None)
    form.site_id.choices = [(s.id, s.name) for s in db.session.scalars(sa.select(Site).order_by(Site.name))]
    if request.method == "GET" and schedule is None and request.args.get("lieu", "").isdigit():
        form.site_id.data = int(request.args["lieu"])
    if form.validate_on_submit():
        values = ScheduleValues(**{name: form[name].data for name in ScheduleValues.__dataclass_fields__})
        try:
            save_schedule(schedule_id, values)
            db.session.commit()
        except CycleRefused as refused:
            db.session.rollback()
            form.distribution_end.errors = [str(refused)]
        else:
            flash(_("Rythme enregistré ; les prochaines distributions sont créées."), "success")
            return redirect(url_for("orders.schedules"))
    return render_template("orders/schedule_edit.html", form=form, schedule=schedule)


@bp.app_template_global()
def weekday_label(weekday: int) -> str:
    """A weekday number (Monday = 0) in words."""
    return str(dict(WEEKDAYS).get(weekday, weekday))
