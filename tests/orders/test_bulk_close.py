"""The close pipeline with bulk products and AMAP baskets: households pay what they get, sheets show it."""
from __future__ import annotations

import subprocess
from decimal import Decimal

import sqlalchemy as sa

from app.extensions import db
from app.models import Document
from orders import close
from orders.contracts import subscribe
from orders.models import Order, OrderLine
from tests.factories import HouseholdFactory, ProducerFactory, ProductFactory
from tests.orders.test_bulk import Shop

D = Decimal


def pdf_text(path: str) -> str:
    """The text of a PDF as pdftotext lays it out."""
    return subprocess.run(["pdftotext", "-layout", path, "-"], check=True, capture_output=True, text=True).stdout


def test_finalize_allocates_cases_and_charges_only_what_is_given(app):
    shop = Shop()
    martin = shop.order("Famille Martin", rice=("20", "0"), oil=("4", "0"), minutes=1)
    diallo = shop.order("Famille Diallo", rice=("10", "0"), oil=("3", "0"), minutes=2)
    # An AMAP basket in the same cycle, paid for the season: it adds nothing to the weekly total.
    from orders.contracts import create_contract_offer

    farm = ProducerFactory(name="Ferme des Saules")
    basket = ProductFactory(producer=farm, name="Panier AMAP", unit="basket", price_cents=1500,
                            is_contract_basket=True)
    cycle = shop.cycle
    offer = create_contract_offer(basket.id, cycle.site_id, "Saison", cycle.distribution_date,
                                  cycle.distribution_date, 1, 1500)
    subscribe(offer.id, martin.household_id, now=cycle.opens_at)
    subscribe(offer.id, HouseholdFactory(name="Famille Abadie").id, now=cycle.opens_at)
    cycle_id, martin_id, diallo_id = cycle.id, martin.id, diallo.id
    assert close.close_cycle(cycle_id, force=True)
    db.session.commit()

    result = close.finalize_cycle(cycle_id, inline=True)
    assert result.status == "finalized"
    # Rice: 30 kg ordered, one 25 kg sack shared 2:1 in half kilos; oil: 7 bottles, one case of 6.
    given = {(line.order_id, line.offer_id): line.quantity_allocated for line in db.session.scalars(
        sa.select(OrderLine).where(OrderLine.contract_id.is_(None)))}
    assert given[(martin_id, shop.rice.id)] == D("16.5") and given[(diallo_id, shop.rice.id)] == D("8.5")
    assert given[(martin_id, shop.oil.id)] == D(3) and given[(diallo_id, shop.oil.id)] == D(3)
    totals = {o.id: o.total_cents for o in db.session.scalars(sa.select(Order))}
    assert totals[martin_id] == 16 * 240 + 120 + 3 * 900  # 16,5 kg x 2,40 + 3 bottles; the basket is prepaid
    assert totals[diallo_id] == 8 * 240 + 120 + 3 * 900

    repackaging = db.session.scalar(sa.select(Document).where(Document.kind == "repackaging"))
    text = pdf_text(repackaging.path)
    assert "Famille Martin" in text and "16,5" in text and "8,5" in text
    purchase = db.session.scalar(sa.select(Document).where(
        Document.kind == "purchase_order", Document.chunk == f"producer:{farm.id}"))
    assert "Panier AMAP" in pdf_text(purchase.path)
