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


#: Marks last week's distribution: a bag handed out unpaid and a bag nobody came for, kept at the café.
LAST_WEEK_NOTE = "Distribution de démonstration de la semaine dernière : un sac non payé, un sac gardé au café."
#: What the coordinators noted for last week's bag nobody came for (as pickup.forms.NO_SHOW_OUTCOMES says it).
KEPT_AT_CAFE = "Gardé au café, le foyer passera le chercher"


def load() -> None:
    """A distribution to try Thursday on, last week's with two bags still to settle, then the rota (idempotent)."""
    _distribution_to_prepare()
    _last_weeks_distribution()
    _rota()


def _closed_distribution(day, note: str, households, ordered_at) -> int | None:
    """A distribution of the first schedule's site on ``day``, with one bag per household (ordered at
    ``ordered_at``), closed and finalized by the real services (save_order, close_cycle, finalize_cycle),
    so its documents and the household accounts are the pipeline's own. Returns its id, or None without
    an open cycle to copy the catalogue from."""
    from datetime import timedelta
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from app.db import utcnow
    from orders.close import close_cycle, finalize_cycle
    from orders.models import Cycle, Schedule
    from orders.services import OrderRefused, current_cycle, save_order, slot_times
    from pickup.models import Site, Slot
    from producers.models import Offer, Product

    open_cycle = current_cycle()
    schedule = db.session.scalar(sa.select(Schedule).order_by(Schedule.id).limit(1))
    if open_cycle is None or schedule is None:
        return None
    site = db.session.get(Site, schedule.site_id)
    times = slot_times(schedule, day, ZoneInfo(site.timezone))
    # Orders stop a few minutes from now (the eve of the day for a past one), and never after the distribution
    # starts: the demo may be loaded at 18:00, during today's.
    closes_at = min(min(utcnow(), ordered_at + timedelta(days=2)) + timedelta(minutes=5), times[0][0])
    cycle = Cycle(site_id=site.id, schedule_id=None, week=None, status="open", note=note,
                  opens_at=ordered_at - timedelta(days=4), closes_at=closes_at,
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
    close_cycle(cycle.id, now=closes_at, force=True)
    db.session.flush()
    finalize_cycle(cycle.id, inline=True)
    db.session.flush()
    return cycle.id


def _distribution_to_prepare() -> None:
    """Today's distribution with closed, finalized orders: preparation, desk, its end and PDFs have something to show.

    Today, as on a real Thursday: the desk takes payments into today's till and the distribution can be ended.
    """
    from datetime import timedelta

    from app.db import utcnow
    from app.models import Household
    from app.timeutil import local_today
    from orders.models import Cycle

    if db.session.scalar(sa.select(Cycle.id).where(Cycle.note == THURSDAY_NOTE)) is not None:
        return
    households = db.session.scalars(sa.select(Household).order_by(Household.id).limit(12)).all()
    _closed_distribution(local_today(), THURSDAY_NOTE, households, utcnow() - timedelta(days=2))


def _last_weeks_distribution() -> None:
    """Last week's distribution, ended: the first household's bag was handed out unpaid, and the bag of the
    thirteenth, nobody came for, is kept at the café. This week's desk finds both (« sac du … »)."""
    from datetime import time, timedelta

    from app.models import Household
    from app.timeutil import local_to_utc, local_today
    from orders.models import Cycle, Order

    if db.session.scalar(sa.select(Cycle.id).where(Cycle.note == LAST_WEEK_NOTE)) is not None:
        return
    households = db.session.scalars(sa.select(Household).order_by(Household.id).limit(13)).all()
    if len(households) < 13:
        return  # not the demo's households (a test's own few)
    first, thirteenth = households[0], households[12]
    day = local_today() - timedelta(days=7)
    eve = local_to_utc(day - timedelta(days=1), time(20, 0))
    cycle_id = _closed_distribution(day, LAST_WEEK_NOTE, [first, thirteenth], eve - timedelta(days=2))
    if cycle_id is None:
        return
    volunteer = db.session.scalar(sa.select(User.id).join(UserRole).where(UserRole.role == "volunteer").limit(1))
    unpaid, kept = (db.session.scalar(sa.select(Order.id).where(Order.cycle_id == cycle_id,
                                                                Order.household_id == household.id))
                    for household in (first, thirteenth))
    if unpaid is not None:
        services.collect_bag(unpaid, cycle_id=cycle_id, user_id=volunteer, now=local_to_utc(day, time(17, 40)))
    services.end_distribution(cycle_id)
    if kept is not None:
        services.record_no_show_outcome(kept, KEPT_AT_CAFE)
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
