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
