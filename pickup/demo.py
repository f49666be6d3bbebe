"""Demo rows of the pickup package: a distribution ready to prepare, and the rota with some sign-ups."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import User, UserRole
from pickup import services
from pickup.models import RotaSignup

#: For each of the next distributions, how many volunteers the demo signs up per role;
#: some roles stay short so the "il manque" badges and the alert have something to show.
DEMO_SIGNUPS = (
    {"setup": 2, "preparation": 2, "desk": 1, "closing": 0},
    {"setup": 1, "preparation": 1, "desk": 0, "closing": 1},
    {"setup": 0, "preparation": 1, "desk": 0, "closing": 0},
)


#: Marks the demo's own distribution, so loading twice finds it instead of making another.
THURSDAY_NOTE = "Distribution de démonstration : commandes closes, sacs à préparer."


def load() -> None:
    """A distribution to try Thursday on, then the rota of the next distributions (idempotent)."""
    _distribution_to_prepare()
    _rota()


def _distribution_to_prepare() -> None:
    """Today's distribution with closed, finalized orders: preparation, desk, its end and PDFs have something to show.

    The orders go through the real services (save_order, close_cycle, finalize_cycle) as they would
    on a real Thursday, so the documents and the household accounts are the pipeline's own.
    """
    from datetime import timedelta
    from decimal import Decimal

    from app.db import utcnow
    from app.models import Household
    from orders.close import close_cycle, finalize_cycle
    from orders.models import Cycle, Schedule
    from orders.services import OrderRefused, current_cycle, save_order, slot_times
    from pickup.models import Site, Slot
    from producers.models import Offer, Product

    if db.session.scalar(sa.select(Cycle.id).where(Cycle.note == THURSDAY_NOTE)) is not None:
        return
    open_cycle = current_cycle()
    schedule = db.session.scalar(sa.select(Schedule).order_by(Schedule.id).limit(1))
    if open_cycle is None or schedule is None:
        return
    site = db.session.get(Site, schedule.site_id)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(site.timezone)
    now = utcnow()
    # Today, as on a real Thursday: the desk takes payments into today's till and the distribution can be ended.
    day = now.astimezone(zone).date()
    times = slot_times(schedule, day, zone)
    cycle = Cycle(site_id=site.id, schedule_id=None, week=None, status="open", note=THURSDAY_NOTE,
                  opens_at=now - timedelta(days=6), closes_at=now + timedelta(minutes=5),
                  distribution_date=day, distribution_starts_at=times[0][0], distribution_ends_at=times[-1][1],
                  allocation_policy=schedule.allocation_policy)
    db.session.add(cycle)
    db.session.flush()
    db.session.add_all(Slot(cycle_id=cycle.id, starts_at=start, ends_at=end, capacity=schedule.slot_capacity)
                       for start, end in times[:3])
    rows = db.session.execute(
        sa.select(Offer.product_id, Offer.price_cents).join(Product, Product.id == Offer.product_id)
        .where(Offer.cycle_id == open_cycle.id, Offer.active.is_(True), Product.is_contract_basket.is_(False))
        .order_by(Offer.id)
    ).all()
    db.session.add_all(Offer(cycle_id=cycle.id, product_id=p, price_cents=c, reserved=Decimal(0)) for p, c in rows)
    db.session.flush()
    offers = db.session.execute(
        sa.select(Offer.id, Product.unit, Product.portion_step, Product.sold_by_weight)
        .join(Product, Product.id == Offer.product_id).where(Offer.cycle_id == cycle.id).order_by(Offer.id)
    ).all()
    slots = db.session.scalars(sa.select(Slot.id).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)).all()
    households = db.session.scalars(sa.select(Household).order_by(Household.id).limit(12)).all()
    ordered_at = now - timedelta(days=2)
    for index, household in enumerate(households):
        member = db.session.scalar(sa.select(User.id).where(User.household_id == household.id).limit(1))
        # Every bag gets one product sold by weight, so the weighing screen has work too.
        chosen = [o for o in offers if o.sold_by_weight][index % 3: index % 3 + 1]
        chosen += offers[index * 3 % len(offers):][:3]
        lines = {}
        for offer in chosen:
            step = offer.portion_step or (Decimal("0.5") if offer.unit in ("kg", "l") else Decimal(1))
            lines[offer.id] = (step * (1 + index % 2), Decimal(0))
        try:
            with db.session.begin_nested():
                save_order(cycle.id, household.id, lines, slots[index % len(slots)], member, False, now=ordered_at)
        except OrderRefused:
            continue
    db.session.flush()
    close_cycle(cycle.id, force=True)
    db.session.flush()
    finalize_cycle(cycle.id, inline=True)
    db.session.flush()


def _rota() -> None:
    """Create the rota of the next distributions and sign a few volunteers up (idempotent)."""
    volunteers = list(db.session.scalars(
        sa.select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "volunteer", User.active.is_(True))
        .order_by(User.email)
    ).unique())
    if not volunteers:
        return
    for index, (cycle, roles) in enumerate(services.rota_overview(limit=len(DEMO_SIGNUPS))):
        plan = DEMO_SIGNUPS[index]
        turn = index
        for role in roles:
            for _n in range(min(plan[role.role], role.needed)):
                user = volunteers[turn % len(volunteers)]
                turn += 1
                exists = db.session.scalar(
                    sa.select(RotaSignup.id).where(RotaSignup.rota_role_id == role.id, RotaSignup.user_id == user.id)
                )
                if exists is None and role.filled < role.needed:
                    services.sign_up(role.id, user.id)
        db.session.flush()
