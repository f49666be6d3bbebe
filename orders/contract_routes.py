"""Pages of the contracts area of orders (thin: form in, service call, redirect or render)."""
from orders import bp  # noqa: F401
