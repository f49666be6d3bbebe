"""Catalogue CSV files as producers really send them, and exports that a spreadsheet opens safely."""
from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from producers.models import Product
from producers.services import demand, demand_csv, export_catalogue, import_catalogue, import_catalogue_file
from tests.factories import CycleFactory, OfferFactory, ProducerFactory, ProductFactory

D = Decimal


def product(producer_id: int, name: str) -> Product:
    """The producer's product called exactly this."""
    return db.session.scalar(sa.select(Product).where(Product.producer_id == producer_id, Product.name == name))


@pytest.fixture()
def supplier(app):
    """A bulk supplier whose rice is sold by weight, in 25 kg sacks, by 0,5 kg, at 20 % VAT, described."""
    supplier = ProducerFactory(kind="bulk_supplier")
    ProductFactory(producer=supplier, name="Riz", unit="kg", price_cents=320, vat_rate_bp=2000,
                   sold_by_weight=True, case_size=D(25), portion_step=D("0.5"), description="Sac de 25 kg")
    db.session.commit()
    return supplier


def test_columns_left_out_of_the_file_are_kept(supplier):
    """A file with only name, unit and price changes the price and leaves the rest of the product alone."""
    report = import_catalogue(supplier.id, "nom;unite;prix\nRiz;kg;3,40\nPâtes;kg;2\n")
    assert (report.created, report.updated, report.rejected) == (1, 1, [])
    rice = product(supplier.id, "Riz")
    assert rice.price_cents == 340
    assert rice.sold_by_weight and rice.case_size == 25 and rice.portion_step == D("0.5")
    assert rice.vat_rate_bp == 2000 and rice.description == "Sac de 25 kg" and rice.active
    pasta = product(supplier.id, "Pâtes")
    assert pasta.vat_rate_bp == 550 and not pasta.sold_by_weight and pasta.case_size is None


def test_semicolon_file_with_commas_in_descriptions_is_read(supplier):
    """The header decides the separator: commas in the descriptions do not make it a comma file."""
    text = ("nom;unite;prix;description\n"
            "Lentilles;kg;4,10;Vertes, du Puy, bio, récolte 2024, en sac\n"
            "Pois chiches;kg;3,50;Gros, tendres, à tremper, cuisson longue\n")
    report = import_catalogue(supplier.id, text)
    assert (report.created, report.rejected) == (2, [])
    assert product(supplier.id, "Lentilles").description == "Vertes, du Puy, bio, récolte 2024, en sac"


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig", "utf-8"])
def test_spreadsheet_headers_are_recognised(supplier, encoding):
    """Capitals, accents, spaces and a byte order mark in the header, from Excel or LibreOffice."""
    raw = " Nom ; Unité ;PRIX; TVA \r\nHaricots;kg;5,20;5,5\r\n".encode(encoding)
    report = import_catalogue_file(supplier.id, raw)
    assert (report.created, report.rejected) == (1, [])
    assert product(supplier.id, "Haricots").price_cents == 520


def test_empty_rows_are_skipped_silently(supplier):
    """Rows of empty cells and blank lines, as spreadsheets leave at the end, are not errors."""
    report = import_catalogue(supplier.id, "nom;unite;prix\nSel;kg;1\n;;\n\n ; ; \nSucre;kg;2\n;;\n")
    assert (report.created, report.rejected) == (2, [])


def test_names_differing_only_by_case_or_spaces_are_the_same_product(supplier):
    """« riz » updates « Riz », and « Courgettes » twice in a file is one product twice."""
    report = import_catalogue(supplier.id, "nom;unite;prix\n riz ;kg;3,60\nCourgettes ;kg;2\ncourgettes;kg;2,10\n")
    assert (report.created, report.updated) == (1, 1)
    assert report.rejected[0][0] == 4 and "deux fois" in report.rejected[0][1]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Product)
                             .where(Product.producer_id == supplier.id)) == 2
    assert product(supplier.id, "riz").price_cents == 360


def test_control_characters_are_refused_with_a_reason(supplier):
    """A NUL byte or another invisible control character never reaches the database."""
    report = import_catalogue(supplier.id, "nom;unite;prix;description\nSa\x00von;piece;2;\nOrge;kg;2;bon\x07\n"
                                           "Avoine;kg;2;ligne\n")
    assert report.created == 1
    assert [line for line, _reason in report.rejected] == [2, 3]
    assert all("caractère invisible" in reason for _line, reason in report.rejected)


@pytest.mark.parametrize("price", ["1e3", "1e2", "2,555", "-2", "2.5.0", "Infinity"])
def test_prices_must_be_plain_amounts(supplier, price):
    """Scientific notation, three decimals, signs: a price is a plain amount in euros and cents."""
    report = import_catalogue(supplier.id, f"nom;unite;prix\nMiel;piece;{price}\n")
    assert report.created == 0 and "Prix illisible" in report.rejected[0][1]


def test_case_of_pieces_is_a_whole_number(supplier):
    """Half a case of soap bars is no case: refused with the reason; kilos may have fractions."""
    report = import_catalogue(supplier.id, "nom;unite;prix;colis\nSavon;piece;2;0,5\nThé;kg;20;2,5\n")
    assert report.created == 1
    assert report.rejected[0][0] == 2 and "nombre entier" in report.rejected[0][1]


@pytest.mark.parametrize("raw", [b"PK\x03\x04\x14\x00\x06\x00rest of a zip",
                                 b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old xls"])
def test_spreadsheet_workbook_is_asked_again_as_csv(supplier, raw):
    """An .xlsx (or old .xls) upload is told to be saved as CSV, not read as garbage."""
    report = import_catalogue_file(supplier.id, raw)
    assert report.created == 0 and len(report.rejected) == 1
    assert "enregistrez le fichier au format CSV" in report.rejected[0][1]


def test_unclosed_quote_says_the_file_is_unreadable(supplier):
    """An opening quote never closed swallows the rest of the file: say so, not « prix illisible »."""
    report = import_catalogue(supplier.id, 'nom;unite;prix\nSel;kg;1\nPoivre;kg;"12\nSucre;kg;2\n')
    assert report.created == 1
    assert report.rejected[0][0] == 3 and report.rejected[0][1].startswith("Fichier illisible")


def test_extra_cells_are_refused_not_dropped(supplier):
    """A semicolon inside an unquoted description would silently cut it: the row is refused instead."""
    report = import_catalogue(supplier.id, "nom;unite;prix;description\nSel;kg;1;fin; de Guérande\nPoivre;kg;9;;;\n")
    assert report.created == 1 and report.rejected[0][0] == 2 and "colonnes" in report.rejected[0][1]


def test_export_neutralises_formulas_and_shows_cents(app):
    """Text cells that a spreadsheet would run as formulas start with a quote; prices have two decimals."""
    farm = ProducerFactory()
    for name, description in (("=HYPERLINK(\"http://x\")", "+33 ferme"), ("@SUM(A1)", "-promo"), ("Tomates", "rouges")):
        ProductFactory(producer=farm, name=name, unit="kg", price_cents=310, description=description)
    db.session.commit()
    lines = export_catalogue(farm.id).splitlines()
    assert lines[1].startswith('"\'=HYPERLINK(') and lines[1].endswith(";'+33 ferme")
    assert any(line.startswith("'@SUM(A1);kg;3,10;5,5;") and line.endswith(";'-promo") for line in lines)
    assert "Tomates;kg;3,10;5,5;non;;;oui;non;rouges" in lines
    report = import_catalogue(farm.id, "\n".join(lines))
    assert report.updated == 3 and report.rejected == []
    assert product(farm.id, "@SUM(A1)").description == "-promo"


def test_demand_csv_neutralises_product_names(app):
    """A product named like a formula is exported as text in the producer's demand file."""
    cycle = CycleFactory()
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="=1+2", unit="kg"))
    db.session.commit()
    rows, slots = demand(cycle.id, offer.product.producer_id)
    text = demand_csv(rows, slots, str)
    assert "'=1+2;kg;0;0;" in text


def test_what_french_spreadsheets_write_for_vat_and_units(supplier):
    """« 5,5 % » under « TVA (%) », plurals and abbreviations of units, as exported by real spreadsheets."""
    report = import_catalogue(supplier.id, "Nom;Unité;Prix (€);TVA (%)\nConfiture;pièces;4,50;5,5 %\n"
                                           "Savon;Unité;3;20%\nJus;Litres;2,80;5,5\nRadis;bottes;1,20;5,5\n"
                                           "Miel;pot;8;5,5\n")
    assert report.created == 4
    assert [(line, "Unité inconnue" in reason) for line, reason in report.rejected] == [(6, True)]
    assert (product(supplier.id, "Confiture").unit, product(supplier.id, "Confiture").vat_rate_bp) == ("piece", 550)
    assert (product(supplier.id, "Savon").unit, product(supplier.id, "Savon").vat_rate_bp) == ("piece", 2000)
    assert product(supplier.id, "Jus").unit == "l" and product(supplier.id, "Radis").unit == "bunch"


def test_season_basket_flag_goes_through_the_csv_both_ways(supplier):
    """A new installation marks its AMAP baskets in the file (panier_saison); the export says it in French."""
    report = import_catalogue(supplier.id, "nom;unite;prix;panier_saison\nPanier de saison;panier;15;oui\n"
                                           "Carottes;kg;2;non\n")
    assert (report.created, report.rejected) == (2, [])
    assert product(supplier.id, "Panier de saison").is_contract_basket
    assert not product(supplier.id, "Carottes").is_contract_basket
    lines = export_catalogue(supplier.id).splitlines()
    assert "Panier de saison;panier;15,00;5,5;non;;;oui;oui;" in lines
    assert "Carottes;kg;2,00;5,5;non;;;oui;non;" in lines
