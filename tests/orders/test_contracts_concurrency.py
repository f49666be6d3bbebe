"""Contract lines are generated once even when several workers run generation at the same moment."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.contracts import generate_contract_lines, subscribe
from orders.models import OrderLine
from producers.models import Offer
from tests.factories import HouseholdFactory
from tests.orders.test_contracts import NOW, Season

WORKERS = 8


@pytest.fixture()
def app_config(app_config):
    """One pooled connection per worker thread."""
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": WORKERS + 5, "max_overflow": 0, "pool_timeout": 60}
    return app_config


@pytest.mark.postgres_only
def test_parallel_generation_adds_each_basket_once(app):
    season = Season(cycles=1)
    households = [HouseholdFactory().id for _ in range(12)]
    offer_id, cycle_id = season.offer.id, season.cycles[0].id
    db.session.commit()
    # Subscriptions made while no cycle was open: generation has everything left to do.
    for household_id in households:
        subscribe(offer_id, household_id, now=NOW)
    db.session.execute(sa.delete(OrderLine))
    db.session.execute(sa.update(Offer).values(reserved=Decimal(0)))
    db.session.commit()

    barrier = threading.Barrier(WORKERS)
    results: list = [None] * WORKERS

    def worker(i: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[i] = generate_contract_lines(cycle_id)
                db.session.commit()
            except Exception as error:  # noqa: BLE001 - the assertion below shows it
                db.session.rollback()
                results[i] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results, key=str) == [0] * (WORKERS - 1) + [12]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OrderLine)) == 12
    assert db.session.scalar(sa.select(Offer.reserved).where(Offer.cycle_id == cycle_id)) == Decimal(12)
