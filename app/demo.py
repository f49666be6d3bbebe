"""Demo data that looks like the real thing: the café, its producers, thirty households, an open cycle.

`flask demo load` is idempotent: every row is looked up by its natural key first, so running it
twice adds nothing. Each domain package may add its own rows in `<package>/demo.py` (`load()`).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from app.db import utcnow
from app.extensions import db
from app.models import Household, User

log = logging.getLogger("panier.demo")

#: Every demo account signs in with this password (documented in the README).
DEMO_PASSWORD = "panier-demo-2024"
DOMAIN = "example.org"
SITE_NAME = "Café du Bourg"
SITE_ADDRESS = "2 place de la Mairie, 26400 Le Bourg"
ZONE = ZoneInfo("Europe/Paris")

COORDINATOR = ("Dominique Lefèvre", "coordination@example.org")
#: (name, e-mail); the first two also belong to a household.
VOLUNTEERS = [
    ("Bernadette Roux", "bernadette.roux@example.org"),
    ("Karim Haddad", "karim.haddad@example.org"),
    ("Solène Marchand", "benevole@example.org"),
    ("Hugo Petit", "hugo.petit@example.org"),
]

#: name, kind, contact, e-mail, phone, description, products
#: product: (name, unit, price_cents, vat_bp, sold_by_weight, case_size, portion_step, stock_cap, basket)
PRODUCERS = [
    ("Primeurs Rossi", "market_trader", "Marco Rossi", "primeurs.rossi@example.org", "06 11 22 33 44",
     "Fruits et légumes de saison, sur le marché du jeudi depuis 1998.", [
         ("Pommes Golden", "kg", 280, 550, False, None, None, None, False),
         ("Poires Conférence", "kg", 340, 550, False, None, None, None, False),
         ("Oranges à jus", "kg", 260, 550, False, None, None, None, False),
         ("Clémentines de Corse", "kg", 420, 550, False, None, None, "60", False),
         ("Bananes bio", "kg", 310, 550, False, None, None, None, False),
         ("Panier fruits de la semaine", "basket", 1200, 550, False, None, None, "20", False),
     ]),
    ("Fromagerie Les Alpages", "market_trader", "Anne Favre", "fromagerie.alpages@example.org", "06 22 33 44 55",
     "Fromages de montagne affinés en cave.", [
         ("Comté 18 mois", "kg", 2590, 550, True, None, None, None, False),
         ("Tomme de Savoie", "kg", 1890, 550, True, None, None, None, False),
         ("Reblochon fermier", "piece", 790, 550, False, None, None, "25", False),
         ("Beurre doux à la motte", "kg", 1650, 550, True, None, None, None, False),
         ("Yaourts nature (x4)", "piece", 320, 550, False, None, None, None, False),
     ]),
    ("Le Fournil du Marché", "market_trader", "Julien Mercier", "fournil@example.org", "06 33 44 55 66",
     "Pain au levain cuit au feu de bois.", [
         ("Pain de campagne 1 kg", "piece", 520, 550, False, None, None, "40", False),
         ("Baguette tradition", "piece", 130, 550, False, None, None, None, False),
         ("Pain aux céréales 500 g", "piece", 380, 550, False, None, None, None, False),
         ("Brioche pur beurre", "piece", 690, 550, False, None, None, "15", False),
     ]),
    ("Ferme des Saules", "farmer", "Élodie et Marc Garnier", "ferme.saules@example.org", "04 75 12 34 56",
     "Maraîchage bio à 6 km du café ; paniers AMAP toute l'année.", [
         ("Panier de légumes AMAP", "basket", 1500, 550, False, None, None, None, True),
         ("Carottes", "kg", 220, 550, False, None, None, None, False),
         ("Pommes de terre", "kg", 180, 550, False, None, None, None, False),
         ("Poireaux", "bunch", 250, 550, False, None, None, None, False),
         ("Salade batavia", "piece", 120, 550, False, None, None, None, False),
         ("Courge butternut", "kg", 290, 550, True, None, None, None, False),
         ("Œufs frais (boîte de 6)", "piece", 330, 550, False, None, None, "50", False),
     ]),
    ("Chèvrerie du Val", "farmer", "Lucie Blanc", "chevrerie.val@example.org", "04 75 65 43 21",
     "Fromages de chèvre au lait cru, chevrettes nourries au foin du Val.", [
         ("Crottin de chèvre frais", "piece", 250, 550, False, None, None, None, False),
         ("Bûche cendrée", "piece", 590, 550, False, None, None, None, False),
         ("Lait de chèvre", "l", 190, 550, False, None, None, None, False),
         ("Faisselle de chèvre", "piece", 290, 550, False, None, None, None, False),
     ]),
    ("Vrac & Co", "bulk_supplier", "Nadia Benali", "vrac.co@example.org", "04 75 98 76 54",
     "Épicerie sèche en vrac : achats groupés par sac ou carton.", [
         ("Riz basmati bio", "kg", 480, 550, False, "5", "0.5", None, False),
         ("Lentilles vertes du Puy", "kg", 560, 550, False, "5", "0.5", None, False),
         ("Farine de blé T65", "kg", 190, 550, False, "10", "1", None, False),
         ("Pâtes penne bio", "kg", 390, 550, False, "5", "0.5", None, False),
         ("Huile d'olive vierge extra", "l", 1290, 550, False, "6", "1", None, False),
         ("Savon de Marseille 300 g", "piece", 350, 2000, False, "12", "1", None, False),
         ("Lessive liquide écologique", "l", 420, 2000, False, "5", "1", None, False),
     ]),
]

#: Thirty households: (household name, [(first name, last name)]).
HOUSEHOLDS = [
    ("Famille Martin", [("Claire", "Martin"), ("Thomas", "Martin")]),
    ("Famille Bernard", [("Isabelle", "Bernard")]),
    ("Foyer Dubois", [("Jeanne", "Dubois")]),
    ("Famille Thomas", [("Nicolas", "Thomas"), ("Aurélie", "Thomas")]),
    ("Famille Robert", [("Michel", "Robert")]),
    ("Famille Richard", [("Sophie", "Richard")]),
    ("Famille Durand", [("Philippe", "Durand"), ("Nathalie", "Durand")]),
    ("Foyer Moreau", [("Léa", "Moreau")]),
    ("Famille Laurent", [("Julien", "Laurent")]),
    ("Famille Simon", [("Camille", "Simon"), ("Antoine", "Simon")]),
    ("Famille Michel", [("Monique", "Michel")]),
    ("Famille Lefebvre", [("Pierre", "Lefebvre")]),
    ("Famille Leroy", [("Élise", "Leroy")]),
    ("Foyer Roux", [("Bernadette", "Roux")]),
    ("Famille David", [("Mathieu", "David"), ("Chloé", "David")]),
    ("Famille Bertrand", [("Gérard", "Bertrand")]),
    ("Famille Morel", [("Sandrine", "Morel")]),
    ("Famille Fournier", [("Yves", "Fournier"), ("Odile", "Fournier")]),
    ("Famille Girard", [("Manon", "Girard")]),
    ("Famille Bonnet", [("Louis", "Bonnet")]),
    ("Famille Dupont", [("Marie", "Dupont")]),
    ("Famille Lambert", [("Sébastien", "Lambert"), ("Emma", "Lambert")]),
    ("Famille Fontaine", [("Paulette", "Fontaine")]),
    ("Famille Rousseau", [("Clément", "Rousseau")]),
    ("Famille Vincent", [("Inès", "Vincent")]),
    ("Foyer Haddad", [("Karim", "Haddad"), ("Samira", "Haddad")]),
    ("Famille Muller", [("François", "Muller")]),
    ("Famille Nguyen", [("Linh", "Nguyen"), ("Minh", "Nguyen")]),
    ("Famille Diallo", [("Aminata", "Diallo")]),
    ("Famille Benali", [("Yasmine", "Benali")]),
]

#: Households of people who have no internet: a volunteer orders for them.
OFFLINE_HOUSEHOLDS = {"Famille Michel", "Famille Fontaine", "Famille Bertrand"}


@dataclass
class DemoLogin:
    """One line of the printed list of demo accounts."""

    role: str
    name: str
    email: str


def _email(first: str, last: str) -> str:
    """first.last@example.org without accents or spaces."""
    import unicodedata

    raw = f"{first}.{last}".lower().replace(" ", "-")
    ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    return f"{ascii_only}@{DOMAIN}"


class _Loader:
    """Looks rows up by natural key before creating them, so a second run adds nothing."""

    def __init__(self) -> None:
        self.password_hash = generate_password_hash(DEMO_PASSWORD)
        self.created = 0

    def user(self, email: str, name: str, roles: set[str], household: Household | None = None,
             producer_id: int | None = None) -> User:
        """An account with the demo password; roles are added, never removed."""
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is None:
            user = User(email=email, name=name, locale="fr", active=True, password_hash=self.password_hash)
            db.session.add(user)
            self.created += 1
        if household is not None and user.household_id is None:
            user.household = household
        if producer_id is not None and user.producer_id is None:
            user.producer_id = producer_id
        if not roles <= user.roles:
            user.set_roles(user.roles | roles)
        return user

    def household(self, name: str, email: str | None, notes: str | None) -> Household:
        """A household by name."""
        household = db.session.scalar(sa.select(Household).where(Household.name == name))
        if household is None:
            household = Household(name=name, email=email, notes=notes, active=True)
            db.session.add(household)
            db.session.flush()
            self.created += 1
        return household


def _site_and_schedule(loader: _Loader):
    """The café, its weekly schedule: opens Friday 08:00, closes Tuesday 23:59, Thursday 16:30-19:30."""
    from orders.models import Schedule
    from pickup.models import Site

    site = db.session.scalar(sa.select(Site).where(Site.name == SITE_NAME))
    if site is None:
        site = Site(name=SITE_NAME, address=SITE_ADDRESS, timezone="Europe/Paris")
        db.session.add(site)
        db.session.flush()
        loader.created += 1
    schedule = db.session.scalar(sa.select(Schedule).where(Schedule.site_id == site.id))
    if schedule is None:
        schedule = Schedule(
            site_id=site.id, name="Distribution du jeudi",
            opens_weekday=4, opens_time=time(8, 0),
            closes_weekday=1, closes_time=time(23, 59),
            distribution_weekday=3, distribution_start=time(16, 30), distribution_end=time(19, 30),
            slot_minutes=30, slot_capacity=8, weeks_ahead=3, allocation_policy="pro_rata", active=True,
        )
        db.session.add(schedule)
        db.session.flush()
        loader.created += 1
    return site, schedule


def _producers(loader: _Loader) -> list:
    """Three market traders, two farmers and a bulk supplier, with their catalogues and a login each."""
    from producers.models import Producer, Product

    producers = []
    for name, kind, contact, email, phone, description, products in PRODUCERS:
        producer = db.session.scalar(sa.select(Producer).where(Producer.name == name))
        if producer is None:
            producer = Producer(name=name, kind=kind, contact_name=contact, email=email, phone=phone,
                                description=description, active=True)
            db.session.add(producer)
            db.session.flush()
            loader.created += 1
        for (pname, unit, price, vat, by_weight, case, step, _cap, basket) in products:
            exists = db.session.scalar(sa.select(Product.id).where(
                Product.producer_id == producer.id, Product.name == pname))
            if exists is None:
                db.session.add(Product(
                    producer_id=producer.id, name=pname, unit=unit, price_cents=price, vat_rate_bp=vat,
                    sold_by_weight=by_weight, case_size=Decimal(case) if case else None,
                    portion_step=Decimal(step) if step else None, is_contract_basket=basket, active=True,
                ))
                loader.created += 1
        loader.user(email, contact, {"producer"}, producer_id=producer.id)
        producers.append(producer)
    db.session.flush()
    return producers


def _people(loader: _Loader) -> None:
    """Thirty households with their members, volunteers and the coordinator."""
    for name, members in HOUSEHOLDS:
        first, last = members[0]
        offline = name in OFFLINE_HOUSEHOLDS
        notes = "Pas d'internet : commande prise au café par un·e bénévole." if offline else None
        household = loader.household(name, None if offline else _email(first, last), notes)
        for first, last in members:
            loader.user(_email(first, last), f"{first} {last}", {"member"}, household=household)
    for name, email in VOLUNTEERS:
        household = None
        if email != "benevole@example.org" and email != "hugo.petit@example.org":
            household = db.session.scalar(sa.select(Household).where(Household.name.like(f"%{name.split()[1]}")))
        loader.user(email, name, {"volunteer"} | ({"member"} if household else set()), household=household)
    loader.user(COORDINATOR[1], COORDINATOR[0], {"coordinator", "volunteer"})
    db.session.flush()


def _open_cycle(schedule, now: datetime):
    """Upcoming cycles of the schedule; the earliest is open now so the demo has something to order."""
    from orders.models import Cycle
    from pickup.models import Slot

    try:
        from orders.services import generate_cycles, open_due_cycles
    except ImportError:
        generate_cycles = open_due_cycles = None
    if generate_cycles is not None:
        generate_cycles(now=now)
        open_due_cycles(now=now)
    else:
        _create_cycle_directly(schedule, now)
    upcoming = db.session.scalars(
        sa.select(Cycle).where(Cycle.schedule_id == schedule.id, Cycle.closes_at > now,
                               Cycle.status.in_(("draft", "open"))).order_by(Cycle.closes_at)
    ).all()
    if not upcoming:
        return None
    cycle = next((c for c in upcoming if c.status == "open"), None)
    if cycle is None:
        # Between Tuesday's deadline and Friday's opening nothing is open: open the next one early.
        cycle = upcoming[0]
        db.session.execute(
            sa.update(Cycle).where(Cycle.id == cycle.id, Cycle.status == "draft")
            .values(status="open", opens_at=min(cycle.opens_at, now - timedelta(hours=1)))
        )
        db.session.refresh(cycle)
    if not db.session.scalar(sa.select(sa.func.count()).select_from(Slot).where(Slot.cycle_id == cycle.id)):
        _add_slots(cycle, schedule)
    return cycle


def _local(day: date, at: time) -> datetime:
    """Paris wall-clock time as aware UTC."""
    return datetime.combine(day, at, tzinfo=ZONE).astimezone(UTC)


def _create_cycle_directly(schedule, now: datetime) -> None:
    """Fallback when orders.services.generate_cycles is absent: next Thursday's cycle, open."""
    from orders.models import Cycle

    today = now.astimezone(ZONE).date()
    day = today + timedelta(days=(3 - today.weekday()) % 7)
    if _local(day - timedelta(days=2), time(23, 59)) <= now:
        day += timedelta(days=7)
    iso = day.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    if db.session.scalar(sa.select(Cycle.id).where(Cycle.schedule_id == schedule.id, Cycle.week == week)):
        return
    cycle = Cycle(site_id=schedule.site_id, schedule_id=schedule.id, week=week,
                  opens_at=min(_local(day - timedelta(days=6), time(8, 0)), now - timedelta(hours=1)),
                  closes_at=_local(day - timedelta(days=2), time(23, 59)), distribution_date=day,
                  distribution_starts_at=_local(day, time(16, 30)), distribution_ends_at=_local(day, time(19, 30)),
                  status="open", allocation_policy="pro_rata")
    db.session.add(cycle)
    db.session.flush()
    _add_slots(cycle, schedule)


def _add_slots(cycle, schedule) -> None:
    """Thirty-minute slots over the distribution."""
    from pickup.models import Slot

    start = cycle.distribution_starts_at
    step = timedelta(minutes=schedule.slot_minutes)
    while start + step <= cycle.distribution_ends_at:
        db.session.add(Slot(cycle_id=cycle.id, starts_at=start, ends_at=start + step,
                            capacity=schedule.slot_capacity, booked=0))
        start += step
    db.session.flush()


def _weeks_without_offers(schedule, opened) -> list:
    """The schedule's later draft weeks that have no offer row at all."""
    from orders.models import Cycle
    from producers.models import Offer

    return list(db.session.scalars(
        sa.select(Cycle).where(Cycle.schedule_id == schedule.id, Cycle.status == "draft",
                               Cycle.distribution_date > opened.distribution_date,
                               ~sa.exists().where(Offer.cycle_id == Cycle.id))
        .order_by(Cycle.distribution_date)
    ))


def _offers(cycle, loader: _Loader) -> None:
    """Every active product (except AMAP baskets, which come through contracts) in the open cycle."""
    from producers.models import Offer, Product

    caps = {p[0]: p[7] for producer in PRODUCERS for p in producer[6]}
    offered = set(db.session.scalars(sa.select(Offer.product_id).where(Offer.cycle_id == cycle.id)))
    products = db.session.scalars(
        sa.select(Product).where(Product.active.is_(True), Product.is_contract_basket.is_(False)).order_by(Product.id)
    ).all()
    for product in products:
        if product.id in offered:
            continue
        cap = caps.get(product.name)
        db.session.add(Offer(cycle_id=cycle.id, product_id=product.id, price_cents=product.price_cents,
                             stock_cap=Decimal(cap) if cap else None, reserved=Decimal(0), active=True))
        loader.created += 1
    db.session.flush()


#: Modules of the other packages that add their own demo rows, in this order.
PACKAGE_LOADERS = ("producers.demo", "orders.demo", "orders.contract_demo", "pickup.demo")


def load(now: datetime | None = None) -> int:
    """Load (or complete) the demo data; returns how many rows this run created here."""
    now = now or utcnow()
    loader = _Loader()
    _, schedule = _site_and_schedule(loader)
    _producers(loader)
    _people(loader)
    cycle = _open_cycle(schedule, now)
    if cycle is not None:
        _offers(cycle, loader)
        # The weeks made ahead were generated before the open one had offers: they get the same
        # catalogue, once (a week that has any offer row is the producers' to change).
        for later in _weeks_without_offers(schedule, cycle):
            _offers(later, loader)
    db.session.commit()
    for name in PACKAGE_LOADERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.load()
        db.session.commit()
    return loader.created


def logins() -> list[DemoLogin]:
    """The accounts worth trying, one per role."""
    return [
        DemoLogin("coordinateur·rice", COORDINATOR[0], COORDINATOR[1]),
        DemoLogin("bénévole", "Solène Marchand", "benevole@example.org"),
        DemoLogin("adhérent·e (Famille Martin)", "Claire Martin", "claire.martin@example.org"),
        DemoLogin("adhérent·e et bénévole", "Karim Haddad", "karim.haddad@example.org"),
        DemoLogin("forain (fruits et légumes)", "Marco Rossi", "primeurs.rossi@example.org"),
        DemoLogin("producteur·rice (maraîchage, AMAP)", "Élodie et Marc Garnier", "ferme.saules@example.org"),
        DemoLogin("fournisseur vrac", "Nadia Benali", "vrac.co@example.org"),
    ]
