"""Schedules, cycles, orders and their lines (contracts and money are imported from their modules)."""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Quantity, UTCDateTime, utcnow
from app.extensions import db
from app.money import line_total_cents

CYCLE_STATUSES = ("draft", "open", "closed", "finalized", "distributed", "archived", "cancelled")
ALLOCATION_POLICIES = ("pro_rata", "first_come")
ORDER_STATUSES = ("cart", "confirmed", "cancelled")


class Schedule(db.Model):
    """The weekly rhythm of a pickup site, in the site's time zone (wall-clock times)."""

    __tablename__ = "schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    #: Weekdays are ISO-like with Monday = 0 ... Sunday = 6 (Python's date.weekday()).
    opens_weekday: Mapped[int]
    opens_time: Mapped[time]
    closes_weekday: Mapped[int]
    closes_time: Mapped[time]
    distribution_weekday: Mapped[int]
    distribution_start: Mapped[time]
    distribution_end: Mapped[time]
    slot_minutes: Mapped[int] = mapped_column(default=30)
    slot_capacity: Mapped[int] = mapped_column(default=10)
    #: How many weeks of cycles exist ahead of today.
    weeks_ahead: Mapped[int] = mapped_column(default=4)
    allocation_policy: Mapped[str] = mapped_column(sa.String(20), default="pro_rata")
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.CheckConstraint("opens_weekday BETWEEN 0 AND 6", name="opens_weekday_range"),
        sa.CheckConstraint("closes_weekday BETWEEN 0 AND 6", name="closes_weekday_range"),
        sa.CheckConstraint("distribution_weekday BETWEEN 0 AND 6", name="distribution_weekday_range"),
        sa.CheckConstraint("slot_minutes > 0", name="slot_minutes_positive"),
        sa.CheckConstraint("slot_capacity > 0", name="slot_capacity_positive"),
    )


class Cycle(db.Model):
    """One distribution: households order between opens_at and closes_at (UTC)."""

    __tablename__ = "cycle"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"), index=True)
    schedule_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("schedule.id"), index=True)
    #: ISO week of the schedule this cycle was made for ("2026-W48"); keeps generation idempotent
    #: even when a coordinator moves the distribution to another day.
    week: Mapped[Optional[str]] = mapped_column(sa.String(10))
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    distribution_date: Mapped[date]
    distribution_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    distribution_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(12), default="draft", index=True)
    allocation_policy: Mapped[str] = mapped_column(sa.String(20), default="pro_rata")
    note: Mapped[Optional[str]] = mapped_column(sa.Text)
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    finalized_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    #: The last error of the close pipeline, shown to the coordinator; cleared on success.
    finalize_error: Mapped[Optional[str]] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "week", name="uq_cycle_schedule_week"),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'closed', 'finalized', 'distributed', 'archived', 'cancelled')",
            name="known_status",
        ),
        sa.CheckConstraint("allocation_policy IN ('pro_rata', 'first_come')", name="known_policy"),
        sa.CheckConstraint("opens_at < closes_at", name="opens_before_closes"),
        sa.CheckConstraint("closes_at <= distribution_starts_at", name="closes_before_distribution"),
        sa.CheckConstraint("distribution_starts_at < distribution_ends_at", name="distribution_order"),
    )


class Order(db.Model):
    """One order per household per cycle, across all producers."""

    __tablename__ = "order"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    slot_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("slot.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(12), default="cart")
    #: The user who last entered the order: the household's member or a volunteer at the café.
    entered_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    entered_by_volunteer: Mapped[bool] = mapped_column(default=False)
    #: Pay what you can: the share of the price the household chose, in basis points.
    chosen_share_bp: Mapped[Optional[int]]
    #: Sum of the line totals, kept up to date by the order service (cents).
    total_cents: Mapped[int] = mapped_column(default=0)
    #: Bag number printed on slips and looked up at the desk; set at close.
    bag_number: Mapped[Optional[int]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    lines: Mapped[list["OrderLine"]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )

    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "household_id", name="uq_order_cycle_household"),
        sa.UniqueConstraint("cycle_id", "bag_number", name="uq_order_cycle_bag"),
        sa.CheckConstraint("status IN ('cart', 'confirmed', 'cancelled')", name="known_status"),
        sa.CheckConstraint("total_cents >= 0", name="total_not_negative"),
    )


class OrderLine(db.Model):
    """A product in an order: ordered, allocated at close, prepared on Thursday."""

    __tablename__ = "order_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("order.id", ondelete="CASCADE"), index=True)
    offer_id: Mapped[int] = mapped_column(sa.ForeignKey("offer.id"), index=True)
    #: Set on lines that come from an AMAP contract (and on a basket handed over by another household).
    contract_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("contract.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    #: Bulk: how much more the household would accept to help fill a case.
    tolerance: Mapped[Decimal] = mapped_column(Quantity, default=Decimal("0"))
    #: What the household gets after close (bulk cases, stock caps); None before close.
    quantity_allocated: Mapped[Optional[Decimal]] = mapped_column(Quantity)
    #: What the volunteer actually packed (weight for products sold by weight; 0 when missing).
    quantity_prepared: Mapped[Optional[Decimal]] = mapped_column(Quantity)
    #: Unit price the household pays (after its price tier), frozen when the line is written.
    unit_price_cents: Mapped[int]
    #: The base offer price when the line was written, for what each tier brought in.
    base_price_cents: Mapped[int]
    missing: Mapped[bool] = mapped_column(default=False)
    #: When this quantity was last ordered; first_come allocation and pro-rata ties use it.
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="lines")
    offer: Mapped["Offer"] = relationship()  # noqa: F821

    __table_args__ = (
        sa.Index(
            "uq_order_line_order_offer_plain",
            "order_id",
            "offer_id",
            unique=True,
            sqlite_where=sa.text("contract_id IS NULL"),
            postgresql_where=sa.text("contract_id IS NULL"),
        ),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        sa.CheckConstraint("tolerance >= 0", name="tolerance_not_negative"),
        sa.CheckConstraint("unit_price_cents >= 0", name="price_not_negative"),
    )

    @property
    def charged_quantity(self) -> Decimal:
        """What the household pays for: prepared, else allocated, else ordered."""
        if self.quantity_prepared is not None:
            return self.quantity_prepared
        if self.quantity_allocated is not None:
            return self.quantity_allocated
        return self.quantity

    @property
    def total_cents(self) -> int:
        """The line total, rounded once, on the line."""
        return line_total_cents(self.unit_price_cents, self.charged_quantity)


# Contracts and money live in their own modules; importing them here keeps one import path.
from orders.contract_models import Contract, ContractOffer  # noqa: E402,F401
from orders.payment_models import LedgerEntry, Payment  # noqa: E402,F401
