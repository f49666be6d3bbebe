"""The home page: what each role has to do this week."""
from __future__ import annotations

from flask import render_template
from flask_login import login_required

from app.main import bp


@bp.route("/")
@login_required
def home():
    """The signed-in user's home page."""
    return render_template("main/home.html")
