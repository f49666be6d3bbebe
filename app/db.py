"""Declarative base with a naming convention, and the column types for time and quantity."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every model."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored in UTC and always returned time-zone aware (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Refuse naive datetimes and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; times are stored time-zone aware")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        """Attach UTC to what SQLite gives back naive."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


QUANTITY_SCALE = 1000
THOUSANDTH = Decimal("0.001")


def to_quantity(value) -> Decimal:
    """A Decimal with three decimals, from a Decimal, int or str (never a float)."""
    if isinstance(value, float):
        raise TypeError("quantities are never floats")
    return Decimal(value).quantize(THOUSANDTH, rounding=ROUND_HALF_UP)


_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def plain_decimal(text: str) -> Decimal | None:
    """A number as people type it, digits with at most one decimal point ("1.5", "-2", ".5"), else None.

    Decimal alone also reads "1e2" (100), "NaN", "Infinity", "1_000" and digits of other scripts; a
    quantity field must not. Callers turn the comma into a point and drop the spaces first.
    """
    return Decimal(text) if _PLAIN_NUMBER.fullmatch(text) else None


class Quantity(sa.types.TypeDecorator):
    """A quantity as a Decimal with 3 decimals, stored exactly as an integer of thousandths.

    SQLite has no exact decimal type, so both databases store milli-units in a BIGINT;
    SUM() over the column comes back through this type as a Decimal again.
    """

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Decimal -> thousandths."""
        if value is None:
            return None
        return int(to_quantity(value) * QUANTITY_SCALE)

    def process_result_value(self, value, dialect):
        """Thousandths -> Decimal."""
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-3)  # exact: 2500 -> Decimal("2.500")

    @property
    def python_type(self):
        """Quantities are Decimals."""
        return Decimal


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)
