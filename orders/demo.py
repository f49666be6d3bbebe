"""Demo rows of the ordering part: solidarity tiers and orders of half the households in the open cycle."""
from __future__ import annotations

import random
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.models import Household, PriceTier, User
from orders.models import Order
from orders.services import OrderRefused, current_cycle, save_order
from pickup.models import Slot
from producers.models import Offer, Product

TIERS = (
    # name, markup in basis points, pay what you can, minimum share, default
    ("Habitant·e du quartier (prix coûtant)", 0, False, 10000, True),
    ("Soutien (+10 %)", 1000, False, 10000, False),
    ("Prix libre (70 % minimum)", 0, True, 7000, False),
)


def _tiers() -> list[PriceTier]:
    """The three tiers, created once."""
    tiers = []
    for name, markup, free, minimum, default in TIERS:
        tier = db.session.scalar(sa.select(PriceTier).where(PriceTier.name == name))
        if tier is None:
            tier = PriceTier(name=name, markup_bp=markup, pay_what_you_can=free, minimum_bp=minimum,
                             is_default=default)
            db.session.add(tier)
            db.session.flush()
        tiers.append(tier)
    return tiers


def load() -> None:
    """Tiers for the households, then orders for every other household in the open cycle; idempotent."""
    tiers = _tiers()
    households = db.session.scalars(sa.select(Household).order_by(Household.id)).all()
    for index, household in enumerate(households):
        if household.price_tier_id is None and index % 5 in (1, 3):
            household.price_tier_id = tiers[1 if index % 5 == 1 else 2].id
    db.session.flush()
    cycle = current_cycle()
    if cycle is None:
        return
    offers = db.session.execute(
        sa.select(Offer.id, Product.unit, Product.portion_step).join(Product, Product.id == Offer.product_id)
        .where(Offer.cycle_id == cycle.id, Offer.active.is_(True)).order_by(Offer.id)
    ).all()
    slots = db.session.scalars(sa.select(Slot.id).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)).all()
    if not offers or not slots:
        return
    ordered = set(db.session.scalars(sa.select(Order.household_id).where(Order.cycle_id == cycle.id)))
    rng = random.Random(cycle.id)
    for index, household in enumerate(households):
        if index % 2 or household.id in ordered:
            continue
        member = db.session.scalar(sa.select(User.id).where(User.household_id == household.id).limit(1))
        lines = {}
        for offer_id, unit, step in rng.sample(offers, min(4, len(offers))):
            unit_step = step or (Decimal("0.5") if unit in ("kg", "l") else Decimal(1))
            lines[offer_id] = (unit_step * rng.randint(1, 3), Decimal(0))
        share = 8000 if household.price_tier_id == tiers[2].id else None
        try:
            with db.session.begin_nested():
                save_order(cycle.id, household.id, lines, slots[index % len(slots)], member, False,
                           chosen_share_bp=share)
        except OrderRefused:
            continue  # a capped product ran out: that household simply has no demo order
    db.session.flush()
