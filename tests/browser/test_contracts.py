"""In Chromium: a member subscribes to a season basket and hands a basket to a neighbour; a case fills up."""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from orders.models import Order, OrderLine
from tests.browser.conftest import sign_in
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    UserFactory,
)
from tests.helpers import PASSWORD
from tests.orders.test_contracts import Season


def test_member_subscribes_then_hands_a_basket_to_a_neighbour(app, live_server, page):
    season = Season()
    household = HouseholdFactory(name="Famille Martin")
    neighbour = HouseholdFactory(name="Famille Lefèvre")
    UserFactory(household_id=household.id, email="claire@example.org", roles=["member"])
    # Read what the test needs now: touching rows after the commit would open a write transaction
    # (BEGIN IMMEDIATE on SQLite) that blocks the server.
    offer_id, cycle_id, neighbour_id = season.offer.id, season.cycles[1].id, neighbour.id
    db.session.commit()

    sign_in(page, live_server, "claire@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Contrats AMAP").click()
    offer = page.locator(f"#offre-{offer_id}")
    offer.get_by_label("Nombre de paniers").fill("1")
    offer.get_by_role("button", name="M'inscrire à « Petit panier hiver »").click()
    expect(page.locator(".flash")).to_contain_text("Inscription enregistrée")
    expect(page.locator(".contract")).to_contain_text("96,00")  # 8 x 12,00 €

    second = page.locator(".schedule-row").nth(1)
    second.get_by_text("Je serai absent·e ce jour-là").click()
    second.get_by_label("Le donner à un autre foyer").check()
    second.get_by_label("Nom du foyer qui le récupère").fill("lefèvre")
    second.get_by_role("button", name="Déclarer l'absence").click()
    expect(page.locator(".flash")).to_contain_text("Famille Lefèvre récupérera votre panier")
    expect(page.locator(".schedule-row").nth(1)).to_contain_text("panier donné à Famille Lefèvre")

    holder = db.session.scalar(
        sa.select(Order.household_id).join(OrderLine)
        .where(Order.cycle_id == cycle_id, OrderLine.contract_id.is_not(None)))
    db.session.rollback()
    assert holder == neighbour_id


def test_member_sees_the_case_filling_up(app, live_server, page):
    cycle = CycleFactory()
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        name="Riz complet", unit="kg", case_size=Decimal(25), portion_step=Decimal("0.5")))
    OrderLineFactory(order=OrderFactory(cycle_id=cycle.id), offer_id=rice.id, quantity=Decimal(10))
    household = HouseholdFactory(name="Famille Martin")
    UserFactory(household_id=household.id, email="martin@example.org", roles=["member"])
    cycle_id, rice_id = cycle.id, rice.id
    db.session.commit()

    sign_in(page, live_server, "martin@example.org", PASSWORD)
    page.goto(live_server + "/commandes/vrac")
    row = page.locator(".bulk-row", has_text="Riz complet")
    assert "10 / 25 kg, il manque 15 kg" in row.inner_text()
    assert row.locator("progress").get_attribute("value") == "10.000"

    # Another household orders 12 kg and accepts 3 more: the case is nearly full, tolerances complete it.
    OrderLineFactory(order=OrderFactory(cycle_id=cycle_id), offer_id=rice_id, quantity=Decimal(12),
                     tolerance=Decimal(3))
    db.session.commit()
    page.reload()
    row = page.locator(".bulk-row", has_text="Riz complet")
    assert "22 / 25 kg, il manque 3 kg" in row.inner_text()
    assert "les tolérances le complètent" in row.inner_text()
