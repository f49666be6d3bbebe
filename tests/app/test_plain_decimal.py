"""app.db.plain_decimal: the numbers people type in quantity fields, and nothing Decimal reads besides."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.db import plain_decimal


@given(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**9))
def test_every_decimal_written_out_reads_back(value):
    assert plain_decimal(format(value, "f")) == value


@pytest.mark.parametrize("typed, expected", [("2", Decimal(2)), ("1.5", Decimal("1.5")), (".5", Decimal("0.5")),
                                             ("3.", Decimal(3)), ("-1", Decimal(-1)), ("+0.25", Decimal("0.25"))])
def test_what_people_type(typed, expected):
    assert plain_decimal(typed) == expected


@pytest.mark.parametrize("typed", ["1e2", "1E-3", "NaN", "sNaN", "Infinity", "-inf", "1_000", "\u0663", "1.2.3",
                                   ".", "", "0x10", "½"])
def test_what_decimal_reads_but_people_do_not_mean(typed):
    assert plain_decimal(typed) is None
