"""Money helpers: integer cents, exact line totals, and the one display format."""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale


def line_total_cents(unit_price_cents: int, quantity: Decimal) -> int:
    """A line total: price times quantity, rounded half up to the cent once, on the line."""
    if isinstance(quantity, float) or isinstance(unit_price_cents, float):
        raise TypeError("money and quantities are never floats")
    exact = Decimal(unit_price_cents) * Decimal(quantity)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def apply_basis_points(cents: int, basis_points: int) -> int:
    """Cents increased (or decreased) by basis points (1000 = 10 %), rounded half up."""
    if basis_points == 0:
        return cents
    exact = Decimal(cents) * (Decimal(10000) + Decimal(basis_points)) / Decimal(10000)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


_AMOUNT = re.compile(r"[+-]?(\d{1,9}(\.\d{0,2})?|\.\d{1,2})")


def parse_euros(text: str, signed: bool = True) -> int:
    """Cents from what a person types ("12", "12,50", "12.5 €"); ValueError if it is not money (nor, when
    not signed, an amount with a + or - before it, as a price)."""
    cleaned = (text or "").replace("€", "").replace("\u00a0", "").replace("\u202f", "").replace(" ", "").replace(",", ".")
    if not cleaned:
        raise ValueError("empty amount")
    # Digits with at most two decimals: Decimal alone also reads "1e3" (1,000 €), "NaN" and "Infinity".
    if _AMOUNT.fullmatch(cleaned) is None or (not signed and cleaned[0] in "+-"):
        raise ValueError("not an amount in euros and cents")
    return int((Decimal(cleaned) * 100).to_integral_value())


def cents_to_input(cents: int) -> str:
    """What a form field shows for an amount, as parse_euros reads it back: 310 -> "3,10"."""
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100},{abs(cents) % 100:02d}"


def format_cents(cents: int | None, locale: str = "fr_FR") -> str:
    """12345 -> '123,45 €' (French) for display; the only place money becomes text."""
    if cents is None:
        return ""
    return _formatted(int(cents), locale)


@lru_cache(maxsize=4096)
def _formatted(cents: int, locale: str) -> str:
    """Babel's formatting costs 50 µs an amount; pages and e-mails show the same prices many times."""
    parsed, pattern = _currency_format(locale)
    return pattern.apply(Decimal(cents) / 100, parsed, currency="EUR")


@lru_cache(maxsize=8)
def _currency_format(locale: str):
    """A locale's parsed standard currency pattern (what babel's format_currency looks up per call)."""
    parsed = Locale.parse(locale)
    return parsed, parsed.currency_formats["standard"]
