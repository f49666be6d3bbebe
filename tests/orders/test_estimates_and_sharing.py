"""What households and volunteers read after the close: weighed prices as estimates, why bulk is short, payment."""
from __future__ import annotations

import html
import re
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from app.extensions import db
from app.models import Document, OutboxMessage
from orders import close
from orders.bulk import order_bulk_lines
from orders.models import Order, OrderLine
from orders.services import save_order
from pickup.services import record_weight
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


def plain(text: str) -> str:
    """Text with its non-breaking spaces (money, French punctuation) as plain spaces."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def pdf_text(path: str) -> str:
    """The text of a PDF (pdftotext), whitespace normalised."""
    text = subprocess.run(["pdftotext", path, "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(plain(text).split())


@dataclass
class Week:
    """A closed cycle: Martin has weighed Comté and lentils, Diallo lentils, rice and honey (nothing weighed)."""

    cycle_id: int
    slot_id: int
    martin_id: int
    diallo_id: int
    comte_offer_id: int
    lentils_offer_id: int
    rice_offer_id: int
    volunteer_id: int


def make_week(policy: str = "pro_rata") -> Week:
    """Orders through the cart service, then the close as the worker runs it."""
    cycle = CycleFactory(allocation_policy=policy)
    slot = SlotFactory(cycle_id=cycle.id, starts_at=cycle.distribution_starts_at,
                       ends_at=cycle.distribution_starts_at + timedelta(minutes=30))
    dairy = ProducerFactory(name="Fromagerie du Val")
    comte = OfferFactory(cycle_id=cycle.id, price_cents=2590, product=ProductFactory(
        producer=dairy, name="Comté", unit="kg", price_cents=2590, sold_by_weight=True))
    honey = OfferFactory(cycle_id=cycle.id, price_cents=650, product=ProductFactory(
        producer=dairy, name="Miel de châtaignier", unit="piece", price_cents=650))
    supplier = ProducerFactory(name="Épicerie en gros", kind="bulk_supplier")
    lentils = OfferFactory(cycle_id=cycle.id, price_cents=300, product=ProductFactory(
        producer=supplier, name="Lentilles vertes", unit="kg", price_cents=300, case_size=D(5),
        portion_step=D("0.5")))
    rice = OfferFactory(cycle_id=cycle.id, price_cents=240, product=ProductFactory(
        producer=supplier, name="Riz complet", unit="kg", price_cents=240, case_size=D(25),
        portion_step=D("0.5")))
    start = cycle.opens_at + timedelta(hours=1)
    martin = save_order(cycle.id, HouseholdFactory(name="Famille Martin").id,
                        {comte.id: (D("0.35"), D(0)), lentils.id: (D("4.5"), D(0))}, slot.id, None,
                        now=start)
    diallo = save_order(cycle.id, HouseholdFactory(name="Famille Diallo").id,
                        {lentils.id: (D("1.5"), D(0)), rice.id: (D(2), D(0)), honey.id: (D(1), D(0))},
                        slot.id, None, now=start + timedelta(minutes=5))
    volunteer = UserFactory(roles=["volunteer"])
    week = Week(cycle.id, slot.id, martin.id, diallo.id, comte.id, lentils.id, rice.id, volunteer.id)
    db.session.commit()
    assert close.close_cycle(week.cycle_id, force=True)
    db.session.commit()
    assert close.finalize_cycle(week.cycle_id, inline=True).status == "finalized"
    db.session.expire_all()
    return week


def confirmation(order_id: int) -> str:
    """The close e-mail of an order's household, as written in the outbox."""
    household_id = db.session.get(Order, order_id).household_id
    message = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.kind == "confirmation", OutboxMessage.key.like(f"%:household:{household_id}:%")))
    return plain(message.body)


def document_text(kind: str) -> str:
    """The text of the cycle's only document of a kind."""
    document = db.session.scalar(sa.select(Document).where(Document.kind == kind))
    assert Path(document.path).exists()
    return pdf_text(document.path)


def slips_of(text: str) -> dict[str, str]:
    """Bag slips text cut per household (slips are in bag order: Diallo then Martin)."""
    diallo, martin = text.index("Famille Diallo"), text.index("Famille Martin")
    assert diallo < martin
    return {"Diallo": text[diallo:martin], "Martin": text[martin:]}


def line_of(order_id: int, offer_id: int) -> OrderLine:
    """An order's line for an offer."""
    return db.session.scalar(sa.select(OrderLine).where(OrderLine.order_id == order_id,
                                                        OrderLine.offer_id == offer_id))


def order_page(client, user_email: str | None, order_id: int) -> str:
    """The order page as the browser gets it (signing in first when given an address), entities unescaped."""
    if user_email:
        login(client, user_email)
    response = client.get(f"/commandes/commande/{order_id}")
    assert response.status_code == 200
    return plain(html.unescape(response.get_data(as_text=True)))


def member_of(order_id: int) -> str:
    """A member of the order's household (its e-mail address), for signing in."""
    user = UserFactory(roles=["member"], household_id=db.session.get(Order, order_id).household_id)
    db.session.commit()
    return user.email


# --------------------------------------------------------------------------- weighed products


def test_unweighed_products_are_estimates_in_the_mail_the_slips_and_the_sheet(app):
    week = make_week()
    martin, diallo = confirmation(week.martin_id), confirmation(week.diallo_id)
    # 0,35 kg x 25,90 EUR = 9,065 -> 9,07: an estimate until the cheese is weighed.
    assert "Comté (Fromagerie du Val) : 0,35 kg, au poids, prix estimé ≈ 9,07 €" in martin
    assert "= 9,07 €" not in martin
    assert "Montant estimé de la commande : ≈ 21,07 €" in martin
    assert "Reste à payer au retrait (montant estimé) : ≈ 21,07 €" in martin
    assert "Reste à payer au retrait : 21,07 €" not in martin
    # Nothing weighed in Diallo's order: its amounts are final and said so plainly.
    assert "Reste à payer au retrait : 9,50 €" in diallo
    assert "estimé" not in diallo and "≈" not in diallo

    slips = slips_of(document_text("bag_slips"))
    assert "Comté — au poids, prix estimé" in slips["Martin"]
    assert "≈ 9,07 €" in slips["Martin"]
    assert "poids réel : ________ kg" in slips["Martin"]  # a blank for a volunteer weighing on paper
    assert "Montant estimé de la commande : ≈ 21,07 € · Reste à payer (estimé) : ≈ 21,07 €" in slips["Martin"]
    assert "estimé" not in slips["Diallo"] and "poids réel" not in slips["Diallo"] and "≈" not in slips["Diallo"]
    assert "Montant de la commande : 9,50 € · Reste à payer : 9,50 €" in slips["Diallo"]

    sheet = document_text("distribution_sheet")
    assert "Famille Martin ≈ 21,07 € montant estimé" in sheet
    assert "9,50 €" in sheet and sheet.count("montant estimé") == 1 and sheet.count("≈") == 1


def test_once_weighed_the_real_amount_is_shown_without_estimate(app, client):
    week = make_week()
    email = member_of(week.martin_id)
    page = order_page(client, email, week.martin_id)
    assert "au poids, prix estimé" in page and "≈ 9,07 €" in page
    assert "Total (montant estimé)" in page and "≈ 21,07 €" in page
    # Said next to the payment box, whose « Reste à payer » is the same estimate.
    note = page.index("le total et le reste à payer seront ajustés au poids réel")
    assert note < page.index("Reste à payer : 21,07 €")

    comte = line_of(week.martin_id, week.comte_offer_id)
    record_weight(comte.id, D("0.412"), cycle_id=week.cycle_id, user_id=week.volunteer_id)
    db.session.commit()
    # 0,412 kg x 25,90 EUR = 10,6708 -> 10,67; the order is now 22,67 EUR, nothing estimated.
    page = order_page(client, None, week.martin_id)
    assert "0,412 kg" in page and "10,67 €" in page and "22,67 €" in page
    assert "estimé" not in page and "≈" not in page
    assert "poids réel" in page

    from orders.documents import cycle_messages, render_bag_slips
    from pickup.documents import render_distribution_sheet

    render_bag_slips(week.cycle_id, week.slot_id, 0)
    render_distribution_sheet(week.cycle_id, week.slot_id)
    db.session.commit()
    slips = slips_of(document_text("bag_slips"))
    assert "0,412 kg" in slips["Martin"] and "10,67 €" in slips["Martin"] and "pesé" in slips["Martin"]
    assert "estimé" not in slips["Martin"] and "≈" not in slips["Martin"] and "____" not in slips["Martin"]
    assert "Montant de la commande : 22,67 €" in slips["Martin"]
    sheet = document_text("distribution_sheet")
    assert "Famille Martin 22,67 €" in sheet and "estimé" not in sheet and "≈" not in sheet
    household_id = db.session.get(Order, week.martin_id).household_id
    body = plain(next(m.body for m in cycle_messages(week.cycle_id) if f":household:{household_id}:" in m.key))
    assert "Comté (Fromagerie du Val) : 0,412 kg = 10,67 €" in body
    assert "Reste à payer au retrait : 22,67 €" in body and "estimé" not in body


def test_a_weighed_product_given_nothing_is_not_an_estimate(app):
    week = make_week()
    comte = line_of(week.martin_id, week.comte_offer_id)
    record_weight(comte.id, D(0), cycle_id=week.cycle_id, user_id=week.volunteer_id, confirmed=True)
    db.session.commit()
    from orders.documents import bags

    martin = next(bag for bag in bags(week.cycle_id, week.slot_id) if bag.order_id == week.martin_id)
    line = next(line for line in martin.lines if line.name == "Comté")
    assert line.sold_by_weight and line.prepared == 0 and not line.estimated
    assert not any(line.estimated for line in martin.lines)


# --------------------------------------------------------------------------- bulk sharing


def test_bulk_shortfall_reasons_in_the_mail_and_on_the_order_page(app, client):
    # Lentils: 6 kg ordered, one 5 kg case shared 4,5 : 1,5 -> 4 and 1 kg. Rice: 2 kg of a 25 kg sack.
    week = make_week()
    diallo = confirmation(week.diallo_id)
    assert ("Lentilles vertes (Épicerie en gros) : 1 kg (commandé 1,5) = 3,00 €\n"
            "  → partagé au prorata des commandes") in diallo
    assert ("Riz complet (Épicerie en gros) : 0 kg (commandé 2) = 0,00 €\n"
            "  → colis incomplet : non acheté") in diallo
    assert "Miel de châtaignier (Fromagerie du Val) : 1 pièce = 6,50 €\n- " in diallo  # no reason: all given
    martin = confirmation(week.martin_id)
    assert "4 kg (commandé 4,5) = 12,00 €\n  → partagé au prorata des commandes" in martin

    reasons = {b.product_name: b.reason for b in order_bulk_lines(week.diallo_id)}
    assert reasons == {"Lentilles vertes": "partagé au prorata des commandes",
                       "Riz complet": "colis incomplet : non acheté"}
    page = order_page(client, member_of(week.diallo_id), week.diallo_id)
    section = page[page.index("Vrac : commandé et attribué"):]
    lentils, rice = section.index("Lentilles vertes"), section.index("Riz complet")
    assert "partagé au prorata des commandes" in section[lentils:rice]
    assert "colis incomplet : non acheté" in section[rice:]


def test_first_come_sharing_says_so_and_whoever_got_all_gets_no_reason(app, client):
    # First come: Martin ordered first and gets his 4,5 kg, Diallo the 0,5 kg left.
    week = make_week(policy="first_come")
    diallo = confirmation(week.diallo_id)
    assert ("Lentilles vertes (Épicerie en gros) : 0,5 kg (commandé 1,5) = 1,50 €\n"
            "  → partagé par ordre d'arrivée des commandes") in diallo
    assert "prorata" not in diallo
    martin = confirmation(week.martin_id)
    assert "Lentilles vertes (Épicerie en gros) : 4,5 kg = 13,50 €" in martin and "→" not in martin
    assert [b.reason for b in order_bulk_lines(week.martin_id)] == [None]
    page = order_page(client, member_of(week.diallo_id), week.diallo_id)
    assert "partagé par ordre d'arrivée des commandes" in page
    other = app.test_client()  # another browser: the first one is signed in as Diallo
    assert "partagé par ordre d'arrivée" not in order_page(other, member_of(week.martin_id), week.martin_id)


def test_reason_for_each_outcome():
    from orders.bulk import BulkOutcome

    shared = BulkOutcome(bought=True, withdrawn=False, no_stock=False, policy="pro_rata")
    assert shared.reason(D(2), None) is None  # before close
    assert shared.reason(D(2), D(2)) is None
    assert shared.reason(D(2), D(1)) == "partagé au prorata des commandes"
    assert BulkOutcome(True, False, False, "first_come").reason(D(2), D(0)) == (
        "partagé par ordre d'arrivée des commandes")
    assert BulkOutcome(False, False, False, "pro_rata").reason(D(2), D(0)) == "colis incomplet : non acheté"
    assert BulkOutcome(False, True, False, "pro_rata").reason(D(2), D(0)) == "produit retiré : non acheté"
    assert BulkOutcome(False, False, True, "pro_rata").reason(D(2), D(0)) == (
        "pas assez de stock chez le fournisseur : non acheté")


def test_withdrawn_bulk_product_is_said_withdrawn(app):
    cycle = CycleFactory()
    oil = OfferFactory(cycle_id=cycle.id, price_cents=900, active=False, product=ProductFactory(
        name="Huile d'olive", unit="l", price_cents=900, case_size=D(6), portion_step=D(1)))
    order = OrderFactory(cycle_id=cycle.id)
    OrderLineFactory(order=order, offer_id=oil.id, quantity=D(7), quantity_allocated=D(0),
                     unit_price_cents=900, base_price_cents=900)
    db.session.commit()
    assert [b.reason for b in order_bulk_lines(order.id)] == ["produit retiré : non acheté"]


def test_order_page_queries_do_not_grow_with_short_bulk_lines(app, client, count_queries):
    cycle = CycleFactory(status="finalized")
    supplier = ProducerFactory(name="Épicerie en gros", kind="bulk_supplier")
    offers = [OfferFactory(cycle_id=cycle.id, price_cents=300, product=ProductFactory(
        producer=supplier, name=f"Vrac {n}", unit="kg", price_cents=300, case_size=D(5), portion_step=D("0.5")))
        for n in range(4)]
    orders = []
    for count in (1, 4):
        order = OrderFactory(cycle_id=cycle.id)
        for offer in offers[:count]:
            OrderLineFactory(order=order, offer_id=offer.id, quantity=D(3), quantity_allocated=D(2),
                             unit_price_cents=300, base_price_cents=300)
        orders.append(order.id)
    volunteer = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, volunteer.email)
    counts = []
    for order_id in orders:
        client.get(f"/commandes/commande/{order_id}")  # warm up (session, caches)
        db.session.expire_all()  # each page reads its order afresh, as in production
        with count_queries() as counter:
            page = plain(html.unescape(client.get(f"/commandes/commande/{order_id}").get_data(as_text=True)))
        counts.append(counter["n"])
        assert page.count("partagé au prorata des commandes") == (1 if order_id == orders[0] else 4)
    assert counts[0] == counts[1]


# --------------------------------------------------------------------------- signing sheet


PAYMENT_LABELS = ("espèces", "chèque", "carte", "solde")


def words(path: str) -> list[tuple[str, float, float, float, float]]:
    """The words of a PDF's first page with their boxes in points: (text, x_min, y_min, x_max, y_max)."""
    out = subprocess.run(["pdftotext", "-bbox", "-f", "1", "-l", "1", path, "-"], check=True,
                         capture_output=True, text=True).stdout
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    return [(html.unescape(text), float(x0), float(y0), float(x1), float(y1))
            for x0, y0, x1, y1, text in re.findall(pattern, out)]


def gray_page(path: str, tmp_path, dpi: int = 144) -> tuple[int, int, bytes]:
    """The first page as a grayscale image: width, height and one byte per pixel."""
    subprocess.run(["pdftoppm", "-gray", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", path,
                    str(tmp_path / "page")], check=True)
    data = (tmp_path / "page.pgm").read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and maxval == b"255"
    return int(width), int(height), pixels


def box_left_of(image, word, scale: float) -> bool:
    """Whether a tick box (a square of about 4 mm) is drawn just left of a word, on its line.

    Looks for the box's top or bottom edge: a dark horizontal run of 9 to 14 pt inside the strip
    left of the word, touching neither end of the strip (a table rule crosses the whole strip).
    """
    width, _height, pixels = image
    _text, x_min, y_min, _x_max, y_max = word
    left, right = int((x_min - 18) * scale), int((x_min - 0.5) * scale)
    for y in range(int((y_max - 14) * scale), int((y_max + 2) * scale)):
        row = pixels[y * width + left:y * width + right]
        run = 0
        for x, value in enumerate(row):
            if value < 128:
                run += 1
                continue
            if run and 9 * scale <= run <= 14 * scale and x - run > 0:
                return True
            run = 0
    return False


def test_signing_sheet_payment_boxes_sit_with_their_labels(app, tmp_path):
    make_week()
    document = db.session.scalar(sa.select(Document).where(Document.kind == "distribution_sheet"))
    text = pdf_text(document.path)
    assert text.count("espèces chèque carte solde montant reçu : ________ €") == 2  # both bags are to pay
    found = words(document.path)
    image = gray_page(document.path, tmp_path)
    labels = [word for word in found if word[0] in PAYMENT_LABELS]
    assert sorted(word[0] for word in labels) == sorted(PAYMENT_LABELS * 2)
    for word in labels:
        assert box_left_of(image, word, 2), f"no tick box right before « {word[0]} » on its line"
    # The receipt blank is a line of its own in the payment cell, with no box.
    for received in (word for word in found if word[0] == "reçu"):
        assert not box_left_of(image, received, 2)
        assert not any(label[2] == received[2] for label in labels)  # not on a label's line
