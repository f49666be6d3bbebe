"""Ordering services: cycles from schedules, the cart (save_order), slot booking and order totals."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_babel import force_locale, ngettext
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.db import THOUSANDTH, plain_decimal, utcnow
from app.driver_sql import DriverStatement
from app.extensions import db
from app.models import Household, PriceTier
from app.money import line_total_cents
from app.templating import local_date, local_datetime
from app.timeutil import local_today, local_zone
from orders.models import Cycle, Order, OrderLine, Schedule
from orders.pricing import (
    ShareError,
    check_share,
    household_with_tier,
    unit_price_cents,
)
from pickup.models import Pickup, Site, Slot
from producers.models import Offer, Producer, Product

#: No household orders more than this of one product (typing 10000 instead of 1.0 is a mistake).
MAX_QUANTITY = Decimal(500)


class OrderRefused(Exception):
    """The order cannot be saved; `messages` say why in French. Nothing has been written."""

    def __init__(self, messages: list[str] | str):
        """Keep the French messages for the form."""
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


class CycleRefused(Exception):
    """A coordinator's change to a cycle is refused (message in French)."""


# --------------------------------------------------------------------------- cycles from schedules


def _cycle_dates(schedule: Schedule, distribution_day: date) -> tuple[date, date]:
    """The local days of opening and deadline for a distribution day."""
    back = (schedule.distribution_weekday - schedule.closes_weekday) % 7
    if back == 0 and schedule.closes_time > schedule.distribution_start:
        back = 7
    closes_day = distribution_day - timedelta(days=back)
    back = (schedule.closes_weekday - schedule.opens_weekday) % 7
    if back == 0 and schedule.opens_time >= schedule.closes_time:
        back = 7
    return closes_day - timedelta(days=back), closes_day


def _at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as aware UTC (DST-safe: the zone decides the offset of that day)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def slot_times(schedule: Schedule, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Every slot of a distribution day: slot_minutes long, from start to end in local time."""
    start = datetime.combine(day, schedule.distribution_start)
    end = datetime.combine(day, schedule.distribution_end)
    step = timedelta(minutes=schedule.slot_minutes)
    result = []
    while start + step <= end:
        result.append((_at(day, start.time(), zone), _at(day, (start + step).time(), zone)))
        start += step
    return result


def generate_cycles(today: date | None = None, now: datetime | None = None) -> list[Cycle]:
    """Create the missing cycles (and their slots) of the next weeks_ahead weeks of every active schedule."""
    now = now or utcnow()
    today = today or local_today(now)
    created: list[Cycle] = []
    # Schedule rows locked in id order: a move of one of their distributions (move_cycle) waits, so a
    # week cannot get a distribution moved into it and a generated one at the same time.
    schedules = db.session.execute(
        sa.select(Schedule, Site.timezone).join(Site, Site.id == Schedule.site_id).where(Schedule.active.is_(True))
        .order_by(Schedule.id).with_for_update(of=Schedule)
    ).all()
    for schedule, tz in schedules:
        zone = ZoneInfo(tz) if tz else local_zone()
        # One distribution a week per schedule: a week is taken by the cycle made for it (Cycle.week,
        # kept when moved) and by any cycle moved into it (its distribution date).
        existing: set[str] = set()
        for made_for, day in db.session.execute(
                sa.select(Cycle.week, Cycle.distribution_date).where(Cycle.schedule_id == schedule.id)):
            existing.update((made_for, _iso_week(day)))
        first = today + timedelta(days=(schedule.distribution_weekday - today.weekday()) % 7)
        for k in range(schedule.weeks_ahead):
            day = first + timedelta(weeks=k)
            week = _iso_week(day)
            if week in existing:
                continue
            opens_day, closes_day = _cycle_dates(schedule, day)
            closes_at = _at(closes_day, schedule.closes_time, zone)
            if closes_at <= now:
                continue  # too late to order for that distribution
            cycle = Cycle(
                site_id=schedule.site_id, schedule_id=schedule.id, week=week,
                opens_at=_at(opens_day, schedule.opens_time, zone), closes_at=closes_at,
                distribution_date=day,
                distribution_starts_at=_at(day, schedule.distribution_start, zone),
                distribution_ends_at=_at(day, schedule.distribution_end, zone),
                status="draft", allocation_policy=schedule.allocation_policy,
            )
            try:
                # A savepoint per cycle: a beat running twice at once loses on the unique key, not the batch.
                with db.session.begin_nested():
                    db.session.add(cycle)
                    db.session.flush()
                    for starts, ends in slot_times(schedule, day, zone):
                        db.session.add(Slot(cycle_id=cycle.id, starts_at=starts, ends_at=ends,
                                            capacity=schedule.slot_capacity, booked=0))
                    db.session.flush()
                    carry_offers(cycle)
            except IntegrityError:
                continue
            created.append(cycle)
    if created:
        # AMAP baskets are in the households' orders from the start (orders.contracts owns the rule).
        from orders.contracts import generate_for_coming_cycles

        generate_for_coming_cycles([c.id for c in created], now=now)
    return created


def carry_offers(cycle: Cycle) -> int:
    """Offer again what the schedule's latest earlier cycle offered (producers then adjust); returns how many."""
    previous = db.session.scalar(
        sa.select(Cycle.id).where(Cycle.schedule_id == cycle.schedule_id, Cycle.id != cycle.id,
                                  Cycle.distribution_date < cycle.distribution_date, Cycle.status != "cancelled")
        .order_by(Cycle.distribution_date.desc()).limit(1)
    )
    if previous is None:
        return 0
    rows = db.session.execute(
        sa.select(Offer.product_id, Offer.price_cents, Offer.stock_cap)
        .join(Product, Product.id == Offer.product_id).join(Producer, Producer.id == Product.producer_id)
        .where(Offer.cycle_id == previous, Offer.active.is_(True), Product.active.is_(True),
               Producer.active.is_(True), Product.is_contract_basket.is_(False))
    ).all()
    if rows:
        # AMAP baskets are left out: orders.contracts creates their offers at the contract price.
        db.session.execute(sa.insert(Offer), [
            {"cycle_id": cycle.id, "product_id": product_id, "price_cents": price, "stock_cap": cap,
             "reserved": Decimal(0), "active": True} for product_id, price, cap in rows])
    return len(rows)


def open_due_cycles(now: datetime | None = None) -> int:
    """Open the draft cycles whose opening time has come (guarded draft -> open); returns how many."""
    now = now or utcnow()
    result = db.session.execute(
        sa.update(Cycle)
        .where(Cycle.status == "draft", Cycle.opens_at <= now, Cycle.closes_at > now)
        .values(status="open")
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def move_cycle(cycle_id: int, opens_at: datetime, closes_at: datetime,
               distribution_starts_at: datetime, distribution_ends_at: datetime,
               now: datetime | None = None) -> Cycle:
    """Move a distribution and rebuild its slots for the new window; only before it closes.

    Times are aware datetimes; wall-clock times (from the move form) that do not exist on a DST
    change are refused. When the distribution keeps its length, every slot moves with it; when the
    window changes, slots keep their clock time on the new day where they still fit, the others are
    removed and their bags go to the nearest slot with room (CycleRefused if there is none). The
    schedule keeps one distribution a week. Households whose pickup time changed are written to
    (outbox, sent after commit). The caller commits, or rolls back on CycleRefused.
    """
    now = now or utcnow()
    labels = (_("Ouverture des commandes"), _("Date limite de commande"), _("Début de la distribution"),
              _("Fin de la distribution"))  # as the move form names them
    for label, moment in zip(labels, (opens_at, closes_at, distribution_starts_at, distribution_ends_at)):
        _check_wall_clock(label, moment)
    if not (opens_at < closes_at <= distribution_starts_at < distribution_ends_at):
        raise CycleRefused(_("Les dates doivent se suivre : ouverture, date limite, début puis fin de distribution."))
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None:
        raise CycleRefused(_("Cette distribution n'existe pas."))
    # Schedule before cycle, as generate_cycles: a move and a generation of the same rhythm take turns,
    # and saves of the cycle's orders (FOR SHARE of the cycle) wait for the move.
    schedule = None
    if cycle.schedule_id is not None:
        schedule = db.session.scalar(sa.select(Schedule).where(Schedule.id == cycle.schedule_id).with_for_update())
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.id == cycle_id).with_for_update()
                              .execution_options(populate_existing=True))
    if cycle.status not in ("draft", "open"):
        raise CycleRefused(_("Cette distribution est déjà close ou annulée : elle ne peut plus être déplacée."))
    zone = _site_zone(cycle.site_id)
    new_day = distribution_starts_at.astimezone(zone).date()
    if schedule is not None:
        _check_free_week(cycle, new_day)
    old_window = (cycle.distribution_starts_at, cycle.distribution_ends_at)
    old_closes_at = cycle.closes_at
    plan = _plan_slots(cycle, schedule, zone, distribution_starts_at, distribution_ends_at)
    before = _pickup_times(cycle.id, old_window)
    result = db.session.execute(
        sa.update(Cycle)
        .where(Cycle.id == cycle_id, Cycle.status.in_(("draft", "open")))
        .values(opens_at=opens_at, closes_at=closes_at, distribution_starts_at=distribution_starts_at,
                distribution_ends_at=distribution_ends_at, distribution_date=new_day)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise CycleRefused(_("Cette distribution est déjà close ou annulée : elle ne peut plus être déplacée."))
    _apply_slot_plan(cycle.id, plan)
    db.session.refresh(cycle)
    after = _pickup_times(cycle.id, (distribution_starts_at, distribution_ends_at))
    changed = {order_id: times for order_id, times in after.items() if before.get(order_id) != times}
    _notify_moved(cycle, changed, before, now)
    if cycle.status == "open" and now < closes_at < old_closes_at:  # a deadline already past closes the week
        _notify_deadline_earlier(cycle, old_closes_at, now)
    return cycle


def _check_wall_clock(label: str, moment: datetime) -> None:
    """Refuse a local time skipped by a DST change (02:30 on the last Sunday of March in Paris).

    An ambiguous time (the October hour lived twice) is taken at its first occurrence (fold=0), as
    Python does, and kept.
    """
    if moment.tzinfo is None:
        raise CycleRefused(_("%(label)s : heure sans fuseau horaire.", label=label))
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    if back.replace(tzinfo=None) != moment.replace(tzinfo=None):
        raise CycleRefused(_("%(label)s : le %(day)s à %(time)s, cette heure n'existe pas ce jour-là "
                             "(changement d'heure).", label=label, day=f"{moment:%d/%m/%Y}",
                             time=f"{moment:%H:%M}"))


def _site_zone(site_id: int) -> ZoneInfo:
    """The zone of a pickup site (the installation's when the site names none)."""
    name = db.session.scalar(sa.select(Site.timezone).where(Site.id == site_id))
    return ZoneInfo(name) if name else local_zone()


def _iso_week(day: date) -> str:
    """'2026-W50': the ISO week of a day, as Cycle.week writes it."""
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def _check_free_week(cycle: Cycle, new_day: date) -> None:
    """Refuse a move into a week where the same schedule already has another (not cancelled) distribution."""
    monday = new_day - timedelta(days=new_day.weekday())
    other = db.session.scalar(
        sa.select(Cycle.distribution_date)
        .where(Cycle.schedule_id == cycle.schedule_id, Cycle.id != cycle.id, Cycle.status != "cancelled",
               Cycle.distribution_date >= monday, Cycle.distribution_date < monday + timedelta(days=7))
        .order_by(Cycle.distribution_date).limit(1)
    )
    if other is not None:
        raise CycleRefused(_("Ce rythme a déjà une distribution cette semaine-là (le %(day)s) : une seule par "
                             "semaine. Déplacez ou annulez d'abord celle-là.", day=f"{other:%d/%m/%Y}"))


@dataclass
class _SlotPlan:
    """How a moved distribution's slots change (times in UTC)."""

    #: Slot id -> its new (starts_at, ends_at).
    kept: dict[int, tuple[datetime, datetime]]
    #: Slots that no longer fit.
    removed: list[int]
    #: New slots: (starts_at, ends_at, capacity).
    added: list[tuple[datetime, datetime, int]]
    #: Order id -> start of the slot it goes to (a kept or an added one); orders of removed slots.
    moved_orders: dict[int, datetime]
    #: Cancelled orders still pointing at a removed slot: they lose it.
    dropped_orders: list[int]


def _plan_slots(cycle: Cycle, schedule: Schedule | None, zone: ZoneInfo,
                starts_at: datetime, ends_at: datetime) -> _SlotPlan:
    """Decide which slots are kept, removed and added, and where the bags of removed ones go; writes nothing."""
    slots = list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)))
    if schedule is None and not slots:
        return _SlotPlan({}, [], [], {}, [])  # a distribution made by hand without slots keeps none

    def local(moment: datetime) -> datetime:
        return moment.astimezone(zone).replace(tzinfo=None)

    def utc(wall: datetime) -> datetime:
        return wall.replace(tzinfo=zone).astimezone(UTC)

    # The distribution's own slots are the model (its schedule may have changed since it was made).
    if slots:
        step, capacity = slots[0].ends_at - slots[0].starts_at, max(s.capacity for s in slots)
    else:
        step, capacity = timedelta(minutes=schedule.slot_minutes), schedule.slot_capacity
    new_start, new_end = local(starts_at), local(ends_at)
    grid = []
    while new_start + step * (len(grid) + 1) <= new_end:
        grid.append(new_start + step * len(grid))
    if not grid:
        raise CycleRefused(_("La distribution est plus courte qu'un créneau (%(n)s minutes).",
                             n=int(step.total_seconds() // 60)))
    old_start, old_end = local(cycle.distribution_starts_at), local(cycle.distribution_ends_at)
    if new_end - new_start == old_end - old_start:
        delta = new_start - old_start  # the same distribution, earlier or later: slots move with it
    else:
        delta = timedelta(days=(new_start.date() - old_start.date()).days)  # slots keep their clock time
    on_grid = set(grid)
    kept: dict[int, tuple[datetime, datetime]] = {}
    free: dict[datetime, int] = {}
    removed: list[Slot] = []
    for slot in slots:
        target = local(slot.starts_at) + delta
        if target in on_grid and target not in free:
            kept[slot.id] = (utc(target), utc(target + step))
            free[target] = slot.capacity - slot.booked
        else:
            removed.append(slot)
    added = [(utc(t), utc(t + step), capacity) for t in grid if t not in free]
    for t in grid:
        free.setdefault(t, capacity)
    moved: dict[int, datetime] = {}
    dropped: list[int] = []
    for slot in removed:
        orders = db.session.execute(
            sa.select(Order.id, Order.status).where(Order.slot_id == slot.id).order_by(Order.id)).all()
        target = local(slot.starts_at) + delta
        nearest = sorted(grid, key=lambda t: (abs(t - target), t))
        for order_id, status in orders:
            if status == "cancelled":
                dropped.append(order_id)
                continue
            place = next((t for t in nearest if free[t] > 0), None)
            if place is None:
                bags = sum(1 for _id, st in orders if st != "cancelled")
                raise CycleRefused(ngettext(
                    "Le créneau de %(start)s à %(end)s a %(num)s sac à placer ailleurs, mais les créneaux de la "
                    "nouvelle plage n'ont plus assez de places. Gardez une plage plus longue ou augmentez la "
                    "capacité des créneaux.",
                    "Le créneau de %(start)s à %(end)s a %(num)s sacs à placer ailleurs, mais les créneaux de la "
                    "nouvelle plage n'ont plus assez de places. Gardez une plage plus longue ou augmentez la "
                    "capacité des créneaux.", bags, start=f"{local(slot.starts_at):%H:%M}",
                    end=f"{local(slot.ends_at):%H:%M}"))
            free[place] -= 1
            moved[order_id] = utc(place)
    return _SlotPlan(kept, [s.id for s in removed], added, moved, dropped)


def _apply_slot_plan(cycle_id: int, plan: _SlotPlan) -> None:
    """Write a slot plan without ever holding two slots at one start (uq_slot_cycle_start), on any database."""
    if plan.moved_orders or plan.dropped_orders:
        # Off the removed slots first (foreign key); the moved ones get their new slot below.
        db.session.execute(sa.update(Order).where(Order.id.in_([*plan.moved_orders, *plan.dropped_orders]))
                           .values(slot_id=None).execution_options(synchronize_session=False))
    if plan.removed:
        db.session.execute(sa.delete(Slot).where(Slot.id.in_(plan.removed))
                           .execution_options(synchronize_session=False))
    current = dict(db.session.execute(sa.select(Slot.id, Slot.starts_at).where(Slot.id.in_(list(plan.kept)))).all())
    # Every kept slot moves by the same amount and keeps its rank, so moving the ones going earlier
    # first (earliest first), then the ones going later (latest first), each lands on a free start.
    # One UPDATE per slot: a single statement may check the unique key row by row (PostgreSQL).
    earlier = sorted((i for i in plan.kept if plan.kept[i][0] < current[i]), key=lambda i: current[i])
    later = sorted((i for i in plan.kept if plan.kept[i][0] > current[i]), key=lambda i: current[i], reverse=True)
    for slot_id in [*earlier, *later]:
        starts, ends = plan.kept[slot_id]
        db.session.execute(sa.update(Slot).where(Slot.id == slot_id).values(starts_at=starts, ends_at=ends)
                           .execution_options(synchronize_session=False))
    for slot_id in set(plan.kept) - set(earlier) - set(later):  # same start, maybe another end
        db.session.execute(sa.update(Slot).where(Slot.id == slot_id).values(ends_at=plan.kept[slot_id][1])
                           .execution_options(synchronize_session=False))
    if plan.added:
        db.session.execute(sa.insert(Slot), [{"cycle_id": cycle_id, "starts_at": s, "ends_at": e, "capacity": c,
                                              "booked": 0} for s, e, c in plan.added])
    if plan.moved_orders:
        ids = dict(db.session.execute(sa.select(Slot.starts_at, Slot.id).where(Slot.cycle_id == cycle_id)).all())
        by_slot: dict[int, list[int]] = {}
        for order_id, starts in plan.moved_orders.items():
            by_slot.setdefault(ids[starts], []).append(order_id)
        for slot_id, order_ids in sorted(by_slot.items()):
            taken = db.session.execute(
                sa.update(Slot).where(Slot.id == slot_id, Slot.booked + len(order_ids) <= Slot.capacity)
                .values(booked=Slot.booked + len(order_ids)).execution_options(synchronize_session=False))
            if taken.rowcount != 1:
                raise CycleRefused(_("Les créneaux viennent de changer : réessayez."))
            db.session.execute(sa.update(Order).where(Order.id.in_(order_ids)).values(slot_id=slot_id)
                               .execution_options(synchronize_session=False))
    # The Core statements bypassed the session: forget what it holds of slots and orders (reading an
    # attribute here could load a deleted slot, so every one is expired).
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, (Slot, Order)):
            db.session.expire(obj)


def _pickup_times(cycle_id: int, window: tuple[datetime, datetime]) -> dict[int, tuple[int, datetime, datetime]]:
    """Each live order's household and pickup time: its slot's, else the distribution's window."""
    rows = db.session.execute(
        sa.select(Order.id, Order.household_id, Slot.starts_at, Slot.ends_at)
        .outerjoin(Slot, Slot.id == Order.slot_id)
        .where(Order.cycle_id == cycle_id, Order.status != "cancelled")
    ).all()
    return {order_id: (household_id, starts or window[0], ends or window[1])
            for order_id, household_id, starts, ends in rows}


def _households_to_write_to(household_ids: set[int]) -> dict[int, Household]:
    """The households with their members (addresses and language), in two queries for them all."""
    return {h.id: h for h in db.session.scalars(
        sa.select(Household).options(selectinload(Household.members)).where(Household.id.in_(household_ids)))}


def _notify_moved(cycle: Cycle, changed: dict[int, tuple[int, datetime, datetime]],
                  before: dict[int, tuple[int, datetime, datetime]], now: datetime) -> int:
    """Queue an e-mail to each household whose pickup time changed; returns messages queued."""
    from flask import render_template

    from app.outbox import MessageSpec, queue_messages

    site = db.session.get(Site, cycle.site_id)
    households = _households_to_write_to({household_id for household_id, _s, _e in changed.values()})
    specs = []
    for order_id, (household_id, starts, ends) in sorted(changed.items()):
        household = households[household_id]
        recipients = household.contact_emails()
        if not recipients:
            continue
        old = before.get(order_id)
        with force_locale(household.mail_locale):
            body = render_template("orders/cycle_moved_email.txt", household=household, cycle=cycle, site=site,
                                   starts=starts, ends=ends, old_starts=old[1] if old else None,
                                   old_ends=old[2] if old else None)
            subject = _("Votre retrait change : distribution du %(day)s", day=local_date(cycle.distribution_date))
        for recipient in recipients:
            specs.append(MessageSpec(
                f"cycle:{cycle.id}:household:{household_id}:moved:{int(starts.timestamp())}:{int(now.timestamp())}"
                f":{recipient.lower()}", recipient, subject, body, kind="cycle_moved", cycle_id=cycle.id))
    return queue_messages(specs) if specs else 0


def _notify_deadline_earlier(cycle: Cycle, old_closes_at: datetime, now: datetime) -> int:
    """Queue an e-mail to every active household: the open week's deadline comes sooner than announced.

    Households that have not ordered yet would otherwise find the cart closed; those that have may
    want to change their order in time. Returns messages queued."""
    from flask import render_template

    from app.outbox import MessageSpec, queue_messages

    site = db.session.get(Site, cycle.site_id)
    household_ids = set(db.session.scalars(sa.select(Household.id).where(Household.active.is_(True))))
    specs = []
    for household in sorted(_households_to_write_to(household_ids).values(), key=lambda h: h.id):
        with force_locale(household.mail_locale):
            body = render_template("orders/cycle_deadline_email.txt", household=household, cycle=cycle, site=site,
                                   old_closes_at=old_closes_at)
            subject = _("Date limite avancée : commandes jusqu'au %(deadline)s",
                        deadline=local_datetime(cycle.closes_at))
        for recipient in household.contact_emails():
            specs.append(MessageSpec(
                f"cycle:{cycle.id}:household:{household.id}:deadline:{int(cycle.closes_at.timestamp())}"
                f":{int(now.timestamp())}:{recipient.lower()}", recipient, subject, body, kind="cycle_deadline",
                cycle_id=cycle.id))
    return queue_messages(specs) if specs else 0


def households_without_email(cycle_id: int) -> list[tuple[Household, bool]]:
    """Active households no e-mail reaches (no address of their own, no active member), by name, each with
    whether it has an order in the cycle: the coordinator phones them when a distribution moves or is cancelled."""
    from app.models import User

    # An order with lines: in an open week, an emptied order has none; a cancelled week keeps them.
    ordered = set(db.session.scalars(
        sa.select(Order.household_id).where(Order.cycle_id == cycle_id,
                                            sa.exists().where(OrderLine.order_id == Order.id))))
    reached_by_member = sa.select(User.id).where(User.household_id == Household.id, User.active.is_(True))
    households = db.session.scalars(
        sa.select(Household)
        .where(Household.active.is_(True), sa.or_(Household.email.is_(None), Household.email == ""),
               ~reached_by_member.exists())
        .order_by(Household.name, Household.id)
    ).all()
    return [(household, household.id in ordered) for household in households]


def cancel_cycle(cycle_id: int, now: datetime | None = None) -> Cycle:
    """Cancel a distribution before it closes; the caller commits.

    Its orders are cancelled, their stock and slot places released, and each order's charge is taken
    back through the ledger (payments already made stay: they become credit on the household's
    balance). The week's AMAP baskets follow orders.contracts: they go to another distribution of
    the site that week if there is one; absences declared for this one are given back. Each household
    with an order is written to (outbox, sent after commit).
    """
    from orders import ledger

    now = now or utcnow()
    result = db.session.execute(
        sa.update(Cycle)
        .where(Cycle.id == cycle_id, Cycle.status.in_(("draft", "open")))
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise CycleRefused(_("Cette distribution est déjà close ou annulée."))
    orders = db.session.execute(
        sa.select(Order.id, Order.household_id, Order.status).where(Order.cycle_id == cycle_id).order_by(Order.id)
    ).all()
    with_lines = set(db.session.scalars(
        sa.select(OrderLine.order_id).join(Order, Order.id == OrderLine.order_id).where(Order.cycle_id == cycle_id)))
    with_basket = set(db.session.scalars(
        sa.select(OrderLine.order_id).join(Order, Order.id == OrderLine.order_id)
        .where(Order.cycle_id == cycle_id, OrderLine.contract_id.is_not(None))))
    db.session.execute(sa.update(Order).where(Order.cycle_id == cycle_id)
                       .values(status="cancelled").execution_options(synchronize_session=False))
    db.session.execute(sa.update(Offer).where(Offer.cycle_id == cycle_id)
                       .values(reserved=Decimal(0)).execution_options(synchronize_session=False))
    db.session.execute(sa.update(Slot).where(Slot.cycle_id == cycle_id)
                       .values(booked=0).execution_options(synchronize_session=False))
    credited = {order_id: -ledger.sync_order_charge(order_id, credit_note=ledger.CANCELLED_NOTE)
                for order_id, _household, _status in orders}
    cycle = db.session.get(Cycle, cycle_id)
    db.session.refresh(cycle)
    replacement = _move_week_baskets(cycle, now)
    live = [(order_id, household_id) for order_id, household_id, status in orders
            if status != "cancelled" and order_id in with_lines]
    _notify_cancelled(cycle, live, credited, with_basket, replacement)
    return cycle


def _move_week_baskets(cycle: Cycle, now: datetime) -> Cycle | None:
    """Hand the cancelled week's AMAP baskets to the site's other distribution that week, if any; returns it."""
    from orders.contract_models import Contract, ContractAbsence, ContractOffer
    from orders.contracts import GENERATE_STATUSES, cycle_monday, generate_contract_lines, site_cycles

    # The cycle is cancelled by now, so the contracts' own rule names the week's other distribution, if any.
    monday = cycle_monday(cycle)
    chosen = site_cycles(cycle.site_id, monday, monday + timedelta(days=6)).get(monday)
    replacement = chosen if chosen is not None and chosen.id != cycle.id and chosen.status in GENERATE_STATUSES \
        and chosen.closes_at > now else None
    carried = site_cycles(cycle.site_id, monday, monday + timedelta(days=6), as_if_open=cycle.id).get(monday)
    if carried is None or carried.id != cycle.id:
        return None  # an extra distribution that never carried the week's baskets: absences stay as they are
    if replacement is None:
        # An absence follows the basket (it is kept by week); with no basket this week it no longer counts
        # against the allowance.
        site_contracts = (sa.select(Contract.id).join(ContractOffer, ContractOffer.id == Contract.contract_offer_id)
                          .where(ContractOffer.site_id == cycle.site_id))
        db.session.execute(sa.delete(ContractAbsence).where(ContractAbsence.week == monday,
                                                            ContractAbsence.contract_id.in_(site_contracts)))
    db.session.flush()
    if replacement is not None:
        generate_contract_lines(replacement.id, now)
    return replacement


def _notify_cancelled(cycle: Cycle, live: list[tuple[int, int]], credited: dict[int, int],
                      with_basket: set[int], replacement: Cycle | None) -> int:
    """Queue an e-mail to each household that had an order in the cancelled distribution."""
    from flask import render_template

    from app.outbox import MessageSpec, queue_messages
    from orders.ledger import balances_cents

    site = db.session.get(Site, cycle.site_id)
    households = _households_to_write_to({household_id for _order, household_id in live})
    balances = balances_cents(list(households))
    specs = []
    for order_id, household_id in live:
        household = households[household_id]
        recipients = household.contact_emails()
        if not recipients:
            continue
        with force_locale(household.mail_locale):
            body = render_template("orders/cycle_cancelled_email.txt", household=household, cycle=cycle,
                                   site=site, order_id=order_id, credited_cents=max(credited.get(order_id, 0), 0),
                                   balance_cents=balances[household_id], basket=order_id in with_basket,
                                   replacement=replacement)
            subject = _("Distribution du %(day)s annulée", day=local_date(cycle.distribution_date))
        for recipient in recipients:
            specs.append(MessageSpec(f"cycle:{cycle.id}:household:{household_id}:cancelled:{recipient.lower()}",
                                     recipient, subject, body, kind="cycle_cancelled", cycle_id=cycle.id))
    return queue_messages(specs) if specs else 0


def current_cycle(now: datetime | None = None) -> Cycle | None:
    """The open cycle households order in now (the one closing first)."""
    now = now or utcnow()
    return db.session.scalar(
        sa.select(Cycle).where(Cycle.status == "open", Cycle.closes_at > now, Cycle.opens_at <= now)
        .order_by(Cycle.closes_at).limit(1)
    )


def next_opening(now: datetime | None = None) -> Cycle | None:
    """The next cycle still to open for orders (the one opening first), for « come back on … »."""
    now = now or utcnow()
    return db.session.scalar(
        sa.select(Cycle).where(Cycle.status.in_(("draft", "open")), Cycle.opens_at > now)
        .order_by(Cycle.opens_at).limit(1)
    )


# --------------------------------------------------------------------------- the cart


def parse_quantity(text: str | None) -> Decimal:
    """A quantity from what a person typed ("1,5"); ValueError with a French message if it is not one."""
    cleaned = (text or "").strip().replace(",", ".").replace(" ", "")
    if not cleaned:
        return Decimal(0)
    value = plain_decimal(cleaned)
    if value is None:
        if any(c.isalpha() for c in cleaned) and plain_decimal(cleaned.lower().rstrip("abcdefghijklmnopqrstuvwxyzèé.")):
            # « 2 kg », « 3 pièces »: the unit is already beside the field.
            raise ValueError(_("« %(text)s » : écrivez seulement le nombre, sans l'unité (par exemple 1,5).",
                               text=text))
        raise ValueError(_("« %(text)s » n'est pas une quantité.", text=text))
    return value


def _check_line(product: Product | _Item, qty: Decimal, tolerance: Decimal) -> str | None:
    """Why a quantity cannot be ordered for this product (French), or None."""
    name = product.name
    for value in (qty, tolerance):
        if not isinstance(value, Decimal) or not value.is_finite():
            return _("%(name)s : la quantité n'est pas un nombre.", name=name)
    if qty < 0 or tolerance < 0:
        return _("%(name)s : une quantité ne peut pas être négative.", name=name)
    if qty > MAX_QUANTITY or tolerance > MAX_QUANTITY:
        return _("%(name)s : %(max)s au plus ; vérifiez la quantité.", name=name, max=MAX_QUANTITY)
    for value in (qty, tolerance):
        if value != value.quantize(THOUSANDTH) and value.as_tuple().exponent < -3:
            return _("%(name)s : trois décimales au plus (au gramme près).", name=name)
    if qty == 0 and tolerance > 0:
        return _("%(name)s : une tolérance sans quantité commandée n'est pas possible.", name=name)
    if tolerance > 0 and not product.is_bulk:
        return _("%(name)s : la tolérance n'existe que pour les produits en vrac.", name=name)
    step = product.step
    if qty % step != 0 or tolerance % step != 0:
        if step == 1:
            return _("%(name)s : se commande à l'unité (nombre entier).", name=name)
        return _("%(name)s : se commande par multiples de %(step)s.", name=name,
             step=format(step.normalize(), "f").replace(".", ","))
    return None


@dataclass
class _Item:
    """An offer with what the cart checks about its product and producer (read in one query)."""

    offer_id: int
    cycle_id: int
    price_cents: int
    offer_active: bool
    name: str
    unit: str
    case_size: Decimal | None
    portion_step: Decimal | None
    product_active: bool
    producer_active: bool
    is_contract_basket: bool

    @property
    def is_bulk(self) -> bool:
        """Bulk products take a tolerance."""
        return self.case_size is not None

    @property
    def step(self) -> Decimal:
        """Same rule as Product.step."""
        if self.portion_step is not None:
            return self.portion_step
        return THOUSANDTH if self.unit in ("kg", "l") else Decimal(1)


@dataclass
class _Line:
    """An existing order line, as read for the save."""

    id: int
    offer_id: int
    contract_id: int | None
    quantity: Decimal
    tolerance: Decimal
    unit_price_cents: int
    base_price_cents: int
    quantity_allocated: Decimal | None
    quantity_prepared: Decimal | None

    @property
    def total_cents(self) -> int:
        """Same rule as OrderLine.total_cents."""
        charged = self.quantity_prepared if self.quantity_prepared is not None else (
            self.quantity_allocated if self.quantity_allocated is not None else self.quantity)
        return line_total_cents(self.unit_price_cents, charged)


@dataclass
class _Wanted:
    """One line the household asks for, once validated."""

    offer_id: int
    quantity: Decimal
    tolerance: Decimal
    unit_price_cents: int
    base_price_cents: int


_CYCLE = Cycle.__table__
_ORDER = Order.__table__
_LINE = OrderLine.__table__
_OFFER = Offer.__table__
_PRODUCT = Product.__table__
_PRODUCER = Producer.__table__
_SLOT = Slot.__table__
_TIER = PriceTier.__table__
_HOUSEHOLD = Household.__table__

# Built once: a prebuilt statement keeps its compiled form and cache key, which matters on the
# busiest write path (building and hashing statements costs more than running them on SQLite).
# The statements of every save run on the driver's cursor (app.driver_sql): SQLAlchemy's per-call
# work cost more than SQLite's.
#: What the cart checks about an offer, its product and its producer (the fields of _Item).
_ITEM_COLUMNS = (_OFFER.c.id, _OFFER.c.cycle_id, _OFFER.c.price_cents, _OFFER.c.active, _PRODUCT.c.name,
                 _PRODUCT.c.unit, _PRODUCT.c.case_size, _PRODUCT.c.portion_step, _PRODUCT.c.active,
                 _PRODUCER.c.active, _PRODUCT.c.is_contract_basket)
#: The cycle's window, the household and its price tier in one row (no row when either is missing).
#: It takes the two locks of a save on PostgreSQL (SQLite's BEGIN IMMEDIATE already serializes writers):
#: - FOR SHARE OF cycle: saves run side by side, but close_cycle's UPDATE and contract generation
#:   wait for them (and they for those), so the deadline and status read here hold until the commit;
#: - FOR NO KEY UPDATE OF household: two saves of one household (two phones, a volunteer) take
#:   turns. The lock is taken here, before the order is read: each later statement of a READ
#:   COMMITTED transaction sees what the previous save committed, where a lock taken by the read
#:   itself would have re-read the order row alone and kept the lines of before the wait.
_Q_CYCLE_HOUSEHOLD = DriverStatement(
    sa.select(_CYCLE.c.status, _CYCLE.c.opens_at, _CYCLE.c.closes_at, _HOUSEHOLD.c.id.label("household_id"),
              _HOUSEHOLD.c.active, _TIER.c.id.label("tier_id"), _TIER.c.name, _TIER.c.markup_bp,
              _TIER.c.pay_what_you_can, _TIER.c.minimum_bp)
    .select_from(_CYCLE)
    .join(_HOUSEHOLD, _HOUSEHOLD.c.id == sa.bindparam("household_id"))
    .outerjoin(_TIER, sa.or_(_TIER.c.id == _HOUSEHOLD.c.price_tier_id,
                             sa.and_(_HOUSEHOLD.c.price_tier_id.is_(None), _TIER.c.is_default.is_(True))))
    .where(_CYCLE.c.id == sa.bindparam("cycle_id")).limit(1)
    .with_for_update(read=True, of=_CYCLE)
    .suffix_with("FOR NO KEY UPDATE OF household", dialect="postgresql"))
_Q_CYCLE_EXISTS = sa.select(_CYCLE.c.id).where(_CYCLE.c.id == sa.bindparam("cycle_id"))
#: The household's order in the cycle with its lines, each with its offer's facts as _Q_ITEMS reads
#: them (one row with NULL line columns when it has none). A changed order then needs no other read.
#: No lock of its own: the household's (_Q_CYCLE_HOUSEHOLD) keeps other saves of this order out.
_Q_ORDER_LINES = DriverStatement(
    sa.select(_ORDER.c.id, _ORDER.c.slot_id, _LINE.c.id, _LINE.c.offer_id, _LINE.c.contract_id, _LINE.c.quantity,
              _LINE.c.tolerance, _LINE.c.unit_price_cents, _LINE.c.base_price_cents, _LINE.c.quantity_allocated,
              _LINE.c.quantity_prepared, *_ITEM_COLUMNS)
    .select_from(_ORDER).outerjoin(_LINE, _LINE.c.order_id == _ORDER.c.id)
    .outerjoin(_OFFER, _OFFER.c.id == _LINE.c.offer_id)
    .outerjoin(_PRODUCT, _PRODUCT.c.id == _OFFER.c.product_id)
    .outerjoin(_PRODUCER, _PRODUCER.c.id == _PRODUCT.c.producer_id)
    .where(_ORDER.c.cycle_id == sa.bindparam("cycle_id"), _ORDER.c.household_id == sa.bindparam("household_id")))
#: Where an _Item starts in a row of _Q_ORDER_LINES (after the order's and the line's columns).
_ITEM_AT = len(_Q_ORDER_LINES.statement.selected_columns) - len(_ITEM_COLUMNS)
_Q_ITEMS = DriverStatement(
    sa.select(*_ITEM_COLUMNS)
    .join(_PRODUCT, _PRODUCT.c.id == _OFFER.c.product_id)
    .join(_PRODUCER, _PRODUCER.c.id == _PRODUCT.c.producer_id)
    .where(_OFFER.c.id.in_(sa.bindparam("ids", expanding=True))), expanding="ids")
_Q_INSERT_ORDER = sa.insert(_ORDER).returning(_ORDER.c.id)
_Q_UPDATE_ORDER = DriverStatement(
    sa.update(_ORDER).where(_ORDER.c.id == sa.bindparam("b_id"))
    .values(status=sa.bindparam("b_status"), slot_id=sa.bindparam("b_slot"), entered_by_id=sa.bindparam("b_by"),
            entered_by_volunteer=sa.bindparam("b_volunteer"), chosen_share_bp=sa.bindparam("b_share"),
            total_cents=sa.bindparam("b_total"), updated_at=sa.bindparam("b_now", type_=_ORDER.c.updated_at.type),
            confirmed_at=sa.func.coalesce(sa.bindparam("b_confirmed", type_=_ORDER.c.confirmed_at.type),
                                          _ORDER.c.confirmed_at)))
_RESERVED = sa.type_coerce(_OFFER.c.reserved, sa.BigInteger)
_CAP = sa.type_coerce(_OFFER.c.stock_cap, sa.BigInteger)
_DELTA = sa.bindparam("b_delta", type_=sa.BigInteger)
#: Moves one offer's counter by a signed delta in thousandths; a rise must stay within the cap.
#: On PostgreSQL a batch is one statement. Its sub-select locks the offers in id order, whatever join
#: the planner picks, so two saves never wait on each other in a cycle; the UPDATE then re-reads each
#: locked row as last committed and checks the cap against that.
_Q_MOVE_RESERVED = DriverStatement(
    _OFFER.update().where(_OFFER.c.id == sa.bindparam("b_id"))
    .where(sa.or_(_DELTA <= 0, _CAP.is_(None), _RESERVED + _DELTA <= _CAP))
    .values(reserved=_RESERVED + _DELTA),
    postgresql_many=(
        "UPDATE offer SET reserved = offer.reserved + d.delta"
        " FROM (SELECT o.id, u.delta FROM unnest({b_id}::integer[], {b_delta}::bigint[]) AS u (id, delta)"
        " JOIN offer AS o ON o.id = u.id ORDER BY o.id FOR NO KEY UPDATE OF o) AS d"
        " WHERE offer.id = d.id"
        " AND (d.delta <= 0 OR offer.stock_cap IS NULL OR offer.reserved + d.delta <= offer.stock_cap)"))
_Q_RESERVED = sa.select(_OFFER.c.id, _RESERVED, _CAP).where(_OFFER.c.id.in_(sa.bindparam("ids", expanding=True)))
_Q_DELETE_LINES = sa.delete(_LINE).where(_LINE.c.id.in_(sa.bindparam("ids", expanding=True)))
_Q_INSERT_LINES = sa.insert(_LINE)
_Q_UPDATE_LINE = DriverStatement(
    sa.update(_LINE).where(_LINE.c.id == sa.bindparam("b_id")).values(
        quantity=sa.bindparam("b_quantity", type_=_LINE.c.quantity.type),
        tolerance=sa.bindparam("b_tolerance", type_=_LINE.c.tolerance.type),
        unit_price_cents=sa.bindparam("b_unit"), base_price_cents=sa.bindparam("b_base"),
        ordered_at=sa.func.coalesce(sa.bindparam("b_ordered_at", type_=_LINE.c.ordered_at.type),
                                    _LINE.c.ordered_at)),
    postgresql_many=(
        "UPDATE order_line SET quantity = d.quantity, tolerance = d.tolerance, unit_price_cents = d.unit,"
        " base_price_cents = d.base, ordered_at = coalesce(d.ordered_at, order_line.ordered_at)"
        " FROM unnest({b_id}::integer[], {b_quantity}::bigint[], {b_tolerance}::bigint[], {b_unit}::integer[],"
        " {b_base}::integer[], {b_ordered_at}::timestamptz[]) AS d (id, quantity, tolerance, unit, base, ordered_at)"
        " WHERE order_line.id = d.id"))
_Q_TAKE_SLOT = (sa.update(_SLOT)
                .where(_SLOT.c.id == sa.bindparam("b_slot"), _SLOT.c.cycle_id == sa.bindparam("b_cycle"),
                       _SLOT.c.booked < _SLOT.c.capacity)
                .values(booked=_SLOT.c.booked + 1))
_Q_SLOT_EXISTS = sa.select(_SLOT.c.id).where(_SLOT.c.id == sa.bindparam("b_slot"),
                                             _SLOT.c.cycle_id == sa.bindparam("b_cycle"))
_Q_RELEASE_SLOT = (sa.update(_SLOT).where(_SLOT.c.id == sa.bindparam("b_slot"), _SLOT.c.booked > 0)
                   .values(booked=_SLOT.c.booked - 1))


def save_order(*args, **kwargs) -> Order:
    """save_cart (same arguments), returning the ORM order as now written, for callers that go on with it."""
    saved = save_cart(*args, **kwargs)
    # The session may hold an old copy of the order: the Core statements bypassed it.
    held = db.session.identity_map.get(db.session.identity_key(Order, saved.id))
    if held is not None:
        db.session.expire(held)
    return db.session.get(Order, saved.id)


@dataclass(frozen=True)
class SavedOrder:
    """What the cart page needs to know once an order is saved."""

    id: int
    status: str
    total_cents: int


def save_cart(
    cycle_id: int,
    household_id: int,
    quantities: dict[int, tuple[Decimal, Decimal]],
    slot_id: int | None,
    entered_by_id: int | None,
    by_volunteer: bool = False,
    now: datetime | None = None,
    *,
    chosen_share_bp: int | None = None,
    expected_prices: dict[int, int] | None = None,
    in_savepoint: bool = True,
) -> SavedOrder:
    """Replace the household's order in a cycle with these quantities; all or nothing.

    Offers absent from `quantities` keep their line; a quantity of 0 removes it (emptying an order
    cancels it; confirming an empty cart with no order yet is refused). Returns the order's id,
    status and total. Raises OrderRefused, in which case nothing of this call stays written: its
    savepoint is rolled back. A caller that rolls its whole transaction back on OrderRefused anyway
    (the cart page) passes in_savepoint=False and saves the SAVEPOINT round trips. The caller
    commits. Written with Core statements (five for a changed order), most of them replayed on the
    driver's cursor (app.driver_sql), and no ORM object, because it is the busiest write path.
    """
    now = now or utcnow()
    conn = db.session.connection()
    found = _lock_cycle_and_household(conn, cycle_id, household_id)
    _check_cycle_open(found, now)
    if not found.active:
        raise OrderRefused(_("Ce foyer n'existe pas ou n'est plus actif."))
    tier = found if found.tier_id is not None else None  # the row carries the tier's columns
    try:
        share = check_share(tier, chosen_share_bp)
    except ShareError as error:
        raise OrderRefused(str(error)) from None
    try:
        offer_ids = sorted({int(k) for k in quantities})
    except (TypeError, ValueError):
        raise OrderRefused(_("Produit inconnu.")) from None

    rows = _Q_ORDER_LINES.all(conn, {"cycle_id": cycle_id, "household_id": household_id})
    order_row = rows[0] if rows else None  # .id is the order's (the line's id is labelled id_1)
    lines = [_Line(*row[2:_ITEM_AT]) for row in rows if row[2] is not None]
    current = {line.offer_id: line for line in lines if line.contract_id is None}
    items = {row[_ITEM_AT]: _Item(*row[_ITEM_AT:]) for row in rows if row[_ITEM_AT] is not None}
    items.update(_load_items(conn, [k for k in offer_ids if k not in items]))

    errors: list[str] = []
    wanted: dict[int, _Wanted] = {}
    for offer_id in offer_ids:
        qty, tolerance = quantities[offer_id]
        item = items.get(offer_id)
        if item is None or item.cycle_id != cycle_id:
            errors.append(_("Ce produit ne fait pas partie de cette commande de la semaine."))
            continue
        problem = _check_line(item, qty, tolerance)
        if problem:
            errors.append(problem)
            continue
        if qty == 0:
            continue
        if item.is_contract_basket:
            errors.append(_("%(name)s se prend par contrat AMAP (page « Contrats AMAP »).", name=item.name))
            continue
        if not (item.offer_active and item.product_active and item.producer_active):
            errors.append(_("%(name)s n'est plus proposé cette semaine.", name=item.name))
            continue
        price = unit_price_cents(item.price_cents, tier, share)
        # The page sends back the base price it showed: a producer's change since (or a tampered
        # field) is refused; the household's tier and share still apply on top.
        if expected_prices is not None and offer_id in expected_prices and expected_prices[offer_id] != item.price_cents:
            errors.append(_("Le prix de %(name)s a changé : vérifiez le panier et confirmez à nouveau.",
                            name=item.name))
            continue
        wanted[offer_id] = _Wanted(offer_id, qty.quantize(THOUSANDTH), tolerance.quantize(THOUSANDTH), price,
                                   item.price_cents)
    # Lines not mentioned are kept as they are (at the price of today's tier).
    for offer_id, line in current.items():
        if offer_id not in quantities:
            item = items[offer_id]
            wanted[offer_id] = _Wanted(offer_id, line.quantity, line.tolerance,
                                       unit_price_cents(item.price_cents, tier, share), item.price_cents)
    if errors:
        raise OrderRefused(errors)
    if not wanted and order_row is None:
        raise OrderRefused(_("Votre panier est vide : indiquez au moins une quantité."))
    if wanted and slot_id is None:
        raise OrderRefused(_("Choisissez un créneau de retrait."))

    savepoint = None
    if in_savepoint:
        savepoint = db.session.begin_nested()
        conn = db.session.connection()  # asking for the connection emits the SAVEPOINT
    try:
        if order_row is None:
            order_id = conn.execute(_Q_INSERT_ORDER, {
                "cycle_id": cycle_id, "household_id": household_id, "status": "confirmed", "total_cents": 0,
                "created_at": now, "updated_at": now}).scalar_one()
            old_slot = None
        else:
            order_id, old_slot = order_row.id, order_row.slot_id
        errors = _move_reserved(conn, current, wanted, items)
        if errors:
            raise OrderRefused(errors)
        kept_contract_lines = [line for line in lines if line.contract_id is not None]
        total = _write_lines(conn, order_id, current, wanted, now) + sum(line.total_cents for line in kept_contract_lines)
        if wanted:
            new_slot = _book_core(order_id, cycle_id, old_slot, slot_id)
        elif kept_contract_lines:
            new_slot = old_slot  # the AMAP basket is still collected in its slot
        else:
            new_slot = _release_core(old_slot)
        # An AMAP basket stays due when the household removes everything else (orders.contracts).
        status = "confirmed" if wanted or kept_contract_lines else "cancelled"
        _Q_UPDATE_ORDER.run(conn, {
            "b_id": order_id, "b_status": status, "b_slot": new_slot, "b_by": entered_by_id,
            "b_volunteer": bool(by_volunteer), "b_share": share, "b_total": total, "b_now": now,
            "b_confirmed": now if wanted else None})
        if savepoint is not None:
            savepoint.commit()
    except OrderRefused:
        if savepoint is not None:
            savepoint.rollback()
        raise
    except IntegrityError:
        if savepoint is not None:
            savepoint.rollback()
        raise OrderRefused(_("Votre commande vient d'être modifiée en même temps ailleurs : réessayez.")) from None
    return SavedOrder(order_id, status, total)


def _lock_cycle_and_household(conn: sa.Connection, cycle_id: int, household_id: int):
    """The row of _Q_CYCLE_HOUSEHOLD, its locks taken; OrderRefused if the cycle or the household is missing."""
    found = _Q_CYCLE_HOUSEHOLD.first(conn, {"cycle_id": cycle_id, "household_id": household_id})
    if found is None:
        if conn.execute(_Q_CYCLE_EXISTS, {"cycle_id": cycle_id}).first() is None:
            raise OrderRefused(_("Cette commande de la semaine n'existe pas."))
        raise OrderRefused(_("Ce foyer n'existe pas ou n'est plus actif."))
    return found


def _load_items(conn: sa.Connection, offer_ids: list[int]) -> dict[int, _Item]:
    """The offers with their product and producer facts, in one query."""
    if not offer_ids:
        return {}
    return {row[0]: _Item(*row) for row in _Q_ITEMS.all(conn, {"ids": offer_ids})}


def _check_cycle_open(cycle, now: datetime) -> None:
    """Refuse any write outside the ordering window, against the stored times."""
    if cycle.status != "open" or now < cycle.opens_at:
        raise OrderRefused(_("Cette commande de la semaine n'est pas ouverte : plus aucune modification possible."))
    if now >= cycle.closes_at:
        raise OrderRefused(_("La date limite de commande est passée : la commande ne peut plus être modifiée."))


def _move_reserved(conn: sa.Connection, current: dict[int, _Line], wanted: dict[int, _Wanted],
                   items: dict[int, _Item]) -> list[str]:
    """Move every offer's reserved counter in one UPDATE whose WHERE holds each cap; French errors."""
    deltas: dict[int, int] = {}
    for offer_id in sorted(set(current) | set(wanted)):
        old = current[offer_id].quantity if offer_id in current else Decimal(0)
        new = wanted[offer_id].quantity if offer_id in wanted else Decimal(0)
        if new != old:
            deltas[offer_id] = int((new - old) * 1000)  # thousandths, as stored
    if not deltas:
        return []
    # One prebuilt UPDATE per offer (one for all on PostgreSQL), locking in offer id order so two saves
    # never wait on each other in a cycle; raw thousandths on both sides so the Quantity type does not
    # convert these SQL expressions.
    if _Q_MOVE_RESERVED.run_many(conn, [{"b_id": k, "b_delta": v} for k, v in deltas.items()]) == len(deltas):
        return []
    # Some cap refused: say which (the savepoint, or the cart page's rollback, undoes the rows that did move).
    errors = []
    rows = conn.execute(_Q_RESERVED, {"ids": list(deltas)}).all()
    for offer_id, held, limit in rows:
        if deltas[offer_id] > 0 and limit is not None and held + deltas[offer_id] > limit:
            mine = current[offer_id].quantity if offer_id in current else Decimal(0)
            left = max(Decimal(limit - held) / 1000 + mine, Decimal(0))
            text = format(left.normalize(), "f").replace(".", ",")
            errors.append(_("Plus assez de « %(name)s » : il en reste %(left)s pour vous.",
                            name=items[offer_id].name, left=text))
    return errors or [_("Le stock vient de changer : réessayez.")]


def _write_lines(conn: sa.Connection, order_id: int, current: dict[int, _Line], wanted: dict[int, _Wanted],
                 now: datetime) -> int:
    """Delete, insert and update the order's plain lines (one statement each); returns their total."""
    gone = [line.id for offer_id, line in current.items() if offer_id not in wanted]
    if gone:
        conn.execute(_Q_DELETE_LINES, {"ids": gone})
    new_rows, changed = [], []
    total = 0
    for offer_id, want in wanted.items():
        total += line_total_cents(want.unit_price_cents, want.quantity)
        line = current.get(offer_id)
        if line is None:
            new_rows.append({"order_id": order_id, "offer_id": offer_id, "quantity": want.quantity,
                             "tolerance": want.tolerance, "unit_price_cents": want.unit_price_cents,
                             "base_price_cents": want.base_price_cents, "ordered_at": now, "missing": False})
        elif (line.quantity, line.tolerance, line.unit_price_cents, line.base_price_cents) != (
                want.quantity, want.tolerance, want.unit_price_cents, want.base_price_cents):
            changed.append({"b_id": line.id, "b_quantity": want.quantity, "b_tolerance": want.tolerance,
                            "b_unit": want.unit_price_cents, "b_base": want.base_price_cents,
                            # More asked: the extra comes last in first-come allocation.
                            "b_ordered_at": now if want.quantity > line.quantity else None})
    if new_rows:
        conn.execute(_Q_INSERT_LINES, new_rows)
    if changed:
        _Q_UPDATE_LINE.run_many(conn, changed)
    return total


def _book_core(order_id: int, cycle_id: int, old_slot: int | None, slot_id: int) -> int:
    """Take a place in the slot (guarded UPDATE) and give back the old one; returns the slot id."""
    if old_slot == slot_id:
        return slot_id
    conn = db.session.connection()
    # Rows locked in slot id order, so two households swapping slots never deadlock; if the take
    # fails after the release, the caller's savepoint undoes the release.
    release_first = old_slot is not None and old_slot < slot_id
    if release_first:
        _release_core(old_slot)
    if conn.execute(_Q_TAKE_SLOT, {"b_slot": slot_id, "b_cycle": cycle_id}).rowcount != 1:
        if conn.execute(_Q_SLOT_EXISTS, {"b_slot": slot_id, "b_cycle": cycle_id}).first() is None:
            raise OrderRefused(_("Ce créneau n'existe pas pour cette distribution."))
        raise OrderRefused(_("Ce créneau est complet : choisissez-en un autre."))
    if not release_first:
        _release_core(old_slot)
    return slot_id


def _release_core(slot_id: int | None) -> None:
    """Give a slot place back."""
    if slot_id is not None:
        db.session.connection().execute(_Q_RELEASE_SLOT, {"b_slot": slot_id})


def book_slot(order_id: int, slot_id: int, now: datetime | None = None) -> Order:
    """Book a pickup slot for an order (capacity guarded), releasing its previous slot. Caller commits."""
    now = now or utcnow()
    order = db.session.get(Order, order_id)
    if order is None:
        raise OrderRefused(_("Cette commande n'existe pas."))
    # The same locks as save_cart, then the order as the last save of this household left it.
    _check_cycle_open(_lock_cycle_and_household(db.session.connection(), order.cycle_id, order.household_id), now)
    db.session.refresh(order)
    savepoint = db.session.begin_nested()
    db.session.connection()  # emits the SAVEPOINT
    try:
        new_slot = _book_core(order.id, order.cycle_id, order.slot_id, slot_id)
    except OrderRefused:
        savepoint.rollback()
        raise
    savepoint.commit()
    order.slot_id = new_slot
    db.session.flush()
    return order


def recompute_order_total(order_id: int) -> int:
    """Store on the order the sum of its line totals (each rounded once); returns it."""
    lines = db.session.scalars(sa.select(OrderLine).where(OrderLine.order_id == order_id)).all()
    total = sum((line.total_cents for line in lines), 0)
    db.session.execute(sa.update(Order).where(Order.id == order_id).values(total_cents=total)
                       .execution_options(synchronize_session=False))
    order = db.session.get(Order, order_id)
    if order is not None:
        order.total_cents = total
        db.session.flush()
    return total


def household_orders(household_id: int) -> list[tuple[Order, Cycle, Pickup | None]]:
    """The household's orders, newest distribution first, with their cycle and their bag's pickup (None before
    the distribution), in one query: the history says whether the bag was collected."""
    return db.session.execute(
        sa.select(Order, Cycle, Pickup).join(Cycle, Cycle.id == Order.cycle_id)
        .outerjoin(Pickup, Pickup.order_id == Order.id)
        .where(Order.household_id == household_id)
        .order_by(Cycle.distribution_date.desc())
    ).all()


# --------------------------------------------------------------------------- pages


@dataclass
class OfferView:
    """One offer as the household sees it: its tier's price and what is left."""

    offer: Offer
    product: Product
    unit_price_cents: int
    remaining: Decimal | None
    quantity: Decimal | None = None
    tolerance: Decimal | None = None


@dataclass
class CartPage:
    """Everything the cart shows, loaded in a fixed number of queries."""

    cycle: Cycle
    household: Household
    tier: object
    groups: list[tuple[Producer, list[OfferView]]]
    slots: list[Slot]
    order: Order | None
    share_bp: int | None


def cart_page(cycle_id: int, household_id: int) -> CartPage:
    """The cart of a household in a cycle: offers grouped by producer, slots, its current order."""
    cycle = db.session.get(Cycle, cycle_id)
    household, tier = household_with_tier(household_id)
    order = db.session.scalar(
        sa.select(Order).where(Order.cycle_id == cycle_id, Order.household_id == household_id)
        .options(selectinload(Order.lines))
    )
    share = order.chosen_share_bp if order is not None else None
    lines = {line.offer_id: line for line in (order.lines if order else []) if line.contract_id is None}
    rows = db.session.execute(
        sa.select(Offer, Product, Producer)
        .join(Product, Product.id == Offer.product_id)
        .join(Producer, Producer.id == Product.producer_id)
        .where(Offer.cycle_id == cycle_id, Offer.active.is_(True), Product.active.is_(True),
               Producer.active.is_(True), Product.is_contract_basket.is_(False))
        .order_by(Producer.name, Product.name)
    ).all()
    groups: dict[int, tuple[Producer, list[OfferView]]] = {}
    for offer, product, producer in rows:
        line = lines.get(offer.id)
        remaining = None
        if offer.stock_cap is not None:
            remaining = max(offer.stock_cap - offer.reserved + (line.quantity if line else 0), Decimal(0))
        view = OfferView(offer, product, unit_price_cents(offer.price_cents, tier, share), remaining,
                         line.quantity if line else None, line.tolerance if line else None)
        groups.setdefault(producer.id, (producer, []))[1].append(view)
    slots = list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id).order_by(Slot.starts_at)))
    return CartPage(cycle, household, tier, list(groups.values()), slots, order, share)


def order_with_lines(order_id: int) -> tuple[Order, list[tuple[OrderLine, Product, Producer]]] | None:
    """An order and its lines with product and producer, for the detail page."""
    order = db.session.get(Order, order_id)
    if order is None:
        return None
    lines = db.session.execute(
        sa.select(OrderLine, Product, Producer)
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .join(Producer, Producer.id == Product.producer_id)
        .where(OrderLine.order_id == order_id).order_by(Producer.name, Product.name)
    ).all()
    return order, lines


def notify_assisted_order(order_id: int) -> int:
    """Queue an e-mail telling the household a volunteer entered its order; returns messages queued."""
    from flask import render_template

    from app.outbox import queue_message, site_link

    found = order_with_lines(order_id)
    if found is None:
        return 0
    order, lines = found
    household = db.session.get(Household, order.household_id)
    cycle = db.session.get(Cycle, order.cycle_id)
    emails = household.contact_emails()
    if not emails:
        return 0
    slot = db.session.get(Slot, order.slot_id) if order.slot_id and lines else None
    # In the household's language, like the other mails to households.
    with force_locale(household.mail_locale):
        subject = _("Votre commande a été enregistrée au café")
        body = render_template("orders/assisted_order_email.txt", household=household, cycle=cycle, order=order,
                               lines=lines, slot=slot, link=site_link("orders.order_detail", order_id=order.id))
    stamp = int(order.updated_at.timestamp())
    for email in emails[:1]:
        queue_message(f"assisted:{order.id}:{stamp}", email, subject, body, kind="assisted_order",
                      cycle_id=order.cycle_id)
    return 1


# --------------------------------------------------------------------------- sites and schedules


@dataclass(frozen=True)
class ScheduleValues:
    """What a coordinator sets for a weekly rhythm (local wall-clock times of the site)."""

    site_id: int
    name: str
    opens_weekday: int
    opens_time: time
    closes_weekday: int
    closes_time: time
    distribution_weekday: int
    distribution_start: time
    distribution_end: time
    slot_minutes: int
    slot_capacity: int
    weeks_ahead: int
    allocation_policy: str
    active: bool


def save_site(site_id: int | None, name: str, address: str | None) -> Site:
    """Create or change a pickup site, in the installation's time zone; CycleRefused if the name is taken."""
    name = name.strip()
    clash = db.session.scalar(sa.select(Site.id).where(Site.name == name, Site.id != (site_id or 0)))
    if clash:
        raise CycleRefused(_("Un lieu porte déjà ce nom."))
    site = db.session.get(Site, site_id) if site_id else Site()
    if site is None:
        raise CycleRefused(_("Ce lieu n'existe pas."))
    site.name, site.address, site.timezone = name, (address or "").strip() or None, local_zone().key
    db.session.add(site)
    db.session.flush()
    return site


def save_schedule(schedule_id: int | None, values: ScheduleValues) -> Schedule:
    """Create or change a weekly rhythm, then create its coming distributions.

    Distributions that already exist keep their dates (households may have ordered for them); the
    coordinator moves them one by one if needed. CycleRefused with a French message if the rhythm
    cannot make a distribution.
    """
    if db.session.get(Site, values.site_id) is None:
        raise CycleRefused(_("Choisissez un lieu de retrait."))
    if values.distribution_end <= values.distribution_start:
        raise CycleRefused(_("La distribution doit finir après son début."))
    start = datetime.combine(date.min, values.distribution_start)
    if start + timedelta(minutes=values.slot_minutes) > datetime.combine(date.min, values.distribution_end):
        raise CycleRefused(_("Les créneaux sont plus longs que la distribution."))
    if values.allocation_policy not in ("pro_rata", "first_come"):
        raise CycleRefused(_("Règle de partage inconnue."))
    schedule = db.session.get(Schedule, schedule_id) if schedule_id else Schedule()
    if schedule is None:
        raise CycleRefused(_("Ce rythme n'existe pas."))
    for key, value in vars(values).items():
        setattr(schedule, key, value.strip() if isinstance(value, str) else value)
    db.session.add(schedule)
    db.session.flush()
    generate_cycles()
    return schedule
