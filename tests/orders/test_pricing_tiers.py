"""Solidarity price tiers: managed by the coordinator, followed by prices, reported per cycle."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Household, PriceTier
from orders.pricing import tier_takings, unit_price_cents
from orders.services import save_order
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    PriceTierFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login, post_form

D = Decimal


def test_unit_prices_follow_the_tier(app):
    """Base price for no tier, +10 % for supporters, the chosen share for pay-what-you-can."""
    supporter = PriceTier(name="Soutien", markup_bp=1000)
    free = PriceTier(name="Prix libre", pay_what_you_can=True, minimum_bp=5000)
    assert unit_price_cents(333, None) == 333
    assert unit_price_cents(333, supporter) == 366  # 366.3 rounded half up
    assert unit_price_cents(333, free, 5000) == 167  # 166.5 -> 167
    assert unit_price_cents(333, free, None) == 333


def test_coordinator_creates_tiers_and_assigns_a_household(app, client):
    """A coordinator creates a +10 % tier and moves a household into it; the cart shows its prices."""
    boss = UserFactory(roles=["coordinator"], household=None)
    household = HouseholdFactory(name="Foyer Leroy")
    member = UserFactory(household=household)
    cycle = CycleFactory()
    OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Miel", price_cents=800))
    SlotFactory(cycle_id=cycle.id)
    db.session.commit()
    login(client, boss.email)
    response = post_form(client, "/commandes/tarifs", {"name": "Soutien", "markup_percent": "10",
                                                        "minimum_percent": "100"})
    assert "Tarif enregistré" in response.get_data(as_text=True)
    tier = db.session.scalar(sa.select(PriceTier).where(PriceTier.name == "Soutien"))
    assert tier.markup_bp == 1000
    bad = post_form(client, "/commandes/tarifs", {"name": "Bizarre", "markup_percent": "beaucoup"})
    assert "doit être un nombre" in bad.get_data(as_text=True)
    response = post_form(client, "/commandes/tarifs/foyers?q=Leroy",
                         {"household_id": household.id, "tier_id": tier.id})
    assert "Tarif de Foyer Leroy changé" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Household, household.id).price_tier_id == tier.id
    client.post("/compte/deconnexion", data={"csrf_token": ""})
    client.delete_cookie("session")
    login(client, member.email)
    assert "8,80" in client.get("/commandes/panier").get_data(as_text=True)


def test_pay_what_you_can_share_on_the_cart(app, client):
    """A pay-what-you-can household types its share; below the minimum is refused."""
    household = HouseholdFactory(price_tier=PriceTierFactory(pay_what_you_can=True, minimum_bp=6000))
    member = UserFactory(household=household)
    cycle = CycleFactory()
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Pain", price_cents=400))
    slot = SlotFactory(cycle_id=cycle.id)
    db.session.commit()
    login(client, member.email)
    response = post_form(client, "/commandes/panier", {"cycle_id": cycle.id, f"q-{offer.id}": "2",
                                                        "slot_id": slot.id, "share_percent": "50"})
    assert "au moins 60 %" in response.get_data(as_text=True)
    response = post_form(client, "/commandes/panier", {"cycle_id": cycle.id, f"q-{offer.id}": "2",
                                                        "slot_id": slot.id, "share_percent": "75"})
    assert "Commande enregistrée : 6,00" in response.get_data(as_text=True)


@pytest.fixture()
def takings_cycle(app):
    """A cycle where three tiers ordered the same 3,33 product."""
    cycle = CycleFactory()
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(price_cents=333))
    slot = SlotFactory(cycle_id=cycle.id)
    tiers = {"Habitant": PriceTierFactory(name="Habitant"), "Soutien": PriceTierFactory(name="Soutien", markup_bp=1000),
             "Libre": PriceTierFactory(name="Libre", pay_what_you_can=True, minimum_bp=5000)}
    db.session.commit()
    for name, share in (("Habitant", None), ("Soutien", None), ("Soutien", None), ("Libre", 5000)):
        household = HouseholdFactory(price_tier=tiers[name])
        db.session.commit()
        save_order(cycle.id, household.id, {offer.id: (D(3), D(0))}, slot.id, None, chosen_share_bp=share)
    db.session.commit()
    return cycle


def test_what_each_tier_brought_in(takings_cycle, client):
    """Per tier: households, takings, takings at base price and the difference; shown to the coordinator."""
    rows = {r.tier_name: r for r in tier_takings(takings_cycle.id)}
    assert (rows["Habitant"].total_cents, rows["Habitant"].difference_cents) == (999, 0)
    assert rows["Soutien"].households == 2 and rows["Soutien"].total_cents == 2 * 1098
    assert rows["Soutien"].base_total_cents == 2 * 999
    assert rows["Libre"].total_cents == 501 and rows["Libre"].difference_cents == -498
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)
    page = client.get(f"/commandes/cycles/{takings_cycle.id}/tarifs").get_data(as_text=True)
    assert "21,96" in page and "-4,98" in page.replace("\u202f", "").replace("\xa0", "")


def test_takings_leave_amap_baskets_out_and_count_households_without_tier_in_the_default(app):
    """An AMAP basket is 0 € in the cycle (paid with its contract): at base price it made a supporter
    tier look as if it brought in less than cost. A household without a tier pays the default tier."""
    from orders.contracts import subscribe
    from tests.orders.test_contracts import NOW, Season

    season = Season()
    cycle = season.cycles[0]
    PriceTierFactory(name="Habitant", is_default=True)
    supporter = PriceTierFactory(name="Soutien", markup_bp=1000)
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(price_cents=1000))
    slot = SlotFactory(cycle_id=cycle.id)
    member, untiered = HouseholdFactory(price_tier=supporter), HouseholdFactory(price_tier=None)
    db.session.commit()
    subscribe(season.offer.id, member.id, now=NOW)  # a 12 € basket in each cycle, 0 € in the order
    for household in (member, untiered):
        save_order(cycle.id, household.id, {offer.id: (D(2), D(0))}, slot.id, None, now=NOW)
    db.session.commit()
    rows = {r.tier_name: r for r in tier_takings(cycle.id)}
    assert set(rows) == {"Soutien", "Habitant"}
    assert (rows["Soutien"].total_cents, rows["Soutien"].base_total_cents, rows["Soutien"].lines) == (2200, 2000, 1)
    habitant = rows["Habitant"]
    assert (habitant.households, habitant.total_cents, habitant.difference_cents) == (1, 2000, 0)


def test_tier_list_writes_a_decimal_comma(app, client):
    """« prix -12,5 % », as French is written, not « -12.5 »."""
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.add(PriceTier(name="Quartier", markup_bp=-1250))
    db.session.commit()
    login(client, boss.email)
    page = client.get("/commandes/tarifs").get_data(as_text=True)
    assert "prix -12,5 %" in page and "-12.5" not in page


def test_households_without_a_tier_count_in_the_default_one_and_the_selects_say_so(app, client):
    boss = UserFactory(roles=["coordinator"], household=None)
    quartier = PriceTierFactory(name="Habitant·e du quartier", markup_bp=0, is_default=True)
    soutien = PriceTierFactory(name="Soutien", markup_bp=1000)
    HouseholdFactory(price_tier_id=None)
    HouseholdFactory(price_tier_id=None)
    HouseholdFactory(price_tier_id=quartier.id)
    HouseholdFactory(price_tier_id=soutien.id)
    HouseholdFactory(price_tier_id=None, active=False)  # gone: counts nowhere
    db.session.commit()
    login(client, boss.email)
    page = client.get("/commandes/tarifs").get_data(as_text=True)
    rows = {name: count for name, count in re.findall(
        r"<td class=\"title\">([^<]+?)(?: <span class=\"badge\">par défaut</span>)?</td>\s*<td[^>]*>[^<]*</td>"
        r"\s*<td class=\"num\"[^>]*>(\d+)</td>", page)}
    assert rows == {"Habitant·e du quartier": "3", "Soutien": "1"}
    chooser = client.get("/commandes/tarifs/foyers?q=foyer").get_data(as_text=True)
    assert "Tarif par défaut (Habitant·e du quartier)" in chooser
