"""AMAP contracts: season offers, subscriptions, absences and instalments."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Quantity, UTCDateTime, utcnow
from app.extensions import db


class ContractOffer(db.Model):
    """An AMAP season offer by a producer: a basket every week or every other week."""

    __tablename__ = "contract_offer"

    id: Mapped[int] = mapped_column(primary_key=True)
    producer_id: Mapped[int] = mapped_column(sa.ForeignKey("producer.id"), index=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("product.id"), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("site.id"))
    name: Mapped[str] = mapped_column(sa.String(120))
    first_date: Mapped[date]
    last_date: Mapped[date]
    #: 1 = every week, 2 = every other week.
    every_weeks: Mapped[int] = mapped_column(default=1)
    price_cents: Mapped[int]
    absences_allowed: Mapped[int] = mapped_column(default=0)
    shareable: Mapped[bool] = mapped_column(default=False)
    open_for_subscription: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("first_date <= last_date", name="starts_before_ends"),
        sa.CheckConstraint("every_weeks IN (1, 2)", name="known_frequency"),
        sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),
        sa.CheckConstraint("absences_allowed >= 0", name="absences_not_negative"),
    )


class Contract(db.Model):
    """A household's subscription to a season offer (contrat AMAP)."""

    __tablename__ = "contract"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_offer_id: Mapped[int] = mapped_column(sa.ForeignKey("contract_offer.id"), index=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    #: A shared basket: the co-holder takes it on alternate distributions.
    co_holder_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("household.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal("1"))
    status: Mapped[str] = mapped_column(sa.String(12), default="active")
    subscribed_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contract_offer: Mapped[ContractOffer] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("contract_offer_id", "household_id", name="uq_contract_offer_household"),
        sa.CheckConstraint("status IN ('active', 'cancelled')", name="known_status"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )
