"""In Chromium: a member subscribes to a season basket and skips one; a volunteer hands one over; a case fills up."""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from orders.contracts import subscribe
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
from tests.orders.test_contracts import NOW, Season


def test_member_subscribes_then_declares_an_absence(app, live_server, page):
    season = Season()
    household = HouseholdFactory(name="Famille Martin")
    HouseholdFactory(name="Famille Lefèvre")
    UserFactory(household_id=household.id, email="claire@example.org", roles=["member"])
    # Read what the test needs now: touching rows after the commit would open a write transaction
    # (BEGIN IMMEDIATE on SQLite) that blocks the server.
    offer_id, cycle_id = season.offer.id, season.cycles[1].id
    db.session.commit()

    sign_in(page, live_server, "claire@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Contrats AMAP").click()
    offer = page.locator(f"#offre-{offer_id}")
    # Sharing a basket is arranged with a volunteer: the member names no other household.
    expect(offer).to_contain_text("Pour partager ce panier avec un autre foyer, demandez-le à la coordination")
    expect(offer.get_by_label("Partagé avec le foyer (facultatif)")).to_have_count(0)
    offer.get_by_label("Nombre de paniers").fill("1")
    offer.get_by_role("button", name="M'inscrire à « Petit panier hiver »").click()
    expect(page.locator(".flash")).to_contain_text("Inscription enregistrée")
    expect(page.locator(".contract")).to_contain_text("96,00")  # 8 x 12,00 €

    second = page.locator(".schedule-row").nth(1)
    second.get_by_text("Je serai absent·e ce jour-là").click()
    expect(second).to_contain_text("Pour donner votre panier à un autre foyer, demandez-le à la coordination")
    second.get_by_role("button", name="Déclarer l'absence").click()
    expect(page.locator(".flash")).to_contain_text("le producteur apportera un panier de moins")
    expect(page.locator(".schedule-row").nth(1)).to_contain_text("absent·e, panier non apporté")

    holders = db.session.scalars(
        sa.select(Order.household_id).join(OrderLine)
        .where(Order.cycle_id == cycle_id, OrderLine.contract_id.is_not(None))).all()
    db.session.rollback()
    assert holders == []


def test_volunteer_hands_a_basket_to_a_neighbour_at_the_cafe(app, live_server, page):
    season = Season()
    household = HouseholdFactory(name="Famille Martin")
    neighbour = HouseholdFactory(name="Famille Lefèvre")
    contract = subscribe(season.offer.id, household.id, now=NOW)
    UserFactory(email="benevole@example.org", roles=["volunteer"])
    contract_id, cycle_id, neighbour_id = contract.id, season.cycles[1].id, neighbour.id
    db.session.commit()

    sign_in(page, live_server, "benevole@example.org", PASSWORD)
    page.goto(live_server + f"/commandes/contrats/contrat/{contract_id}")
    second = page.locator(".schedule-row").nth(1)
    second.get_by_text("Déclarer une absence").click()
    second.get_by_label("Le donner à un autre foyer").check()
    second.get_by_label("Foyer qui le récupère").select_option(label="Famille Lefèvre")
    second.get_by_role("button", name="Déclarer l'absence").click()
    expect(page.locator(".flash")).to_contain_text("Famille Lefèvre récupérera le panier")
    expect(page.locator(".schedule-row").nth(1)).to_contain_text("donné à Famille Lefèvre")

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
