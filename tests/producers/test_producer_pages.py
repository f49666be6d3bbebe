"""The producer's pages when things are not as planned: no open cycle, orders already placed, bad uploads."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

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
from tests.producers.images import GPS_IFD, huge_png_bytes, mpo_bytes, phone_jpeg_bytes, png_bytes

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



# --------------------------------------------------------------------------- photos taken on a phone


def stored_photo(app, name: str = "Radis") -> Path:
    """Where the photo of the product called name was stored."""
    product = db.session.scalar(sa.select(Product).where(Product.name == name))
    return Path(app.config["INSTANCE_DIR"]) / "photos" / product.photo_filename


def test_phone_photo_is_kept_small_upright_and_without_its_gps(app, client, farm):
    """An 11 MB photo held sideways is accepted and stored upright, 1600 px long, without EXIF (GPS) nor comment."""
    photo = phone_jpeg_bytes((4000, 3000), orientation=6)
    assert len(photo) > 10 * 1024 * 1024
    response = upload_product(client, (photo, "IMG_2041.JPG"))
    assert response.status_code == 302
    path = stored_photo(app)
    assert path.suffix == ".jpg" and path.stat().st_size < len(photo) / 5
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.size == (1200, 1600)
        assert not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
        assert "exif" not in image.info and "comment" not in image.info
    assert b"PhoneMaker" not in path.read_bytes() and b"Lilas" not in path.read_bytes()
    assert client.get(f"/producteurs/photo/{path.name}").status_code == 200


def test_small_photo_keeps_its_size(app, client, farm):
    """A photo already small is not blown up (only re-encoded, which drops what it says about the phone)."""
    response = upload_product(client, (phone_jpeg_bytes((640, 480), orientation=1), "radis.jpg"))
    assert response.status_code == 302
    with Image.open(stored_photo(app)) as image:
        assert image.size == (640, 480) and not image.getexif()


def test_phone_photo_with_a_second_picture_is_a_jpeg(app, client, farm):
    """Some phones add a depth or preview picture to the JPEG (MPO): the photo itself is kept, as a JPEG."""
    response = upload_product(client, (mpo_bytes(), "IMG_2042.JPG"))
    assert response.status_code == 302
    with Image.open(stored_photo(app)) as image:
        assert image.format == "JPEG" and image.size == (1600, 1200) and image.getpixel((10, 10))[0] > 200


def test_photo_too_heavy_is_refused_on_the_form_that_keeps_what_was_typed(app, client, farm):
    """Over the photo limit (but under the request limit): a French reason under « Photo », nothing lost."""
    app.config["PHOTO_MAX_BYTES"] = 1024 * 1024
    response = upload_product(client, (phone_jpeg_bytes(), "IMG_2041.JPG"), description="Radis roses du jardin")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "trop lourde (1 Mo au plus)" in field_block(page, "photo")
    assert 'value="Radis"' in field_block(page, "name") and "Radis roses du jardin" in page
    assert db.session.scalar(sa.select(Product).where(Product.name == "Radis")) is None


def test_request_over_the_server_limit_says_what_to_do(app, client, farm):
    """Past the request limit the form cannot be read back: the page says so in French and how to go on."""
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    response = upload_product(client, (phone_jpeg_bytes(), "IMG_2041.JPG"))
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "2 Mo" in page and "Revenez" in page and "photo" in page


@pytest.mark.parametrize("size", [(9000, 8000), (20000, 20000), (7700, 7700)])
def test_photo_with_too_many_pixels_is_refused(app, client, farm, size):
    """A small file that opens to tens or hundreds of millions of pixels (a decompression bomb) is refused."""
    response = upload_product(client, (huge_png_bytes(size), "radis.png"))
    assert response.status_code == 422
    assert "trop de pixels" in field_block(response.get_data(as_text=True), "photo")
    assert db.session.scalar(sa.select(Product).where(Product.name == "Radis")) is None
    if size[0] * size[1] < 100_000_000:  # beyond, Pillow itself stops it as a bomb
        # A PNG is decoded whole (no reduced-scale decoding as for a JPEG): a quarter of a JPEG's pixels.
        assert "(15 millions au plus)" in field_block(response.get_data(as_text=True), "photo")


def test_iphone_heic_photo_gets_its_own_explanation(client, farm):
    """HEIC (iPhone's own format) is not readable here: the message says how to send a JPEG instead."""
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    response = upload_product(client, (heic, "IMG_2041.HEIC"))
    assert response.status_code == 422 and "HEIC" in field_block(response.get_data(as_text=True), "photo")


# --------------------------------------------------------------------------- catalogue price and weekly offers


def warning_flash(html: str) -> str:
    """The warning flashed on the page ("" if none)."""
    match = re.search(r'<p class="flash flash-warning"[^>]*>(.*?)</p>', html, re.S)
    return match.group(1) if match else ""


def test_new_catalogue_price_points_to_the_weeks_that_keep_the_old_one(client, farm):
    """Tomatoes go from 4,00 to 4,20 €: the open and the coming week still sell at 4,00, and the flash says so
    with a link to each week's offer; a week already closed is not mentioned. The offers keep their price."""
    now = datetime.now(timezone.utc)
    open_week = CycleFactory()
    coming = CycleFactory(status="draft", opens_at=now + timedelta(days=5), closes_at=now + timedelta(days=9))
    closed = CycleFactory(status="finalized", opens_at=now - timedelta(days=9), closes_at=now - timedelta(days=3))
    offers = [OfferFactory(cycle_id=c.id, product=farm["tomatoes"], price_cents=400) for c in (open_week, coming,
                                                                                                closed)]
    db.session.commit()
    response = post_form(client, f"/producteurs/catalogue/produit/{farm['tomatoes'].id}",
                         {"name": "Tomates", "unit": "kg", "price": "4,20", "vat": "5,5", "active": "y"})
    page = response.get_data(as_text=True)
    warning = warning_flash(page)
    assert "Produit enregistré" in page
    assert "4,00" in warning and "4,20" in warning
    assert f'href="/producteurs/offre/{open_week.id}"' in warning
    assert f'href="/producteurs/offre/{coming.id}"' in warning
    assert f"/producteurs/offre/{closed.id}" not in warning
    db.session.expire_all()
    assert [db.session.get(Offer, o.id).price_cents for o in offers] == [400, 400, 400]


def test_no_price_warning_when_the_price_did_not_change(client, farm):
    """Editing the description, or a week already at the new price, says nothing about prices."""
    week = CycleFactory()
    OfferFactory(cycle_id=week.id, product=farm["tomatoes"], price_cents=380)
    db.session.commit()
    url = f"/producteurs/catalogue/produit/{farm['tomatoes'].id}"
    page = post_form(client, url, {"name": "Tomates", "unit": "kg", "price": "4,00", "vat": "5,5", "active": "y",
                                   "description": "de plein champ"}).get_data(as_text=True)
    assert "Produit enregistré" in page and warning_flash(page) == ""
    page = post_form(client, url, {"name": "Tomates", "unit": "kg", "price": "3,80", "vat": "5,5",
                                   "active": "y"}).get_data(as_text=True)
    assert "Produit enregistré" in page and warning_flash(page) == ""


# --------------------------------------------------------------------------- French order


def test_catalogue_and_offer_table_are_in_french_order(client, farm):
    """« kiwis » comes before « Pommes », « Épinards » among the E: case and accents do not count."""
    for name in ("Pommes", "kiwis", "Épinards", "abricots", "Œufs"):
        ProductFactory(producer=farm["producer"], name=name)
    week = CycleFactory()
    db.session.commit()
    expected = ["abricots", "Épinards", "kiwis", "Œufs", "Pommes", "Tomates"]
    for url in ("/producteurs/catalogue", f"/producteurs/offre/{week.id}"):
        page = client.get(url).get_data(as_text=True)
        assert sorted(expected, key=page.index) == expected, url
