"""One household saving its order from two places at once (two phones, or a volunteer at the café)."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.models import Order, OrderLine
from orders.services import save_cart
from pickup.models import Slot
from producers.models import Offer
from tests.factories import CycleFactory, HouseholdFactory, OfferFactory, ProductFactory, SlotFactory

D = Decimal


def _wait_until_a_backend_waits_for_a_lock(timeout: float = 20) -> None:
    """Poll PostgreSQL until one session of this database is blocked on a row lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            waiting = conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second save never waited for the first")


def _second_save_while_the_first_is_open(app, cycle_id, household_id, first, second, slot_id) -> dict:
    """Save `first` without committing; start saving `second` in another session; commit the first once
    the second waits; return what each did."""
    outcome: dict = {}
    first_saved, let_first_commit = threading.Event(), threading.Event()

    def run(name, quantities, before_commit=None):
        with app.app_context():
            try:
                outcome[name] = save_cart(cycle_id, household_id, quantities, slot_id, None)
                if before_commit:
                    before_commit()
                db.session.commit()
            except Exception as error:  # noqa: BLE001 - the test asserts there is none
                db.session.rollback()
                outcome[name] = error
            finally:
                db.session.remove()

    def hold():
        first_saved.set()
        let_first_commit.wait(30)

    a = threading.Thread(target=run, args=("first", first, hold))
    a.start()
    assert first_saved.wait(30)
    b = threading.Thread(target=run, args=("second", second))
    b.start()
    _wait_until_a_backend_waits_for_a_lock()
    let_first_commit.set()
    a.join(30)
    b.join(30)
    return outcome


@pytest.fixture()
def basket(app):
    """An open cycle with vegetables capped at 50 and a slot."""
    cycle = CycleFactory()
    veg = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Légumes", price_cents=1000),
                       stock_cap=D(50))
    slot = SlotFactory(cycle_id=cycle.id, capacity=10)
    household = HouseholdFactory()
    db.session.commit()
    return {"cycle": cycle.id, "veg": veg.id, "slot": slot.id, "household": household.id}


def _state(basket) -> tuple:
    """The household's line quantity, the offer's reserved counter, orders and booked places."""
    db.session.expire_all()
    lines = db.session.scalars(sa.select(OrderLine.quantity).join(Order)
                               .where(Order.household_id == basket["household"])).all()
    return (lines, db.session.get(Offer, basket["veg"]).reserved,
            db.session.scalar(sa.select(sa.func.count()).select_from(Order)),
            db.session.get(Slot, basket["slot"]).booked)


@pytest.mark.postgres_only
def test_the_later_save_of_a_changed_order_reads_what_the_earlier_one_wrote(app, basket):
    """The counter of reserved stock follows the line when two saves of one order overlap."""
    save_cart(basket["cycle"], basket["household"], {basket["veg"]: (D(1), D(0))}, basket["slot"], None)
    db.session.commit()
    outcome = _second_save_while_the_first_is_open(
        app, basket["cycle"], basket["household"], {basket["veg"]: (D(2), D(0))},
        {basket["veg"]: (D(3), D(0))}, basket["slot"])
    assert not isinstance(outcome["first"], Exception) and not isinstance(outcome["second"], Exception), outcome
    assert _state(basket) == ([D(3)], D(3), 1, 1)


@pytest.mark.postgres_only
def test_two_first_saves_of_a_household_make_one_order(app, basket):
    """Nobody is asked to try again: the later save finds the order the earlier one created."""
    outcome = _second_save_while_the_first_is_open(
        app, basket["cycle"], basket["household"], {basket["veg"]: (D(2), D(0))},
        {basket["veg"]: (D(5), D(0))}, basket["slot"])
    assert not isinstance(outcome["first"], Exception) and not isinstance(outcome["second"], Exception), outcome
    assert outcome["first"].id == outcome["second"].id
    assert _state(basket) == ([D(5)], D(5), 1, 1)
