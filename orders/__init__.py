"""Schedules, cycles, carts and orders, contracts, bulk allocation, pricing and payments."""
from flask import Blueprint

bp = Blueprint("orders", __name__, template_folder="templates")

# One routes module per area of the package; each registers its views on `bp`.
from orders import routes  # noqa: E402,F401
from orders import contract_routes  # noqa: E402,F401
from orders import payment_routes  # noqa: E402,F401
from orders import document_routes  # noqa: E402,F401
from orders import schedule_routes  # noqa: E402,F401
