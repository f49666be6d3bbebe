"""A member's own pages on a 375 px phone: the order detail and "Mes commandes" fit without sideways scrolling."""
from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import expect

from app.extensions import db
from orders.services import save_order
from tests.browser.conftest import ARTIFACTS, sign_in
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

#: Nothing may stick out of the screen, even inside a scrolling box: a phone hides it without a hint.
NOTHING_CUT_OFF = """() => {
  const width = window.innerWidth;
  if (document.documentElement.scrollWidth > width + 1) return 'page';
  for (const box of document.querySelectorAll('main *')) {
    if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== 'visible') return box.className;
    const r = box.getBoundingClientRect();
    if (r.width && r.right > width + 1) return box.tagName + ' ' + box.textContent.slice(0, 40);
  }
  return '';
}"""


def test_order_detail_and_history_fit_a_small_phone(app, live_server, page_factory):
    """Léa's order, with long names and a bulk line, reads whole on a 375 px phone, prices and total included."""
    cycle = CycleFactory()
    farm = ProducerFactory(name="Ferme des Saules et des Grands Prés")
    bulk = ProducerFactory(name="Vrac du Bourg", kind="bulk_supplier")
    squash = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=farm, name="Courges butternut de plein champ", unit="kg", price_cents=1280))
    eggs = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Œufs", price_cents=240))
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=bulk, name="Riz complet", unit="kg", price_cents=320, case_size=D(25), portion_step=D("0.5")))
    slot = SlotFactory(cycle_id=cycle.id, capacity=10)
    household = HouseholdFactory(name="Foyer Bernard")
    UserFactory(email="lea@example.org", name="Léa", household=household)
    db.session.commit()
    order_id = save_order(cycle.id, household.id, {squash.id: (D("12.5"), D(0)), eggs.id: (D(2), D(0)),
                                                   rice.id: (D("2.5"), D(1))}, slot.id, None).id
    # Commit, then leave the database alone: on SQLite even a read here would hold the write lock.
    db.session.commit()

    page = page_factory(width=375, height=740)
    sign_in(page, live_server, "lea@example.org", PASSWORD)
    page.goto(f"{live_server}/commandes/commande/{order_id}")
    expect(page.get_by_text("2 pièces")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "member-order-detail-375.png"), full_page=True)
    assert page.evaluate(NOTHING_CUT_OFF) == ""
    # Unit price and line total of the squash, and the order total, are on screen.
    for text in ("12,80", "160,00", "172,80"):
        shown = page.get_by_text(re.compile(text)).last
        expect(shown).to_be_visible()
        assert shown.bounding_box()["x"] + shown.bounding_box()["width"] <= 375

    page.get_by_role("navigation").get_by_role("link", name="Mes commandes").click()
    expect(page.get_by_role("heading", name="Mes commandes")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "member-history-375.png"), full_page=True)
    assert page.evaluate(NOTHING_CUT_OFF) == ""
    detail = page.get_by_role("link", name="Détail")
    box = detail.bounding_box()
    assert box["x"] + box["width"] <= 375
    detail.click()
    expect(page).to_have_url(re.compile(rf"/commandes/commande/{order_id}$"))

    # A computer keeps the ordinary table, headers included.
    wide = page_factory(width=1024, height=768)
    sign_in(wide, live_server, "lea@example.org", PASSWORD)
    wide.goto(f"{live_server}/commandes/commande/{order_id}")
    expect(wide.get_by_role("columnheader", name="Prix")).to_be_visible()
    wide.screenshot(path=str(ARTIFACTS / "member-order-detail-1024.png"), full_page=True)
    assert wide.evaluate(NOTHING_CUT_OFF) == ""
