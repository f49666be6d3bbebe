"""Pages of the producers package (thin: form in, service call, redirect or render)."""
from producers import bp  # noqa: F401
