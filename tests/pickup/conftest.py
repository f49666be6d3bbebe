"""A Thursday distribution made with factories: a finalized cycle, two slots, three bags."""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal

import pytest

from app.db import utcnow
from app.extensions import db
from app.models import Household
from app.timeutil import local_to_utc
from orders.ledger import sync_order_charge
from orders.models import Cycle, Order, OrderLine
from pickup.models import Site, Slot
from pickup.services import paris_today
from producers.models import Offer, Product
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProducerFactory,
    ProductFactory,
    SiteFactory,
    SlotFactory,
    UserFactory,
)


@dataclass
class Thursday:
    """Everything a test of the distribution needs, by name."""

    site: Site
    cycle: Cycle
    slot1: Slot
    slot2: Slot
    apples: Product
    salad: Product
    eggs: Product
    dupont: Order
    martin: Order
    leroy: Order
    volunteer_email: str = "benevole@example.org"
    coordinator_email: str = "coord@example.org"
    member_email: str = "marie@example.org"
    producer_email: str = "ferme@example.org"

    def line(self, order: Order, product: Product) -> OrderLine:
        """The order's line for a product."""
        return next(line for line in order.lines if line.offer.product_id == product.id)


def _line(order: Order, offer: Offer, quantity: str) -> OrderLine:
    """A line at the offer's price, allocated as ordered (what close does)."""
    return OrderLineFactory(
        order=order, offer_id=offer.id, quantity=Decimal(quantity), quantity_allocated=Decimal(quantity),
        unit_price_cents=offer.price_cents, base_price_cents=offer.price_cents,
    )


def make_thursday(day=None, status: str = "finalized", tag: str = "") -> Thursday:
    """A finalized cycle distributed today at the café, with bags in two slots, charged as finalize does."""
    day = day or paris_today()
    now = utcnow()
    site = SiteFactory(name="Café des Tilleuls" + tag, address="3 rue des Tilleuls, 26000 Valence")
    starts = local_to_utc(day, time(16, 30))
    cycle = CycleFactory(
        site_id=site.id, opens_at=min(now, starts) - timedelta(days=5), closes_at=min(now, starts) - timedelta(days=1),
        distribution_date=day, distribution_starts_at=starts, distribution_ends_at=starts + timedelta(hours=3),
        status=status,
    )
    slot1 = SlotFactory(cycle_id=cycle.id, starts_at=starts, ends_at=starts + timedelta(minutes=30), capacity=10)
    slot2 = SlotFactory(cycle_id=cycle.id, starts_at=starts + timedelta(minutes=30),
                        ends_at=starts + timedelta(minutes=60), capacity=10)
    farm = ProducerFactory(name="Ferme du Coteau" + tag, email="ferme@example.org")
    apples = ProductFactory(producer=farm, name="Pommes", unit="kg", price_cents=320, sold_by_weight=True)
    salad = ProductFactory(producer=farm, name="Salade", unit="piece", price_cents=150)
    hens = ProducerFactory(name="Poulailler Martin" + tag)
    eggs = ProductFactory(producer=hens, name="Œufs (boîte de 6)", unit="piece", price_cents=300)
    offers = {p.id: OfferFactory(cycle_id=cycle.id, product=p) for p in (apples, salad, eggs)}

    def household(name, email):
        return HouseholdFactory(name=name, email=email)

    dupont = OrderFactory(cycle_id=cycle.id, household_id=household("Foyer Dupont", "dupont@example.org").id,
                          slot_id=slot1.id, bag_number=1)
    martin = OrderFactory(cycle_id=cycle.id, household_id=household("Foyer Martin", "martin@example.org").id,
                          slot_id=slot1.id, bag_number=2)
    leroy = OrderFactory(cycle_id=cycle.id, household_id=household("Foyer Leroy", "leroy@example.org").id,
                         slot_id=slot2.id, bag_number=3)
    _line(dupont, offers[apples.id], "1.5")
    _line(dupont, offers[salad.id], "1")
    _line(martin, offers[eggs.id], "2")
    _line(martin, offers[salad.id], "1")
    _line(leroy, offers[eggs.id], "1")
    db.session.flush()
    for order in (dupont, martin, leroy):
        db.session.refresh(order)
        sync_order_charge(order.id)
    return Thursday(site, cycle, slot1, slot2, apples, salad, eggs, dupont, martin, leroy)


@pytest.fixture()
def thursday(app) -> Thursday:
    """Today's distribution with its people: a volunteer, a coordinator, a member, a producer."""
    data = make_thursday()
    UserFactory(email=data.volunteer_email, name="Paul Bénévole", roles=["volunteer"])
    UserFactory(email=data.coordinator_email, name="Claire Coordinatrice", roles=["coordinator"])
    dupont_household = db.session.get(Household, data.dupont.household_id)
    UserFactory(email=data.member_email, name="Marie Dupont", household=dupont_household, roles=["member"])
    UserFactory(email=data.producer_email, name="Jean du Coteau", producer_id=data.apples.producer_id,
                roles=["producer"])
    db.session.commit()
    return data


def text(response) -> str:
    """The page as a person reads it (HTML entities such as &#39; turned back into characters)."""
    return html.unescape(response.get_data(as_text=True))
