"""Pages of the cycle documents area of orders: list, download, reprocess."""
from orders import bp  # noqa: F401
