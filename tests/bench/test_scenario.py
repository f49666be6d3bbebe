"""The scenario generator fills a consistent cycle at a tiny size."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import User
from bench.scenario import BENCH_PASSWORD, generate
from orders.models import Order, OrderLine
from pickup.models import Slot
from producers.models import Offer, Product


def test_tiny_scenario_is_consistent(app):
    """Orders have their lines, totals match the lines, counters match what was ordered."""
    ids = generate(households=30, producers=6, products=24, slots=3, orders=20, lines_per_order=4, seed=3)
    assert len(ids["household_ids"]) == 30
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Offer)) == 24
    kinds = set(db.session.scalars(sa.select(Product.case_size.is_not(None))))
    assert kinds == {True, False}  # bulk and plain products both exist
    orders = db.session.scalars(sa.select(Order)).all()
    assert len(orders) == 20
    for order in orders:
        assert len(order.lines) == 4
        assert order.total_cents == sum(line.total_cents for line in order.lines)
    reserved = db.session.scalar(sa.select(sa.func.sum(Offer.reserved)))
    ordered = db.session.scalar(sa.select(sa.func.sum(OrderLine.quantity)))
    assert reserved == ordered
    assert db.session.scalar(sa.select(sa.func.sum(Slot.booked))) == 20
    member = db.session.scalar(sa.select(User).where(User.email == ids["member_emails"][0]))
    assert member.check_password(BENCH_PASSWORD) and member.roles == {"member"}


def test_scenario_twice_in_one_database(app):
    """Two scenarios side by side do not collide on unique names."""
    first = generate(households=3, producers=3, products=3, slots=1, orders=0, seed=1)
    second = generate(households=3, producers=3, products=3, slots=1, orders=0, seed=1)
    assert first["cycle_id"] != second["cycle_id"]
