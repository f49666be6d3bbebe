"""Ordering in a real browser: a member's cart, the deadline, a volunteer at the café, live demand."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.db import utcnow
from app.extensions import db
from orders.models import Cycle, Order
from orders.services import save_order
from tests.browser.conftest import sign_in
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import PASSWORD

D = Decimal


@pytest.fixture()
def market(app):
    """An open cycle with a farm and a bulk supplier, one slot, a member's household."""
    cycle = CycleFactory()
    farm = ProducerFactory(name="Ferme des Saules")
    bulk = ProducerFactory(name="Vrac du Bourg", kind="bulk_supplier")
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Carottes", unit="kg",
                                                                      price_cents=280))
    eggs = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Œufs", price_cents=240))
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=bulk, name="Riz complet", unit="kg", price_cents=320, case_size=D(25), portion_step=D("0.5")))
    slot = SlotFactory(cycle_id=cycle.id, capacity=10)
    household = HouseholdFactory(name="Foyer Bernard")
    UserFactory(email="lea@example.org", name="Léa", household=household)
    db.session.commit()
    return {"cycle": cycle, "farm": farm, "carrots": carrots, "eggs": eggs, "rice": rice, "slot": slot,
            "household": household}


def test_member_orders_across_two_producers_then_changes(live_server, page, market):
    """Léa orders carrots and rice, sees the total, then changes to eggs before the deadline."""
    sign_in(page, live_server, "lea@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Ma commande").click()
    expect(page.get_by_role("heading", name="Ferme des Saules")).to_be_visible()
    expect(page.get_by_role("heading", name="Vrac du Bourg")).to_be_visible()
    page.get_by_label("Carottes").fill("1,5")
    page.get_by_label("Riz complet").fill("2,5")
    page.get_by_label("Créneau de retrait").select_option(index=0)
    page.get_by_role("button", name="Confirmer ma commande").click()
    expect(page.locator("body")).to_contain_text("Commande enregistrée : 12,20")  # 4,20 + 8,00

    page.get_by_label("Carottes").fill("")
    page.get_by_label("Œufs").fill("6")
    page.get_by_role("button", name="Confirmer ma commande").click()
    expect(page.locator("body")).to_contain_text("Commande enregistrée : 22,40")  # 14,40 + 8,00
    page.get_by_role("navigation").get_by_role("link", name="Mes commandes").click()
    expect(page.locator("main")).to_contain_text("22,40")
    page.get_by_role("link", name="Détail").click()
    expect(page.locator("main")).to_contain_text("Œufs")
    expect(page.locator("main")).not_to_contain_text("Carottes")


def test_the_same_order_is_refused_after_the_deadline(live_server, page, market):
    """The cart is open in the browser when the deadline passes: confirming is refused."""
    sign_in(page, live_server, "lea@example.org", PASSWORD)
    page.goto(live_server + "/commandes/panier")
    page.get_by_label("Carottes").fill("2")
    page.get_by_label("Créneau de retrait").select_option(index=0)
    page.get_by_role("button", name="Confirmer ma commande").click()
    expect(page.locator("body")).to_contain_text("Commande enregistrée")
    page.get_by_label("Carottes").fill("5")

    db.session.execute(sa.update(Cycle).where(Cycle.id == market["cycle"].id)
                       .values(closes_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    page.get_by_role("button", name="Confirmer ma commande").click()
    expect(page.locator("body")).to_contain_text("La date limite de commande est passée")
    db.session.expire_all()
    order = db.session.scalar(sa.select(Order))
    assert [line.quantity for line in order.lines] == [D(2)]


def test_volunteer_orders_for_a_household(live_server, page, market):
    """At the café, a volunteer finds the Bernard household and orders for it."""
    UserFactory(email="paul@example.org", name="Paul", household=None, roles=["volunteer"])
    db.session.commit()
    sign_in(page, live_server, "paul@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Commande pour un foyer").click()
    page.get_by_label("Nom, e-mail ou téléphone").fill("bernard")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("link", name="Foyer Bernard").click()
    expect(page.locator("body")).to_contain_text("Commande pour le foyer Foyer Bernard")
    page.get_by_label("Œufs").fill("12")
    page.get_by_label("Créneau de retrait").select_option(index=0)
    page.get_by_role("button", name="Confirmer ma commande").click()
    expect(page.locator("body")).to_contain_text("Commande enregistrée : 28,80")
    db.session.expire_all()
    order = db.session.scalar(sa.select(Order))
    assert order.household_id == market["household"].id and order.entered_by_volunteer


def test_producer_sees_the_demand_move(live_server, page, market):
    """The farm's demand page shows what households order, as they order it."""
    UserFactory(email="ferme@example.org", name="Jeanne", household=None, roles=["producer"],
                producer_id=market["farm"].id)
    db.session.commit()
    sign_in(page, live_server, "ferme@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Demande en cours").click()
    carrots_cell = page.locator(f"td[data-offer='{market['carrots'].id}']")
    expect(carrots_cell).to_have_text(re.compile(r"^\s*0"))
    expect(page.locator("body")).not_to_contain_text("Riz complet")  # another producer's product

    save_order(market["cycle"].id, market["household"].id, {market["carrots"].id: (D("3.5"), D(0))},
               market["slot"].id, None)
    db.session.commit()
    page.reload()
    expect(carrots_cell).to_have_text(re.compile(r"^\s*3,5"))
    expect(page.locator("body")).not_to_contain_text("Foyer Bernard")  # names hidden unless the coordinator allows
