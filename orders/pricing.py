"""Solidarity prices: what a household pays per unit according to its price tier, and what tiers bring in."""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import gettext as _

from app.extensions import db
from app.models import Household, PriceTier
from app.money import apply_basis_points, line_total_cents
from orders.models import Order, OrderLine

#: A pay-what-you-can household may pay up to twice the price (a gift), never more.
MAX_SHARE_BP = 20000


class ShareError(ValueError):
    """The pay-what-you-can share is missing or out of range (message in French)."""


def household_tier(household: Household) -> PriceTier | None:
    """The household's tier, else the default tier, else None (base price)."""
    if household.price_tier_id is not None:
        return household.price_tier
    return db.session.scalar(sa.select(PriceTier).where(PriceTier.is_default.is_(True)).limit(1))


def check_share(tier: PriceTier | None, chosen_share_bp: int | None) -> int | None:
    """The share to store on the order: None for fixed tiers, a valid share for pay-what-you-can."""
    if tier is None or not tier.pay_what_you_can:
        return None
    if chosen_share_bp is None:
        return 10000
    if chosen_share_bp < tier.minimum_bp:
        raise ShareError(_("Votre part doit être d'au moins %(share)s %% du prix.", share=f"{tier.minimum_bp / 100:g}"))
    if chosen_share_bp > MAX_SHARE_BP:
        raise ShareError(_("Votre part ne peut pas dépasser %(share)s %% du prix.", share=f"{MAX_SHARE_BP / 100:g}"))
    return chosen_share_bp


def unit_price_cents(base_cents: int, tier: PriceTier | None, chosen_share_bp: int | None = None) -> int:
    """The unit price a household pays: the base price moved by its tier (rounded once, half up)."""
    if tier is None:
        return base_cents
    if tier.pay_what_you_can:
        share = chosen_share_bp if chosen_share_bp is not None else 10000
        return apply_basis_points(base_cents, share - 10000)
    return apply_basis_points(base_cents, tier.markup_bp)


@dataclass
class TierTakings:
    """What one tier brought in during a cycle, against the same lines at base price."""

    tier_name: str
    households: int = 0
    lines: int = 0
    total_cents: int = 0
    base_total_cents: int = 0
    _households: set = field(default_factory=set, repr=False)

    @property
    def difference_cents(self) -> int:
        """Paid above (positive) or below (negative) the base price."""
        return self.total_cents - self.base_total_cents


def tier_takings(cycle_id: int) -> list[TierTakings]:
    """Per tier, the sum of line totals of confirmed orders in a cycle, and the same at base price.

    A household without a tier of its own pays the default tier's prices, so it counts there. AMAP
    baskets are left out: they are paid with the season's contract (their line is 0 € in the cycle).
    """
    rows = db.session.execute(
        sa.select(
            PriceTier.name, Order.household_id, OrderLine.unit_price_cents, OrderLine.base_price_cents,
            OrderLine.quantity, OrderLine.quantity_allocated, OrderLine.quantity_prepared,
        )
        .join(Order, OrderLine.order_id == Order.id)
        .join(Household, Household.id == Order.household_id)
        .outerjoin(PriceTier, sa.or_(
            PriceTier.id == Household.price_tier_id,
            sa.and_(Household.price_tier_id.is_(None), PriceTier.is_default.is_(True))))
        .where(Order.cycle_id == cycle_id, Order.status == "confirmed", OrderLine.contract_id.is_(None))
    ).all()
    by_tier: dict[str, TierTakings] = {}
    for name, household_id, unit, base, qty, allocated, prepared in rows:
        charged = prepared if prepared is not None else allocated if allocated is not None else qty
        label = name or _("Sans tarif (prix de base)")
        takings = by_tier.setdefault(label, TierTakings(label))
        takings._households.add(household_id)
        takings.lines += 1
        takings.total_cents += line_total_cents(unit, charged)
        takings.base_total_cents += line_total_cents(base, charged)
    for takings in by_tier.values():
        takings.households = len(takings._households)
    return sorted(by_tier.values(), key=lambda t: t.tier_name)


def households_per_tier(tiers) -> dict[int | None, int]:
    """Active households per tier id; those without a tier of their own count in the default tier, whose
    prices they pay (as tier_takings counts them). One query."""
    counts = dict(db.session.execute(sa.select(Household.price_tier_id, sa.func.count())
                                     .where(Household.active.is_(True)).group_by(Household.price_tier_id)).all())
    default = next((t for t in tiers if t.is_default), None)
    if default is not None:
        counts[default.id] = counts.get(default.id, 0) + counts.pop(None, 0)
    return counts


def no_tier_label(tiers) -> str:
    """How a household without a tier of its own is priced, for tier selects: the default tier, else base prices."""
    default = next((t for t in tiers if t.is_default), None)
    if default is not None:
        return _("Tarif par défaut (%(name)s)", name=default.name)
    return _("Sans tarif (prix de base)")


def household_with_tier(household_id: int) -> tuple[Household | None, PriceTier | None]:
    """A household and its tier (or the default tier) in one query."""
    row = db.session.execute(
        sa.select(Household, PriceTier)
        .outerjoin(PriceTier, sa.or_(
            PriceTier.id == Household.price_tier_id,
            sa.and_(Household.price_tier_id.is_(None), PriceTier.is_default.is_(True))))
        .where(Household.id == household_id).limit(1)
    ).first()
    return (row[0], row[1]) if row else (None, None)
