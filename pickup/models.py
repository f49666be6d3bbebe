"""Pickup sites, time slots, and each bag's preparation and hand-out."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Quantity, UTCDateTime, utcnow
from app.extensions import db


class Site(db.Model):
    """A pickup site (lieu de retrait), such as the café."""

    __tablename__ = "site"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    address: Mapped[str | None] = mapped_column(sa.String(300))
    timezone: Mapped[str] = mapped_column(sa.String(60), default="Europe/Paris")


class Slot(db.Model):
    """A pickup time slot of a cycle, with a capacity in households."""

    __tablename__ = "slot"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int]
    #: Households booked; moved only by guarded UPDATEs so capacity holds under concurrency.
    booked: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "starts_at", name="uq_slot_cycle_start"),
        sa.CheckConstraint("starts_at < ends_at", name="starts_before_ends"),
        sa.CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="booked_within_capacity"),
    )


class Pickup(db.Model):
    """The life of one bag on Thursday: prepared, collected, or not collected."""

    __tablename__ = "pickup"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("order.id"), unique=True)
    prepared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prepared_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    collected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    no_show: Mapped[bool] = mapped_column(default=False)
    #: What the coordinator did with a bag that was not collected.
    no_show_outcome: Mapped[str | None] = mapped_column(sa.String(300))


#: The jobs of a distribution, in the order they happen on Thursday.
ROTA_ROLES = ("setup", "preparation", "desk", "closing")
#: How many people each job needs when the site has no default of its own.
DEFAULT_ROTA_NEEDS = {"setup": 2, "preparation": 3, "desk": 2, "closing": 2}


class RotaDefault(db.Model):
    """How many volunteers a site usually needs for a role; new distributions start from it."""

    __tablename__ = "rota_default"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"), index=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    needed: Mapped[int]

    __table_args__ = (
        sa.UniqueConstraint("site_id", "role", name="uq_rota_default_site_role"),
        sa.CheckConstraint("role IN ('setup', 'preparation', 'desk', 'closing')", name="known_role"),
        sa.CheckConstraint("needed >= 0", name="needed_not_negative"),
    )


class RotaRole(db.Model):
    """A job of one distribution (set-up, preparation, desk, closing) and how many people it needs."""

    __tablename__ = "rota_role"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    needed: Mapped[int]
    #: People signed up; moved only by guarded UPDATEs so a full role never takes one more.
    filled: Mapped[int] = mapped_column(default=0)

    signups: Mapped[list[RotaSignup]] = relationship(
        back_populates="rota_role", cascade="all, delete-orphan", order_by="RotaSignup.id"
    )

    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "role", name="uq_rota_role_cycle_role"),
        sa.CheckConstraint("role IN ('setup', 'preparation', 'desk', 'closing')", name="known_role"),
        sa.CheckConstraint("needed >= 0", name="needed_not_negative"),
        sa.CheckConstraint("filled >= 0", name="filled_not_negative"),
    )


class RotaSignup(db.Model):
    """A volunteer signed up for a role of a distribution."""

    __tablename__ = "rota_signup"

    id: Mapped[int] = mapped_column(primary_key=True)
    rota_role_id: Mapped[int] = mapped_column(sa.ForeignKey("rota_role.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    rota_role: Mapped[RotaRole] = relationship(back_populates="signups")
    user: Mapped[User] = relationship()  # noqa: F821

    __table_args__ = (sa.UniqueConstraint("rota_role_id", "user_id", name="uq_rota_signup_role_user"),)


class Shortfall(db.Model):
    """What a producer did not deliver for one order line (missing or short), per cycle."""

    __tablename__ = "shortfall"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    producer_id: Mapped[int] = mapped_column(sa.ForeignKey("producer.id"), index=True)
    #: One row per line: correcting a shortage updates it rather than adding one.
    order_line_id: Mapped[int] = mapped_column(sa.ForeignKey("order_line.id", ondelete="CASCADE"), unique=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("product.id"), index=True)
    #: What the household should have had and what it got instead.
    quantity_expected: Mapped[Decimal] = mapped_column(Quantity)
    quantity_missing: Mapped[Decimal] = mapped_column(Quantity)
    #: The value of what is missing at the household's price, credited back to it.
    amount_cents: Mapped[int] = mapped_column(default=0)
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.CheckConstraint("quantity_missing > 0", name="missing_positive"),)
