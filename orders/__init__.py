"""Schedules, cycles, carts and orders, contracts, bulk allocation, pricing and payments."""
from flask import Blueprint

bp = Blueprint("orders", __name__, template_folder="templates")

from orders import routes  # noqa: E402,F401
