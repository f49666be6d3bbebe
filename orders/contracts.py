"""AMAP contracts: season offers, subscriptions, schedules, absences, instalments and contract lines.

Which cycle carries which basket
--------------------------------
A season offer has nominal distribution dates: ``first_date``, then every ``every_weeks`` weeks up to
``last_date``. A cycle is matched to a nominal date by its *week* (the schedule's ISO week when the
cycle has one, else the Monday of its distribution date), not by its exact day, so a distribution moved
from Thursday to Wednesday keeps its baskets. On a site, only the first non-cancelled cycle of a week
carries baskets. A shared basket goes to the holder on even distributions (0, 2, ...) and to the
co-holder on odd ones.

Money
-----
The season is paid up front by instalments (cheques passed on to the producer), so the basket lines put
in each weekly order are already paid: their ``unit_price_cents`` is 0 and ``base_price_cents`` keeps
the contract price per basket, for the producer's purchase order. Charging the contract price again in
the weekly order would make the household pay its basket twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError

from app.db import to_quantity, utcnow
from app.extensions import db
from app.models import Household
from app.money import line_total_cents
from app.timeutil import local_today
from orders.contract_models import (
    Contract,
    ContractAbsence,
    ContractInstalment,
    ContractOffer,
)
from orders.models import Cycle, Order, OrderLine
from producers.models import Offer, Product

#: Cycles whose orders can still receive or lose contract lines.
GENERATE_STATUSES = ("draft", "open")


class ContractError(ValueError):
    """A contract operation refused, with a French message for the person who asked."""


# --- calendar -------------------------------------------------------------------------------------


def week_monday(day: date) -> date:
    """The Monday of a date's week."""
    return day - timedelta(days=day.weekday())


def cycle_monday(cycle: Cycle) -> date:
    """The Monday of the week a cycle belongs to (its schedule week survives a moved distribution)."""
    if cycle.week:
        try:
            year, week = cycle.week.split("-W")
            return date.fromisocalendar(int(year), int(week), 1)
        except ValueError:
            pass
    return week_monday(cycle.distribution_date)


def nominal_dates(offer: ContractOffer) -> list[date]:
    """The season's distribution dates, from first_date every `every_weeks` weeks up to last_date."""
    dates, day, step = [], offer.first_date, timedelta(weeks=offer.every_weeks)
    while day <= offer.last_date:
        dates.append(day)
        day += step
    return dates


def distribution_index(offer: ContractOffer, monday: date) -> int | None:
    """The position of the week starting `monday` in the season, or None if it has no basket."""
    weeks = (monday - week_monday(offer.first_date)).days // 7
    if weeks < 0 or weeks % offer.every_weeks:
        return None
    index = weeks // offer.every_weeks
    return index if index < len(nominal_dates(offer)) else None


def taker_id(contract: Contract, index: int) -> int:
    """The household that takes the basket of distribution `index` (alternate weeks when shared)."""
    if contract.co_holder_id and index % 2 == 1:
        return contract.co_holder_id
    return contract.household_id


def _local_today(now: datetime) -> date:
    """Today's date where the sites are."""
    return local_today(now)


def site_cycles(site_id: int, start: date, end: date, as_if_open: int | None = None) -> dict[date, Cycle]:
    """The cycle carrying baskets for each week of a site between two dates.

    A week's baskets go to its first distribution that is not cancelled, one of the site's regular
    (scheduled) distributions before an extra one added by hand: a one-off market on the Monday must
    not take the AMAP baskets away from Thursday's distribution.
    """
    cycles = db.session.scalars(
        sa.select(Cycle)
        .where(
            Cycle.site_id == site_id,
            Cycle.distribution_date >= start - timedelta(days=14),
            Cycle.distribution_date <= end + timedelta(days=14),
        )
        .order_by(Cycle.distribution_date, Cycle.id)
    ).all()
    def rank(cycle: Cycle) -> tuple[bool, bool]:
        # as_if_open: a cycle just cancelled, ranked as before (did it carry the week's baskets?).
        return cycle.status == "cancelled" and cycle.id != as_if_open, cycle.schedule_id is None

    by_week: dict[date, Cycle] = {}
    for cycle in cycles:  # in date order: on equal rank the earlier distribution stays
        monday = cycle_monday(cycle)
        current = by_week.get(monday)
        if current is None or rank(cycle) < rank(current):
            by_week[monday] = cycle
    return by_week


def covers(contract: Contract, index: int) -> bool:
    """Whether an active contract includes the distribution at `index` (late subscriptions start later)."""
    if contract.status != "active":
        return False
    day = nominal_dates(contract.contract_offer)[index]
    return contract.starts_on is None or day >= contract.starts_on


# --- season totals and schedules -----------------------------------------------------------------


def household_dates(contract: Contract, household_id: int) -> list[date]:
    """The nominal dates on which this household takes the contract's basket."""
    return [
        day
        for index, day in enumerate(nominal_dates(contract.contract_offer))
        if covers(contract, index) and taker_id(contract, index) == household_id
    ]


def season_total_cents(contract: Contract, household_id: int | None = None) -> int:
    """What a household pays for the season: its distributions x price x quantity."""
    payer = household_id or contract.household_id
    count = len(household_dates(contract, payer))
    return line_total_cents(contract.contract_offer.price_cents, contract.quantity * count)


@dataclass
class ScheduleRow:
    """One distribution of a household's contract, as the household sees it."""

    day: date
    cycle: Cycle | None
    absence: ContractAbsence | None
    can_declare: bool
    handed_to_name: str | None = None


@dataclass
class ContractView:
    """A household's contract with its schedule, season total and absences left."""

    contract: Contract
    offer: ContractOffer
    product: Product
    is_co_holder: bool
    partner_name: str | None
    total_cents: int
    rows: list[ScheduleRow]
    absences_used: int
    absences_left: int
    instalments: list[ContractInstalment] = field(default_factory=list)


def contract_view(contract: Contract, household_id: int, now: datetime | None = None) -> ContractView:
    """Schedule, total and absences of one contract for one of its households."""
    now = now or utcnow()
    offer = contract.contract_offer
    dates = nominal_dates(offer)
    cycles = site_cycles(offer.site_id, offer.first_date, offer.last_date)
    absences = {
        a.week: a
        for a in db.session.scalars(sa.select(ContractAbsence).where(ContractAbsence.contract_id == contract.id))
    }
    used = sum(1 for a in absences.values() if a.household_id == household_id)
    names = _household_names({a.handed_to_id for a in absences.values() if a.handed_to_id})
    this_week = week_monday(_local_today(now))
    rows = []
    for index, day in enumerate(dates):
        if not covers(contract, index) or taker_id(contract, index) != household_id:
            continue
        monday = week_monday(day)
        cycle = cycles.get(monday)
        absence = absences.get(monday)
        # Until the week's deadline; a week whose distribution does not exist yet is declared ahead.
        open_week = (cycle.status in GENERATE_STATUSES and cycle.closes_at > now) if cycle is not None \
            else monday > this_week
        can = absence is None and open_week and used < offer.absences_allowed
        rows.append(ScheduleRow(day, cycle, absence, can,
                                names.get(absence.handed_to_id) if absence and absence.handed_to_id else None))
    partner_id = contract.household_id if contract.co_holder_id == household_id else contract.co_holder_id
    partner = db.session.get(Household, partner_id) if partner_id else None
    instalments = db.session.scalars(
        sa.select(ContractInstalment)
        .where(ContractInstalment.contract_id == contract.id, ContractInstalment.household_id == household_id)
        .order_by(ContractInstalment.position)
    ).all()
    return ContractView(
        contract=contract,
        offer=offer,
        product=db.session.get(Product, offer.product_id),
        is_co_holder=contract.co_holder_id == household_id,
        partner_name=partner.name if partner else None,
        total_cents=season_total_cents(contract, household_id),
        rows=rows,
        absences_used=used,
        absences_left=max(offer.absences_allowed - used, 0),
        instalments=list(instalments),
    )


def _household_names(ids: set[int]) -> dict[int, str]:
    """Household names by id."""
    if not ids:
        return {}
    return dict(db.session.execute(sa.select(Household.id, Household.name).where(Household.id.in_(ids))).all())


def household_contracts(household_id: int, now: datetime | None = None) -> list[ContractView]:
    """Every active contract a household holds or shares, with schedules."""
    contracts = db.session.scalars(
        sa.select(Contract)
        .where(
            Contract.status == "active",
            sa.or_(Contract.household_id == household_id, Contract.co_holder_id == household_id),
        )
        .order_by(Contract.id)
    ).all()
    return [contract_view(c, household_id, now) for c in contracts]


@dataclass
class HandedBasket:
    """A basket another household hands to this one for a distribution."""

    day: date
    product_name: str
    from_name: str


def baskets_received(household_id: int, today: date | None = None) -> list[HandedBasket]:
    """Baskets other households hand to this one, in distributions still to come."""
    today = today or _local_today(utcnow())
    rows = db.session.execute(
        sa.select(ContractAbsence.week, ContractOffer.site_id, Product.name, Household.name)
        .join(Contract, Contract.id == ContractAbsence.contract_id)
        .join(ContractOffer, ContractOffer.id == Contract.contract_offer_id)
        .join(Product, Product.id == ContractOffer.product_id)
        .join(Household, Household.id == ContractAbsence.household_id)
        .where(ContractAbsence.handed_to_id == household_id, ContractAbsence.week >= week_monday(today),
               Contract.status == "active")
        .order_by(ContractAbsence.week)
    ).all()
    received = []
    for week, site_id, product, name in rows:
        cycle = site_cycles(site_id, week, week + timedelta(days=6)).get(week)
        if cycle is not None and cycle.status in ("draft", "open", "closed", "finalized") \
                and cycle.distribution_date >= today:
            received.append(HandedBasket(cycle.distribution_date, product, name))
    return received


def open_offers(today: date | None = None) -> list[ContractOffer]:
    """Season offers still open for subscription."""
    today = today or _local_today(utcnow())
    return list(
        db.session.scalars(
            sa.select(ContractOffer)
            .where(ContractOffer.open_for_subscription.is_(True), ContractOffer.last_date >= today)
            .order_by(ContractOffer.first_date, ContractOffer.id)
        )
    )


# --- coordinator: season offers -----------------------------------------------------------------


def create_contract_offer(
    product_id: int,
    site_id: int,
    name: str,
    first_date: date,
    last_date: date,
    every_weeks: int,
    price_cents: int,
    absences_allowed: int = 0,
    shareable: bool = False,
    today: date | None = None,
) -> ContractOffer:
    """Open a season offer for a producer's basket product (checks dates, product, frequency, allowance)."""
    from flask_babel import format_date

    from orders.models import Schedule

    product = db.session.get(Product, product_id)
    if product is None or not product.is_contract_basket:
        raise ContractError(_("Choisissez un panier de saison d'un producteur."))
    if last_date < first_date:
        raise ContractError(_("La dernière distribution doit être après la première."))
    if last_date < (today or _local_today(utcnow())):
        raise ContractError(_("Cette saison est déjà finie : choisissez des dates à venir."))
    if every_weeks not in (1, 2):
        raise ContractError(_("La fréquence est chaque semaine ou une semaine sur deux."))
    if price_cents < 0 or absences_allowed < 0:
        raise ContractError(_("Le prix et le nombre d'absences ne peuvent pas être négatifs."))
    # The season's dates are the site's distribution days: a Monday season at a Thursday café splits the
    # producer's weekly counts and tells households the wrong day.
    weekdays = set(db.session.scalars(sa.select(Schedule.distribution_weekday).where(
        Schedule.site_id == site_id, Schedule.active.is_(True))))
    if weekdays and first_date.weekday() not in weekdays:
        days = ", ".join(format_date(first_date + timedelta(days=(weekday - first_date.weekday()) % 7), "EEEE")
                         for weekday in sorted(weekdays))
        raise ContractError(_("La première distribution doit tomber un jour de distribution du lieu (%(days)s).",
                              days=days))
    distributions = ((last_date - first_date).days // 7) // every_weeks + 1
    if absences_allowed > distributions:
        raise ContractError(ngettext("Au plus %(num)d absence : la saison compte %(num)d distribution.",
                                     "Au plus %(num)d absences : la saison compte %(num)d distributions.",
                                     distributions))
    offer = ContractOffer(
        producer_id=product.producer_id,
        product_id=product.id,
        site_id=site_id,
        name=name.strip() or product.name,
        first_date=first_date,
        last_date=last_date,
        every_weeks=every_weeks,
        price_cents=price_cents,
        absences_allowed=absences_allowed,
        shareable=shareable,
    )
    db.session.add(offer)
    db.session.flush()
    return offer


# --- households ------------------------------------------------------------------------------------


def household_choices(households: list[Household] | None = None) -> list[tuple[int, str]]:
    """(id, label) of these households (default: every active one), by name, for the volunteers' selects.

    Households may share a name (two « Famille Martin »): those are told apart by a member's name,
    else by their number, so the volunteer picks the right one."""
    from app.models import User

    if households is None:
        rows = db.session.execute(
            sa.select(Household.id, Household.name).where(Household.active.is_(True))
            .order_by(Household.name, Household.id)
        ).all()
    else:
        rows = sorted(((h.id, h.name) for h in households), key=lambda row: (row[1], row[0]))
    seen: dict[str, int] = {}
    for _id, name in rows:
        seen[name.casefold()] = seen.get(name.casefold(), 0) + 1
    twins = [hid for hid, name in rows if seen[name.casefold()] > 1]
    members: dict[int, str] = {}
    if twins:
        for household_id, member in db.session.execute(
                sa.select(User.household_id, User.name).where(User.household_id.in_(twins), User.active.is_(True))
                .order_by(User.id)):
            members.setdefault(household_id, member)
    return [(hid, name if hid not in twins else
             _("%(name)s (%(member)s)", name=name, member=members[hid]) if hid in members else
             _("%(name)s (foyer n° %(id)s)", name=name, id=hid)) for hid, name in rows]


# --- subscriptions ----------------------------------------------------------------------------------


def _first_open_date(offer: ContractOffer, now: datetime) -> date | None:
    """The first distribution still ahead whose order deadline has not passed."""
    today = _local_today(now)
    cycles = site_cycles(offer.site_id, offer.first_date, offer.last_date)
    for day in nominal_dates(offer):
        if day < today:
            continue
        cycle = cycles.get(week_monday(day))
        if cycle is not None and (cycle.closes_at <= now or cycle.status not in GENERATE_STATUSES + ("cancelled",)):
            continue
        return day
    return None


def subscribe(
    contract_offer_id: int,
    household_id: int,
    *,
    quantity: int | Decimal = 1,
    co_holder_id: int | None = None,
    subscribed_by_id: int | None = None,
    now: datetime | None = None,
) -> Contract:
    """Subscribe a household to a season offer and put its baskets in the open cycles' orders."""
    now = now or utcnow()
    offer = db.session.get(ContractOffer, contract_offer_id)
    if offer is None or not offer.open_for_subscription:
        raise ContractError(_("Ce contrat n'est pas ouvert aux inscriptions."))
    household = db.session.get(Household, household_id)
    if household is None or not household.active:
        raise ContractError(_("Foyer inconnu."))
    quantity = to_quantity(quantity)
    if quantity <= 0 or quantity != quantity.to_integral_value() or quantity > 10:
        raise ContractError(_("Choisissez entre 1 et 10 paniers."))
    if co_holder_id is not None:
        if not offer.shareable:
            raise ContractError(_("Ce panier ne peut pas être partagé."))
        if co_holder_id == household_id:
            raise ContractError(_("Le foyer qui partage le panier doit être un autre foyer."))
    involved = [household_id] + ([co_holder_id] if co_holder_id else [])
    taken = db.session.scalar(
        sa.select(sa.func.count()).select_from(Contract).where(
            Contract.contract_offer_id == offer.id,
            Contract.status == "active",
            sa.or_(Contract.household_id.in_(involved), Contract.co_holder_id.in_(involved)),
        )
    )
    if taken:
        raise ContractError(_("Ce foyer est déjà inscrit à ce contrat."))
    starts_on = _first_open_date(offer, now)
    if starts_on is None:
        raise ContractError(_("La saison de ce contrat est terminée : plus aucune distribution à venir."))
    contract = db.session.scalar(
        sa.select(Contract).where(Contract.contract_offer_id == offer.id, Contract.household_id == household_id)
    )
    if contract is None:
        contract = Contract(contract_offer_id=offer.id, household_id=household_id)
        db.session.add(contract)
    contract.contract_offer = offer
    contract.status = "active"
    contract.quantity = quantity
    contract.co_holder_id = co_holder_id
    contract.subscribed_by_id = subscribed_by_id
    contract.starts_on = starts_on
    contract.created_at = now
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        # Another click or volunteer subscribed the same household a moment ago.
        raise ContractError(_("Ce foyer est déjà inscrit à ce contrat.")) from None
    _regenerate_open_cycles(offer, now)
    return contract


def set_subscriptions_open(contract_offer_id: int, is_open: bool) -> bool:
    """Open or close a season offer to new subscriptions; False if it already was so."""
    return bool(
        db.session.execute(
            sa.update(ContractOffer)
            .where(ContractOffer.id == contract_offer_id, ContractOffer.open_for_subscription.is_not(is_open))
            .values(open_for_subscription=is_open)
            .execution_options(synchronize_session="fetch")
        ).rowcount
    )


def cancel_contract(contract_id: int) -> bool:
    """End a contract (coordinator): its baskets leave the cycles still open."""
    contract = db.session.get(Contract, contract_id)
    if contract is None:
        return False
    changed = db.session.execute(
        sa.update(Contract).where(Contract.id == contract_id, Contract.status == "active").values(status="cancelled")
    ).rowcount
    db.session.refresh(contract)
    if changed:
        now = utcnow()
        offer = contract.contract_offer
        cycles = site_cycles(offer.site_id, offer.first_date, offer.last_date)
        for absence in db.session.scalars(sa.select(ContractAbsence).where(ContractAbsence.contract_id == contract.id)):
            cycle = cycles.get(absence.week)
            # Weeks to come have no basket any more: their absences go (a new subscription starts afresh).
            if cycle is None or (cycle.status in GENERATE_STATUSES and cycle.closes_at > now):
                db.session.delete(absence)
        db.session.flush()
        _regenerate_open_cycles(offer, now)
    return bool(changed)


def _regenerate_open_cycles(offer: ContractOffer, now: datetime) -> None:
    """Bring the open cycles of an offer's season in line with its contracts and absences."""
    for monday, cycle in site_cycles(offer.site_id, offer.first_date, offer.last_date).items():
        if (cycle.status in GENERATE_STATUSES and cycle.closes_at > now
                and distribution_index(offer, monday) is not None):
            generate_contract_lines(cycle.id)


# --- absences ----------------------------------------------------------------------------------------


def _locked_contract(contract_id: int) -> Contract | None:
    """The contract, row-locked: two absences declared at once count each other against the allowance."""
    return db.session.scalar(
        sa.select(Contract).where(Contract.id == contract_id).with_for_update()
        .execution_options(populate_existing=True)
    )


def declare_absence(
    contract_id: int,
    cycle_id: int,
    household_id: int,
    kind: str,
    *,
    handed_to_id: int | None = None,
    declared_by_id: int | None = None,
    now: datetime | None = None,
) -> ContractAbsence:
    """Record that a household misses a distribution: skip the basket or hand it to another household."""
    now = now or utcnow()
    contract = _locked_contract(contract_id)
    cycle = db.session.get(Cycle, cycle_id)
    if contract is None or cycle is None or contract.status != "active":
        raise ContractError(_("Contrat ou distribution inconnus."))
    if household_id not in (contract.household_id, contract.co_holder_id):
        raise ContractError(_("Ce contrat n'est pas celui de votre foyer."))
    offer = contract.contract_offer
    index = distribution_index(offer, cycle_monday(cycle))
    chosen = site_cycles(offer.site_id, cycle.distribution_date, cycle.distribution_date).get(cycle_monday(cycle))
    if (
        index is None
        or cycle.site_id != offer.site_id
        or chosen is None
        or chosen.id != cycle.id
        or not covers(contract, index)
        or taker_id(contract, index) != household_id
    ):
        raise ContractError(_("Votre foyer n'a pas de panier à cette distribution."))
    if cycle.status not in GENERATE_STATUSES or cycle.closes_at <= now:
        raise ContractError(
            _("La date limite de cette distribution est passée : l'absence ne peut plus être déclarée."))
    if kind not in ("skip", "handover"):
        raise ContractError(_("Choisissez : ne pas prendre le panier, ou le donner à un autre foyer."))
    if kind == "handover":
        other = db.session.get(Household, handed_to_id) if handed_to_id else None
        if other is None or not other.active:
            raise ContractError(_("Foyer inconnu : indiquez le foyer qui récupère le panier."))
        if other.id == household_id:
            raise ContractError(_("Le panier doit être donné à un autre foyer que celui qui est absent."))
        # Away that week, whether it skips its own basket or hands it on itself.
        away = db.session.scalar(
            sa.select(ContractAbsence.id).join(Contract, Contract.id == ContractAbsence.contract_id)
            .where(ContractAbsence.household_id == other.id, ContractAbsence.week == cycle_monday(cycle),
                   Contract.status == "active"))
        if away is not None:
            raise ContractError(_("%(name)s a déclaré être absent cette semaine-là : choisissez un foyer qui sera là.",
                                  name=other.name))
    else:
        handed_to_id = None
    absence = _record_absence(contract, cycle_monday(cycle), household_id, kind, handed_to_id, declared_by_id, now)
    generate_contract_lines(cycle.id)
    return absence


def _record_absence(contract: Contract, week: date, household_id: int, kind: str, handed_to_id: int | None,
                    declared_by_id: int | None, now: datetime) -> ContractAbsence:
    """Write the absence once checked: one per contract and week, within the offer's allowance."""
    offer = contract.contract_offer
    existing = db.session.scalar(
        sa.select(ContractAbsence.id).where(ContractAbsence.contract_id == contract.id, ContractAbsence.week == week)
    )
    if existing is not None:
        raise ContractError(_("Une absence est déjà déclarée pour cette distribution."))
    receiving = db.session.scalar(
        sa.select(Household.name).join(ContractAbsence, ContractAbsence.household_id == Household.id)
        .join(Contract, Contract.id == ContractAbsence.contract_id)
        .where(ContractAbsence.handed_to_id == household_id, ContractAbsence.week == week,
               Contract.status == "active").limit(1)
    )
    if receiving is not None:
        raise ContractError(_("Ce foyer récupère cette semaine-là le panier de %(name)s : voyez d'abord avec la "
                              "coordination qui le prendra à sa place.", name=receiving))
    used = db.session.scalar(
        sa.select(sa.func.count()).select_from(ContractAbsence).where(
            ContractAbsence.contract_id == contract.id, ContractAbsence.household_id == household_id
        )
    )
    if used >= offer.absences_allowed:
        raise ContractError(
            _("Vous avez déjà utilisé vos %(n)d absences autorisées pour ce contrat.", n=offer.absences_allowed)
        )
    absence = ContractAbsence(contract_id=contract.id, week=week, household_id=household_id, kind=kind,
                              handed_to_id=handed_to_id, declared_by_id=declared_by_id, created_at=now)
    db.session.add(absence)
    db.session.flush()
    return absence


def declare_absence_on(
    contract_id: int,
    day: date,
    household_id: int,
    kind: str,
    *,
    handed_to_id: int | None = None,
    declared_by_id: int | None = None,
    now: datetime | None = None,
) -> ContractAbsence:
    """An absence for one of the season's dates: through its week's distribution when it exists (declare_absence),
    else declared ahead for that week. Ahead, the basket can only be skipped: handing it to another household
    puts it in that household's order, which exists with the week's distribution."""
    now = now or utcnow()
    contract = _locked_contract(contract_id)
    if contract is None or contract.status != "active":
        raise ContractError(_("Contrat ou distribution inconnus."))
    offer = contract.contract_offer
    monday = week_monday(day)
    cycle = site_cycles(offer.site_id, monday, monday + timedelta(days=6)).get(monday)
    if cycle is not None:
        return declare_absence(contract.id, cycle.id, household_id, kind, handed_to_id=handed_to_id,
                               declared_by_id=declared_by_id, now=now)
    if household_id not in (contract.household_id, contract.co_holder_id):
        raise ContractError(_("Ce contrat n'est pas celui de votre foyer."))
    index = distribution_index(offer, monday)
    if index is None or not covers(contract, index) or taker_id(contract, index) != household_id:
        raise ContractError(_("Votre foyer n'a pas de panier à cette distribution."))
    if monday <= week_monday(_local_today(now)):
        raise ContractError(
            _("La date limite de cette distribution est passée : l'absence ne peut plus être déclarée."))
    if kind != "skip":
        raise ContractError(_("Le panier pourra être donné à un autre foyer quand la commande de cette semaine "
                              "sera créée (quelques semaines avant). D'ici là, on peut seulement déclarer "
                              "l'absence."))
    return _record_absence(contract, monday, household_id, "skip", None, declared_by_id, now)


def absence_cycle_ids(household_id: int) -> set[int]:
    """The distributions at which the household declared it will not take its basket (skip absences)."""
    rows = db.session.execute(
        sa.select(ContractAbsence.week, ContractOffer.site_id)
        .join(Contract, Contract.id == ContractAbsence.contract_id)
        .join(ContractOffer, ContractOffer.id == Contract.contract_offer_id)
        .where(ContractAbsence.household_id == household_id, ContractAbsence.kind == "skip")
    ).all()
    weeks_by_site: dict[int, set[date]] = {}
    for week, site_id in rows:
        weeks_by_site.setdefault(site_id, set()).add(week)
    ids = set()
    for site_id, weeks in weeks_by_site.items():  # one query per site, not per absence
        cycles = site_cycles(site_id, min(weeks), max(weeks) + timedelta(days=6))
        ids.update(cycles[week].id for week in weeks if week in cycles)
    return ids


def cancel_absence(absence_id: int, household_id: int, now: datetime | None = None) -> None:
    """Take back an absence before the deadline (any time when declared ahead): the basket returns."""
    now = now or utcnow()
    absence = db.session.get(ContractAbsence, absence_id)
    if absence is None or absence.household_id != household_id:
        raise ContractError(_("Absence inconnue."))
    offer = db.session.get(Contract, absence.contract_id).contract_offer
    cycle = site_cycles(offer.site_id, absence.week, absence.week + timedelta(days=6)).get(absence.week)
    if cycle is not None and (cycle.status not in GENERATE_STATUSES or cycle.closes_at <= now):
        raise ContractError(_("La date limite de cette distribution est passée."))
    db.session.delete(absence)
    db.session.flush()
    if cycle is not None:
        generate_contract_lines(cycle.id)


# --- contract lines in each cycle's orders ------------------------------------------------------------


@dataclass(frozen=True)
class PlannedBasket:
    """One contract's basket in one cycle: who collects it, or that it is skipped."""

    contract_id: int
    product_id: int
    household_id: int
    quantity: Decimal
    price_cents: int
    #: "own", "handover" (collected by household_id for the absent one) or "skip" (not brought).
    kind: str


def planned_baskets(cycle: Cycle) -> list[PlannedBasket]:
    """Every contract basket of a cycle, absences applied (skipped ones included with kind "skip")."""
    if cycle.status == "cancelled":
        return []
    monday = cycle_monday(cycle)
    chosen = site_cycles(cycle.site_id, cycle.distribution_date, cycle.distribution_date).get(monday)
    if chosen is None or chosen.id != cycle.id:
        return []
    rows = db.session.execute(
        sa.select(Contract, ContractOffer)
        .join(ContractOffer, ContractOffer.id == Contract.contract_offer_id)
        .where(
            Contract.status == "active",
            ContractOffer.site_id == cycle.site_id,
            ContractOffer.first_date <= cycle.distribution_date + timedelta(days=7),
            ContractOffer.last_date >= cycle.distribution_date - timedelta(days=7),
        )
        .order_by(Contract.id)
    ).all()
    absences = {
        a.contract_id: a
        for a in db.session.scalars(sa.select(ContractAbsence).where(
            ContractAbsence.week == monday, ContractAbsence.contract_id.in_([row[0].id for row in rows])))
    } if rows else {}
    planned = []
    for contract, offer in rows:
        index = distribution_index(offer, monday)
        if index is None or not covers(contract, index):
            continue
        holder = taker_id(contract, index)
        absence = absences.get(contract.id)
        kind, collector = "own", holder
        if absence is not None and absence.household_id == holder:
            kind = absence.kind
            collector = absence.handed_to_id if absence.kind == "handover" else holder
        planned.append(
            PlannedBasket(contract.id, offer.product_id, collector, contract.quantity, offer.price_cents, kind))
    return planned


def _order_for(cycle_id: int, household_id: int, now: datetime) -> Order:
    """The household's order of the cycle, created confirmed when it has none yet."""
    order = db.session.scalar(sa.select(Order).where(Order.cycle_id == cycle_id, Order.household_id == household_id))
    if order is None:
        order = Order(cycle_id=cycle_id, household_id=household_id, status="confirmed", confirmed_at=now)
        db.session.add(order)
        db.session.flush()
    return order


def _offer_for(cycle_id: int, product_id: int, price_cents: int) -> Offer:
    """The cycle's offer of the basket product, created without a stock cap at the contract price."""
    offer = db.session.scalar(sa.select(Offer).where(Offer.cycle_id == cycle_id, Offer.product_id == product_id))
    if offer is None:
        offer = Offer(cycle_id=cycle_id, product_id=product_id, price_cents=price_cents, stock_cap=None,
                      reserved=Decimal(0))
        db.session.add(offer)
        db.session.flush()
    return offer


def _reserve(offer_id: int, quantity: Decimal) -> None:
    """Count contract baskets in the offer's reserved quantity; contracts come before the stock cap."""
    moved = db.session.execute(
        sa.update(Offer)
        .where(Offer.id == offer_id,
               sa.or_(Offer.stock_cap.is_(None), Offer.reserved + quantity <= Offer.stock_cap))
        .values(reserved=Offer.reserved + quantity)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        # Baskets were sold for the whole season before this week's cap was set: the cap grows to
        # hold them, so it only limits what is sold outside contracts.
        db.session.execute(
            sa.update(Offer)
            .where(Offer.id == offer_id)
            .values(reserved=Offer.reserved + quantity, stock_cap=Offer.reserved + quantity)
            .execution_options(synchronize_session=False)
        )


def _release(offer_id: int, quantity: Decimal) -> None:
    """Give back a removed contract line's quantity (never below zero)."""
    db.session.execute(
        sa.update(Offer)
        .where(Offer.id == offer_id)
        .values(reserved=sa.case((Offer.reserved >= quantity, Offer.reserved - quantity), else_=Decimal(0)))
        .execution_options(synchronize_session=False)
    )


def generate_contract_lines(cycle_id: int, now: datetime | None = None) -> int:
    """Put each contract basket in the right household's order of a cycle; returns lines added.

    Idempotent: lines already right are kept, lines no longer wanted (absence, cancelled contract)
    are removed, missing ones are added. Cancelled, closed and later cycles are left alone.
    """
    now = now or utcnow()
    # The cycle row lock makes two workers generating the same cycle take turns (SQLite: BEGIN IMMEDIATE).
    cycle = db.session.scalar(
        sa.select(Cycle).where(Cycle.id == cycle_id).with_for_update().execution_options(populate_existing=True)
    )
    if cycle is None:
        raise LookupError(f"no cycle {cycle_id}")
    if cycle.status not in GENERATE_STATUSES:
        return 0
    wanted = {(p.contract_id, p.household_id): p for p in planned_baskets(cycle) if p.kind != "skip"}
    existing = db.session.execute(
        sa.select(OrderLine, Order.household_id, Offer.product_id)
        .join(Order, Order.id == OrderLine.order_id)
        .join(Offer, Offer.id == OrderLine.offer_id)
        .where(Order.cycle_id == cycle.id, OrderLine.contract_id.is_not(None))
        .order_by(OrderLine.id)
    ).all()
    kept: set[tuple[int, int]] = set()
    for line, household_id, product_id in existing:
        key = (line.contract_id, household_id)
        plan = wanted.get(key)
        if plan is not None and key not in kept and plan.product_id == product_id and line.quantity == plan.quantity:
            kept.add(key)
            continue
        _release(line.offer_id, line.quantity)
        db.session.delete(line)
    db.session.flush()
    added = 0
    for key, plan in wanted.items():
        if key in kept:
            continue
        order = _order_for(cycle.id, plan.household_id, now)
        offer = _offer_for(cycle.id, plan.product_id, plan.price_cents)
        _reserve(offer.id, plan.quantity)
        db.session.add(
            OrderLine(
                order_id=order.id,
                offer_id=offer.id,
                contract_id=plan.contract_id,
                quantity=plan.quantity,
                tolerance=Decimal(0),
                unit_price_cents=0,
                base_price_cents=plan.price_cents,
                ordered_at=now,
            )
        )
        added += 1
    db.session.flush()
    # A household that emptied its weekly order still gets its basket: only an absence skips it.
    back = db.session.execute(
        sa.select(Order.id, Order.slot_id).where(
            Order.cycle_id == cycle.id,
            Order.status == "cancelled",
            Order.id.in_(sa.select(OrderLine.order_id).where(OrderLine.contract_id.is_not(None))),
        )
    ).all()
    if back:
        # An order an absence cancelled kept its slot and its place there (below): it comes back as it was.
        db.session.execute(
            sa.update(Order).where(Order.id.in_([order_id for order_id, _slot in back]), Order.status == "cancelled")
            .values(status="confirmed").execution_options(synchronize_session="fetch")
        )
    _cancel_emptied_orders(cycle.id)
    return added


def _cancel_emptied_orders(cycle_id: int) -> None:
    """Cancel the cycle's confirmed orders left without any line, as an emptied cart is (orders.services.save_cart).

    An absence that took a household's only line, its AMAP basket, would otherwise leave an empty
    bag on Thursday's lists. The order keeps its slot and its place there: cancelling the absence before
    the deadline brings the order back as it was (above), and saving the cart again finds its place held."""
    db.session.execute(
        sa.update(Order)
        .where(Order.cycle_id == cycle_id, Order.status == "confirmed",
               ~sa.exists().where(OrderLine.order_id == Order.id))
        .values(status="cancelled", total_cents=0)
        .execution_options(synchronize_session="fetch")
    )


def generate_for_coming_cycles(cycle_ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Contract lines for the given cycles, or every draft or open cycle still before its deadline."""
    now = now or utcnow()
    if not db.session.scalar(sa.select(sa.func.count()).select_from(Contract).where(Contract.status == "active")):
        return 0
    query = sa.select(Cycle.id).where(Cycle.status.in_(GENERATE_STATUSES), Cycle.closes_at > now)
    if cycle_ids is not None:
        query = query.where(Cycle.id.in_(cycle_ids))
    return sum(generate_contract_lines(cycle_id, now) for cycle_id in db.session.scalars(query.order_by(Cycle.id)))


# --- instalments -----------------------------------------------------------------------------------------


@dataclass
class InstalmentInput:
    """One planned payment typed by a volunteer."""

    amount_cents: int
    method: str = "cheque"
    cheque_number: str | None = None
    bank: str | None = None
    cashing_month: date | None = None


def record_instalments(
    contract_id: int, household_id: int, rows: list[InstalmentInput], *, recorded_by_id: int | None = None
) -> list[ContractInstalment]:
    """Replace a household's payment plan for a season; the amounts must add up to its season total."""
    contract = db.session.get(Contract, contract_id)
    if contract is None or household_id not in (contract.household_id, contract.co_holder_id):
        raise ContractError(_("Contrat inconnu pour ce foyer."))
    rows = [r for r in rows if r.amount_cents]
    if not rows:
        raise ContractError(_("Indiquez au moins un versement."))
    if any(r.amount_cents < 0 for r in rows):
        raise ContractError(_("Un versement ne peut pas être négatif."))
    if any(r.method not in ("cheque", "cash", "transfer") for r in rows):
        raise ContractError(_("Moyen de paiement inconnu."))
    total = season_total_cents(contract, household_id)
    paid = sum(r.amount_cents for r in rows)
    if paid != total:
        from app.templating import money

        raise ContractError(
            _("Les versements font %(paid)s mais la saison coûte %(total)s.", paid=money(paid), total=money(total))
        )
    existing = db.session.scalars(
        sa.select(ContractInstalment).where(
            ContractInstalment.contract_id == contract.id, ContractInstalment.household_id == household_id
        )
    ).all()
    if any(i.received_at is not None for i in existing):
        raise ContractError(_("Des versements sont déjà reçus : le plan ne peut plus être changé."))
    for instalment in existing:
        db.session.delete(instalment)
    db.session.flush()
    created = []
    for position, row in enumerate(rows, start=1):
        instalment = ContractInstalment(
            contract_id=contract.id,
            household_id=household_id,
            position=position,
            method=row.method,
            amount_cents=row.amount_cents,
            cheque_number=(row.cheque_number or "").strip() or None,
            bank=(row.bank or "").strip() or None,
            cashing_month=row.cashing_month.replace(day=1) if row.cashing_month else None,
            recorded_by_id=recorded_by_id,
        )
        db.session.add(instalment)
        created.append(instalment)
    db.session.flush()
    return created


def mark_instalment_received(instalment_id: int, user_id: int, now: datetime | None = None) -> bool:
    """Mark a cheque or payment received (once); False if it already was."""
    return bool(
        db.session.execute(
            sa.update(ContractInstalment)
            .where(ContractInstalment.id == instalment_id, ContractInstalment.received_at.is_(None))
            .values(received_at=now or utcnow(), received_by_id=user_id)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def mark_instalment_passed_on(instalment_id: int, user_id: int, now: datetime | None = None) -> bool:
    """Mark a received payment handed to the producer (once); False if not received or already passed on."""
    return bool(
        db.session.execute(
            sa.update(ContractInstalment)
            .where(
                ContractInstalment.id == instalment_id,
                ContractInstalment.received_at.is_not(None),
                ContractInstalment.passed_on_at.is_(None),
            )
            .values(passed_on_at=now or utcnow(), passed_on_by_id=user_id)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


# --- producer's view ----------------------------------------------------------------------------------------


@dataclass
class DistributionCount:
    """How many baskets of each kind a producer brings to one distribution."""

    day: date
    cycle: Cycle | None
    baskets: dict[str, Decimal]
    skipped: Decimal


@dataclass
class Subscriber:
    """A household subscribed to a season offer (contracts are nominative: the producer sees names)."""

    contract_id: int
    household_name: str
    co_holder_name: str | None
    quantity: Decimal
    distributions: int
    total_cents: int


def producer_distributions(producer_id: int, today: date | None = None) -> list[DistributionCount]:
    """For each distribution to come, the baskets of each size a producer brings (absences applied)."""
    today = today or _local_today(utcnow())
    offers = db.session.scalars(
        sa.select(ContractOffer).where(ContractOffer.producer_id == producer_id, ContractOffer.last_date >= today)
    ).all()
    by_day: dict[date, DistributionCount] = {}
    for offer in offers:
        product = db.session.get(Product, offer.product_id)
        cycles = site_cycles(offer.site_id, offer.first_date, offer.last_date)
        contracts = db.session.scalars(
            sa.select(Contract).where(Contract.contract_offer_id == offer.id, Contract.status == "active")
        ).all()
        # Absences declared ahead count before the week's distribution exists: the producer plans with them.
        # All of the offer's at once, by week.
        absences_by_week: dict[date, dict[int, ContractAbsence]] = {}
        for a in db.session.scalars(sa.select(ContractAbsence).where(
                ContractAbsence.contract_id.in_([c.id for c in contracts]))) if contracts else ():
            absences_by_week.setdefault(a.week, {})[a.contract_id] = a
        for index, day in enumerate(nominal_dates(offer)):
            cycle = cycles.get(week_monday(day))
            shown_day = cycle.distribution_date if cycle else day
            if shown_day < today or (cycle is not None and cycle.status == "cancelled"):
                continue
            absences = absences_by_week.get(week_monday(day), {})
            row = by_day.setdefault(shown_day, DistributionCount(shown_day, cycle, {}, Decimal(0)))
            row.baskets.setdefault(product.name, Decimal(0))
            for contract in contracts:
                if not covers(contract, index):
                    continue
                absence = absences.get(contract.id)
                if absence is not None and absence.kind == "skip" and absence.household_id == taker_id(contract, index):
                    row.skipped += contract.quantity
                else:
                    row.baskets[product.name] += contract.quantity
    return [by_day[d] for d in sorted(by_day)]


def season_subscribers(contract_offer_id: int) -> list[Subscriber]:
    """The households subscribed to a season offer, by name, with their quantity and totals."""
    contracts = db.session.scalars(
        sa.select(Contract).where(Contract.contract_offer_id == contract_offer_id, Contract.status == "active")
    ).all()
    names = _household_names(
        {c.household_id for c in contracts} | {c.co_holder_id for c in contracts if c.co_holder_id})
    rows = []
    for contract in contracts:
        count = len(household_dates(contract, contract.household_id))
        total = season_total_cents(contract, contract.household_id)
        if contract.co_holder_id:
            count += len(household_dates(contract, contract.co_holder_id))
            total += season_total_cents(contract, contract.co_holder_id)
        rows.append(Subscriber(contract.id, names.get(contract.household_id, "?"),
                               names.get(contract.co_holder_id) if contract.co_holder_id else None,
                               contract.quantity, count, total))
    return sorted(rows, key=lambda r: r.household_name.lower())
