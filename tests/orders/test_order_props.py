"""Property tests: generated quantities and ids thrown at save_order keep totals exact and caps held."""
from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.money import line_total_cents
from orders.models import Order, OrderLine
from orders.services import OrderRefused, save_order
from pickup.models import Slot
from producers.models import Offer
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProductFactory,
    SlotFactory,
)

quantities = st.one_of(
    st.decimals(min_value=-5, max_value=30, places=3, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1), Decimal(3), Decimal("1e6"), Decimal("0.0001")]),
)


@pytest.fixture()
def world(app):
    """Three households, four offers (one capped, one bulk, one by the kilo at an odd price), one slot."""
    cycle = CycleFactory()
    offers = [
        OfferFactory(cycle_id=cycle.id, product=ProductFactory(unit="piece", price_cents=240), stock_cap=Decimal(7)),
        OfferFactory(cycle_id=cycle.id, product=ProductFactory(unit="kg", price_cents=333)),
        OfferFactory(cycle_id=cycle.id, product=ProductFactory(unit="kg", price_cents=199, case_size=Decimal(25),
                                                               portion_step=Decimal("0.5")),
                     stock_cap=Decimal("12.5")),
        OfferFactory(cycle_id=cycle.id, product=ProductFactory(unit="l", price_cents=1)),
    ]
    slot = SlotFactory(cycle_id=cycle.id, capacity=100)
    households = [HouseholdFactory().id for _ in range(3)]
    db.session.commit()
    return {"cycle_id": cycle.id, "offer_ids": [o.id for o in offers], "slot_id": slot.id,
            "households": households}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_totals_exact_and_caps_hold(world, data):
    """Whatever is asked, accepted orders total their rounded lines and reserved never passes a cap."""
    offer_ids = world["offer_ids"] + [999999]  # an id that does not exist
    for _ in range(data.draw(st.integers(min_value=1, max_value=5))):
        household = data.draw(st.sampled_from(world["households"]))
        chosen = data.draw(st.lists(st.sampled_from(offer_ids), min_size=1, max_size=4, unique=True))
        asked = {o: (data.draw(quantities), data.draw(st.sampled_from([Decimal(0), Decimal("0.5")])))
                 for o in chosen}
        try:
            save_order(world["cycle_id"], household, asked, world["slot_id"], None)
            db.session.commit()
        except OrderRefused as refused:
            db.session.rollback()
            assert refused.messages and all(isinstance(m, str) and m for m in refused.messages)

    db.session.expire_all()
    for order in db.session.scalars(sa.select(Order)):
        assert order.total_cents == sum(line_total_cents(line.unit_price_cents, line.quantity)
                                        for line in order.lines)
        assert all(line.quantity > 0 for line in order.lines) or order.status == "cancelled"
    for offer in db.session.scalars(sa.select(Offer)):
        ordered = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(OrderLine.quantity), 0)).where(OrderLine.offer_id == offer.id))
        assert offer.reserved == ordered
        if offer.stock_cap is not None:
            assert offer.reserved <= offer.stock_cap
    confirmed = db.session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.status == "confirmed"))
    assert db.session.get(Slot, world["slot_id"]).booked == confirmed
    # Start the next example from an empty cycle.
    db.session.execute(sa.delete(OrderLine))
    db.session.execute(sa.delete(Order))
    db.session.execute(sa.update(Offer).values(reserved=Decimal(0)))
    db.session.execute(sa.update(Slot).values(booked=0))
    db.session.commit()
