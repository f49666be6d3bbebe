"""Demo rows for AMAP contracts and bulk buying: two season baskets, subscribers, bulk orders with tolerances.

Runs after app.demo has loaded the café, its producers, households and the open cycle; idempotent
(every row is looked up first, so a second run adds nothing).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.models import Household, User
from orders.contract_models import Contract, ContractInstalment, ContractOffer
from orders.contracts import (
    ContractError,
    InstalmentInput,
    create_contract_offer,
    generate_for_coming_cycles,
    record_instalments,
    season_total_cents,
    subscribe,
)
from orders.models import Cycle, Order, OrderLine
from pickup.models import Site, Slot
from producers.models import Offer, Producer, Product

log = logging.getLogger("panier.demo")

FARM = "Ferme des Saules"
SMALL = ("Petit panier de légumes AMAP", 1000)
LARGE = ("Panier de légumes AMAP", 1500)
SEASON_WEEKS = 26

#: (household, basket "small"/"large", quantity, co-holder of a shared basket). The coordination
#: subscribes them, as at the café: only a volunteer or coordinator links two households.
SUBSCRIBERS = [
    ("Famille Martin", "large", 1, None),
    ("Famille Bernard", "small", 1, None),
    ("Famille Thomas", "large", 1, None),
    ("Famille Durand", "large", 2, None),
    ("Foyer Moreau", "small", 1, "Foyer Dubois"),
    ("Famille Simon", "large", 1, None),
    ("Famille Leroy", "small", 1, None),
    ("Famille David", "large", 1, None),
    ("Famille Nguyen", "small", 1, None),
    ("Famille Diallo", "small", 1, None),
]

#: (household, product, quantity, tolerance) in the open cycle: the rice case fills thanks to tolerances.
BULK_ORDERS = [
    ("Famille Martin", "Riz basmati bio", "2", "0.5"),
    ("Famille Bernard", "Riz basmati bio", "1.5", "1"),
    ("Famille Girard", "Riz basmati bio", "1", "0"),
    ("Famille Martin", "Huile d'olive vierge extra", "2", "1"),
    ("Famille Lambert", "Huile d'olive vierge extra", "3", "0"),
    ("Famille Vincent", "Savon de Marseille 300 g", "4", "2"),
    ("Famille Muller", "Savon de Marseille 300 g", "3", "0"),
    ("Famille Benali", "Lentilles vertes du Puy", "3", "1"),
]


def _household(name: str) -> Household | None:
    """A demo household by name."""
    return db.session.scalar(sa.select(Household).where(Household.name == name))


def _open_cycle(now: datetime) -> Cycle | None:
    """The cycle households are ordering in now."""
    return db.session.scalar(
        sa.select(Cycle).where(Cycle.status == "open", Cycle.closes_at > now).order_by(Cycle.closes_at)
    )


def _basket(farm: Producer, name: str, price_cents: int) -> Product:
    """The farm's season basket product, created when missing."""
    product = db.session.scalar(sa.select(Product).where(Product.producer_id == farm.id, Product.name == name))
    if product is None:
        product = Product(producer_id=farm.id, name=name, unit="basket", price_cents=price_cents, vat_rate_bp=550,
                          is_contract_basket=True, active=True,
                          description="Légumes de saison de la ferme, pour une petite famille.")
        db.session.add(product)
        db.session.flush()
    return product


def _season_offer(product: Product, site: Site, name: str, first: date, shareable: bool) -> ContractOffer:
    """The season offer of a basket, created when missing."""
    offer = db.session.scalar(sa.select(ContractOffer).where(ContractOffer.product_id == product.id))
    if offer is None:
        offer = create_contract_offer(product.id, site.id, name, first, first + timedelta(weeks=SEASON_WEEKS - 1),
                                      1, product.price_cents, absences_allowed=4, shareable=shareable)
    return offer


def _contracts(now: datetime, cycle: Cycle | None) -> None:
    """Two season offers of the farm and about ten households subscribed, one basket shared."""
    farm = db.session.scalar(sa.select(Producer).where(Producer.name == FARM))
    site = db.session.get(Site, cycle.site_id) if cycle else db.session.scalar(sa.select(Site).order_by(Site.id))
    if farm is None or site is None:
        log.info("contract demo: no farm or site, skipped")
        return
    first = cycle.distribution_date if cycle else now.date() + timedelta(days=(3 - now.weekday()) % 7)
    offers = {
        "small": _season_offer(_basket(farm, *SMALL), site, "Petit panier — saison d'hiver", first, True),
        "large": _season_offer(_basket(farm, *LARGE), site, "Grand panier — saison d'hiver", first, False),
    }
    coordinator = db.session.scalar(sa.select(User).where(User.email == "coordination@example.org"))
    for name, size, quantity, partner_name in SUBSCRIBERS:
        household = _household(name)
        if household is None:
            continue
        exists = db.session.scalar(sa.select(Contract.id).where(
            Contract.contract_offer_id == offers[size].id,
            sa.or_(Contract.household_id == household.id, Contract.co_holder_id == household.id)))
        if exists:
            continue
        partner = _household(partner_name) if partner_name else None
        try:
            subscribe(offers[size].id, household.id, quantity=quantity, co_holder_id=partner.id if partner else None,
                      subscribed_by_id=coordinator.id if coordinator else None, now=now)
        except ContractError as error:
            log.info("contract demo: %s not subscribed: %s", name, error)
    martin = _household("Famille Martin")
    contract = db.session.scalar(sa.select(Contract).where(Contract.household_id == martin.id)) if martin else None
    if contract is not None and not db.session.scalar(
        sa.select(ContractInstalment.id).where(ContractInstalment.contract_id == contract.id)
    ):
        total = season_total_cents(contract, martin.id)
        third = total // 3
        months = [first.replace(day=1) + timedelta(days=31 * k) for k in range(3)]
        record_instalments(contract.id, martin.id, [
            InstalmentInput(third, cheque_number=f"81234{k}", bank="Crédit Agricole", cashing_month=months[k])
            for k in range(2)
        ] + [InstalmentInput(total - 2 * third, cheque_number="812342", bank="Crédit Agricole",
                             cashing_month=months[2])],
            recorded_by_id=coordinator.id if coordinator else None)
    generate_for_coming_cycles(now=now)


def _bulk_orders(now: datetime, cycle: Cycle | None) -> None:
    """Some bulk orders with tolerances in the open cycle, through the cart service."""
    if cycle is None:
        return
    from orders.services import OrderRefused, save_order

    slots = db.session.scalars(sa.select(Slot.id).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)).all()
    # Only these orders give a tolerance (orders.demo's give none): finding one, the bulk orders were loaded
    # before, and what households changed since (a line taken out) is theirs, not put back.
    if db.session.scalar(
        sa.select(OrderLine.id).join(Order, Order.id == OrderLine.order_id)
        .where(Order.cycle_id == cycle.id, OrderLine.tolerance > 0).limit(1)
    ):
        return
    for index, (name, product_name, quantity, tolerance) in enumerate(BULK_ORDERS):
        household = _household(name)
        offer = db.session.scalar(
            sa.select(Offer).join(Product, Product.id == Offer.product_id)
            .where(Offer.cycle_id == cycle.id, Product.name == product_name)
        )
        if household is None or offer is None:
            continue
        order = db.session.scalar(
            sa.select(Order).where(Order.cycle_id == cycle.id, Order.household_id == household.id))
        if order is not None and db.session.scalar(
            sa.select(OrderLine.id).where(OrderLine.order_id == order.id, OrderLine.offer_id == offer.id)
        ):
            continue
        slot_id = (order.slot_id if order is not None and order.slot_id
                   else (slots[index % len(slots)] if slots else None))
        try:
            save_order(cycle.id, household.id, {offer.id: (Decimal(quantity), Decimal(tolerance))}, slot_id, None,
                       now=max(now, cycle.opens_at) + timedelta(minutes=index))
        except OrderRefused as refused:
            log.info("bulk demo: %s could not order %s: %s", name, product_name, refused)


def load(now: datetime | None = None) -> None:
    """Add the contract and bulk demo rows (idempotent)."""
    now = now or utcnow()
    cycle = _open_cycle(now)
    _contracts(now, cycle)
    db.session.flush()
    _bulk_orders(now, cycle)
    db.session.flush()
