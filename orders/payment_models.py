"""Money: the household ledger and payments."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, utcnow
from app.extensions import db


class LedgerEntry(db.Model):
    """A signed movement on a household's account; the balance is the sum of its entries."""

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    #: Positive: money the household has with the association (payment, credit, top-up).
    #: Negative: what it owes (charge for an order).
    amount_cents: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(12))
    #: What the entry is about, unique per kind so a retry records nothing twice
    #: (e.g. "order:12:charge", "line:88:missing", "stripe:evt_...").
    reference: Mapped[str] = mapped_column(sa.String(120))
    order_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("order.id"), index=True)
    note: Mapped[Optional[str]] = mapped_column(sa.String(300))
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("reference", name="uq_ledger_entry_reference"),
        sa.CheckConstraint(
            "kind IN ('payment', 'charge', 'credit', 'refund', 'adjustment', 'topup')", name="known_kind"
        ),
    )


class Payment(db.Model):
    """A payment towards an order: card (Stripe), cash, cheque or balance."""

    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("order.id"), index=True)
    household_id: Mapped[int] = mapped_column(sa.ForeignKey("household.id"), index=True)
    method: Mapped[str] = mapped_column(sa.String(10))
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(12), default="pending")
    #: Stripe Checkout Session id, or the cheque number.
    provider_reference: Mapped[Optional[str]] = mapped_column(sa.String(120), index=True)
    cheque_bank: Mapped[Optional[str]] = mapped_column(sa.String(80))
    received_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("method IN ('card', 'cash', 'cheque', 'balance')", name="known_method"),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'expired', 'refunded', 'flagged')",
            name="known_status",
        ),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
    )
