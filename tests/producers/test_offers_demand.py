"""A producer sets its offer per cycle and follows its own demand live."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.services import save_order
from producers.models import Offer
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login

D = Decimal


@pytest.fixture()
def market(app, client):
    """An open cycle; a bulk supplier (signed in) and a rival farm; two slots."""
    cycle = CycleFactory()
    supplier = ProducerFactory(name="Vrac & Co", kind="bulk_supplier")
    rice = ProductFactory(producer=supplier, name="Riz", unit="kg", price_cents=320, case_size=D(25),
                          portion_step=D("0.5"))
    oil = ProductFactory(producer=supplier, name="Huile", unit="l", price_cents=400, case_size=D(6),
                         portion_step=D("0.5"))
    rival = ProducerFactory(name="Ferme rivale")
    apples = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=rival, name="Pommes"))
    first = SlotFactory(cycle_id=cycle.id, capacity=150)
    slots = [first, SlotFactory(cycle_id=cycle.id, capacity=150, starts_at=first.starts_at + timedelta(minutes=30))]
    user = UserFactory(roles=["producer"], producer_id=supplier.id, household=None)
    db.session.commit()
    login(client, user.email)
    return {"cycle": cycle, "supplier": supplier, "rice": rice, "oil": oil, "apples": apples, "slots": slots}


def offer_form(client, cycle_id: int, data: dict):
    """Post the offer table."""
    page = client.get(f"/producteurs/offre/{cycle_id}")
    return client.post(f"/producteurs/offre/{cycle_id}", data={"csrf_token": csrf_token(page.data), **data},
                       follow_redirects=True)


def test_producer_offers_products_with_price_and_cap(client, market):
    """Ticked products are offered at the typed price, with a stock cap."""
    m = market
    response = offer_form(client, m["cycle"].id, {f"o-{m['rice'].id}": "1", f"price-{m['rice'].id}": "3,10",
                                                  f"cap-{m['rice'].id}": "50", f"price-{m['oil'].id}": "4,00"})
    assert "Offre enregistrée" in response.get_data(as_text=True)
    offer = db.session.scalar(sa.select(Offer).where(Offer.product_id == m["rice"].id))
    assert offer.price_cents == 310 and offer.stock_cap == 50 and offer.active
    assert db.session.scalar(sa.select(Offer).where(Offer.product_id == m["oil"].id)) is None


def test_cap_below_what_is_ordered_is_refused(client, market):
    """A producer cannot lower a cap under what households already hold."""
    m = market
    offer = OfferFactory(cycle_id=m["cycle"].id, product=m["rice"], price_cents=320, stock_cap=D(50))
    db.session.commit()
    save_order(m["cycle"].id, HouseholdFactory().id, {offer.id: (D(10), D(0))}, m["slots"][0].id, None)
    db.session.commit()
    # 0 is a whole number of cases (the only one below the 10 kg ordered: rice comes in cases of 25 kg).
    response = offer_form(client, m["cycle"].id, {f"o-{m['rice'].id}": "1", f"price-{m['rice'].id}": "3,20",
                                                  f"cap-{m['rice'].id}": "0"})
    assert response.status_code == 422 and "déjà 10 commandé" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Offer, offer.id).stock_cap == 50


@pytest.mark.parametrize("cap", ["5", "30", "7,5"])
def test_cap_of_a_bulk_product_is_a_whole_number_of_cases(client, market, cap):
    """Only whole cases are bought at close: a cap of 30 kg on 25 kg cases would sell 5 kg never bought."""
    m = market
    response = offer_form(client, m["cycle"].id, {f"o-{m['rice'].id}": "1", f"price-{m['rice'].id}": "3,20",
                                                  f"cap-{m['rice'].id}": cap})
    assert response.status_code == 422
    assert "nombre entier de colis (25, 50…)" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(Offer).where(Offer.product_id == m["rice"].id)) is None
    response = offer_form(client, m["cycle"].id, {f"o-{m['rice'].id}": "1", f"price-{m['rice'].id}": "3,20",
                                                  f"cap-{m['rice'].id}": "50"})
    assert "Offre enregistrée" in response.get_data(as_text=True)


def place_orders(market, count: int, offer_ids: list[int]) -> None:
    """count households order from the given offers, spread over both slots."""
    for i in range(count):
        household = HouseholdFactory(name=f"Famille {i:03d}")
        db.session.flush()
        save_order(market["cycle"].id, household.id, {o: (D("2.5"), D("0.5") if i % 2 else D(0))
                                                      for o in offer_ids},
                   market["slots"][i % 2].id, None)
    db.session.commit()


def test_demand_moves_and_shows_only_own_products(client, market):
    """The producer sees quantities per product, cases, per slot; never the rival's products or names."""
    m = market
    rice = OfferFactory(cycle_id=m["cycle"].id, product=m["rice"], price_cents=320)
    db.session.commit()
    page = client.get("/producteurs/demande").get_data(as_text=True)
    assert "Riz" in page and "Pommes" not in page
    place_orders(m, 11, [rice.id])
    page = client.get("/producteurs/demande").get_data(as_text=True)
    assert "27,5 kg" in page and "(+2,5)" in page and "1 colis complet, 2,5 / 25 en cours" in page
    assert "Famille 000" not in page
    csv_text = client.get("/producteurs/demande?format=csv").get_data(as_text=True)
    assert "Riz;kg;27,5;2,5;1;15;12,5" in csv_text


def test_names_shown_when_the_coordinator_allows(client, market):
    """With show_household_names, the producer sees who ordered what."""
    m = market
    m["supplier"].show_household_names = True
    rice = OfferFactory(cycle_id=m["cycle"].id, product=m["rice"], price_cents=320)
    db.session.commit()
    place_orders(m, 2, [rice.id])
    assert "Famille 001 : 2,5" in client.get("/producteurs/demande").get_data(as_text=True)


def test_demand_queries_do_not_grow_with_orders(client, market, count_queries):
    """The demand page runs the same number of queries for 10 or 200 orders."""
    m = market
    m["supplier"].show_household_names = True
    rice = OfferFactory(cycle_id=m["cycle"].id, product=m["rice"], price_cents=320)
    oil = OfferFactory(cycle_id=m["cycle"].id, product=m["oil"], price_cents=400)
    db.session.commit()
    place_orders(m, 10, [rice.id, oil.id])
    client.get("/producteurs/demande")

    def measure():
        db.session.commit()  # each measure starts from a fresh transaction, like a real request
        with count_queries() as counter:
            assert client.get("/producteurs/demande").status_code == 200
        return counter["n"]

    few = measure()
    place_orders(m, 190, [rice.id, oil.id])
    assert measure() == few


@pytest.mark.parametrize("price, cap", [("1e10", "5"), ("3", "1e20"), ("-2", "5"), ("3", "0,3")])
def test_absurd_offer_values_are_refused(client, market, price, cap):
    """Absurd prices or caps get a French message and write nothing."""
    m = market
    response = offer_form(client, m["cycle"].id, {f"o-{m['rice'].id}": "1", f"price-{m['rice'].id}": price,
                                                  f"cap-{m['rice'].id}": cap})
    assert response.status_code == 422 and "Riz" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(Offer).where(Offer.product_id == m["rice"].id)) is None


@pytest.mark.parametrize("cap, reason", [("-3", "le stock doit être positif"), ("-12", "le stock doit être positif"),
                                         ("beaucoup", "stock illisible")])
def test_stock_typed_wrong_gets_its_own_reason(client, market, cap, reason):
    """« -3 » in the stock is a negative stock, not an unreadable price or stock."""
    m = market
    response = offer_form(client, m["cycle"].id, {f"o-{m['oil'].id}": "1", f"price-{m['oil'].id}": "4,00",
                                                  f"cap-{m['oil'].id}": cap})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and f"Huile : {reason}" in page and "prix ou stock" not in page
    assert db.session.scalar(sa.select(Offer).where(Offer.product_id == m["oil"].id)) is None


def test_unreadable_price_is_named_as_the_price(client, market):
    """A price that is not an amount is said to be the price, with an example."""
    m = market
    response = offer_form(client, m["cycle"].id, {f"o-{m['oil'].id}": "1", f"price-{m['oil'].id}": "quatre",
                                                  f"cap-{m['oil'].id}": "12"})
    assert response.status_code == 422 and "Huile : prix illisible" in response.get_data(as_text=True)


def test_demand_csv_says_units_in_french_like_the_purchase_order(client, market):
    """« panier », « pièce », « botte »: the words the purchase order uses, not the codes stored."""
    m = market
    for name, unit in (("Panier fruits de la semaine", "basket"), ("Savon", "piece"), ("Radis", "bunch")):
        OfferFactory(cycle_id=m["cycle"].id, product=ProductFactory(producer=m["supplier"], name=name, unit=unit))
    db.session.commit()
    csv_text = client.get("/producteurs/demande?format=csv").get_data(as_text=True)
    assert "Panier fruits de la semaine;panier;0;" in csv_text
    assert "Savon;pièce;0;" in csv_text and "Radis;botte;0;" in csv_text
    assert ";basket;" not in csv_text and ";piece;" not in csv_text


def test_demand_lists_products_and_households_in_french_order(client, market):
    """Products and households ordering them are sorted ignoring case and accents, on the page and in the CSV."""
    m = market
    m["supplier"].show_household_names = True
    offers = [OfferFactory(cycle_id=m["cycle"].id, product=ProductFactory(producer=m["supplier"], name=name))
              for name in ("Pois chiches", "amandes", "Épeautre")]
    for name in ("Zoé Martin", "émile Roux", "Bernard", "Œillet"):
        save_order(m["cycle"].id, HouseholdFactory(name=name).id, {offers[0].id: (D(1), D(0))}, m["slots"][0].id,
                   None)
    db.session.commit()
    page = client.get("/producteurs/demande").get_data(as_text=True)
    products = ["amandes", "Épeautre", "Pois chiches"]
    assert sorted(products, key=page.index) == products
    households = ["Bernard", "émile Roux", "Œillet", "Zoé Martin"]
    assert sorted(households, key=page.index) == households
    csv_lines = [line.split(";")[0] for line in client.get("/producteurs/demande?format=csv")
                 .get_data(as_text=True).splitlines()[1:]]
    assert csv_lines == products
