"""The producer's pages when things are not as planned: no open cycle, orders already placed, bad uploads."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.services import save_order
from producers.models import Offer, Product
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login, post_form
from tests.producers.images import png_bytes

D = Decimal


def field_block(html: str, name: str) -> str:
    """The form field block (label, input, errors) that holds the input called name."""
    for block in html.split('<div class="field')[1:]:
        if f'name="{name}"' in block:
            return block.split("</div>")[0]
    raise AssertionError(f"no field {name}")


@pytest.fixture()
def farm(app, client):
    """A farmer signed in with tomatoes in its catalogue."""
    producer = ProducerFactory(name="Ferme des Saules")
    tomatoes = ProductFactory(producer=producer, name="Tomates", unit="kg", price_cents=400)
    user = UserFactory(roles=["producer"], producer_id=producer.id, household=None)
    db.session.commit()
    login(client, user.email)
    return {"producer": producer, "tomatoes": tomatoes, "user": user}


def upload_product(client, photo: tuple[bytes, str], **fields):
    """Post the new-product form with a photo."""
    page = client.get("/producteurs/catalogue/produit")
    data = {"csrf_token": csrf_token(page.data), "name": "Radis", "unit": "bunch", "price": "1,20", "vat": "5,5",
            "active": "y", "photo": (io.BytesIO(photo[0]), photo[1]), **fields}
    return client.post("/producteurs/catalogue/produit", data=data, content_type="multipart/form-data")


# --------------------------------------------------------------------------- demand without an open cycle


def test_demand_without_an_open_cycle_explains_and_links(client, farm):
    """The menu's « Demande en cours » says nothing is open and links the last closed and the next cycle."""
    now = datetime.now(timezone.utc)
    closed = CycleFactory(status="finalized", opens_at=now - timedelta(days=9), closes_at=now - timedelta(days=2))
    upcoming = CycleFactory(status="draft", opens_at=now + timedelta(days=3), closes_at=now + timedelta(days=6))
    db.session.commit()
    response = client.get("/producteurs/demande")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Aucune commande de la semaine n'est ouverte" in page
    assert f"/producteurs/demande?cycle_id={closed.id}" in page
    assert f"/producteurs/demande?cycle_id={upcoming.id}" in page
    assert client.get(f"/producteurs/demande?cycle_id={closed.id}").status_code == 200


def test_demand_without_any_cycle_is_a_page_not_a_404(client, farm):
    """Before the first cycle ever, the page still opens."""
    response = client.get("/producteurs/demande")
    assert response.status_code == 200
    assert "Aucune commande de la semaine n'est ouverte" in response.get_data(as_text=True)


# --------------------------------------------------------------------------- withdrawing an ordered offer


def order_tomatoes(farm, households: int) -> Offer:
    """An open cycle where some households ordered the farm's tomatoes."""
    cycle = CycleFactory()
    offer = OfferFactory(cycle_id=cycle.id, product=farm["tomatoes"], price_cents=400)
    slot = SlotFactory(cycle_id=cycle.id, capacity=50)
    db.session.commit()
    for _ in range(households):
        save_order(cycle.id, HouseholdFactory().id, {offer.id: (D(2), D(0))}, slot.id, None)
    db.session.commit()
    return offer


def post_offers(client, cycle_id: int, data: dict, scope: str = ""):
    """Post the offer table (nothing ticked unless data says so)."""
    page = client.get(f"/producteurs/offre/{cycle_id}{scope}")
    return client.post(f"/producteurs/offre/{cycle_id}{scope}", data={"csrf_token": csrf_token(page.data), **data},
                       follow_redirects=True)


def test_producer_cannot_withdraw_an_offer_households_ordered(client, farm):
    """Unticking ordered tomatoes is refused with how many households ordered them; orders stay as they are."""
    offer = order_tomatoes(farm, 3)
    response = post_offers(client, offer.cycle_id, {})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "3 foyers" in page and "coordination" in page and "Offre enregistrée" not in page
    db.session.expire_all()
    assert db.session.get(Offer, offer.id).active


def test_producer_withdraws_an_offer_nobody_ordered(client, farm):
    """Without orders, unticking still withdraws the offer."""
    offer = order_tomatoes(farm, 0)
    assert "Offre enregistrée" in post_offers(client, offer.cycle_id, {}).get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(Offer, offer.id).active


def test_coordinator_withdraws_an_ordered_offer_with_a_warning(app, farm):
    """The coordinator may withdraw it (nothing is delivered nor charged at close) and is told who is concerned."""
    offer = order_tomatoes(farm, 2)
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    client = app.test_client()
    login(client, boss.email)
    response = post_offers(client, offer.cycle_id, {}, scope=f"?producer_id={farm['producer'].id}")
    page = response.get_data(as_text=True)
    assert "Offre enregistrée" in page and "2 foyers" in page
    db.session.expire_all()
    assert not db.session.get(Offer, offer.id).active


def test_producer_cannot_deactivate_a_product_households_ordered(client, farm):
    """Unticking « Actif » on an ordered product would withdraw it just the same: refused too."""
    order_tomatoes(farm, 1)
    response = post_form(client, f"/producteurs/catalogue/produit/{farm['tomatoes'].id}",
                         {"name": "Tomates", "unit": "kg", "price": "4", "vat": "5,5"})
    assert response.status_code == 422 and "1 foyer" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Product, farm["tomatoes"].id).active


@pytest.mark.parametrize("price", ["1e2", "1e3", "4,005"])
def test_offer_price_must_be_a_plain_amount(client, farm, price):
    """« 1e2 » is not a price of 100 € in the offer table."""
    cycle = CycleFactory()
    db.session.commit()
    key = farm["tomatoes"].id
    response = post_offers(client, cycle.id, {f"o-{key}": "1", f"price-{key}": price})
    assert response.status_code == 422 and "Tomates" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(Offer).where(Offer.product_id == key)) is None


# --------------------------------------------------------------------------- the product form


@pytest.mark.parametrize("photo", [(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "radis.svg"),
                                   (b"\x89PNG\r\n\x1a\nnot really a png", "radis.png"),
                                   (b"MZ\x90\x00 a program", "radis.jpg")])
def test_refused_photo_is_explained_under_the_photo_field(client, farm, photo):
    """The reason shows under « Photo », the name is not marked wrong, and nothing is saved."""
    response = upload_product(client, photo)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "La photo doit être une image" in field_block(page, "photo") and "has-error" not in field_block(page, "name")
    assert db.session.scalar(sa.select(Product).where(Product.name == "Radis")) is None


def test_photo_is_named_after_what_it_really_is(app, client, farm):
    """A real PNG sent as .jpg is kept, as a .png."""
    response = upload_product(client, (png_bytes(), "radis.jpg"))
    assert response.status_code == 302
    assert db.session.scalar(sa.select(Product).where(Product.name == "Radis")).photo_filename.endswith(".png")


@pytest.mark.parametrize("fields, where, reason", [
    ({"name": "Ra\x1bdis"}, "name", "caractère invisible"),
    ({"description": "frais\x07"}, "description", "caractère invisible"),
    ({"price": "1e2"}, "price", "Prix illisible"),
    ({"unit": "piece", "case_size": "0,5"}, "case_size", "nombre entier"),
])
def test_product_form_refuses_bad_values_on_their_field(client, farm, fields, where, reason):
    """Control characters, scientific prices, half a case of pieces: refused, explained on the right field."""
    data = {"name": "Radis", "unit": "bunch", "price": "1,20", "vat": "5,5", "active": "y", **fields}
    response = post_form(client, "/producteurs/catalogue/produit", data)
    assert response.status_code == 422 and reason in field_block(response.get_data(as_text=True), where)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Product)) == 1


def test_coordinator_opens_a_product_without_naming_the_producer(app, farm):
    """A link to a product is enough for the coordinator; saving goes back to that producer's catalogue."""
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    client = app.test_client()
    login(client, boss.email)
    url = f"/producteurs/catalogue/produit/{farm['tomatoes'].id}"
    assert client.get(url).status_code == 200
    response = post_form(client, url, {"name": "Tomates", "unit": "kg", "price": "4,20", "vat": "5,5",
                                       "active": "y"}, follow_redirects=False)
    assert response.status_code == 302 and f"producer_id={farm['producer'].id}" in response.location
    db.session.expire_all()
    assert db.session.get(Product, farm["tomatoes"].id).price_cents == 420


def test_producer_still_cannot_open_another_producers_product(client, farm):
    """Inferring the producer from the product is for coordinators only."""
    other = ProductFactory(producer=ProducerFactory())
    db.session.commit()
    assert client.get(f"/producteurs/catalogue/produit/{other.id}").status_code == 404
    assert client.get(f"/producteurs/catalogue/produit/{other.id}?producer_id={other.producer_id}").status_code == 404

