"""Once a week is closed and allocated, the demand page shows what the purchase order says to deliver;
AMAP baskets without a slot have their column; the week chooser leads to the week to deliver."""
from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.models import Document
from app.templating import local_date, local_time
from orders import close, documents
from orders.contract_models import Contract, ContractOffer
from orders.models import Cycle
from pickup.models import Site
from tests.app.test_phone_tables import row_titled, stacked_rows
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login

D = Decimal


def order(cycle_id: int, slot_id: int | None, lines: dict, name: str | None = None, contract_id: int | None = None):
    """A confirmed order of a new household: {offer_id: (quantity, tolerance)}."""
    household = HouseholdFactory(**({"name": name} if name else {}))
    placed = OrderFactory(cycle_id=cycle_id, household_id=household.id, slot_id=slot_id)
    for offer_id, (quantity, tolerance) in lines.items():
        OrderLineFactory(order=placed, offer_id=offer_id, quantity=D(quantity), tolerance=D(tolerance),
                         contract_id=contract_id)
    return household


def season_contract(cycle: Cycle, basket, household_id: int) -> int:
    """An AMAP contract of the household for the farm's basket; its id."""
    season = ContractOffer(producer_id=basket.producer_id, product_id=basket.id, site_id=cycle.site_id,
                           name="Panier d'hiver", first_date=cycle.distribution_date,
                           last_date=cycle.distribution_date + timedelta(weeks=10), price_cents=1500)
    db.session.add(season)
    db.session.flush()
    contract = Contract(contract_offer_id=season.id, household_id=household_id, quantity=D(1))
    db.session.add(contract)
    db.session.flush()
    return contract.id


@pytest.fixture()
def week(app):
    """A week past its deadline, distribution to come: oil fills one case of 6 l out of 9 l (+1) ordered,
    flour and soap fill none; the farm's AMAP baskets go to households with and without a slot."""
    now = utcnow()
    cycle = CycleFactory(opens_at=now - timedelta(days=3), closes_at=now - timedelta(minutes=1))
    early = SlotFactory(cycle_id=cycle.id, starts_at=cycle.distribution_starts_at, capacity=50)
    late = SlotFactory(cycle_id=cycle.id, starts_at=cycle.distribution_starts_at + timedelta(minutes=30),
                       capacity=50)
    supplier = ProducerFactory(name="Vrac & Co", kind="bulk_supplier")
    oil, flour, soap = (
        OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=supplier, name=name, unit=unit,
                                                               case_size=D(size), portion_step=D(step)))
        for name, unit, size, step in (("Huile d'olive", "l", 6, "0.5"), ("Farine", "kg", 25, "0.5"),
                                       ("Savon", "piece", 10, 1)))
    farm = ProducerFactory(name="Ferme des Saules")
    basket = ProductFactory(producer=farm, name="Panier de légumes AMAP", unit="basket", is_contract_basket=True)
    baskets = OfferFactory(cycle_id=cycle.id, product=basket, price_cents=1500)
    db.session.flush()
    order(cycle.id, early.id, {oil.id: ("2", "0"), flour.id: ("3", "0")}, name="Famille Arnaud")
    order(cycle.id, late.id, {oil.id: ("4", "0"), soap.id: ("4", "0")}, name="Famille Bernard")
    order(cycle.id, late.id, {oil.id: ("3", "1")}, name="Famille Colin")
    # Six baskets: four households with a slot, two without (their order is the contract's alone).
    for i, slot_id in enumerate((early.id, early.id, late.id, late.id, None, None)):
        household = HouseholdFactory(name=f"Abonné {i}")
        db.session.flush()
        placed = OrderFactory(cycle_id=cycle.id, household_id=household.id, slot_id=slot_id)
        OrderLineFactory(order=placed, offer_id=baskets.id, quantity=D(1), unit_price_cents=0,
                         base_price_cents=1500, contract_id=season_contract(cycle, basket, household.id))
    supplier_user = UserFactory(roles=["producer"], producer_id=supplier.id, household=None)
    farm_user = UserFactory(roles=["producer"], producer_id=farm.id, household=None)
    db.session.commit()
    return {"cycle": cycle, "slots": [early, late], "supplier": supplier, "farm": farm, "oil": oil,
            "supplier_user": supplier_user, "farm_user": farm_user}


def finalize(cycle_id: int) -> None:
    """Close and finalize the cycle the way the worker does (allocation, documents, outbox)."""
    close.close_due_cycles()
    db.session.commit()
    assert close.finalize_cycle(cycle_id, inline=True).status == "finalized"


def purchase_order_rows(producer_id: int) -> dict[str, list[str]]:
    """The producer's stored purchase order CSV, by product name."""
    doc = db.session.scalars(sa.select(Document).where(Document.kind == "purchase_order_csv",
                                                       Document.chunk == f"producer:{producer_id}")).one()
    with open(doc.path, encoding="utf-8-sig") as handle:
        return {row[0]: row for row in csv.reader(handle, delimiter=";") if row}


def test_finalized_week_shows_what_the_purchase_order_says_to_deliver(app, client, week):
    """6 l of oil (not 9 l with a case « en cours »), split per slot as allocated; flour and soap named as not
    bought; the page says these are the purchase order's final quantities; the CSV says the same."""
    finalize(week["cycle"].id)
    login(client, week["supplier_user"].email)
    response = client.get("/producteurs/demande")
    page = response.get_data(as_text=True)
    assert "Quantités définitives du bon de commande" in page and "/ 6 en cours" not in page
    early, late = (local_time(s.starts_at) for s in week["slots"])
    purchase = {row.name: row for row in documents.aggregate(week["cycle"].id, week["supplier"].id)
                [week["supplier"].id]}
    oil = row_titled(stacked_rows(response), "Huile d'olive")
    assert oil["À livrer"] == "6 l (commandé 9)" and oil["Colis"] == "1 colis de 6"
    per_slot = purchase["Huile d'olive"].per_slot
    assert oil[f"Créneau {early}"] == format(per_slot[week["slots"][0].id].normalize(), "f").replace(".", ",")
    assert oil[f"Créneau {late}"] == format(per_slot[week["slots"][1].id].normalize(), "f").replace(".", ",")
    assert per_slot[week["slots"][0].id] + per_slot[week["slots"][1].id] == D(6)
    for name in ("Farine", "Savon"):
        row = row_titled(stacked_rows(response), name)
        assert "non acheté : aucun colis complet" in row["title"] and row["À livrer"].startswith("0 ")

    # The purchase order agrees: 6 l of oil, neither flour nor soap to bring.
    ordered = purchase_order_rows(week["supplier"].id)
    assert ordered["Huile d'olive"][3] == "6" and "Farine" not in ordered and "Savon" not in ordered

    text = client.get(f"/producteurs/demande?cycle_id={week['cycle'].id}&format=csv").get_data(as_text=True)
    rows = {row[0]: row for row in csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";")}
    assert rows["produit"][:6] == ["produit", "unite", "a_livrer", "commande", "colis_complets", "remarque"]
    assert rows["Huile d'olive"][2:6] == ["6", "9", "1", ""]
    assert rows["Farine"][2:6] == ["0", "3", "0", "non acheté : aucun colis complet"]


def test_allocated_but_not_yet_finalized_week_already_shows_the_final_figures(app, client, week):
    """Closed, its lines allocated (documents still rendering): the final figures, without the documents' link."""
    close.close_due_cycles()
    db.session.commit()
    close.prepare_cycle(week["cycle"].id)
    login(client, week["supplier_user"].email)
    response = client.get("/producteurs/demande")
    page = response.get_data(as_text=True)
    assert "Quantités définitives du bon de commande" in page and "Le bon de commande (PDF et tableur)" not in page
    assert row_titled(stacked_rows(response), "Huile d'olive")["À livrer"] == "6 l (commandé 9)"


def test_closed_week_before_allocation_says_the_figures_are_not_final(app, client, week):
    """Closed but not allocated yet: what was ordered, and a warning that the final quantities are to come."""
    close.close_due_cycles()
    db.session.commit()
    login(client, week["supplier_user"].email)
    response = client.get("/producteurs/demande")
    page = response.get_data(as_text=True)
    assert "les quantités définitives (colis complets seulement) s'afficheront ici" in page
    assert row_titled(stacked_rows(response), "Huile d'olive")["Commandé"] == "9 l (+1)"


def test_amap_baskets_without_a_slot_have_their_column_live_and_final(app, client, week):
    """Six baskets: the slot columns hold 2 and 2, « sans créneau » the other 2, on the page and in the CSV,
    before and after the close."""
    login(client, week["farm_user"].email)
    early, late = (local_time(s.starts_at) for s in week["slots"])
    cycle_id = week["cycle"].id
    for label, final in (("Commandé", False), ("À livrer", True)):
        if final:
            finalize(cycle_id)
        response = client.get(f"/producteurs/demande?cycle_id={cycle_id}")
        baskets = row_titled(stacked_rows(response), "Panier de légumes AMAP")
        assert baskets[label].startswith("6 paniers"), final
        assert [baskets[f"Créneau {early}"], baskets[f"Créneau {late}"], baskets["sans créneau"]] == ["2", "2", "2"]
        text = client.get(f"/producteurs/demande?cycle_id={cycle_id}&format=csv").get_data(as_text=True)
        header, *lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
        assert header[-1] == "sans creneau"
        (row,) = [line for line in lines if line[0] == "Panier de légumes AMAP"]
        assert row[-3:] == ["2", "2", "2"], final


def test_no_slot_column_when_every_household_has_a_slot(app, client, week):
    """The supplier's households all chose a slot: no « sans créneau » column."""
    login(client, week["supplier_user"].email)
    response = client.get(f"/producteurs/demande?cycle_id={week['cycle'].id}")
    assert "sans créneau" not in response.get_data(as_text=True)
    assert "sans creneau" not in client.get(f"/producteurs/demande?cycle_id={week['cycle'].id}&format=csv") \
        .get_data(as_text=True)


def test_week_chooser_leads_to_the_week_to_deliver(app, client, week):
    """Last week handed out, this week to deliver, next week open for orders: the page opens on the week to
    deliver, and links the three, labelled; an older distribution and a week not yet open are not listed."""
    now, site = utcnow(), week["cycle"].site_id
    older = CycleFactory(site_id=site, status="distributed", opens_at=now - timedelta(days=24),
                         closes_at=now - timedelta(days=17))
    handed_out = CycleFactory(site_id=site, status="distributed", opens_at=now - timedelta(days=10),
                              closes_at=now - timedelta(days=6))
    open_week = CycleFactory(site_id=site, opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=6))
    draft = CycleFactory(site_id=site, status="draft", opens_at=now + timedelta(days=6),
                         closes_at=now + timedelta(days=13))
    db.session.commit()
    close.close_due_cycles()
    db.session.commit()
    close.prepare_cycle(week["cycle"].id)
    db.session.execute(sa.update(Cycle).where(Cycle.id == week["cycle"].id).values(status="finalized"))
    db.session.commit()
    login(client, week["farm_user"].email)

    page = client.get("/producteurs/demande").get_data(as_text=True)
    assert "À livrer pour la distribution du" in page
    chooser = page[page.index('id="choix-semaine"'):]
    chooser = chooser[:chooser.index("</nav>")]
    to_deliver = f"{local_date(week['cycle'].distribution_date)} (à livrer)"
    ordering = f"{local_date(open_week.distribution_date)} (en cours de commande)"
    past = f"{local_date(handed_out.distribution_date)} (distribuée)"
    assert chooser.index(to_deliver) < chooser.index(ordering) < chooser.index(past)
    assert 'aria-current="page">' + to_deliver in chooser
    for cycle in (open_week, handed_out):
        assert f"/producteurs/demande?cycle_id={cycle.id}" in chooser
    assert f"cycle_id={older.id}" not in chooser and f"cycle_id={draft.id}" not in chooser

    # The open week is one click away and keeps its live demand; the chooser marks it.
    page = client.get(f"/producteurs/demande?cycle_id={open_week.id}").get_data(as_text=True)
    assert "Demande pour la distribution du" in page and 'aria-current="page">' + ordering in page


def test_open_week_stays_the_default_when_nothing_is_to_deliver(app, client, week):
    """Once the week is handed out, the page opens on the week open for orders, live."""
    now = utcnow()
    week["cycle"].status = "distributed"
    open_week = CycleFactory(site_id=week["cycle"].site_id, opens_at=now - timedelta(hours=1),
                             closes_at=now + timedelta(days=6))
    db.session.commit()
    login(client, week["supplier_user"].email)
    page = client.get("/producteurs/demande").get_data(as_text=True)
    assert "Demande pour la distribution du" in page
    assert f"/producteurs/demande?cycle_id={week['cycle'].id}" in page and "(à livrer)" not in page
    assert f'aria-current="page">{local_date(open_week.distribution_date)} (en cours de commande)' in page


def place(cycle_id: int, slots: list, offer_ids: list[int], count: int, start: int) -> None:
    """count households order 2.5 of each offer, over both slots and without one."""
    for i in range(start, start + count):
        order(cycle_id, [s.id for s in slots][i % 2] if i % 3 else None, {o: ("2.5", "0.5") for o in offer_ids},
              name=f"Famille {i:03d}")
    db.session.commit()


def test_final_demand_queries_do_not_grow_with_orders(app, client, count_queries):
    """The allocated week's page, names shown, runs the same queries for 10 or 150 orders and 2 or 12 products."""
    supplier = ProducerFactory(name="Vrac & Co", show_household_names=True)
    user = UserFactory(roles=["producer"], producer_id=supplier.id, household=None)
    now = utcnow()
    weeks = []
    for households, products in ((10, 2), (150, 12)):
        cycle = CycleFactory(opens_at=now - timedelta(days=3), closes_at=now - timedelta(minutes=1))
        slots = [SlotFactory(cycle_id=cycle.id, starts_at=cycle.distribution_starts_at + timedelta(minutes=30 * k),
                             capacity=200) for k in range(2)]
        offers = [OfferFactory(cycle_id=cycle.id, product=ProductFactory(
            producer=supplier, name=f"Produit {cycle.id}.{k}", unit="kg", portion_step=D("0.5"),
            case_size=D(25) if k % 2 else None)).id for k in range(products)]
        db.session.flush()
        place(cycle.id, slots, offers, households, 0)
        weeks.append(cycle.id)
    close.close_due_cycles()
    db.session.commit()
    for cycle_id in weeks:
        close.prepare_cycle(cycle_id)
        db.session.execute(sa.update(Cycle).where(Cycle.id == cycle_id).values(status="finalized"))
    db.session.commit()
    login(client, user.email)

    def measure(cycle_id: int) -> int:
        db.session.commit()
        client.get(f"/producteurs/demande?cycle_id={cycle_id}")
        with count_queries() as counter:
            page = client.get(f"/producteurs/demande?cycle_id={cycle_id}").get_data(as_text=True)
        assert "Quantités définitives du bon de commande" in page and "Famille 001" in page
        return counter["n"]

    assert measure(weeks[0]) == measure(weeks[1])


def test_week_chooser_names_the_site_when_several_distribute(app, client, week):
    """Two sites distributing: each week of the chooser says which site it is for."""
    now = utcnow()
    other = CycleFactory(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=6))
    close.close_due_cycles()
    db.session.commit()
    login(client, week["supplier_user"].email)
    page = client.get("/producteurs/demande").get_data(as_text=True)
    site = db.session.get(Cycle, week["cycle"].id).site_id
    here, there = db.session.get(Site, site).name, db.session.get(Site, other.site_id).name
    assert f"{here}, {local_date(week['cycle'].distribution_date)} (à livrer)" in page
    assert f"{there}, {local_date(other.distribution_date)} (en cours de commande)" in page


def test_two_households_of_the_same_name_get_two_packs_on_the_delivery_page(app):
    """Households may share a name: the breakdown is by household, so a producer prepares two packs, not one."""
    from app.models import Household
    from producers.services import delivery
    from tests.workers.data import make_cycle

    data = make_cycle(households=2, slots=1, producers=1, products_per_producer=1, lines=1)
    for household_id in data.household_ids:
        db.session.get(Household, household_id).name = "Famille Martin"
    db.session.commit()
    assert close.close_cycle(data.cycle_id)
    db.session.commit()
    close.finalize_cycle(data.cycle_id, inline=True)
    db.session.commit()
    rows, _slots = delivery(data.cycle_id, data.producer_ids[0], with_names=True)
    assert rows[0].by_household == [("Famille Martin", Decimal("1.5")), ("Famille Martin", Decimal("1.5"))]
