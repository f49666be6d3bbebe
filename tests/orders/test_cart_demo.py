"""The demo data gives households orders to look at, and loading it twice adds nothing."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import PriceTier
from orders.models import Order


def test_demo_orders_load_once(app):
    """Demo orders exist with exact totals; a second load creates no order or tier."""
    from app import demo

    demo.load()
    orders = db.session.scalars(sa.select(Order).where(Order.status == "confirmed")).all()
    tiers = db.session.scalar(sa.select(sa.func.count()).select_from(PriceTier))
    assert len(orders) >= 5 and tiers >= 3
    assert all(o.total_cents == sum(line.total_cents for line in o.lines) for o in orders)
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Order))
    demo.load()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order).where(
        Order.status == "confirmed")) == len(orders)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceTier)) == tiers
