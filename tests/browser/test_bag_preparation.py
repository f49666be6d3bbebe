"""Preparing a bag on a 360 px phone when a product came short: what was received still goes in the bag."""
from __future__ import annotations

from playwright.sync_api import expect

from app.extensions import db
from tests.browser.conftest import sign_in
from tests.factories import UserFactory
from tests.helpers import PASSWORD
from tests.pickup.conftest import make_thursday


def test_bag_preparation_keeps_a_partial_shortage_in_the_checklist(app, live_server, page_factory):
    day = make_thursday()
    UserFactory(email="benevole@example.org", name="Paul Bénévole", roles=["volunteer"])
    eggs_id = day.line(day.martin, day.eggs).id
    salad_id = day.line(day.martin, day.salad).id
    bag_url = f"{live_server}/retrait/preparation/sac/{day.martin.id}"
    # Commit, then leave the database alone: on SQLite even a read here would hold the write lock.
    db.session.commit()

    page = page_factory(width=360, height=740)
    sign_in(page, live_server, "benevole@example.org", PASSWORD)
    page.goto(bag_url)

    # Two boxes of eggs ordered, one came.
    eggs = page.locator(f"#ligne-{eggs_id}")
    eggs.get_by_text("Il en manque ?").click()
    eggs.get_by_label("Quantité reçue").fill("1")
    eggs.get_by_role("button", name="Signaler le manque").click()
    expect(page.get_by_text("Manque enregistré")).to_be_visible()
    eggs = page.locator(f"#ligne-{eggs_id}")
    expect(eggs.get_by_text("À mettre : 1 pièce")).to_be_visible()
    expect(eggs.get_by_text("Manque signalé : reçu 1 pièce au lieu de 2 pièces")).to_be_visible()

    # The box received is still to tick; the bag is not ready without it.
    page.get_by_label("Salade").check()
    page.get_by_role("button", name="Sac prêt").click()
    expect(page.get_by_text("Pas encore coché : Œufs (boîte de 6).")).to_be_visible()
    page.get_by_label("Œufs (boîte de 6) (1 pièce)").check()
    page.get_by_label("Salade").check()
    page.get_by_role("button", name="Sac prêt").click()
    expect(page.get_by_text("1 sac prêt sur 2")).to_be_visible()  # back to the list of the slot's bags
    page.goto(bag_url)
    expect(page.get_by_text("Sac prêt.")).to_be_visible()
    assert page.locator(f"#coche-{eggs_id}").is_checked() and page.locator(f"#coche-{salad_id}").is_checked()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
