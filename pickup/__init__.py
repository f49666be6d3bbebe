"""Pickup sites, slots, Thursday preparation, hand-out desk and volunteer rota."""
from flask import Blueprint

bp = Blueprint("pickup", __name__, template_folder="templates")

from pickup import routes  # noqa: E402,F401
