"""The home page and the language choice."""
from __future__ import annotations

from flask import (
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

from app.auth.services import set_user_locale
from app.extensions import db
from app.main import bp
from app.main.services import next_pickup, week_summary


@bp.route("/")
@login_required
def home():
    """The signed-in user's home page."""
    return render_template("main/home.html", week=week_summary(current_user.household_id),
                           pickup=next_pickup(current_user.household_id))


def _back() -> str:
    """Return to the page the form was sent from, if it is ours."""
    target = request.referrer or ""
    root = request.host_url
    if target.startswith(root):
        return "/" + target[len(root):]
    return url_for("main.home")


@bp.route("/langue", methods=["POST"])
def set_language():
    """Remember the chosen language: on the account when signed in, else in the session."""
    locale = request.form.get("locale", "")
    if locale not in current_app.config["LANGUAGES"]:
        abort(400)
    session["locale"] = locale
    if current_user.is_authenticated:
        set_user_locale(current_user.id, locale)
        db.session.commit()
    return redirect(_back())
