"""Cycles come from schedules by themselves, on Paris wall-clock times across DST changes."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.models import Cycle, Schedule
from orders.services import (
    CycleRefused,
    cancel_cycle,
    generate_cycles,
    move_cycle,
    open_due_cycles,
)
from pickup.models import Slot
from tests.factories import SiteFactory


@pytest.fixture()
def schedule(app):
    """Opens Friday 08:00, closes Tuesday 23:59, distribution Thursday 16:30-19:30 (Paris)."""
    site = SiteFactory()
    rhythm = Schedule(site_id=site.id, name="Jeudi au café", opens_weekday=4, opens_time=time(8, 0),
                      closes_weekday=1, closes_time=time(23, 59), distribution_weekday=3,
                      distribution_start=time(16, 30), distribution_end=time(19, 30), slot_minutes=30,
                      slot_capacity=12, weeks_ahead=3)
    db.session.add(rhythm)
    db.session.commit()
    return rhythm


def utc(*args) -> datetime:
    """An aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def test_cycles_across_the_spring_change(schedule):
    """Last Sunday of March: the week before is CET (UTC+1), the week after CEST (UTC+2)."""
    created = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))
    db.session.commit()
    assert [c.distribution_date for c in created] == [date(2026, 3, 26), date(2026, 4, 2), date(2026, 4, 9)]
    before, after = created[0], created[1]
    assert before.closes_at == utc(2026, 3, 24, 22, 59)  # Tuesday 23:59 CET
    assert before.distribution_starts_at == utc(2026, 3, 26, 15, 30)
    assert after.opens_at == utc(2026, 3, 27, 7, 0)  # Friday 08:00 CET, before the change
    assert after.closes_at == utc(2026, 3, 31, 21, 59)  # Tuesday 23:59 CEST, after it
    assert after.distribution_starts_at == utc(2026, 4, 2, 14, 30)
    assert after.week == "2026-W14" and after.status == "draft"
    slots = db.session.scalars(sa.select(Slot).where(Slot.cycle_id == after.id).order_by(Slot.starts_at)).all()
    assert len(slots) == 6 and slots[0].capacity == 12
    assert slots[-1].ends_at == utc(2026, 4, 2, 17, 30)  # 19:30 CEST


def test_cycles_across_the_autumn_change(schedule):
    """Last Sunday of October: opening in CEST, deadline and distribution in CET."""
    created = generate_cycles(today=date(2026, 10, 23), now=utc(2026, 10, 23, 5))
    cycle = next(c for c in created if c.distribution_date == date(2026, 10, 29))
    assert cycle.opens_at == utc(2026, 10, 23, 6, 0)  # Friday 08:00 CEST
    assert cycle.closes_at == utc(2026, 10, 27, 22, 59)  # Tuesday 23:59 CET
    assert cycle.distribution_starts_at == utc(2026, 10, 29, 15, 30)


def test_generation_is_idempotent_and_keeps_moved_cycles(schedule):
    """Running twice creates nothing more, even after a distribution was moved."""
    first = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))
    db.session.commit()
    moved = first[1]
    move_cycle(moved.id, moved.opens_at, moved.closes_at, moved.distribution_starts_at + timedelta(days=1),
               moved.distribution_ends_at + timedelta(days=1))
    db.session.commit()
    assert generate_cycles(today=date(2026, 3, 21), now=utc(2026, 3, 21, 12)) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Cycle)) == 3
    slot = db.session.scalar(sa.select(Slot).where(Slot.cycle_id == moved.id).order_by(Slot.starts_at))
    assert slot.starts_at == utc(2026, 4, 3, 14, 30)  # slots moved with the distribution


def test_cycles_open_when_their_time_comes(schedule):
    """draft -> open once opens_at has passed, exactly once."""
    created = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))
    db.session.commit()
    assert open_due_cycles(now=utc(2026, 3, 20, 12)) == 1  # the week's cycle opened last Friday
    assert open_due_cycles(now=utc(2026, 3, 20, 12)) == 0
    assert open_due_cycles(now=utc(2026, 3, 27, 7, 0)) == 1
    db.session.commit()
    statuses = [db.session.get(Cycle, c.id).status for c in created]
    assert statuses == ["open", "open", "draft"]


def test_cancel_and_move_are_guarded(schedule):
    """A cancelled distribution cannot be cancelled or moved again; dates must follow each other."""
    cycle = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))[0]
    with pytest.raises(CycleRefused):
        move_cycle(cycle.id, cycle.closes_at, cycle.opens_at, cycle.distribution_starts_at,
                   cycle.distribution_ends_at)
    assert cancel_cycle(cycle.id).status == "cancelled"
    with pytest.raises(CycleRefused):
        cancel_cycle(cycle.id)
    with pytest.raises(CycleRefused):
        move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, cycle.distribution_starts_at,
                   cycle.distribution_ends_at)


def test_new_cycles_carry_the_previous_offers(schedule):
    """A generated cycle starts with the offers of the one before (prices and caps); producers adjust."""
    from decimal import Decimal

    from producers.models import Offer
    from tests.factories import ProducerFactory, ProductFactory

    first = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))[0]
    farm, gone = ProducerFactory(), ProducerFactory(active=False)
    kept = ProductFactory(producer=farm, name="Poireaux")
    db.session.add_all([
        Offer(cycle_id=first.id, product_id=kept.id, price_cents=260, stock_cap=Decimal(30), reserved=Decimal(4)),
        Offer(cycle_id=first.id, product_id=ProductFactory(producer=gone).id, price_cents=100, reserved=Decimal(0)),
    ])
    # Forget the later weeks, so they are generated again from the first one.
    db.session.execute(sa.delete(Slot).where(Slot.cycle_id != first.id))
    db.session.execute(sa.delete(Cycle).where(Cycle.id != first.id))
    db.session.commit()
    later = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))
    offers = db.session.scalars(sa.select(Offer).where(Offer.cycle_id == later[0].id)).all()
    assert [(o.product_id, o.price_cents, o.stock_cap, o.reserved) for o in offers] == [
        (kept.id, 260, Decimal(30), Decimal(0))]


def test_a_product_first_offered_this_week_is_offered_in_the_weeks_already_made(schedule):
    """The weeks ahead were made before the catalogue existed: a product the producer offers now reaches them,
    except a week where the producer already decided about it (withdrawn on purpose)."""
    from decimal import Decimal

    from producers.models import Offer
    from producers.services import set_offer
    from tests.factories import ProducerFactory, ProductFactory

    weeks = generate_cycles(today=date(2026, 3, 20), now=utc(2026, 3, 20, 12))
    assert len(weeks) == 3
    weeks[0].status = "open"
    farm = ProducerFactory()
    leeks, eggs = ProductFactory(producer=farm, name="Poireaux"), ProductFactory(producer=farm, name="Œufs")
    db.session.add(Offer(cycle_id=weeks[2].id, product_id=eggs.id, price_cents=300, reserved=Decimal(0),
                         active=False))
    db.session.flush()
    set_offer(weeks[0].id, leeks.id, farm.id, True, 260, Decimal(30))
    set_offer(weeks[0].id, eggs.id, farm.id, True, 350, None)
    db.session.commit()
    offers = db.session.execute(sa.select(Offer.cycle_id, Offer.product_id, Offer.price_cents, Offer.stock_cap,
                                          Offer.reserved, Offer.active).order_by(Offer.cycle_id, Offer.id)).all()
    assert [tuple(o) for o in offers] == [
        (weeks[0].id, leeks.id, 260, Decimal(30), Decimal(0), True),
        (weeks[0].id, eggs.id, 350, None, Decimal(0), True),
        (weeks[1].id, leeks.id, 260, Decimal(30), Decimal(0), True),
        (weeks[1].id, eggs.id, 350, None, Decimal(0), True),
        (weeks[2].id, eggs.id, 300, None, Decimal(0), False),
        (weeks[2].id, leeks.id, 260, Decimal(30), Decimal(0), True),
    ]
