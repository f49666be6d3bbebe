"""Producers keep their catalogue; coordinators manage producers and import or export catalogues."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from producers.models import Producer, Product
from producers.services import CatalogueError, ProductData, export_catalogue, import_catalogue, save_product
from tests.factories import ProducerFactory, ProductFactory, UserFactory
from tests.helpers import csrf_token, login, post_form
from tests.producers.images import png_bytes


@pytest.fixture()
def farm(app, client):
    """A farmer signed in, with one product; another farm with its own product."""
    producer = ProducerFactory(name="Ferme des Saules")
    ProductFactory(producer=producer, name="Poireaux", unit="bunch", price_cents=250)
    other = ProducerFactory(name="Ferme voisine")
    secret = ProductFactory(producer=other, name="Fraises secrètes")
    user = UserFactory(roles=["producer"], producer_id=producer.id, household=None)
    db.session.commit()
    login(client, user.email)
    return {"producer": producer, "other": other, "secret": secret}


def test_producer_adds_a_product_priced_in_euros(client, farm):
    """'2,50' typed in the form is stored as 250 cents; the catalogue shows it."""
    response = post_form(client, "/producteurs/catalogue/produit", {
        "name": "Carottes", "unit": "kg", "price": "2,50", "vat": "5,5", "portion_step": "0,5",
        "active": "y"})
    assert "Produit enregistré" in response.get_data(as_text=True)
    product = db.session.scalar(sa.select(Product).where(Product.name == "Carottes"))
    assert product.price_cents == 250 and product.vat_rate_bp == 550 and product.portion_step == Decimal("0.5")
    page = client.get("/producteurs/catalogue").get_data(as_text=True)
    assert "Carottes" in page and "Poireaux" in page and "Fraises secrètes" not in page


def test_bad_price_is_explained(client, farm):
    """An unreadable price is refused in French and nothing is written."""
    response = post_form(client, "/producteurs/catalogue/produit", {"name": "Navets", "unit": "kg",
                                                                     "price": "deux euros"})
    assert response.status_code == 422 and "Prix illisible" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(Product).where(Product.name == "Navets")) is None


def test_photo_is_stored_under_instance(app, client, farm):
    """A photo upload is kept under instance/photos and shown in the catalogue."""
    page = client.get("/producteurs/catalogue/produit")
    client.post("/producteurs/catalogue/produit", data={
        "csrf_token": csrf_token(page.data), "name": "Radis", "unit": "bunch", "price": "1,20", "vat": "5,5",
        "active": "y", "photo": (io.BytesIO(png_bytes()), "radis.png")},
        content_type="multipart/form-data")
    product = db.session.scalar(sa.select(Product).where(Product.name == "Radis"))
    assert product.photo_filename.endswith(".png")
    assert client.get(f"/producteurs/photo/{product.photo_filename}").data.startswith(b"\x89PNG")


def test_another_producers_product_is_not_found(client, farm):
    """A producer cannot open or change another producer's product."""
    assert client.get(f"/producteurs/catalogue/produit/{farm['secret'].id}").status_code == 404


def test_producer_cannot_manage_producers(client, farm):
    """The producers' admin is for coordinators only."""
    assert client.get("/producteurs/admin").status_code == 403


def test_coordinator_creates_a_producer_allowing_names(app, client):
    """A coordinator creates a market trader who may see household names."""
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)
    response = post_form(client, "/producteurs/admin", {"name": "Forain Dupont", "kind": "market_trader",
                                                         "email": "dupont@example.org",
                                                         "show_household_names": "y", "active": "y"})
    assert "Forain Dupont enregistré" in response.get_data(as_text=True)
    trader = db.session.scalar(sa.select(Producer).where(Producer.name == "Forain Dupont"))
    assert trader.kind == "market_trader" and trader.show_household_names


CSV = """nom;unite;prix;tva;au_poids;colis;pas;actif;description
Riz complet;kg;3,20;5,5;non;25;0,5;oui;Sac de 25 kg
Huile;litre;4;5,5;non;6;1;oui;
Savon;pièce;trois;20;non;;;oui;
Farine;sac;1,80;5,5;non;;;oui;
;kg;1;5,5;non;;;oui;
Lentilles;kg;4,10;5,5;peut-être;;;oui;
Riz complet;kg;3,30;5,5;non;25;0,5;oui;
Sucre;kg;2,10;5,5;non;25;0,3;oui;
"""


def test_csv_import_reports_rejected_rows(app):
    """Good rows are imported; each bad row is reported with its line number and a French reason."""
    supplier = ProducerFactory(kind="bulk_supplier")
    report = import_catalogue(supplier.id, CSV)
    assert report.created == 2 and report.updated == 0
    reasons = dict(report.rejected)
    assert set(reasons) == {4, 5, 6, 7, 8, 9}
    assert "Prix illisible" in reasons[4]
    assert "Unité inconnue" in reasons[5]
    assert "nom est obligatoire" in reasons[6]
    assert "ni oui ni non" in reasons[7]
    assert "deux fois" in reasons[8]
    assert "multiple du pas" in reasons[9]
    rice = db.session.scalar(sa.select(Product).where(Product.name == "Riz complet"))
    assert rice.price_cents == 320 and rice.case_size == 25 and rice.portion_step == Decimal("0.5")


def test_export_then_import_round_trips(app):
    """An exported catalogue imports back as updates, unchanged."""
    supplier = ProducerFactory(kind="bulk_supplier")
    import_catalogue(supplier.id, CSV)
    text = export_catalogue(supplier.id)
    assert text.splitlines()[0].startswith("nom;unite;prix")
    assert "Riz complet;kg;3,20;5,5;non;25;0,5;oui;non;Sac de 25 kg" in text
    report = import_catalogue(supplier.id, text)
    assert report.updated == 2 and report.created == 0 and report.rejected == []


def test_coordinator_imports_through_the_page(app, client):
    """Uploading a CSV shows the report page with the rejected lines."""
    boss = UserFactory(roles=["coordinator"], household=None)
    supplier = ProducerFactory(kind="bulk_supplier")
    db.session.commit()
    login(client, boss.email)
    page = client.get(f"/producteurs/admin/{supplier.id}")
    response = client.post(f"/producteurs/admin/{supplier.id}/import", data={
        "csrf_token": csrf_token(page.data), "file": (io.BytesIO(CSV.encode("utf-8-sig")), "catalogue.csv")},
        content_type="multipart/form-data")
    text = response.get_data(as_text=True)
    assert "2 produits créés" in text and "6 lignes refusées" in text and "Prix illisible" in text
    export = client.get(f"/producteurs/admin/{supplier.id}/export.csv")
    assert export.mimetype == "text/csv" and "Huile" in export.get_data(as_text=True)


def test_broken_csv_is_reported_not_a_crash(app):
    """A file the csv module cannot read (an endless field) keeps the rows before it and says where it stopped."""
    supplier = ProducerFactory(kind="bulk_supplier")
    text = "nom;unite;prix\nRiz;kg;3,20\nHuile;l;4;" + "x" * 200_000 + "\nSel;kg;1\n"
    report = import_catalogue(supplier.id, text)
    assert report.created == 1
    assert report.rejected == [(3, "Fichier illisible à partir de cette ligne.")]
    assert import_catalogue(supplier.id, "").rejected[0][1].startswith("En-tête attendu")


def test_the_database_holds_names_unique_whatever_their_case(app, farm):
    """A save that did not see the other one (by_name empty, as two saves at the same moment) is refused by
    the unique name_key; the refusal rolls back only its own savepoint."""
    producer_id = farm["producer"].id
    with pytest.raises(CatalogueError, match="s'appelle déjà"):
        save_product(producer_id, ProductData(name=" POIREAUX ", unit="bunch", price_cents=260), by_name={})
    saved = save_product(producer_id, ProductData(name="Navets", unit="kg", price_cents=300), by_name={})
    db.session.commit()
    names = db.session.scalars(sa.select(Product.name_key).where(Product.producer_id == producer_id)).all()
    assert sorted(names) == ["navets", "poireaux"] and saved.name_key == "navets"


def test_a_product_is_marked_as_a_season_basket_on_its_form(client, farm):
    """Without the box, a new installation could never open an AMAP contract (only the demo set the flag)."""
    response = post_form(client, "/producteurs/catalogue/produit", {
        "name": "Panier de légumes", "unit": "basket", "price": "15", "vat": "5,5", "is_contract_basket": "y",
        "active": "y"})
    assert "Produit enregistré" in response.get_data(as_text=True)
    basket = db.session.scalar(sa.select(Product).where(Product.name == "Panier de légumes"))
    assert basket.is_contract_basket
    page = client.get(f"/producteurs/catalogue/produit/{basket.id}").get_data(as_text=True)
    assert '<input checked id="is_contract_basket" name="is_contract_basket" type="checkbox"' in page
