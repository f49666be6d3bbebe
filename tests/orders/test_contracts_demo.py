"""The demo data: season baskets with subscribers and bulk orders with tolerances, loaded idempotently."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from orders.bulk import bulk_progress
from orders.contract_models import Contract, ContractInstalment, ContractOffer
from orders.models import Cycle, OrderLine


def counts() -> tuple[int, ...]:
    """Rows the contract demo adds."""
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(m))
                 for m in (ContractOffer, Contract, ContractInstalment, OrderLine))


def test_demo_has_two_season_baskets_ten_subscribers_and_bulk_orders(app):
    from app import demo

    demo.load()
    first = counts()
    offers = db.session.scalars(sa.select(ContractOffer)).all()
    assert len(offers) == 2
    contracts = db.session.scalars(sa.select(Contract)).all()
    assert len(contracts) == 10
    assert sum(1 for c in contracts if c.co_holder_id) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractInstalment)) == 3
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.status == "open"))
    contract_lines = db.session.scalar(
        sa.select(sa.func.count()).select_from(OrderLine).where(OrderLine.contract_id.is_not(None)))
    assert contract_lines >= 10
    rows = {r.product_name: r for r in bulk_progress(cycle.id)}
    assert rows["Riz basmati bio"].total_ordered > 0
    assert rows["Riz basmati bio"].total_tolerance > 0
    demo.load()
    assert counts() == first
