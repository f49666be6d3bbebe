"""Pickup sites, time slots, and each bag's preparation and hand-out."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime
from app.extensions import db


class Site(db.Model):
    """A pickup site (lieu de retrait), such as the café."""

    __tablename__ = "site"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    address: Mapped[Optional[str]] = mapped_column(sa.String(300))
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
    prepared_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    prepared_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    collected_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    collected_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    no_show: Mapped[bool] = mapped_column(default=False)
    #: What the coordinator did with a bag that was not collected.
    no_show_outcome: Mapped[Optional[str]] = mapped_column(sa.String(300))
