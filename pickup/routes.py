"""Pages of the pickup package (thin: form in, service call, redirect or render)."""
from pickup import bp  # noqa: F401
