"""Producers, catalogues, per-cycle offers and demand."""
from flask import Blueprint

bp = Blueprint("producers", __name__, template_folder="templates")

from producers import routes  # noqa: E402, F401
