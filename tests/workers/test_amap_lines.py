"""AMAP season baskets (paid by the contract's cheques) read « réglé par contrat », not 0,00 €."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage
from orders import close, documents
from orders.contracts import subscribe
from orders.models import Order, OrderLine
from tests.factories import HouseholdFactory, OfferFactory, ProductFactory, SlotFactory, UserFactory
from tests.helpers import login
from tests.orders.test_contracts import NOW, Season
from tests.workers.test_document_contents import document, layout_lines
from tests.workers.test_finalize import pdf_text


@dataclass
class AmapWeek:
    """Ids of a finalized cycle: Martin takes only his 2 baskets, Diallo a basket and 1,5 kg of carrots."""

    cycle_id: int
    martin_order_id: int
    diallo_order_id: int
    slot_id: int


def amap_week() -> AmapWeek:
    """A season's first cycle (distribution Thursday 3 January 17:00-19:00), closed by hand and finalized.

    Martin has no slot (his order was made by the contract), Diallo chose 17:00-17:30."""
    season = Season(cycles=1)
    cycle = season.cycles[0]
    martin, diallo = HouseholdFactory(name="Famille Martin"), HouseholdFactory(name="Famille Diallo")
    subscribe(season.offer.id, martin.id, quantity=2, now=NOW)
    subscribe(season.offer.id, diallo.id, now=NOW)
    slot = SlotFactory(cycle_id=cycle.id, starts_at=cycle.distribution_starts_at,
                       ends_at=cycle.distribution_starts_at + timedelta(minutes=30))
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=season.farmer, name="Carottes",
                                                                       unit="kg", price_cents=280))
    orders = {o.household_id: o for o in db.session.scalars(sa.select(Order).where(Order.cycle_id == cycle.id))}
    orders[diallo.id].slot_id = slot.id
    db.session.add(OrderLine(order_id=orders[diallo.id].id, offer_id=carrots.id, quantity=Decimal("1.5"),
                             unit_price_cents=280, base_price_cents=280))
    db.session.commit()
    assert close.close_cycle(cycle.id, force=True)
    db.session.commit()
    assert close.finalize_cycle(cycle.id, inline=True).status == "finalized"
    return AmapWeek(cycle.id, orders[martin.id].id, orders[diallo.id].id, slot.id)


def plain(text: str) -> str:
    """Text with its non-breaking spaces (money, French punctuation) as plain spaces."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def mail_of(order_id: int) -> str:
    """The confirmation e-mail of an order's household, as written in the outbox."""
    household_id = db.session.get(Order, order_id).household_id
    return plain(db.session.scalar(sa.select(OutboxMessage.body).where(
        OutboxMessage.kind == "confirmation", OutboxMessage.key.like(f"%:household:{household_id}:%"))))


def table_rows(page: str) -> list[str]:
    """The rows of a page's tables as read on screen: tags dropped, spaces collapsed."""
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)
    return [" ".join(plain(html.unescape(re.sub(r"<[^>]+>", " ", row))).split()) for row in rows]


def test_bag_slips_say_the_basket_is_paid_by_contract_not_zero(app):
    week = amap_week()
    alone = layout_lines(document("bag_slips", "slot:0:0").path)
    assert "Petit panier Ferme des Saules 2 paniers contrat AMAP" in alone
    assert "Rien à payer — réglé par contrat AMAP" in alone
    assert "0,00 €" not in " ".join(alone) and "Montant de la commande" not in " ".join(alone)
    # Beside a basket, what the household buys keeps its price, and the bag its amounts.
    mixed = layout_lines(document("bag_slips", f"slot:{week.slot_id}:0").path)
    assert "Carottes Ferme des Saules 1,5 kg 4,20 €" in mixed
    assert "Petit panier Ferme des Saules 1 panier contrat AMAP" in mixed
    assert "Montant de la commande : 4,20 € · Reste à payer : 4,20 €" in mixed
    assert "0,00 €" not in " ".join(mixed)


def test_distribution_sheet_data_tells_a_bag_paid_by_contract(app):
    week = amap_week()
    alone = documents.bags(week.cycle_id, None)
    mixed = documents.bags(week.cycle_id, week.slot_id)
    assert [(bag.household, bag.paid_by_contract, bag.costs_nothing) for bag in alone] == [
        ("Famille Martin", True, True)]
    assert [(bag.household, bag.paid_by_contract, bag.due_cents) for bag in mixed] == [
        ("Famille Diallo", False, 420)]
    assert [(line.name, line.contract) for line in mixed[0].lines] == [("Carottes", False), ("Petit panier", True)]


def test_distribution_sheet_says_contrat_amap_not_zero_already_paid(app):
    week = amap_week()
    lines = layout_lines(document("distribution_sheet", "slot:0").path)
    assert "2 Famille Martin contrat AMAP réglé par contrat" in lines
    assert "0,00 €" not in " ".join(lines) and "déjà payé" not in " ".join(lines)
    mixed = pdf_text(document("distribution_sheet", f"slot:{week.slot_id}").path)
    assert "4,20 €" in mixed and "réglé par contrat" not in mixed


def test_order_page_shows_contract_baskets_without_a_price(app, client):
    week = amap_week()
    martin = UserFactory(roles=["member"], household_id=db.session.get(Order, week.martin_order_id).household_id)
    db.session.commit()
    login(client, martin.email)
    response = client.get(f"/commandes/commande/{week.martin_order_id}")
    assert response.status_code == 200
    rows = table_rows(response.get_data(as_text=True))
    assert "Petit panier Ferme des Saules 2 paniers contrat AMAP réglé par contrat" in rows
    assert "Total (hors paniers AMAP) 0,00 €" in rows
    # Beside a basket, a bought line keeps its prices (as a volunteer at the café reads it too).
    volunteer = UserFactory(roles=["volunteer"])
    db.session.commit()
    desk = app.test_client()
    login(desk, volunteer.email)
    rows = table_rows(desk.get(f"/commandes/commande/{week.diallo_order_id}").get_data(as_text=True))
    assert "Carottes Ferme des Saules 1,5 kg 2,80 € 4,20 €" in rows
    assert "Petit panier Ferme des Saules 1 panier contrat AMAP réglé par contrat" in rows
    assert "Total (hors paniers AMAP) 4,20 €" in rows


def test_confirmation_mail_of_a_basket_alone_says_nothing_to_pay_and_when_to_come(app):
    week = amap_week()
    body = mail_of(week.martin_order_id)
    assert "- Petit panier (Ferme des Saules) : 2 paniers, réglé par votre contrat AMAP\n" in body
    assert "Rien à payer au retrait." in body
    assert "0,00 €" not in body and "Montant de la commande" not in body and "Reste à payer" not in body
    # No slot chosen: when the distribution is, and to come during it.
    assert "Retrait : venez pendant la distribution, le jeudi 3 janvier de 17:00 à 19:00\n" in body
    assert "sans créneau" not in body
    assert "Le détail : http://localhost/commandes/commande/" in body


def test_confirmation_mail_keeps_the_amounts_of_what_is_bought_beside_a_basket(app):
    week = amap_week()
    body = mail_of(week.diallo_order_id)
    assert "Créneau de retrait : 17:00–17:30\n" in body
    assert "- Carottes (Ferme des Saules) : 1,5 kg = 4,20 €\n" in body
    assert "- Petit panier (Ferme des Saules) : 1 panier, réglé par votre contrat AMAP\n" in body
    assert "Montant de la commande : 4,20 €\nReste à payer au retrait : 4,20 €\n" in body
    assert "0,00 €" not in body and "Rien à payer" not in body
    assert "Le détail et le paiement en ligne : http://localhost/commandes/commande/" in body
