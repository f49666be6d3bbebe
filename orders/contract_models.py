"""AMAP contracts: season offers, subscriptions, absences and instalments."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

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
    co_holder_id: Mapped[int | None] = mapped_column(sa.ForeignKey("household.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(1))
    status: Mapped[str] = mapped_column(sa.String(12), default="active")
    subscribed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    #: First distribution the contract covers (a late subscription does not pay for past weeks).
    starts_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contract_offer: Mapped[ContractOffer] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("contract_offer_id", "household_id", name="uq_contract_offer_household"),
        sa.CheckConstraint("status IN ('active', 'cancelled')", name="known_status"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("co_holder_id IS NULL OR co_holder_id <> household_id", name="co_holder_other"),
    )


ABSENCE_KINDS = ("skip", "handover")
INSTALMENT_METHODS = ("cheque", "cash", "transfer")


class ContractAbsence(db.Model):
    """A distribution a household will miss: the basket is skipped or handed to another household.

    Kept by week, not by cycle: a holiday is declared months ahead, before the week's distribution
    exists; the basket is then left out of whichever distribution carries that week's baskets.
    """

    __tablename__ = "contract_absence"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(sa.ForeignKey("contract.id", ondelete="CASCADE"), index=True)
    #: The Monday of the week missed (orders.contracts.cycle_monday of the distribution that week).
    week: Mapped[date] = mapped_column(sa.Date, index=True)
    #: The household that is away (the holder, or the co-holder on its weeks of a shared basket).
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    #: "skip": the producer brings one basket less; "handover": another household collects it.
    kind: Mapped[str] = mapped_column(sa.String(10))
    handed_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("household.id"))
    declared_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("contract_id", "week", name="uq_contract_absence_contract_week"),
        sa.CheckConstraint("kind IN ('skip', 'handover')", name="known_kind"),
        sa.CheckConstraint(
            "(kind = 'handover') = (handed_to_id IS NOT NULL)", name="handover_has_household"
        ),
    )


class ContractInstalment(db.Model):
    """One payment of a season (often a cheque cashed in a given month), received then passed on."""

    __tablename__ = "contract_instalment"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(sa.ForeignKey("contract.id", ondelete="CASCADE"), index=True)
    #: Who pays: the holder, or the co-holder of a shared basket for its own share.
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    position: Mapped[int] = mapped_column(default=1)
    method: Mapped[str] = mapped_column(sa.String(10), default="cheque")
    amount_cents: Mapped[int]
    cheque_number: Mapped[str | None] = mapped_column(sa.String(40))
    bank: Mapped[str | None] = mapped_column(sa.String(80))
    #: The month the producer may cash it (first day of that month).
    cashing_month: Mapped[date | None]
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    #: When the association handed it to the producer.
    passed_on_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    passed_on_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("contract_id", "household_id", "position", name="uq_contract_instalment_position"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint("method IN ('cheque', 'cash', 'transfer')", name="known_method"),
        sa.CheckConstraint("passed_on_at IS NULL OR received_at IS NOT NULL", name="received_before_passed_on"),
    )
