"""What the home page says about this week: the open cycle and the household's order."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from app.extensions import db


@dataclass
class WeekSummary:
    """The cycle households order in now, and where the household's order stands."""

    closes_at: datetime
    distribution_starts_at: datetime
    ordered: bool
    total_cents: int


def week_summary(household_id: int | None, now: datetime | None = None) -> WeekSummary | None:
    """This week's open cycle with the household's confirmed order, or None when nothing is open."""
    from orders.models import Cycle, Order

    try:
        from orders.services import current_cycle
    except ImportError:
        return None
    cycle: Cycle | None = current_cycle(now)
    if cycle is None:
        return None
    order = None
    if household_id:
        order = db.session.scalar(sa.select(Order).where(
            Order.cycle_id == cycle.id, Order.household_id == household_id, Order.status == "confirmed"))
    return WeekSummary(cycle.closes_at, cycle.distribution_starts_at, order is not None,
                       order.total_cents if order is not None else 0)


@dataclass
class NextPickup:
    """The household's next bag once ordering has closed: when, where, and what is left to pay."""

    order_id: int
    distribution_starts_at: datetime
    distribution_ends_at: datetime
    site_name: str
    slot_starts_at: datetime | None
    slot_ends_at: datetime | None
    bag_number: int | None
    total_cents: int
    due_cents: int


def next_pickup(household_id: int | None, now: datetime | None = None) -> NextPickup | None:
    """The confirmed order of the first distribution still to come whose ordering has closed, or None
    (after the deadline the cart page has nothing open; this is what the household wants to know)."""
    from app.db import utcnow
    from orders.models import Cycle, Order
    from orders.payments import amounts_due_cents
    from pickup.models import Site, Slot

    if not household_id:
        return None
    now = now or utcnow()
    row = db.session.execute(
        sa.select(Order, Cycle.distribution_starts_at, Cycle.distribution_ends_at, Site.name, Slot.starts_at,
                  Slot.ends_at)
        .join(Cycle, Cycle.id == Order.cycle_id).join(Site, Site.id == Cycle.site_id)
        .outerjoin(Slot, Slot.id == Order.slot_id)
        .where(Order.household_id == household_id, Order.status == "confirmed",
               Cycle.status.in_(("closed", "finalized")), Cycle.distribution_ends_at > now)
        .order_by(Cycle.distribution_starts_at).limit(1)
    ).first()
    if row is None:
        return None
    order = row[0]
    return NextPickup(order.id, *row[1:], order.bag_number, order.total_cents,
                      due_cents=amounts_due_cents([order])[order.id])
