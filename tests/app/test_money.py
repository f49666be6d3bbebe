"""What a person types as an amount of money (app.money.parse_euros)."""
from __future__ import annotations

import pytest

from app.money import parse_euros


@pytest.mark.parametrize("typed, cents", [
    ("12", 1200), ("12,50", 1250), ("12.5 €", 1250), ("0,05", 5), (",5", 50), ("12,", 1200),
    ("1\u00a0234,56", 123456), ("-3,10", -310),
])
def test_amounts_people_type(typed, cents):
    assert parse_euros(typed) == cents


@pytest.mark.parametrize("typed", ["", "€", "1e3", "1E2", "NaN", "Infinity", "12,345", "1.234,56", "douze",
                                   "9" * 12, "--1", "0x10"])
def test_what_is_not_an_amount(typed):
    """Decimal() alone read "1e3" as 1,000 € and "1e1" as 10 € at the desk."""
    with pytest.raises(ValueError):
        parse_euros(typed)


@pytest.mark.parametrize("cents", [0, 5, 310, 123456, -310])
def test_what_a_form_shows_is_read_back_the_same(cents):
    from app.money import cents_to_input, format_cents

    assert parse_euros(cents_to_input(cents)) == cents
    assert parse_euros(format_cents(abs(cents))) == abs(cents)  # as displayed, narrow spaces and all
