"""A household sees its balance, pays an order from it and gets its receipt, on a small phone."""
from decimal import Decimal

from playwright.sync_api import expect

from app.extensions import db
from orders.ledger import record_entry
from tests.browser.conftest import sign_in
from tests.factories import (
    HouseholdFactory,
    OrderFactory,
    OrderLineFactory,
    UserFactory,
)
from tests.helpers import PASSWORD


def test_household_pays_from_its_balance_and_opens_its_receipt(app, live_server, page_factory):
    household = HouseholdFactory(name="Foyer Leroy")
    UserFactory(email="jeanne@example.org", name="Jeanne", household=household, roles=["member"])
    order = OrderFactory(household_id=household.id)
    OrderLineFactory(order=order, unit_price_cents=1375, base_price_cents=1375, quantity=Decimal(2))
    order.total_cents = 2750
    record_entry(household.id, 3000, "topup", "topup:browser:1", note="versement au café")
    db.session.commit()

    page = page_factory(width=360, height=740)
    sign_in(page, live_server, "jeanne@example.org", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Mon solde").click()
    expect(page.locator("h1")).to_have_text("Mon solde")
    expect(page.locator("#solde")).to_contain_text("30,00")
    expect(page.locator("main")).to_contain_text("versement au café")
    # No card payment without Stripe keys; the page still fits a 360 px screen.
    assert page.get_by_role("button", name="Payer par carte").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    page.get_by_role("button", name="Payer avec mon solde").click()
    expect(page.get_by_role("status").filter(has_text="Payé depuis votre solde.")).to_be_visible()
    expect(page.locator("#solde")).to_contain_text("2,50")
    link = page.get_by_role("link", name="Reçu R-000001")
    expect(link).to_be_visible()
    response = page.request.get(live_server + link.get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.body().startswith(b"%PDF")
