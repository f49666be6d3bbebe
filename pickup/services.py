"""Pickup on Thursday: slot choice, bag preparation, hand-out desk, no-shows, live board and rota."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale, format_datetime, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from app.db import plain_decimal, to_quantity, utcnow
from app.extensions import db
from app.models import Household, User, UserRole
from app.money import format_cents, line_total_cents
from app.search import fold
from app.templating import local_date
from app.timeutil import local_to_utc, local_today
from orders.models import Cycle, Order, OrderLine
from orders.payment_models import LedgerEntry, Payment
from pickup.models import (
    DEFAULT_ROTA_NEEDS,
    ROTA_ROLES,
    Pickup,
    RotaDefault,
    RotaRole,
    RotaSignup,
    Shortfall,
    Site,
    Slot,
)

if TYPE_CHECKING:
    from orders.payments import CashMovements, Till

#: Cycle statuses whose bags are prepared and handed out.
DISTRIBUTION_STATUSES = ("closed", "finalized", "distributed")
#: Another site's distribution is handled alongside the first one when it is at most this many days later.
NEARBY_DISTRIBUTION_DAYS = 3
#: The desk still finds a bag of the site's earlier distributions for this long: a bag nobody came for and
#: kept at the café, or one handed out unpaid, is collected or paid at a later distribution, into its till.
EARLIER_BAG_DAYS = 56
#: A weight this many times the expected quantity is probably a typing mistake.
SUSPICIOUS_FACTOR = 10

ROLE_LABELS = {
    "setup": _l("Installation"),
    "preparation": _l("Préparation des sacs"),
    "desk": _l("Accueil et caisse"),
    "closing": _l("Rangement"),
}

PAYMENT_METHOD_LABELS = {
    "cash": _l("Espèces"),
    "cheque": _l("Chèque"),
    "card": _l("Carte"),
    "balance": _l("Solde"),
}


class PickupError(Exception):
    """A refusal explained in plain French; nothing was written."""

    def __init__(self, message: str) -> None:
        """Keep the message to show."""
        super().__init__(message)
        self.message = message


class NotInDistribution(PickupError):
    """The bag or line does not belong to the distribution being handled."""


class NeedsConfirmation(PickupError):
    """The value looks wrong; the volunteer must confirm it."""


class AlreadyRecorded(PickupError):
    """The same form was sent twice; the first submission stands and nothing more was written."""


# ---------------------------------------------------------------------------
# Helpers


def paris_today() -> date:
    """Today's date at the café."""
    return local_today()


def _insert_ignore(model, values: dict, conflict: list[str]) -> None:
    """INSERT a row unless one with the same unique key exists (safe when two clicks race)."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    db.session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=conflict))


def expected_quantity(line: OrderLine) -> Decimal:
    """What the household should receive for a line: allocated at close, else ordered."""
    return line.quantity_allocated if line.quantity_allocated is not None else line.quantity


def quantity_to_pack(line: OrderLine) -> Decimal:
    """What the volunteer puts in the bag: after a shortage what was received (charged), else what is expected."""
    return line.charged_quantity if line.missing else expected_quantity(line)


def awaits_weighing(line: OrderLine) -> bool:
    """A product sold by weight with something to weigh that nobody weighed yet (a shortage counts as weighed)."""
    return bool(line.offer.product.sold_by_weight) and line.quantity_prepared is None and expected_quantity(line) > 0


def lines_priced_on_weighing(lines) -> list[OrderLine]:
    """The lines whose price is still an estimate: awaiting the weighing, and not free (an AMAP basket)."""
    return [line for line in lines if awaits_weighing(line) and line.unit_price_cents > 0]


def _money_after_change(order_id: int) -> int:
    """Recompute the order total and move the ledger by the difference; returns the ledger delta."""
    from orders.ledger import sync_order_charge
    from orders.services import recompute_order_total

    db.session.flush()
    recompute_order_total(order_id)
    db.session.flush()
    return sync_order_charge(order_id)


# ---------------------------------------------------------------------------
# The distribution being handled and its bags


def current_distribution_sites(today: date | None = None) -> list[tuple[Cycle, Site]]:
    """Each site's distribution being handled, with its site, by date then site name (one query).

    A site's is its next distribution whose orders are closed, today's included (once ended, only while no
    later one of the site is closed). Another site's counts
    only within NEARBY_DISTRIBUTION_DAYS of the first one: a distribution a week later is next week's.
    """
    today = today or paris_today()
    # A site's ended distribution gives way to its next one whose orders are closed (volunteers prepare it);
    # alone, it stays current for the rest of its day (the till, the bags not collected).
    ended_last = sa.case((Cycle.status == "distributed", 1), else_=0)
    rank = sa.func.row_number().over(partition_by=Cycle.site_id,
                                     order_by=(ended_last, Cycle.distribution_date, Cycle.id))
    next_per_site = (
        sa.select(Cycle.id, rank.label("rank"))
        .where(Cycle.status.in_(DISTRIBUTION_STATUSES), Cycle.distribution_date >= today)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(Cycle, Site)
        .join(next_per_site, next_per_site.c.id == Cycle.id)
        .join(Site, Site.id == Cycle.site_id)
        .where(next_per_site.c.rank == 1)
        .order_by(Cycle.distribution_date, Site.name, Site.id)
    ).tuples().all()
    if not rows:
        return []
    last_day = rows[0][0].distribution_date + timedelta(days=NEARBY_DISTRIBUTION_DAYS)
    return [(cycle, site) for cycle, site in rows if cycle.distribution_date <= last_day]


def current_distributions(today: date | None = None) -> list[Cycle]:
    """The distributions being handled, one per site at most (see current_distribution_sites)."""
    return [cycle for cycle, _site in current_distribution_sites(today)]


def current_distribution(today: date | None = None, site_id: int | None = None) -> Cycle | None:
    """The distribution of the given site if it has one being handled, else the first of them."""
    cycles = current_distributions(today)
    chosen = next((cycle for cycle in cycles if cycle.site_id == site_id), None)
    return chosen or (cycles[0] if cycles else None)


@dataclass
class Bag:
    """One household's bag in a distribution, as volunteers see it."""

    order: Order
    household: Household
    slot: Slot | None
    pickup: Pickup | None
    #: The day of the bag's own distribution when the desk of a later one handles it, else None.
    earlier_day: date | None = None

    @property
    def status(self) -> str:
        """collected, no_show, prepared or todo."""
        if self.pickup is not None and self.pickup.collected_at is not None:
            return "collected"
        if self.pickup is not None and self.pickup.no_show:
            return "no_show"
        if self.pickup is not None and self.pickup.prepared_at is not None:
            return "prepared"
        return "todo"

    @property
    def gone(self) -> bool:
        """Nobody came for it and the coordinators noted it left the café (given, thrown, delivered): it cannot
        be handed out any more, only paid."""
        outcome = self.pickup.no_show_outcome if self.pickup is not None else None
        return bool(outcome) and not outcome.startswith(kept_at_cafe_labels())

    @property
    def lines(self) -> list[OrderLine]:
        """The lines that put something in the bag (nothing allocated means nothing to pack)."""
        return [line for line in self.order.lines if expected_quantity(line) > 0 or line.missing]

    @property
    def lines_to_pack(self) -> list[OrderLine]:
        """The lines to put in the bag and tick: a shortage leaves out only a product nothing was received of."""
        return [line for line in self.lines if quantity_to_pack(line) > 0]

    @property
    def lines_to_weigh(self) -> list[OrderLine]:
        """Products sold by weight still to weigh, whose price, so the bag's amount, is an estimate until then.

        None once the bag is handed out or its distribution is past: nothing is weighed any more, the amount
        is what it is (as for receipts). Read from the lines already loaded: no query.
        """
        if self.status == "collected" or self.earlier_day is not None:
            return []
        return lines_priced_on_weighing(self.order.lines)

    @property
    def amount_estimated(self) -> bool:
        """The bag's amount (and what it owes) is an estimate until its products sold by weight are weighed."""
        return bool(self.lines_to_weigh)


@dataclass
class SlotBags:
    """The bags of one slot (slot None: households that chose no slot)."""

    slot: Slot | None
    bags: list[Bag] = field(default_factory=list)

    @property
    def prepared(self) -> int:
        """Bags ready or already handed out."""
        return sum(1 for b in self.bags if b.pickup is not None and b.pickup.prepared_at is not None)

    @property
    def collected(self) -> int:
        """Bags handed out."""
        return sum(1 for b in self.bags if b.status == "collected")

    @property
    def no_show(self) -> int:
        """Bags nobody came for."""
        return sum(1 for b in self.bags if b.status == "no_show")

    @property
    def expected(self) -> int:
        """Households still expected."""
        return len(self.bags) - self.collected - self.no_show


def _bag_query():
    """Orders with everything a bag screen shows, loaded in a few queries."""
    # Imported here: producers' package imports the order services, which import pickup models.
    from producers.models import Offer, Product

    return (
        sa.select(Order, Household, Slot, Pickup)
        .join(Household, Household.id == Order.household_id)
        .outerjoin(Slot, Slot.id == Order.slot_id)
        .outerjoin(Pickup, Pickup.order_id == Order.id)
        .where(Order.status == "confirmed")
        .options(
            selectinload(Order.lines)
            .selectinload(OrderLine.offer)
            .selectinload(Offer.product)
            .selectinload(Product.producer)
        )
        .order_by(Slot.starts_at, Order.bag_number, Household.name)
    )


def bags_by_slot(cycle_id: int) -> list[SlotBags]:
    """Every bag of a distribution, grouped by slot in time order."""
    groups: dict[int | None, SlotBags] = {}
    for order, household, slot, pickup in db.session.execute(_bag_query().where(Order.cycle_id == cycle_id)):
        key = slot.id if slot is not None else None
        groups.setdefault(key, SlotBags(slot=slot)).bags.append(Bag(order, household, slot, pickup))
    # Slots without any bag still appear so the board shows the whole afternoon.
    for slot in db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id)):
        groups.setdefault(slot.id, SlotBags(slot=slot))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(groups.values(), key=lambda g: g.slot.starts_at if g.slot else far)


def get_bag(order_id: int, cycle_id: int) -> Bag:
    """One bag of the distribution being handled; NotInDistribution otherwise."""
    row = db.session.execute(_bag_query().where(Order.id == order_id)).first()
    if row is None or row[0].cycle_id != cycle_id:
        raise NotInDistribution(_("Ce sac n'appartient pas à la distribution en cours."))
    return Bag(*row)


def _earlier_bags_query(cycle: Cycle):
    """_bag_query for the bags of the site's earlier distributions (within EARLIER_BAG_DAYS) that the desk of
    ``cycle`` may still hand out or take money for, with their distribution's day as a last column."""
    earlier = aliased(Cycle)
    return (
        _bag_query().add_columns(earlier.distribution_date)
        .join(earlier, earlier.id == Order.cycle_id)
        .where(earlier.site_id == cycle.site_id, earlier.status.in_(DISTRIBUTION_STATUSES),
               earlier.distribution_date < cycle.distribution_date,
               earlier.distribution_date >= cycle.distribution_date - timedelta(days=EARLIER_BAG_DAYS))
    )


def kept_at_cafe_labels() -> tuple[str, ...]:
    """How a no-show outcome « kept at the café » starts, in each language a coordinator may have written it in
    (pickup.forms.NO_SHOW_OUTCOMES["kept"], then an optional note)."""
    from pickup.forms import NO_SHOW_OUTCOMES

    labels = []
    for locale in ("fr", "en"):
        with force_locale(locale):
            labels.append(str(NO_SHOW_OUTCOMES["kept"]))
    return tuple(labels)


def _earlier_bags_to_settle(cycle: Cycle):
    """_earlier_bags_query narrowed to the bags still to settle: still at the café to hand out (not collected, and
    not noted as given, thrown or delivered), or owing money."""
    from orders.payments import paid_by_order_subquery

    paid = paid_by_order_subquery()
    due = Order.total_cents - sa.func.coalesce(paid.c.paid_cents, 0)
    still_here = sa.or_(Pickup.no_show_outcome.is_(None), Pickup.no_show_outcome == "",
                        *(Pickup.no_show_outcome.startswith(label, autoescape=True) for label in kept_at_cafe_labels()))
    return (_earlier_bags_query(cycle).outerjoin(paid, paid.c.order_id == Order.id)
            .where(sa.or_(sa.and_(Pickup.collected_at.is_(None), still_here), due > 0)))


def desk_distribution(order_id: int, cycles: list[Cycle]) -> Cycle | None:
    """Of the distributions being handled, the one whose desk handles this bag: its own, or else the next of
    its site within EARLIER_BAG_DAYS (a bag collected or paid late goes through that desk and its till)."""
    order = db.session.get(Order, order_id)
    if order is None:
        return None
    own = next((cycle for cycle in cycles if cycle.id == order.cycle_id), None)
    if own is not None:
        return own
    bag_cycle = db.session.get(Cycle, order.cycle_id)
    return next((cycle for cycle in cycles if cycle.site_id == bag_cycle.site_id
                 and bag_cycle.distribution_date < cycle.distribution_date
                 <= bag_cycle.distribution_date + timedelta(days=EARLIER_BAG_DAYS)), None)


def other_bags_to_settle(bag: Bag, cycle_id: int) -> list[Bag]:
    """The household's earlier bags (other than this one) the desk of this distribution may still hand out or
    take money for: a volunteer serving today's bag sees last week's is still unpaid."""
    cycle = db.session.get(Cycle, cycle_id)
    rows = db.session.execute(_earlier_bags_to_settle(cycle).where(Order.household_id == bag.household.id,
                                                                   Order.id != bag.order.id))
    return [Bag(*row) for row in rows]


def till_today(order_id: int) -> Cycle | None:
    """The till that cash or a cheque for this order goes into when taken now: the distribution held today at
    the order's site (ended or not), whichever week's bag it pays; None on a day without one. The desk and
    the detailed payment page both ask here, so the same money lands in the same till."""
    site_id = db.session.scalar(sa.select(Cycle.site_id).join(Order, Order.cycle_id == Cycle.id)
                                .where(Order.id == order_id))
    if site_id is None:
        return None
    return db.session.scalar(
        sa.select(Cycle).where(Cycle.site_id == site_id, Cycle.distribution_date == paris_today(),
                               Cycle.status.in_(DISTRIBUTION_STATUSES))
        .order_by(Cycle.schedule_id.is_(None), Cycle.id).limit(1)
    )


def get_desk_bag(order_id: int, cycle_id: int) -> Bag:
    """A bag the desk of this distribution handles: one of its own, or one of the site's earlier distributions
    (settled or not: the desk shows it, and refuses to pay or hand it out twice). NotInDistribution otherwise."""
    try:
        return get_bag(order_id, cycle_id)
    except NotInDistribution:
        cycle = db.session.get(Cycle, cycle_id)
        row = db.session.execute(_earlier_bags_query(cycle).where(Order.id == order_id)).first() if cycle else None
        if row is None:
            raise
        return Bag(*row)


def find_bags(cycle_id: int, query: str = "", slot_id: int | None = None, no_slot: bool = False) -> list[Bag]:
    """Bags of the distribution by household name (accents and case aside, every word), bag number or slot
    (or those without a slot). A name or number also finds, after them, the bags of the site's earlier
    distributions still to collect or to pay."""
    stmt = _bag_query().where(Order.cycle_id == cycle_id)
    text = (query or "").strip()
    by_number = text.isdigit() and len(text) <= 9
    earlier = None
    if text and slot_id is None and not no_slot:
        earlier = _earlier_bags_to_settle(db.session.get(Cycle, cycle_id))
    if by_number:
        matches = sa.or_(Order.bag_number == int(text), Household.name.contains(text, autoescape=True))
        stmt = stmt.where(matches)
        earlier = earlier.where(matches) if earlier is not None else None
    if slot_id is not None:
        stmt = stmt.where(Order.slot_id == slot_id)
    if no_slot:
        stmt = stmt.where(Order.slot_id.is_(None))
    bags = [Bag(*row) for row in db.session.execute(stmt)]
    if earlier is not None:
        bags += [Bag(*row) for row in db.session.execute(earlier)]
    words = fold(text).split() if text and not by_number else []  # a phone number typed finds no bag
    # A distribution's bags are a few hundred at most: the name is compared here, as app.search does.
    return [bag for bag in bags if all(word in fold(bag.household.name) for word in words)]


def ensure_pickup(order_id: int) -> Pickup:
    """The bag's pickup row, created once even if two volunteers open it together."""
    _insert_ignore(Pickup, {"order_id": order_id, "no_show": False}, ["order_id"])
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == order_id))
    db.session.refresh(pickup)
    return pickup


def _line_in_distribution(line_id: int, cycle_id: int) -> OrderLine:
    """A line of a confirmed order of the distribution; NotInDistribution otherwise."""
    line = db.session.get(OrderLine, line_id)
    if line is None or line.order.cycle_id != cycle_id or line.order.status != "confirmed":
        raise NotInDistribution(_("Ce produit n'appartient pas à la distribution en cours."))
    return line


def _refuse_if_collected(order_id: int) -> Pickup:
    """Bags already handed out are not changed any more."""
    pickup = ensure_pickup(order_id)
    if pickup.collected_at is not None:
        raise PickupError(_("Ce sac a déjà été remis au foyer : il ne peut plus être modifié."))
    return pickup


# ---------------------------------------------------------------------------
# Preparation


def parse_quantity(text: str) -> Decimal:
    """A quantity typed by a person ("1,25", "0.8 kg"); PickupError if it is not one."""
    cleaned = (text or "").lower().replace("kg", "").replace(" ", "").replace(",", ".")
    value = plain_decimal(cleaned)
    if value is None:
        raise PickupError(_("Écrivez un nombre, par exemple 1,25."))
    if value < 0:
        raise PickupError(_("Écrivez un nombre positif, par exemple 1,25."))
    if value.as_tuple().exponent < -3:
        raise PickupError(_("Trois chiffres après la virgule au plus (au gramme près)."))
    return to_quantity(value)


def record_weight(
    line_id: int, weight: Decimal, *, cycle_id: int, user_id: int, confirmed: bool = False
) -> OrderLine:
    """Record the weight packed for a product sold by weight; the line's price follows it."""
    line = _line_in_distribution(line_id, cycle_id)
    if not line.offer.product.sold_by_weight:
        raise PickupError(_("Ce produit n'est pas vendu au poids."))
    _refuse_if_collected(line.order_id)
    weight = to_quantity(weight)
    expected = expected_quantity(line)
    if not confirmed:
        if weight == 0:
            raise NeedsConfirmation(
                _("Un poids de zéro veut dire que le produit manque. Cochez « Je confirme » et validez à nouveau.")
            )
        if expected > 0 and weight >= expected * SUSPICIOUS_FACTOR:
            raise NeedsConfirmation(
                _(
                    "%(weight)s kg, c'est au moins dix fois ce qui était commandé (%(expected)s kg). "
                    "Vérifiez, cochez « Je confirme » et validez à nouveau.",
                    weight=_fmt_qty(weight),
                    expected=_fmt_qty(expected),
                )
            )
    if weight == 0:
        record_shortage(line_id, Decimal(0), cycle_id=cycle_id, user_id=user_id)
        return line
    line.quantity_prepared = weight
    line.missing = False
    # A new weight replaces a shortage recorded earlier for the same line.
    cleared = db.session.execute(sa.delete(Shortfall).where(Shortfall.order_line_id == line.id)).rowcount
    _money_after_change(line.order_id)
    if cleared:
        _tell_household_of_shortage(line.order)
    elif any(other.missing for other in line.order.lines):
        # A shortage e-mail still waiting gives an estimated amount: it now says the weight known.
        _tell_household_of_shortage(line.order, rewrite_only=True)
    return line


def _fmt_qty(value: Decimal) -> str:
    """A quantity with a French comma, without trailing zeros."""
    return format(Decimal(value).normalize(), "f").replace(".", ",")


def record_shortage(line_id: int, received: Decimal, *, cycle_id: int, user_id: int) -> Shortfall:
    """A product missing or short: adjust the line, credit the household, note the producer, tell the household."""
    line = _line_in_distribution(line_id, cycle_id)
    _refuse_if_collected(line.order_id)
    received = to_quantity(received)
    expected = expected_quantity(line)
    if received < 0 or received >= expected:
        raise PickupError(
            _("La quantité reçue doit être plus petite que la quantité prévue (%(expected)s).",
              expected=_fmt_qty(expected))
        )
    line.quantity_prepared = received
    line.missing = True
    missing = expected - received
    amount = line_total_cents(line.unit_price_cents, expected) - line_total_cents(line.unit_price_cents, received)
    shortfall = db.session.scalar(sa.select(Shortfall).where(Shortfall.order_line_id == line.id))
    if shortfall is None:
        shortfall = Shortfall(
            cycle_id=cycle_id,
            producer_id=line.offer.product.producer_id,
            order_line_id=line.id,
            product_id=line.offer.product_id,
        )
        db.session.add(shortfall)
    shortfall.quantity_expected = expected
    shortfall.quantity_missing = missing
    shortfall.amount_cents = amount
    shortfall.recorded_by_id = user_id
    shortfall.recorded_at = utcnow()
    _money_after_change(line.order_id)
    _tell_household_of_shortage(line.order)
    return shortfall


def _shortage_key_prefix(order: Order) -> str:
    """The start of the outbox keys of one household's shortage e-mails for one distribution."""
    return f"pickup:cycle:{order.cycle_id}:household:{order.household_id}:shortage:"


def _shortage_mail(order: Order) -> tuple[str, str] | None:
    """Subject and body summarising every missing or short product of the bag; None if nothing is missing."""
    missing = [line for line in order.lines if line.missing]
    if not missing:
        return None
    amounts = dict(db.session.execute(
        sa.select(Shortfall.order_line_id, Shortfall.amount_cents)
        .where(Shortfall.order_line_id.in_([line.id for line in missing]))
    ).all())
    # The unit words live with the order pages; imported when needed, as orders.documents does.
    from orders.routes import unit_label

    items, given_back, producer_to_see = [], 0, False
    for line in sorted(missing, key=lambda line: line.offer.product.name):
        product = line.offer.product.name
        amount = int(amounts.get(line.id) or 0)
        given_back += amount
        received = line.quantity_prepared or Decimal(0)
        if received == 0:
            what = _("%(product)s manque", product=product)
        else:
            expected = expected_quantity(line)
            what = _("%(product)s : vous recevrez %(received)s %(unit)s au lieu de %(expected)s %(expected_unit)s",
                     product=product, received=_fmt_qty(received),
                     unit=unit_label(line.offer.product.unit, received), expected=_fmt_qty(expected),
                     expected_unit=unit_label(line.offer.product.unit, expected))
        if amount:
            what += " " + _("(%(amount)s retirés de la commande)", amount=format_cents(amount))
        else:
            # A contract basket is paid with the contract, not on this order: nothing to take off here.
            producer_to_see = True
            what += " " + _("(panier du contrat AMAP : l'association verra avec le producteur)")
        items.append("- " + what)
    cycle = db.session.get(Cycle, order.cycle_id)
    paragraphs = [
        _("Bonjour,"),
        ngettext("Pour la distribution du %(day)s, un produit manque dans votre sac :",
                 "Pour la distribution du %(day)s, %(num)d produits manquent dans votre sac :",
                 len(missing), day=local_date(cycle.distribution_date)),
        "\n".join(items),
    ]
    if given_back:
        paragraphs.append(_("Nous avons retiré %(amount)s au total de votre commande. Si vous aviez déjà payé, "
                            "cette somme est ajoutée à votre solde (avoir).", amount=format_cents(given_back)))
    if producer_to_see:
        paragraphs.append(_("Votre panier AMAP manquait cette semaine : l'association verra avec le producteur "
                            "comment le remplacer ou le rembourser, et vous tiendra au courant."))
    to_weigh = lines_priced_on_weighing(order.lines)
    if to_weigh:
        # Not a final amount: a product sold by weight is priced on the weight prepared, still to come.
        paragraphs.append(ngettext(
            "Montant estimé : ≈ %(total)s (le poids de ce produit reste à peser : %(names)s). "
            "Le montant exact sera connu après la pesée.",
            "Montant estimé : ≈ %(total)s (le poids de ces produits reste à peser : %(names)s). "
            "Le montant exact sera connu après la pesée.",
            len(to_weigh), total=format_cents(order.total_cents),
            names=", ".join(sorted(line.offer.product.name for line in to_weigh))))
    else:
        paragraphs.append(_("Nouveau montant de la commande : %(total)s.", total=format_cents(order.total_cents)))
    paragraphs.append(_("Merci de votre compréhension. L'équipe du café"))
    subject = ngettext("Un produit manque dans votre sac", "%(num)d produits manquent dans votre sac", len(missing))
    return subject, "\n\n".join(paragraphs)


def _tell_household_of_shortage(order: Order, now: datetime | None = None, rewrite_only: bool = False) -> None:
    """Queue, or rewrite while unsent, ONE e-mail per address summarising the bag's shortages.

    The message is held back for shortage_mail_delay() so the other missing products of the bag join
    it; marking the bag ready releases it at once. A shortage found after it was sent queues a
    follow-up that again sums up the whole bag. With ``rewrite_only`` (a weight recorded, no shortage
    changed) only a message still unsent is rewritten: a new weight alone is no reason for another e-mail.
    """
    from app.models import OutboxMessage
    from app.outbox import queue_message

    now = now or utcnow()
    db.session.flush()
    db.session.refresh(order)
    household = db.session.get(Household, order.household_id)
    with force_locale(household.mail_locale):  # the household's language, not the volunteer's
        mail = _shortage_mail(order)
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == order.id))
    ready = pickup is not None and pickup.prepared_at is not None
    prefix = _shortage_key_prefix(order)
    for email in household.contact_emails():
        earlier = list(db.session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.cycle_id == order.cycle_id, OutboxMessage.kind == "shortage",
                   OutboxMessage.recipient == email, OutboxMessage.key.startswith(prefix, autoescape=True))
            .order_by(OutboxMessage.id)
        ))
        latest = earlier[-1] if earlier else None
        if latest is not None and latest.status == "pending":
            unsent = sa.and_(OutboxMessage.id == latest.id, OutboxMessage.status == "pending")
            if mail is None:
                # The shortage was corrected before anything left: nothing to tell any more.
                done = db.session.execute(sa.delete(OutboxMessage).where(unsent))
            else:
                done = db.session.execute(
                    sa.update(OutboxMessage).where(unsent).values(subject=mail[0][:200], body=mail[1])
                )
            if done.rowcount == 1:
                continue
        if rewrite_only or mail is None or (latest is not None and latest.body == mail[1]):
            continue
        # The key column holds 200 characters; an address longer than 140 is cut (recipient stays whole).
        key = prefix + email[:140] if not earlier else f"{prefix}{email[:140]}:{len(earlier) + 1}"
        message = queue_message(key, email, mail[0], mail[1], kind="shortage", cycle_id=order.cycle_id)
        if message.status == "pending" and message.attempts == 0 and message.next_attempt_at is None:
            message.next_attempt_at = now if ready else now + shortage_mail_delay()


def shortage_mail_delay() -> timedelta:
    """How long a shortage e-mail waits for the rest of the bag (config SHORTAGE_MAIL_DELAY_SECONDS)."""
    return timedelta(seconds=current_app.config["SHORTAGE_MAIL_DELAY_SECONDS"])


def _release_shortage_mail(order: Order, now: datetime) -> None:
    """The bag is ready: its shortage e-mails, complete now, may leave at once."""
    from app.models import OutboxMessage

    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.cycle_id == order.cycle_id, OutboxMessage.kind == "shortage",
               OutboxMessage.status == "pending", OutboxMessage.attempts == 0,
               OutboxMessage.key.startswith(_shortage_key_prefix(order), autoescape=True),
               OutboxMessage.next_attempt_at > now)
        .values(next_attempt_at=now)
    )


def mark_prepared(order_id: int, ticked_line_ids: set[int], *, cycle_id: int, user_id: int,
                  now: datetime | None = None) -> Pickup:
    """Mark a bag prepared once every product is ticked and every weighed product is weighed."""
    bag = get_bag(order_id, cycle_id)
    pickup = _refuse_if_collected(order_id)
    todo = bag.lines_to_pack
    unticked = [line for line in todo if line.id not in ticked_line_ids]
    if unticked:
        raise PickupError(
            _("Cochez chaque produit mis dans le sac. Pas encore coché : %(names)s.",
              names=", ".join(line.offer.product.name for line in unticked))
        )
    unweighed = [line for line in todo if awaits_weighing(line)]
    if unweighed:
        raise PickupError(
            _("Pesez d'abord : %(names)s.", names=", ".join(line.offer.product.name for line in unweighed))
        )
    for line in todo:
        if line.quantity_prepared is None:
            line.quantity_prepared = expected_quantity(line)
    db.session.execute(
        sa.update(Pickup)
        .where(Pickup.id == pickup.id, Pickup.prepared_at.is_(None))
        .values(prepared_at=now or utcnow(), prepared_by_id=user_id)
    )
    db.session.refresh(pickup)
    _release_shortage_mail(bag.order, now or utcnow())
    return pickup


def shortfalls(cycle_id: int | None = None, producer_id: int | None = None) -> list[dict]:
    """What each producer did not deliver, per cycle and product (coordinator: all; producer: its own).

    The value is at the producer's base price, what the producer is not paid for; the household's
    credit (at the price it paid, solidarity tier included) is on its order and ledger.
    """
    from producers.models import Producer, Product

    stmt = (
        sa.select(
            Cycle.id, Cycle.distribution_date, Producer.id, Producer.name, Product.name, Product.unit,
            Shortfall.quantity_expected, Shortfall.quantity_missing, OrderLine.base_price_cents,
        )
        .join(Cycle, Cycle.id == Shortfall.cycle_id)
        .join(Producer, Producer.id == Shortfall.producer_id)
        .join(Product, Product.id == Shortfall.product_id)
        .join(OrderLine, OrderLine.id == Shortfall.order_line_id)
        .order_by(Cycle.distribution_date.desc(), Producer.name, Product.name, Shortfall.id)
    )
    if cycle_id is not None:
        stmt = stmt.where(Shortfall.cycle_id == cycle_id)
    if producer_id is not None:
        stmt = stmt.where(Shortfall.producer_id == producer_id)
    rows: dict[tuple, dict] = {}
    for cid, day, pid, pname, product, unit, expected, missing, base_price in db.session.execute(stmt):
        row = rows.setdefault((cid, pid, product, unit), {
            "cycle_id": cid, "distribution_date": day, "producer_id": pid, "producer": pname,
            "product": product, "unit": unit, "quantity": to_quantity(0), "amount_cents": 0, "households": 0,
        })
        row["quantity"] = to_quantity(row["quantity"] + missing)
        # Each line is rounded once, as the household's line and the producer's bill are.
        row["amount_cents"] += line_total_cents(base_price, expected) - line_total_cents(base_price, expected - missing)
        row["households"] += 1
    return list(rows.values())


# ---------------------------------------------------------------------------
# Hand-out desk


@dataclass
class DeskPaid:
    """A payment taken at the desk, with what became of cash handed over beyond what was due."""

    payment: Payment
    #: What the household handed over (for cash, it may be more than the payment).
    received_cents: int
    #: Cash the volunteer gives back now.
    change_cents: int = 0
    #: Cash kept on the household's account instead (a top-up counted in this distribution's till).
    kept_cents: int = 0


def desk_payment(order_id: int, *, cycle_id: int, method: str, amount_cents: int, user_id: int,
                 cheque_number: str | None = None, cheque_bank: str | None = None,
                 token: str | None = None, keep_change: bool = False) -> DeskPaid:
    """Take a payment at the desk for a bag of the distribution (through the payments service).

    For cash, ``amount_cents`` is what the household handed over: the payment is at most what is due,
    and the rest is change to give back, or with ``keep_change`` a cash top-up of this distribution
    (both in one transaction). A cheque or the balance must be the exact amount. ``token`` is the desk
    form's one-time token: the same form sent twice raises AlreadyRecorded and records nothing more.
    """
    from orders.payments import PaymentAlreadyRecorded, PaymentError, record_desk_payment, record_topup

    get_desk_bag(order_id, cycle_id)
    if method not in ("cash", "cheque", "balance"):
        raise PickupError(_("Choisissez espèces, chèque ou solde."))
    till = till_today(order_id)
    try:
        payment = record_desk_payment(
            order_id, method, amount_cents, received_by_id=user_id, cheque_number=cheque_number,
            cheque_bank=cheque_bank, token=token, with_change=True, cycle_id=till.id if till else None,
        )
        paid = DeskPaid(payment, amount_cents, change_cents=amount_cents - payment.amount_cents)
        if paid.change_cents and keep_change:
            _check_money_kept_today(till)
            if amount_cents >= 10 * payment.amount_cents:
                # « 75 » typed for 7,50 € would become 67,50 € of credit nobody handed over.
                raise PaymentError(_(
                    "Vérifiez le montant reçu : %(received)s pour %(due)s à payer. Pour mettre de l'argent sur le "
                    "compte du foyer, utilisez « Verser de l'argent sur le compte du foyer ».",
                    received=format_cents(amount_cents), due=format_cents(payment.amount_cents)))
            # The form's token makes the top-up's reference too: a second copy of the form stopped above.
            record_topup(payment.household_id, paid.change_cents, method="cash", token=token or "",
                         created_by_id=user_id, cycle_id=till.id,
                         note=f"monnaie gardée sur le compte (paiement de la commande n° {order_id})")
            paid.kept_cents, paid.change_cents = paid.change_cents, 0
    except PaymentAlreadyRecorded as error:
        raise AlreadyRecorded(str(error)) from error
    except PaymentError as error:
        raise PickupError(str(error)) from error
    return paid


def _check_money_kept_today(till: Cycle | None) -> None:
    """Money kept on an account at the desk is counted in the till of the distribution held today: none, no top-up."""
    if till is None:
        raise PickupError(_("Un versement sur le compte se prend le jour de la distribution, dans sa caisse. "
                            "Avant, la coordination l'enregistre."))


def desk_topup(order_id: int, *, cycle_id: int, method: str, amount_cents: int, user_id: int,
               cheque_number: str | None = None, cheque_bank: str | None = None,
               token: str | None = None) -> LedgerEntry:
    """Money the bag's household hands in at the desk to keep on its account, counted in this distribution's till.

    ``token`` is the form's one-time token: the same form sent twice raises AlreadyRecorded.
    """
    from orders.payments import PaymentAlreadyRecorded, PaymentError, record_topup

    bag = get_desk_bag(order_id, cycle_id)
    till = till_today(order_id)
    _check_money_kept_today(till)
    try:
        return record_topup(
            bag.household.id, amount_cents, method=method, token=token or "", created_by_id=user_id,
            cheque_number=cheque_number, cheque_bank=cheque_bank, cycle_id=till.id,
        )
    except PaymentAlreadyRecorded as error:
        raise AlreadyRecorded(str(error)) from error
    except PaymentError as error:
        raise PickupError(str(error)) from error


def collect_bag(order_id: int, *, cycle_id: int, user_id: int, now: datetime | None = None) -> Pickup:
    """Hand the bag over: who and when, once only (a second click is refused). A bag of an earlier distribution
    nobody came for is handed over too: it is then collected, no longer « non récupéré ». One noted as gone
    (given, thrown, delivered) is refused."""
    bag = get_desk_bag(order_id, cycle_id)
    if bag.earlier_day is not None and bag.gone:
        raise PickupError(_("Ce sac n'est plus au café : la coordination a noté « %(what)s ».",
                            what=bag.pickup.no_show_outcome))
    pickup = ensure_pickup(order_id)
    result = db.session.execute(
        sa.update(Pickup)
        .where(Pickup.id == pickup.id, Pickup.collected_at.is_(None))
        .values(collected_at=now or utcnow(), collected_by_id=user_id, no_show=False, no_show_outcome=None)
    )
    db.session.refresh(pickup)
    if result.rowcount != 1:
        who = db.session.get(User, pickup.collected_by_id) if pickup.collected_by_id else None
        raise PickupError(
            _("Ce sac a déjà été remis (%(when)s, par %(who)s).",
              when=format_datetime(pickup.collected_at, "EEEE d MMMM HH:mm"), who=who.name if who else "?")
        )
    # A paid bag with a product never weighed gets its receipt once handed out (orders.receipts).
    from orders.receipts import refresh_receipts

    refresh_receipts([order_id])
    return pickup


def handover_warnings(pickup: Pickup, earlier: bool = False, unweighed: list[str] | None = None) -> list[str]:
    """What the volunteer handing a bag out should know: products handed out ``unweighed`` (their estimate is now
    the price), money still owed, bag never prepared (not said of an ``earlier`` distribution's bag, which is
    no longer prepared)."""
    from orders.payments import amount_due_cents

    warnings = []
    if unweighed:
        warnings.append(ngettext("%(names)s n'a pas été pesé : le montant estimé devient le prix",
                                 "%(names)s n'ont pas été pesés : le montant estimé devient le prix",
                                 len(unweighed), names=", ".join(unweighed)))
    due = amount_due_cents(pickup.order_id)
    if due > 0:
        warnings.append(_("il reste %(due)s à payer", due=format_cents(due)))
    if pickup.prepared_at is None and not earlier:
        warnings.append(_("sac non préparé"))
    return warnings


def bags_left(cycle_id: int) -> list[Bag]:
    """Bags neither handed out nor already noted as not collected: what ending the distribution marks."""
    return [bag for group in bags_by_slot(cycle_id) for bag in group.bags if bag.status in ("todo", "prepared")]


def end_distribution(cycle_id: int) -> int:
    """Mark every bag not collected as a no-show; returns how many (running it again adds none).

    Only on or after its day: a site's next distribution is handled days ahead (bags are prepared), and
    ending it then would mark every bag not collected before anyone came."""
    day = db.session.scalar(sa.select(Cycle.distribution_date).where(Cycle.id == cycle_id))
    if day is None or day > paris_today():
        raise PickupError(_("Cette distribution n'a pas encore eu lieu : elle se termine le jour même, pas avant."))
    order_ids = list(db.session.scalars(
        sa.select(Order.id).where(Order.cycle_id == cycle_id, Order.status == "confirmed")
    ))
    for order_id in order_ids:
        _insert_ignore(Pickup, {"order_id": order_id, "no_show": False}, ["order_id"])
    result = db.session.execute(
        sa.update(Pickup)
        .where(Pickup.order_id.in_(order_ids), Pickup.collected_at.is_(None), Pickup.no_show.is_(False))
        .values(no_show=True)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        sa.update(Cycle).where(Cycle.id == cycle_id, Cycle.status == "finalized").values(status="distributed")
    )
    db.session.expire_all()
    # The distribution is over: paid orders still waiting for a weight get their receipt (orders.receipts).
    from orders.receipts import refresh_receipts

    refresh_receipts(order_ids)
    return result.rowcount


def no_show_bags(since: date | None = None) -> list[Bag]:
    """Bags not collected, newest distribution first (the coordinator records what was done)."""
    since = since or paris_today() - timedelta(days=60)
    stmt = (
        _bag_query()
        .join(Cycle, Cycle.id == Order.cycle_id)
        .where(Pickup.no_show.is_(True), Cycle.distribution_date >= since)
        .order_by(None)
        .order_by(Cycle.distribution_date.desc(), Household.name)
    )
    return [Bag(*row) for row in db.session.execute(stmt)]


def record_no_show_outcome(order_id: int, outcome: str) -> Pickup:
    """Write down what was done with a bag nobody came for."""
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == order_id))
    if pickup is None or not pickup.no_show:
        raise NotInDistribution(_("Ce sac n'est pas dans la liste des sacs non récupérés."))
    outcome = (outcome or "").strip()
    if not outcome:
        raise PickupError(_("Dites ce qui a été fait du sac."))
    pickup.no_show_outcome = outcome[:300]
    return pickup


# ---------------------------------------------------------------------------
# Live board


@dataclass
class Board:
    """The distribution at a glance: bags per slot and money taken per method."""

    cycle: Cycle
    slots: list[SlotBags]
    money: dict[str, int]

    @property
    def money_total(self) -> int:
        """All money taken."""
        return sum(self.money.values())


def board(cycle_id: int) -> Board:
    """Bags prepared, collected and expected per slot, and money taken per method (as the till counts it)."""
    till = cash_summary(cycle_id)
    return Board(cycle=till.cycle, slots=bags_by_slot(cycle_id), money=till.totals)


@dataclass
class ChequeTaken:
    """One cheque of the day, as the volunteer counting the till checks it."""

    number: str
    bank: str
    amount_cents: int
    household: str
    bag_number: int | None
    #: A top-up kept on the household's account, not a payment for its bag.
    topup: bool = False
    #: The bag's distribution day when the cheque paid another distribution's bag (last week's, paid today).
    other_day: date | None = None


@dataclass
class UnpaidBag:
    """A bag handed over while its order still owed money."""

    order_id: int
    household: str
    bag_number: int | None
    due_cents: int
    #: The bag's distribution day when it was an earlier distribution's bag, handed over at this one.
    other_day: date | None = None


@dataclass
class CashSummary:
    """The day's till for volunteers: what each method brought in, top-ups and credit handed back, every cheque,
    and the bags handed over unpaid."""

    cycle: Cycle
    #: Cash and cheque payments taken at this till, top-ups and credit handed back here.
    till: Till
    #: Card and balance payments of this distribution's orders (no money at the desk).
    elsewhere: dict[str, int]
    #: Every cheque in the till: the payments', then the top-ups'.
    cheques: list[ChequeTaken]
    #: Bags handed over with money still due: not in the till, to be paid later.
    unpaid: list[UnpaidBag] = field(default_factory=list)

    @property
    def handed_over(self) -> CashMovements:
        """Top-ups taken and credit handed back at this distribution."""
        return self.till.handed_over

    @property
    def totals(self) -> dict[str, int]:
        """Payments per method: cash and cheques taken at this till, card and balance of this distribution's bags."""
        return {"cash": self.till.kept_cents("cash"), "cheque": self.till.kept_cents("cheque"), **self.elsewhere}

    @property
    def counts(self) -> dict[str, int]:
        """How many payments of cash and of cheques this till took."""
        return {"cash": self.till.count("cash"), "cheque": self.till.count("cheque")}

    @property
    def unpaid_cents(self) -> int:
        """What the bags handed over unpaid still owe, all together."""
        return sum(bag.due_cents for bag in self.unpaid)

    @property
    def total(self) -> int:
        """Payments, all methods together."""
        return sum(self.totals.values())

    @property
    def expected_cash(self) -> int:
        """Cash that should be in the till: cash payments taken, plus cash top-ups, minus cash handed back."""
        return self.till.expected_cash_cents

    @property
    def cheques_cents(self) -> int:
        """All the cheques in the till: payments' and top-ups'."""
        return sum(cheque.amount_cents for cheque in self.cheques)


def cash_summary(cycle_id: int) -> CashSummary:
    """The distribution's till (cash and cheques taken there, top-ups, hand-backs, every cheque), the card and
    balance payments of its bags, and its bags handed over unpaid."""
    from orders.payments import till as till_of

    till = till_of(cycle_id)
    elsewhere = {method: 0 for method in ("card", "balance")}
    for method, cents in db.session.execute(
        sa.select(Payment.method, sa.func.sum(Payment.amount_cents - Payment.refunded_cents))
        .join(Order, Order.id == Payment.order_id)
        .where(Order.cycle_id == cycle_id, Payment.status == "succeeded", Payment.method.in_(elsewhere))
        .group_by(Payment.method)
    ):
        elsewhere[method] = int(cents or 0)
    cheques = [ChequeTaken(row.payment.provider_reference or "", row.payment.cheque_bank or "", row.kept_cents,
                           row.household_name, row.bag_number, other_day=row.other_day)
               for row in till.payments if row.payment.method == "cheque"]
    cheques += [ChequeTaken(row.entry.cheque_number or "", row.entry.cheque_bank or "", row.amount_cents,
                            row.household_name, row.bag_number, topup=True) for row in till.handed_over.topup_cheques]
    return CashSummary(db.session.get(Cycle, cycle_id), till, elsewhere, cheques, unpaid=unpaid_handed_over(cycle_id))


def unpaid_handed_over(cycle_id: int) -> list[UnpaidBag]:
    """The distribution's bags handed over on its day with money still due (as amount_due_cents says), and the
    site's earlier bags handed over on its day with money due, by bag number; one query."""
    from orders.payments import paid_by_order_subquery

    cycle = db.session.get(Cycle, cycle_id)
    day_starts = local_to_utc(cycle.distribution_date, time(0))
    day_ends = local_to_utc(cycle.distribution_date + timedelta(days=1), time(0))
    bag_cycle = aliased(Cycle)
    paid = paid_by_order_subquery()
    due = Order.total_cents - sa.func.coalesce(paid.c.paid_cents, 0)
    rows = db.session.execute(
        sa.select(Order.id, Household.name, Order.bag_number, due, bag_cycle.id, bag_cycle.distribution_date)
        .join(Pickup, Pickup.order_id == Order.id)
        .join(Household, Household.id == Order.household_id)
        .join(bag_cycle, bag_cycle.id == Order.cycle_id)
        .outerjoin(paid, paid.c.order_id == Order.id)
        .where(Order.status == "confirmed", Pickup.collected_at.is_not(None), due > 0,
               # Its own bags handed out by the end of its day (one collected at a later desk is that one's),
               sa.or_(sa.and_(Order.cycle_id == cycle_id, Pickup.collected_at < day_ends),
                      sa.and_(bag_cycle.site_id == cycle.site_id,
                              bag_cycle.distribution_date < cycle.distribution_date,
                              Pickup.collected_at >= day_starts, Pickup.collected_at < day_ends)))
        .order_by(bag_cycle.distribution_date.desc(), Order.bag_number, Household.name, Order.id)
    )
    return [UnpaidBag(order_id, name, bag_number, int(cents), None if bag_cycle_id == cycle_id else day)
            for order_id, name, bag_number, cents, bag_cycle_id, day in rows]


# ---------------------------------------------------------------------------
# The household's slot


@dataclass
class SlotChoice:
    """An order of the household with the slots of its cycle."""

    order: Order
    cycle: Cycle
    site: Site
    slots: list[Slot]

    @property
    def slot(self) -> Slot | None:
        """The slot booked, if any."""
        return next((s for s in self.slots if s.id == self.order.slot_id), None)

    def can_change(self, now: datetime | None = None) -> bool:
        """Until the deadline, the household may choose or change its slot."""
        return self.cycle.status == "open" and (now or utcnow()) < self.cycle.closes_at


def household_slots(household_id: int, today: date | None = None) -> list[SlotChoice]:
    """The household's orders for coming distributions, with their slots."""
    today = today or paris_today()
    orders = db.session.scalars(
        sa.select(Order)
        .join(Cycle, Cycle.id == Order.cycle_id)
        .where(
            Order.household_id == household_id,
            Order.status != "cancelled",
            Cycle.distribution_date >= today,
            Cycle.status.in_(("open",) + DISTRIBUTION_STATUSES),
        )
        .order_by(Cycle.distribution_date)
    ).all()
    choices = []
    for order in orders:
        cycle = db.session.get(Cycle, order.cycle_id)
        slots = db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)).all()
        choices.append(SlotChoice(order, cycle, db.session.get(Site, cycle.site_id), list(slots)))
    return choices


def slots_of_order(order_id: int) -> list[Slot]:
    """The slots of an order's cycle, in time order."""
    order = db.session.get(Order, order_id)
    return list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == order.cycle_id).order_by(Slot.starts_at)))


def household_order(order_id: int, household_id: int) -> Order:
    """An order of this household; NotInDistribution (404) for anybody else's."""
    order = db.session.get(Order, order_id)
    if order is None or order.household_id != household_id:
        raise NotInDistribution(_("Cette commande n'existe pas."))
    return order


def choose_slot(household_id: int, order_id: int, slot_id: int, now: datetime | None = None) -> Order:
    """Book or change the household's slot before the deadline (capacity guarded by book_slot)."""
    from orders.services import OrderRefused, book_slot

    now = now or utcnow()
    order = household_order(order_id, household_id)
    cycle = db.session.get(Cycle, order.cycle_id)
    if cycle.status != "open" or now >= cycle.closes_at:
        raise PickupError(_("La date limite est passée : le créneau ne peut plus être changé."))
    slot = db.session.get(Slot, slot_id)
    if slot is None or slot.cycle_id != order.cycle_id:
        raise PickupError(_("Ce créneau n'existe pas pour cette commande."))
    if order.slot_id == slot_id:
        return order
    try:
        book_slot(order_id, slot_id, now=now)
    except OrderRefused as refused:
        raise PickupError(" ".join(refused.messages)) from refused
    db.session.flush()
    return order


# ---------------------------------------------------------------------------
# Volunteer rota


def rota_defaults(site_id: int) -> dict[str, int]:
    """How many people each role needs at a site (its own defaults, else the usual ones)."""
    needs = dict(DEFAULT_ROTA_NEEDS)
    for row in db.session.scalars(sa.select(RotaDefault).where(RotaDefault.site_id == site_id)):
        needs[row.role] = row.needed
    return needs


def set_rota_default(site_id: int, role: str, needed: int) -> RotaDefault:
    """Change a site's usual number of people for a role (future distributions start from it)."""
    if role not in ROTA_ROLES or needed < 0:
        raise PickupError(_("Rôle ou nombre de personnes incorrect."))
    row = db.session.scalar(sa.select(RotaDefault).where(RotaDefault.site_id == site_id, RotaDefault.role == role))
    if row is None:
        row = RotaDefault(site_id=site_id, role=role, needed=needed)
        db.session.add(row)
    row.needed = needed
    return row


def ensure_rota(cycle_id: int) -> list[RotaRole]:
    """The roles of a distribution, created from the site's defaults the first time."""
    cycle = db.session.get(Cycle, cycle_id)
    needs = rota_defaults(cycle.site_id)
    existing = {r.role for r in db.session.scalars(sa.select(RotaRole).where(RotaRole.cycle_id == cycle_id))}
    for role in ROTA_ROLES:
        if role not in existing:
            _insert_ignore(RotaRole, {"cycle_id": cycle_id, "role": role, "needed": needs[role], "filled": 0},
                           ["cycle_id", "role"])
    roles = db.session.scalars(
        sa.select(RotaRole).where(RotaRole.cycle_id == cycle_id)
        .options(selectinload(RotaRole.signups).selectinload(RotaSignup.user))
    ).all()
    return sorted(roles, key=lambda r: ROTA_ROLES.index(r.role))


def upcoming_cycles(today: date | None = None, limit: int = 4) -> list[Cycle]:
    """The next distributions volunteers can sign up for."""
    today = today or paris_today()
    return list(db.session.scalars(
        sa.select(Cycle)
        .where(Cycle.distribution_date >= today, Cycle.status.not_in(("cancelled", "archived")))
        .order_by(Cycle.distribution_date, Cycle.id)
        .limit(limit)
    ))


def rota_overview(today: date | None = None, limit: int = 4) -> list[tuple[Cycle, list[RotaRole]]]:
    """The coming distributions with their roles and who signed up."""
    return [(cycle, ensure_rota(cycle.id)) for cycle in upcoming_cycles(today, limit)]


def _role_for_change(rota_role_id: int, today: date | None = None) -> RotaRole:
    """A role of a distribution that has not happened yet."""
    role = db.session.get(RotaRole, rota_role_id)
    if role is None:
        raise NotInDistribution(_("Ce rôle n'existe pas."))
    cycle = db.session.get(Cycle, role.cycle_id)
    if cycle.distribution_date < (today or paris_today()):
        raise PickupError(_("Cette distribution est passée."))
    return role


def sign_up(rota_role_id: int, user_id: int, today: date | None = None) -> RotaSignup:
    """Sign a volunteer up for a role; a full role or a second sign-up is refused."""
    role = _role_for_change(rota_role_id, today)
    already = db.session.scalar(
        sa.select(RotaSignup).where(RotaSignup.rota_role_id == role.id, RotaSignup.user_id == user_id)
    )
    if already is not None:
        raise PickupError(_("Vous êtes déjà inscrit·e à ce rôle."))
    taken = db.session.execute(
        sa.update(RotaRole)
        .where(RotaRole.id == role.id, RotaRole.filled < RotaRole.needed)
        .values(filled=RotaRole.filled + 1)
    )
    if taken.rowcount != 1:
        raise PickupError(_("Ce rôle est complet : il y a déjà assez de bénévoles. Merci quand même !"))
    signup = RotaSignup(rota_role_id=role.id, user_id=user_id)
    db.session.add(signup)
    try:
        db.session.flush()
    except IntegrityError:
        raise PickupError(_("Vous êtes déjà inscrit·e à ce rôle.")) from None
    db.session.refresh(role)
    return signup


def withdraw(rota_role_id: int, user_id: int, today: date | None = None) -> None:
    """Take a volunteer off a role (frees the place for someone else)."""
    role = _role_for_change(rota_role_id, today)
    removed = db.session.execute(
        sa.delete(RotaSignup).where(RotaSignup.rota_role_id == role.id, RotaSignup.user_id == user_id)
    )
    if removed.rowcount != 1:
        raise PickupError(_("Vous n'étiez pas inscrit·e à ce rôle."))
    db.session.execute(
        sa.update(RotaRole).where(RotaRole.id == role.id, RotaRole.filled > 0).values(filled=RotaRole.filled - 1)
    )
    db.session.expire_all()


def set_needed(rota_role_id: int, needed: int) -> RotaRole:
    """The coordinator changes how many people a role needs for one distribution."""
    role = db.session.get(RotaRole, rota_role_id)
    if role is None:
        raise NotInDistribution(_("Ce rôle n'existe pas."))
    if needed < 0 or needed > 50:
        raise PickupError(_("Entre 0 et 50 personnes."))
    role.needed = needed
    return role


@dataclass
class Participation:
    """How often a volunteer helped (past) and is signed up (to come)."""

    user: User
    done: int
    upcoming: int


def participation(today: date | None = None) -> list[Participation]:
    """Each volunteer's count of permanences, most active first."""
    today = today or paris_today()
    past = sa.func.sum(sa.case((Cycle.distribution_date < today, 1), else_=0))
    coming = sa.func.sum(sa.case((Cycle.distribution_date >= today, 1), else_=0))
    rows = db.session.execute(
        sa.select(User, past, coming)
        .join(RotaSignup, RotaSignup.user_id == User.id)
        .join(RotaRole, RotaRole.id == RotaSignup.rota_role_id)
        .join(Cycle, Cycle.id == RotaRole.cycle_id)
        .group_by(User.id)
        .order_by(past.desc(), User.name)
    ).all()
    counted = {user.id for user, _p, _c in rows}
    result = [Participation(user, int(p or 0), int(c or 0)) for user, p, c in rows]
    # Volunteers who never signed up are listed too: the coordinator sees who to ask.
    for user in _volunteers():
        if user.id not in counted:
            result.append(Participation(user, 0, 0))
    return result


def _volunteers() -> list[User]:
    """Active users who volunteer (coordinators included)."""
    return list(db.session.scalars(
        sa.select(User)
        .where(User.active.is_(True), User.id.in_(
            sa.select(UserRole.user_id).where(UserRole.role.in_(("volunteer", "coordinator")))
        ))
        .order_by(User.name)
    ))


def _distribution_words(cycle: Cycle) -> str:
    """"jeudi 26 novembre, 16:30–19:30 (Café)" in French."""
    site = db.session.get(Site, cycle.site_id)
    return "{day}, {start}–{end} ({site})".format(
        day=local_date(cycle.distribution_date),
        start=format_datetime(cycle.distribution_starts_at, "HH:mm"),
        end=format_datetime(cycle.distribution_ends_at, "HH:mm"),
        site=site.name if site else "",
    )


def send_rota_reminders(today: date | None = None) -> int:
    """Queue a reminder to each volunteer signed up for the distribution in two days (once per key)."""
    from app.outbox import queue_message

    today = today or paris_today()
    queued = 0
    cycles = db.session.scalars(
        sa.select(Cycle).where(Cycle.distribution_date == today + timedelta(days=2),
                               Cycle.status.not_in(("cancelled", "archived")))
    ).all()
    for cycle in cycles:
        for role in ensure_rota(cycle.id):
            for signup in role.signups:
                user = signup.user
                if not user.active:
                    continue
                body = "\n\n".join([
                    _("Bonjour %(name)s,", name=user.name),
                    _("Petit rappel : vous êtes inscrit·e pour « %(role)s » à la distribution du %(when)s.",
                      role=ROLE_LABELS[role.role], when=_distribution_words(cycle)),
                    _("Si vous ne pouvez plus venir, désinscrivez-vous sur la page Permanences pour que "
                      "quelqu'un d'autre prenne la place."),
                    _("Merci ! L'équipe du café"),
                ])
                queue_message(
                    f"rota:{cycle.id}:reminder:{role.role}:user:{user.id}", user.email,
                    _("Rappel : votre permanence de jeudi"), body, kind="rota_reminder", cycle_id=cycle.id,
                )
                queued += 1
    return queued


def send_rota_alerts(today: date | None = None) -> int:
    """Three days before, if a role still has nobody, queue an alert to every volunteer (once per key)."""
    from app.outbox import queue_message

    today = today or paris_today()
    queued = 0
    cycles = db.session.scalars(
        sa.select(Cycle).where(Cycle.distribution_date == today + timedelta(days=3),
                               Cycle.status.not_in(("cancelled", "archived")))
    ).all()
    for cycle in cycles:
        roles = ensure_rota(cycle.id)
        if not any(role.needed > 0 and role.filled == 0 for role in roles):
            continue
        missing = [
            ngettext("%(role)s : il manque %(num)s personne", "%(role)s : il manque %(num)s personnes",
                     r.needed - r.filled, role=ROLE_LABELS[r.role])
            for r in roles if r.filled < r.needed
        ]
        for user in _volunteers():
            body = "\n\n".join([
                _("Bonjour %(name)s,", name=user.name),
                _("Pour la distribution du %(when)s, il manque encore des bénévoles :",
                  when=_distribution_words(cycle)),
                "\n".join("- " + line for line in missing),
                _("Si vous pouvez venir, inscrivez-vous sur la page Permanences. Merci !"),
            ])
            queue_message(
                f"rota:{cycle.id}:alert:user:{user.id}", user.email,
                _("On cherche des bénévoles pour jeudi"), body, kind="rota_alert", cycle_id=cycle.id,
            )
            queued += 1
    return queued


def bags_summary(bags: list[Bag]) -> dict[str, int]:
    """Counts of bags per status."""
    counts: dict[str, int] = defaultdict(int)
    for bag in bags:
        counts[bag.status] += 1
    return dict(counts)
