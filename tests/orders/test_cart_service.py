"""The order service: one cart across producers, changed until the deadline, all or nothing."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from orders.models import Order, OrderLine
from orders.services import OrderRefused, book_slot, recompute_order_total, save_order
from pickup.models import Slot
from producers.models import Offer
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    PriceTierFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
)

D = Decimal


@pytest.fixture()
def shop(app):
    """An open cycle with two producers' offers (one by the kilo, one bulk) and two slots."""
    cycle = CycleFactory()
    farm, bulk = ProducerFactory(), ProducerFactory(kind="bulk_supplier")
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, unit="kg", price_cents=280))
    eggs = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, unit="piece", price_cents=240),
                        stock_cap=D(5))
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=bulk, unit="kg", price_cents=333, case_size=D(25), portion_step=D("0.5")))
    slot = SlotFactory(cycle_id=cycle.id, capacity=2)
    other_slot = SlotFactory(cycle_id=cycle.id, capacity=1, starts_at=slot.starts_at + timedelta(minutes=30))
    household = HouseholdFactory()
    db.session.commit()
    return {"cycle": cycle, "carrots": carrots, "eggs": eggs, "rice": rice, "slot": slot, "other_slot": other_slot,
                "household": household}


def test_order_across_producers_then_change_it(shop):
    """A household orders from two producers, then changes its mind before the deadline."""
    s = shop
    order = save_order(s["cycle"].id, s["household"].id,
                       {s["carrots"].id: (D("1.5"), D(0)), s["rice"].id: (D("2.5"), D("0.5"))},
                       s["slot"].id, None)
    db.session.commit()
    assert order.total_cents == 420 + 833  # 1.5 x 2.80 and 2.5 x 3.33 = 8.325 -> 8.33
    assert db.session.get(Offer, s["rice"].id).reserved == D("2.5")
    assert db.session.get(Slot, s["slot"].id).booked == 1

    order = save_order(s["cycle"].id, s["household"].id,
                       {s["carrots"].id: (D(0), D(0)), s["eggs"].id: (D(3), D(0))}, s["other_slot"].id, None)
    db.session.commit()
    products = {line.offer_id: line.quantity for line in order.lines}
    assert products == {s["rice"].id: D("2.5"), s["eggs"].id: D(3)}
    assert order.total_cents == 833 + 720
    assert db.session.get(Offer, s["carrots"].id).reserved == 0
    assert db.session.get(Slot, s["slot"].id).booked == 0
    assert db.session.get(Slot, s["other_slot"].id).booked == 1


def test_emptying_an_order_releases_everything(shop):
    """An emptied order is cancelled; stock and slot place go back."""
    s = shop
    save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(2), D(0))}, s["slot"].id, None)
    db.session.commit()
    order = save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(0), D(0))}, s["slot"].id, None)
    db.session.commit()
    assert order.status == "cancelled" and order.total_cents == 0 and order.lines == []
    assert db.session.get(Offer, s["eggs"].id).reserved == 0
    assert db.session.get(Slot, s["slot"].id).booked == 0


def test_after_the_deadline_every_write_is_refused(shop):
    """Once closes_at has passed, the service refuses, whatever the page showed."""
    s = shop
    save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(2), D(0))}, s["slot"].id, None)
    db.session.commit()
    later = s["cycle"].closes_at + timedelta(seconds=1)
    with pytest.raises(OrderRefused) as refused:
        save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(4), D(0))}, s["slot"].id, None, now=later)
    assert "date limite" in refused.value.messages[0]
    order = db.session.scalar(sa.select(Order))
    with pytest.raises(OrderRefused):
        book_slot(order.id, s["other_slot"].id, now=later)
    db.session.rollback()
    assert db.session.get(Offer, s["eggs"].id).reserved == 2


def test_cap_refusal_writes_nothing(shop):
    """Asking more than the stock left refuses the whole order and says what is left."""
    s = shop
    with pytest.raises(OrderRefused) as refused:
        save_order(s["cycle"].id, s["household"].id,
                   {s["carrots"].id: (D(1), D(0)), s["eggs"].id: (D(6), D(0))}, s["slot"].id, None)
    db.session.commit()
    assert "il en reste 5" in refused.value.messages[0]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    assert db.session.get(Offer, s["carrots"].id).reserved == 0
    assert db.session.get(Slot, s["slot"].id).booked == 0


def test_tier_prices_are_snapshot_on_lines(shop):
    """A supporter pays 10 % more; a pay-what-you-can household its chosen share."""
    s = shop
    supporter = HouseholdFactory(price_tier=PriceTierFactory(markup_bp=1000))
    free = HouseholdFactory(price_tier=PriceTierFactory(pay_what_you_can=True, minimum_bp=6000))
    db.session.commit()
    order = save_order(s["cycle"].id, supporter.id, {s["carrots"].id: (D(1), D(0))}, s["slot"].id, None)
    assert order.lines[0].unit_price_cents == 308 and order.lines[0].base_price_cents == 280
    with pytest.raises(OrderRefused) as refused:
        save_order(s["cycle"].id, free.id, {s["carrots"].id: (D(1), D(0))}, s["slot"].id, None,
                   chosen_share_bp=5000)
    assert "au moins 60 %" in refused.value.messages[0]
    order = save_order(s["cycle"].id, free.id, {s["carrots"].id: (D(1), D(0))}, s["slot"].id, None,
                       chosen_share_bp=7000)
    assert order.lines[0].unit_price_cents == 196 and order.total_cents == 196


def test_recompute_order_total_sums_rounded_lines(shop):
    """The stored total is the sum of line totals, each rounded once."""
    s = shop
    order = save_order(s["cycle"].id, s["household"].id, {s["rice"].id: (D("0.5"), D(0))}, s["slot"].id, None)
    db.session.execute(sa.update(OrderLine).values(quantity_prepared=D("0.515")))
    assert recompute_order_total(order.id) == 171  # 0.515 x 3.33 = 1.71495 -> 1.71


def test_slot_full_is_refused(shop):
    """A full slot refuses the next household and nothing is written."""
    s = shop
    save_order(s["cycle"].id, s["household"].id, {s["carrots"].id: (D(1), D(0))}, s["other_slot"].id, None)
    db.session.commit()
    other = HouseholdFactory()
    db.session.commit()
    with pytest.raises(OrderRefused) as refused:
        save_order(s["cycle"].id, other.id, {s["carrots"].id: (D(1), D(0))}, s["other_slot"].id, None)
    db.session.rollback()
    assert "complet" in refused.value.messages[0]
    assert db.session.get(Offer, s["carrots"].id).reserved == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
    assert utcnow() < s["cycle"].closes_at


def test_book_slot_moves_the_order_and_respects_capacity(shop):
    """book_slot moves an order to another slot, giving its place back; a full slot refuses."""
    s = shop
    order = save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(1), D(0))}, s["slot"].id, None)
    db.session.commit()
    book_slot(order.id, s["other_slot"].id)
    db.session.commit()
    assert db.session.get(Slot, s["slot"].id).booked == 0
    assert db.session.get(Slot, s["other_slot"].id).booked == 1
    second = save_order(s["cycle"].id, HouseholdFactory().id, {s["eggs"].id: (D(1), D(0))}, s["slot"].id, None)
    db.session.commit()
    with pytest.raises(OrderRefused) as refused:
        book_slot(second.id, s["other_slot"].id)
    db.session.rollback()
    assert "complet" in refused.value.messages[0]
    assert db.session.get(Order, second.id).slot_id == s["slot"].id


def test_cancelling_a_cycle_cancels_its_orders(shop):
    """A cancelled distribution cancels its orders and gives stock and places back."""
    from orders.services import cancel_cycle

    s = shop
    save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(3), D(0))}, s["slot"].id, None)
    db.session.commit()
    cancel_cycle(s["cycle"].id)
    db.session.commit()
    assert db.session.scalar(sa.select(Order.status)) == "cancelled"
    assert db.session.get(Offer, s["eggs"].id).reserved == 0
    assert db.session.get(Slot, s["slot"].id).booked == 0
    with pytest.raises(OrderRefused):
        save_order(s["cycle"].id, s["household"].id, {s["eggs"].id: (D(1), D(0))}, s["slot"].id, None)


def test_season_baskets_are_not_sold_in_the_cart(shop):
    """An AMAP basket is taken by contract: not listed in the cart, refused if posted anyway."""
    from orders.services import cart_page

    s = shop
    basket = OfferFactory(cycle_id=s["cycle"].id, product=ProductFactory(name="Panier de saison", unit="basket",
                                                                         is_contract_basket=True))
    db.session.commit()
    listed = [v.offer.id for _, views in cart_page(s["cycle"].id, s["household"].id).groups for v in views]
    assert basket.id not in listed and s["eggs"].id in listed
    with pytest.raises(OrderRefused) as refused:
        save_order(s["cycle"].id, s["household"].id, {basket.id: (D(1), D(0))}, s["slot"].id, None)
    assert "contrat AMAP" in refused.value.messages[0]
