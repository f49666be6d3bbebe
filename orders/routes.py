"""Pages of the orders package (thin: form in, service call, redirect or render)."""
from orders import bp  # noqa: F401
