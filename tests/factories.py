"""factory_boy factories bound to the session; each makes realistic rows."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import factory
from factory.alchemy import SQLAlchemyModelFactory

from app.extensions import db
from app.models import Household, PriceTier, User
from orders.models import Cycle, Order, OrderLine, Schedule
from pickup.models import Site, Slot
from producers.models import Offer, Producer, Product
from tests.helpers import PASSWORD


class Base(SQLAlchemyModelFactory):
    """Factories flush into the Flask-SQLAlchemy session."""

    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "flush"


class PriceTierFactory(Base):
    class Meta:
        model = PriceTier

    name = factory.Sequence(lambda n: f"Tarif {n}")
    markup_bp = 0


class HouseholdFactory(Base):
    class Meta:
        model = Household

    name = factory.Sequence(lambda n: f"Foyer {n}")
    email = factory.Sequence(lambda n: f"foyer{n}@example.org")


class UserFactory(Base):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    name = factory.Sequence(lambda n: f"Personne {n}")
    locale = "fr"

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or PASSWORD)

    @factory.post_generation
    def roles(obj, create, extracted, **kwargs):
        obj.set_roles(extracted or ["member"])


class ProducerFactory(Base):
    class Meta:
        model = Producer

    name = factory.Sequence(lambda n: f"Ferme {n}")
    kind = "farmer"
    email = factory.Sequence(lambda n: f"ferme{n}@example.org")


class ProductFactory(Base):
    class Meta:
        model = Product

    producer = factory.SubFactory(ProducerFactory)
    name = factory.Sequence(lambda n: f"Produit {n}")
    unit = "piece"
    price_cents = 250
    vat_rate_bp = 550


class SiteFactory(Base):
    class Meta:
        model = Site

    name = factory.Sequence(lambda n: f"Café {n}")
    address = "1 place de l'Église"
    timezone = "Europe/Paris"


def _next_thursday() -> date:
    today = datetime.now(timezone.utc).date()
    return today + timedelta(days=(3 - today.weekday()) % 7 or 7)


class CycleFactory(Base):
    """An open cycle closing in two days, distribution the Thursday after."""

    class Meta:
        model = Cycle

    site_id = factory.LazyFunction(lambda: SiteFactory().id)
    opens_at = factory.LazyFunction(lambda: datetime.now(timezone.utc) - timedelta(days=2))
    closes_at = factory.LazyFunction(lambda: datetime.now(timezone.utc) + timedelta(days=2))
    distribution_date = factory.LazyAttribute(lambda o: (o.closes_at + timedelta(days=1)).date())
    distribution_starts_at = factory.LazyAttribute(
        lambda o: datetime.combine(o.distribution_date, time(15, 30), tzinfo=timezone.utc)
    )
    distribution_ends_at = factory.LazyAttribute(lambda o: o.distribution_starts_at + timedelta(hours=3))
    status = "open"


class OfferFactory(Base):
    class Meta:
        model = Offer

    cycle_id = factory.LazyFunction(lambda: CycleFactory().id)
    product = factory.SubFactory(ProductFactory)
    price_cents = factory.LazyAttribute(lambda o: o.product.price_cents)
    reserved = Decimal("0")


class SlotFactory(Base):
    class Meta:
        model = Slot

    cycle_id = factory.LazyFunction(lambda: CycleFactory().id)
    starts_at = factory.LazyFunction(lambda: datetime.now(timezone.utc) + timedelta(days=3))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(minutes=30))
    capacity = 10


class OrderFactory(Base):
    class Meta:
        model = Order

    cycle_id = factory.LazyFunction(lambda: CycleFactory().id)
    household_id = factory.LazyFunction(lambda: HouseholdFactory().id)
    status = "confirmed"


class OrderLineFactory(Base):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    offer_id = factory.LazyFunction(lambda: OfferFactory().id)
    quantity = Decimal("1")
    unit_price_cents = 250
    base_price_cents = 250


__all__ = [
    "HouseholdFactory", "UserFactory", "ProducerFactory", "ProductFactory", "SiteFactory",
    "CycleFactory", "OfferFactory", "SlotFactory", "OrderFactory", "OrderLineFactory",
    "PriceTierFactory", "Schedule",
]
