"""Producers and market traders, their products, and what they offer in each cycle."""
from __future__ import annotations

import unicodedata
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.db import Quantity, UTCDateTime, utcnow
from app.extensions import db

PRODUCER_KINDS = ("farmer", "market_trader", "bulk_supplier")
UNITS = ("piece", "kg", "l", "bunch", "basket")
#: Units that can be ordered in fractions (0.5 kg); the others are whole numbers.
DIVISIBLE_UNITS = ("kg", "l")


def name_key(name: str) -> str:
    """What makes two product names the same: case, accents' composition and spaces do not count."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


class Producer(db.Model):
    """A farmer, market trader (forain) or bulk supplier."""

    __tablename__ = "producer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    contact_name: Mapped[str | None] = mapped_column(sa.String(120))
    #: Where the purchase order is sent at close; a producer without e-mail gets it on paper.
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    description: Mapped[str | None] = mapped_column(sa.Text)
    #: The coordinator allows this producer to see household names in its demand.
    show_household_names: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    products: Mapped[list[Product]] = relationship(back_populates="producer")

    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('farmer', 'market_trader', 'bulk_supplier')", name="known_kind"
        ),
    )


class Product(db.Model):
    """A catalogue product; prices are per unit in cents, before the household's tier."""

    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    producer_id: Mapped[int] = mapped_column(sa.ForeignKey("producer.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    #: name_key(name), kept by the model: the database holds "Riz" and "riz " unique per producer.
    name_key: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str | None] = mapped_column(sa.Text)
    unit: Mapped[str] = mapped_column(sa.String(10))
    price_cents: Mapped[int]
    #: VAT rate in basis points: 550 = 5.5 %, 2000 = 20 %.
    vat_rate_bp: Mapped[int] = mapped_column(default=550)
    #: Sold by weight: the price is settled on the weight actually prepared.
    sold_by_weight: Mapped[bool] = mapped_column(default=False)
    #: Bulk (vrac): the supplier sells whole cases of this many units (25 kg, 6 bottles).
    case_size: Mapped[Decimal | None] = mapped_column(Quantity)
    #: Bulk: household portions are multiples of this step (0.5 kg); defaults to 1 or 0.001.
    portion_step: Mapped[Decimal | None] = mapped_column(Quantity)
    #: A season basket that AMAP contracts subscribe to.
    is_contract_basket: Mapped[bool] = mapped_column(default=False)
    photo_filename: Mapped[str | None] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    producer: Mapped[Producer] = relationship(back_populates="products")

    __table_args__ = (
        sa.UniqueConstraint("producer_id", "name_key", name="uq_product_producer_name_key"),
        sa.CheckConstraint("unit IN ('piece', 'kg', 'l', 'bunch', 'basket')", name="known_unit"),
        sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),
        sa.CheckConstraint("vat_rate_bp >= 0 AND vat_rate_bp <= 10000", name="vat_range"),
        sa.CheckConstraint("case_size IS NULL OR case_size > 0", name="case_size_positive"),
        sa.CheckConstraint("portion_step IS NULL OR portion_step > 0", name="step_positive"),
    )

    @validates("name")
    def _keep_name_key(self, _key: str, name: str) -> str:
        """Every way a name is set (forms, imports, demo data) keeps its key."""
        self.name_key = name_key(name)
        return name

    @property
    def is_bulk(self) -> bool:
        """Bulk products are bought by the case and shared back to households."""
        return self.case_size is not None

    @property
    def divisible(self) -> bool:
        """Whether a household may order a fraction of a unit."""
        return self.unit in DIVISIBLE_UNITS

    @property
    def step(self) -> Decimal:
        """The smallest quantity increment a household may order."""
        if self.portion_step is not None:
            return self.portion_step
        return Decimal("0.001") if self.divisible else Decimal(1)


class Offer(db.Model):
    """A product offered in one cycle, at that cycle's price, with an optional stock cap."""

    __tablename__ = "offer"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(sa.ForeignKey("cycle.id"), index=True)
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("product.id"), index=True)
    #: Base price per unit for this cycle, before the household's price tier.
    price_cents: Mapped[int]
    #: At most this much can be sold in the cycle; None means no cap.
    stock_cap: Mapped[Decimal | None] = mapped_column(Quantity)
    #: What orders hold right now; moved only by guarded UPDATEs so the cap holds under concurrency.
    reserved: Mapped[Decimal] = mapped_column(Quantity, default=Decimal(0))
    active: Mapped[bool] = mapped_column(default=True)

    product: Mapped[Product] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("cycle_id", "product_id", name="uq_offer_cycle_product"),
        sa.CheckConstraint("price_cents >= 0", name="price_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        sa.CheckConstraint("stock_cap IS NULL OR reserved <= stock_cap", name="reserved_within_cap"),
    )
