"""What the close pipeline's documents say: purchase orders (PDF, CSV), repackaging, grid, names and order."""
from __future__ import annotations

import csv
import io
import re
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from app.extensions import db
from app.models import Document, OutboxMessage
from orders import close, documents
from orders.contract_models import Contract, ContractOffer
from orders.models import Cycle, Order, OrderLine
from pickup.models import Slot
from producers.models import Offer, Producer, Product
from tests.factories import UserFactory
from tests.helpers import login
from tests.workers.data import make_cycle
from tests.workers.test_finalize import pdf_pages, pdf_text


def page_text(path: str, page: int) -> str:
    """The text of one page of a PDF, whitespace normalised."""
    text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), path, "-"],
                          check=True, capture_output=True, text=True).stdout
    return " ".join(text.split())


def layout_lines(path: str, page: int | None = None) -> list[str]:
    """The lines of a PDF as laid out on the page (a table row stays on one line), spaces collapsed."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    text = subprocess.run(["pdftotext", "-layout", *pages, path, "-"], check=True, capture_output=True,
                          text=True).stdout
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def finalize(cycle_id: int) -> None:
    """Close (if still open) and finalize a cycle the way the worker does."""
    close.close_due_cycles()
    db.session.commit()
    assert close.finalize_cycle(cycle_id, inline=True).status == "finalized"


def document(kind: str, chunk: str | None = None) -> Document:
    """The one stored document of a kind (and chunk)."""
    query = sa.select(Document).where(Document.kind == kind)
    if chunk:
        query = query.where(Document.chunk == chunk)
    return db.session.scalars(query).one()


def csv_rows(doc: Document) -> list[list[str]]:
    """A stored CSV as rows."""
    return list(csv.reader(io.StringIO(Path(doc.path).read_text(encoding="utf-8-sig")), delimiter=";"))


def product_of(offer_id: int) -> Product:
    """The product of an offer."""
    return db.session.get(Offer, offer_id).product


def make_bulk(product: Product, name: str, case_size: int = 5) -> None:
    """Turn a test product into a bulk product sold by the case."""
    product.name, product.case_size, product.portion_step = name, Decimal(case_size), Decimal("0.5")


# --------------------------------------------------------------------------- purchase orders


def test_purchase_order_lists_only_what_is_bought_and_nothing_to_deliver_sends_no_mail(app):
    """Pâtes (3 kg ordered, cases of 5) is not bought: named apart, not a 0 line; a supplier with
    nothing to bring reads so and gets no e-mail of 0,00 €."""
    data = make_cycle(households=4, slots=1, producers=2, products_per_producer=2, lines=1)
    # One household per offer, 1.5 kg each: no case of 5 kg is ever filled.
    make_bulk(product_of(data.offer_ids[1]), "Pâtes penne")
    make_bulk(product_of(data.offer_ids[2]), "Riz basmati")
    make_bulk(product_of(data.offer_ids[3]), "Lentilles vertes")
    # A second household's 1.5 kg makes 3 kg of pâtes: still short of a case.
    db.session.add(OrderLine(order_id=data.order_ids[0], offer_id=data.offer_ids[1], quantity=Decimal("1.5"),
                             unit_price_cents=280, base_price_cents=280))
    db.session.commit()
    finalize(data.cycle_id)
    first, second = data.producer_ids

    text = pdf_text(document("purchase_order", f"producer:{first}").path)
    assert "Légume 1.1" in text and "Aucune commande" not in text
    # Pâtes only in the note, with what was ordered and the case size, not as a line of 0.
    assert text.count("Pâtes penne") == 1
    assert "Non acheté (aucun colis complet) : Pâtes penne (demandé : 3 kg, colis de 5 kg)" in text
    assert "×" not in text and "0,00 €" not in text
    assert "Total TTC 4,20 €" in text  # 1.5 kg x 2.80 EUR
    rows = csv_rows(document("purchase_order_csv", f"producer:{first}"))
    assert [row[0] for row in rows[1:3]] == ["Légume 1.1", "TOTAL TTC"]
    assert not any("Pâtes" in cell for row in rows for cell in row)

    empty = document("purchase_order", f"producer:{second}")
    text = pdf_text(empty.path)
    assert "Aucune commande pour vous cette semaine." in text
    assert "Non acheté (aucun colis complet) : Lentilles vertes" in text and "Riz basmati (demandé : 1,5 kg" in text
    assert "Total" not in text and "0,00 €" not in text and empty.pages == pdf_pages(empty.path) == 1
    assert [row[0] for row in csv_rows(document("purchase_order_csv", f"producer:{second}"))[1:]] == ["TOTAL TTC"]

    mails = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "purchase_order")).all()
    assert [m.recipient for m in mails] == [db.session.get(Producer, first).email]


def test_amap_baskets_are_listed_to_bring_but_not_in_the_total(app):
    """The farm brings the season baskets (paid by the contract's cheques): listed, marked, no amount."""
    data = make_cycle(households=3, slots=1, producers=1, products_per_producer=2, lines=1)
    basket_offer = db.session.get(Offer, data.offer_ids[1])
    basket = basket_offer.product
    basket.name, basket.unit, basket.is_contract_basket = "Panier de saison", "basket", True
    basket_offer.price_cents = 1500
    cycle = db.session.get(Cycle, data.cycle_id)
    season = ContractOffer(producer_id=basket.producer_id, product_id=basket.id, site_id=cycle.site_id,
                           name="Panier hiver", first_date=cycle.distribution_date,
                           last_date=cycle.distribution_date + timedelta(weeks=10), price_cents=1500)
    db.session.add(season)
    db.session.flush()
    # Households 1 and 3 order vegetables (offer 0); household 2's line (offer 1) is its season basket.
    household_id = data.household_ids[1]
    contract = Contract(contract_offer_id=season.id, household_id=household_id, quantity=Decimal(1))
    db.session.add(contract)
    db.session.flush()
    line = db.session.scalar(sa.select(OrderLine).where(OrderLine.order_id == data.order_ids[1]))
    line.contract_id, line.quantity, line.unit_price_cents, line.base_price_cents = contract.id, Decimal(1), 0, 1500
    db.session.commit()
    finalize(data.cycle_id)

    po = document("purchase_order")
    text, lines = pdf_text(po.path), layout_lines(po.path)
    # 1 basket to bring; the vegetables 2 x 1.5 kg x 2.80 EUR = 8.40 EUR are the whole total.
    assert "Panier de saison panier 1 — panier AMAP, réglé par contrat" in lines
    assert "15,00 €" not in text
    assert "Total TTC (hors paniers AMAP) 8,40 €" in lines
    assert any(re.fullmatch(r"\S+ Panier de saison \(panier AMAP\) 1 panier", line) for line in lines), lines
    rows = {row[0]: row for row in csv_rows(document("purchase_order_csv")) if row}
    assert rows["Panier de saison"][3:10] == ["1", "", "", "", "", "", "panier AMAP, réglé par contrat"]
    # Amounts in euros always have their two decimals ("8,40"), as the money CSVs write them.
    assert rows["TOTAL TTC"][8] == "8,40"
    assert rows["5,5"][1:] == ["7,96", "0,44", "8,40"]  # only the vegetables: 840 x 5.5 / 105.5 = 43.8


def test_purchase_order_shows_when_orders_were_really_stopped(app):
    """A cycle closed early by a coordinator prints its closing time, not the planned deadline."""
    from app.templating import local_datetime

    data = make_cycle(households=2, slots=1, producers=1, due=False)
    cycle = db.session.get(Cycle, data.cycle_id)
    planned_at = cycle.closes_at
    assert close.close_cycle(cycle.id, force=True)
    db.session.commit()
    assert close.finalize_cycle(cycle.id, inline=True).status == "finalized"
    db.session.refresh(cycle)
    # Closed early, the week's deadline becomes the moment it closed (every page then shows it).
    assert cycle.closes_at == cycle.closed_at < planned_at - timedelta(hours=20)
    text = pdf_text(document("purchase_order").path)
    with app.test_request_context():
        closed, planned = local_datetime(cycle.closed_at), local_datetime(planned_at)
    assert f"Commandes arrêtées le {closed}" in text and planned not in text


def test_vat_column_prices_tax_included_and_summary_per_rate(app):
    """Prices are TTC with their rate; HT and TVA per rate are computed on each rate's total, in cents."""
    data = make_cycle(households=4, slots=1, producers=1, products_per_producer=2, lines=1)
    soap = db.session.get(Offer, data.offer_ids[1])
    soap.product.name, soap.product.unit, soap.product.vat_rate_bp = "Savon", "piece", 2000
    soap.price_cents = 3  # each household's line of 3 cents would hold 0.5 -> 1 cent of VAT on its own
    db.session.execute(sa.update(OrderLine).where(OrderLine.offer_id == soap.id).values(quantity=Decimal(1)))
    db.session.commit()
    finalize(data.cycle_id)

    text = pdf_text(document("purchase_order").path)
    assert "TVA Prix unitaire TTC Total TTC" in text
    assert "Légume 1.1 kg 3 — 5,5 % 2,80 € 8,40 €" in text
    assert "Savon pièce 2 — 20 % 0,03 € 0,06 €" in text
    # 840 TTC at 5.5 %: TVA 43.79 -> 44, HT 796; 6 TTC at 20 %: TVA 1 (not 2 x 0.5 -> 2), HT 5.
    assert "Récapitulatif TVA Taux de TVA Total HT TVA Total TTC" in text
    assert "5,5 % 7,96 € 0,44 € 8,40 €" in text and "20 % 0,05 € 0,01 € 0,06 €" in text
    assert "Total 8,01 € 0,45 € 8,46 €" in text and "Total TTC 8,46 €" in text
    rows = csv_rows(document("purchase_order_csv"))
    assert rows[0][6:10] == ["tva_pct", "prix_unitaire_ttc_eur", "total_ttc_eur", "remarque"]
    assert rows[1][:10] == ["Légume 1.1", "kg", "", "3", "", "", "5,5", "2,80", "8,40", ""]
    assert rows[2][6:9] == ["20", "0,03", "0,06"]
    summary = rows[rows.index(["taux_tva_pct", "total_ht_eur", "tva_eur", "total_ttc_eur"]) + 1:]
    assert summary == [["5,5", "7,96", "0,44", "8,40"], ["20", "0,05", "0,01", "0,06"],
                       ["TOTAL", "8,01", "0,45", "8,46"]]


def test_weighed_products_read_as_estimates_on_the_purchase_order(app):
    data = make_cycle(households=2, slots=1, producers=1, products_per_producer=2, lines=1)
    tomatoes = product_of(data.offer_ids[0])
    tomatoes.name, tomatoes.sold_by_weight = "Tomates", True
    db.session.commit()
    finalize(data.cycle_id)

    text = pdf_text(document("purchase_order").path)
    assert "Tomates kg 1,5 — 5,5 % 2,80 € ≈ 4,20 €" in text
    assert "Légume 1.2 kg 1,5 — 5,5 % 2,80 € 4,20 €" in text  # priced by the piece or the bunch: firm
    assert "Total TTC ≈ 8,40 €" in text
    assert "≈ : produit vendu au poids. Le montant est estimé sur les quantités commandées" in text
    rows = csv_rows(document("purchase_order_csv"))
    assert [row[9] for row in rows[1:3]] == ["", "montant estimé (au poids)"]


def test_vat_of_an_amount_tax_included_rounds_half_up_in_integers():
    assert documents.vat_of_tax_included(3, 2000) == 1  # 0.5 -> 1
    assert documents.vat_of_tax_included(9, 2000) == 2  # 1.5 -> 2
    assert documents.vat_of_tax_included(840, 550) == 44  # 43.79
    assert documents.vat_of_tax_included(10550, 550) == 550
    assert documents.vat_of_tax_included(123_456_789, 1000) == 11_223_344  # 11,223,344.45
    assert documents.vat_of_tax_included(0, 550) == 0 and documents.vat_of_tax_included(500, 0) == 0
    line = documents.VatLine(2000, 12000)
    assert (line.net_cents, line.vat_cents) == (10000, 2000)


# --------------------------------------------------------------------------- volunteers' sheets


def test_repackaging_repeats_the_product_on_every_page_and_is_named_after_its_range(app):
    data = make_cycle(households=60, slots=1, producers=1, products_per_producer=2, lines=1)
    make_bulk(product_of(data.offer_ids[0]), "Riz complet")
    make_bulk(product_of(data.offer_ids[1]), "Lentilles vertes")
    db.session.commit()
    finalize(data.cycle_id)
    sheet = document("repackaging")
    day = db.session.get(Cycle, data.cycle_id).distribution_date.isoformat()
    assert sheet.filename == f"reconditionnement-{day}-produits-1-2.pdf"
    pages = pdf_pages(sheet.path)
    assert sheet.pages == pages >= 3
    texts = [layout_lines(sheet.path, n) for n in range(1, pages + 1)]
    # 30 households x 1.5 kg = 45 kg: 9 cases; the first product's table runs over two pages at least.
    first = next(line for line in texts[0] if line.startswith("1. "))
    assert re.fullmatch(r"1\. (Lentilles vertes|Riz complet) — 9 colis de 5 kg", first), texts[0]
    assert sum(first in lines for lines in texts) >= 2
    assert any(re.fullmatch(r"2\. (Lentilles vertes|Riz complet) — 9 colis de 5 kg", line) for line in texts[-1])
    for lines in texts:
        # Every page names the product its rows belong to, right above the column heads.
        heads = [n for n, line in enumerate(lines) if line == "✓ Colis Sac Foyer Portion"]
        assert heads and all(re.fullmatch(r"\d\. .* — 9 colis de 5 kg", lines[n - 1]) for n in heads), lines


def test_a_big_product_split_in_parts_says_which_part(app, monkeypatch):
    monkeypatch.setattr(documents, "REPACK_PORTIONS", 12)
    data = make_cycle(households=20, slots=1, producers=1, products_per_producer=1, lines=1)
    make_bulk(product_of(data.offer_ids[0]), "Riz complet")
    db.session.commit()
    finalize(data.cycle_id)
    sheets = db.session.scalars(sa.select(Document).where(Document.kind == "repackaging")
                                .order_by(Document.chunk)).all()
    day = db.session.get(Cycle, data.cycle_id).distribution_date.isoformat()
    parts = len(sheets)
    assert parts >= 2
    assert [s.filename for s in sheets] == [
        f"reconditionnement-{day}-produit-1-riz-complet-partie-{n}-sur-{parts}.pdf" for n in range(1, parts + 1)]
    assert f"1. Riz complet — 6 colis de 5 kg (partie 2 / {parts})" in pdf_text(sheets[1].path)


def test_grid_has_a_total_per_product_and_leaves_out_what_nobody_gets(app):
    data = make_cycle(households=4, slots=1, producers=1, products_per_producer=2, lines=2)
    make_bulk(product_of(data.offer_ids[1]), "Pâtes penne", case_size=25)  # 6 kg ordered: no case
    db.session.commit()
    finalize(data.cycle_id)
    grid = document("grid")
    layout = subprocess.run(["pdftotext", "-layout", grid.path, "-"], check=True, capture_output=True,
                            text=True).stdout
    line = next(row for row in layout.splitlines() if "Légume 1.1" in row)
    assert re.search(r"Légume 1.1 .*(1,5\s+){4}6 kg\s*$", line), line
    text = pdf_text(grid.path)
    assert "Total" in text and "Pâtes" not in text
    assert "Pâtes penne" in pdf_text(document("bag_slips").path)  # the slips still say « non livré »


# --------------------------------------------------------------------------- lists, names, titles


def test_documents_listed_by_kind_then_slot_time_with_readable_names(app, client):
    data = make_cycle(households=4, slots=3, producers=2)
    # The first slot made moves after the others: ids no longer follow the clock.
    first, last = db.session.get(Slot, data.slot_ids[0]), db.session.get(Slot, data.slot_ids[-1])
    first.starts_at, first.ends_at = last.starts_at + timedelta(minutes=30), last.ends_at + timedelta(minutes=30)
    db.session.commit()
    finalize(data.cycle_id)
    listed = documents.cycle_documents(data.cycle_id)
    kinds = [d.kind for d in listed]
    assert kinds == sorted(kinds, key=list(documents.KIND_LABELS).index)
    assert kinds[0] == "purchase_order" and kinds[-1] == "distribution_sheet"
    by_time = sorted(data.slot_ids, key=lambda i: db.session.get(Slot, i).starts_at)
    for kind in ("bag_slips", "grid", "distribution_sheet"):
        chunks = [d.chunk for d in listed if d.kind == kind]
        assert [int(c.split(":")[1]) for c in chunks] == by_time
        names = [d.filename for d in listed if d.kind == kind]
        assert all(re.search(r"-\d\dh\d\d-\d\dh\d\d[-.]", name) for name in names), names
    purchase_orders = [d.filename for d in listed if d.kind == "purchase_order"]
    assert purchase_orders == sorted(purchase_orders)

    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    page = client.get(f"/commandes/cycles/{data.cycle_id}/documents").get_data(as_text=True)
    positions = [page.index(d.filename) for d in listed]
    assert positions == sorted(positions)


def test_slug_keeps_words_apart():
    assert documents._slug("16h30–17h00") == "16h30-17h00"
    assert documents._slug("Œufs frais — d’Aubrac") == "oeufs-frais-d-aubrac"
    assert documents._slug("Pâtes penne bio") == "pates-penne-bio"
    assert documents._slug("–") == "x"


def test_title_is_shown_once_on_page_one_and_heads_every_page(app):
    data = make_cycle(households=7, slots=1, producers=1, products_per_producer=1, lines=1)
    finalize(data.cycle_id)
    header = "Fiches de préparation · "
    slips = document("bag_slips")
    assert pdf_pages(slips.path) == 3
    for page in (1, 2, 3):
        assert page_text(slips.path, page).count(header) == 1
    po = pdf_text(document("purchase_order").path)
    assert po.count("Bon de commande · ") == 1 and "page 1 / 1" in po
    # The running header keeps its place at the top of the page.
    assert po.startswith("Bon de commande · ")


def test_a_producer_without_address_and_nothing_to_bring_is_not_on_the_paper_list(app):
    """« Bons de commande à transmettre sur papier » lists who has something to deliver, not an empty order."""
    from orders.documents import producers_without_email

    data = make_cycle(households=2, slots=1, producers=2, products_per_producer=1, lines=1)
    make_bulk(product_of(data.offer_ids[1]), "Riz basmati")  # 1.5 kg of a case of 5: not bought
    for producer_id in data.producer_ids:
        db.session.get(Producer, producer_id).email = None
    db.session.commit()
    finalize(data.cycle_id)
    assert [p.id for p in producers_without_email(data.cycle_id)] == [data.producer_ids[0]]


def test_a_product_ticked_as_season_basket_after_it_was_ordered_keeps_its_amount(app):
    """Households ordered it in the week (no contract): their lines are paid by them, so the order shows the
    amount owed to the producer, as the money page does; only lines of a contract go without one."""
    data = make_cycle(households=2, slots=1, producers=1, products_per_producer=1, lines=1)
    db.session.get(Offer, data.offer_ids[0]).product.is_contract_basket = True
    db.session.commit()
    finalize(data.cycle_id)
    lines = layout_lines(document("purchase_order").path)
    assert "panier AMAP, réglé par contrat" not in " ".join(lines)
    assert "Total TTC 8,40 €" in lines


def test_bag_list_reads_what_is_due_in_the_same_queries_for_five_or_twenty_households(app, count_queries):
    from orders.payment_models import Payment

    small, big = make_cycle(households=5, slots=1), make_cycle(households=20, slots=1)
    # 1.5 kg twice at 2,80 € = 8,40 € an order; the first household of the big cycle paid 5,00 € of it.
    order = db.session.get(Order, big.order_ids[0])
    order.total_cents = 840
    db.session.add(Payment(order_id=order.id, household_id=order.household_id, method="cash", amount_cents=500,
                           status="succeeded"))
    db.session.commit()
    counts = []
    for data in (small, big):
        with count_queries() as counter:
            found = documents.bags(data.cycle_id, data.slot_ids[0])
        counts.append(counter["n"])
    assert len(found) == 20 and counts[0] == counts[1]
    assert {bag.order_id: bag.due_cents for bag in found}[order.id] == 340
