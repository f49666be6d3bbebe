"""A closed-or-due cycle with households, producers, slots and orders, made by factories."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from producers.models import Producer
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
)


@dataclass
class CycleData:
    """Ids of what was made."""

    cycle_id: int
    producer_ids: list[int] = field(default_factory=list)
    offer_ids: list[int] = field(default_factory=list)
    slot_ids: list[int] = field(default_factory=list)
    order_ids: list[int] = field(default_factory=list)
    household_ids: list[int] = field(default_factory=list)


def make_cycle(households: int = 4, slots: int = 2, producers: int = 2, products_per_producer: int = 2,
               lines: int = 2, due: bool = True, status: str = "open") -> CycleData:
    """A cycle whose deadline has passed (due=True), with one order per household."""
    now = utcnow()
    closes = now - timedelta(minutes=1) if due else now + timedelta(days=1)
    cycle = CycleFactory(opens_at=closes - timedelta(days=3), closes_at=closes, status=status)
    data = CycleData(cycle.id)
    for s in range(slots):
        start = cycle.distribution_starts_at + timedelta(minutes=30 * s)
        data.slot_ids.append(SlotFactory(cycle_id=cycle.id, starts_at=start, ends_at=start + timedelta(minutes=30),
                                         capacity=households).id)
    for p in range(producers):
        name = f"Ferme des Lilas {p + 1}"
        if db.session.scalar(sa.select(Producer.id).where(Producer.name == name)):
            name += f" (cycle {cycle.id})"
        producer = ProducerFactory(name=name)
        data.producer_ids.append(producer.id)
        for k in range(products_per_producer):
            product = ProductFactory(producer=producer, name=f"Légume {p + 1}.{k + 1}", unit="kg", price_cents=280)
            data.offer_ids.append(OfferFactory(cycle_id=cycle.id, product=product).id)
    for h in range(households):
        household = HouseholdFactory(name=f"Famille {h + 1:04d}", email=f"famille{h + 1}.c{cycle.id}@example.org")
        data.household_ids.append(household.id)
        order = OrderFactory(cycle_id=cycle.id, household_id=household.id,
                             slot_id=data.slot_ids[h % slots] if slots else None)
        data.order_ids.append(order.id)
        for k in range(lines):
            offer_id = data.offer_ids[(h + k) % len(data.offer_ids)]
            OrderLineFactory(order=order, offer_id=offer_id, quantity=Decimal("1.5"), unit_price_cents=280,
                             base_price_cents=280)
    db.session.commit()
    return data
