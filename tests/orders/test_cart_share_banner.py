"""The cart's red banner also tells form errors, such as an unreadable share of the price.

(A cart test: it sits beside the contract tests only because the cart tests were being edited by
someone else at the time; it belongs with tests/orders/test_cart_pages.py.)
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.models import Order
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    PriceTierFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login
from tests.orders.test_cart_pages import post_cart
from tests.pickup.conftest import text

BANNER = "La commande n'a pas été enregistrée"


@pytest.fixture()
def pay_what_you_can(app, client):
    """A signed-in pay-what-you-can household (at least 50 %) whose order of 2,80 € is confirmed."""
    cycle = CycleFactory()
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=ProducerFactory(name="Ferme des Saules"), name="Carottes", unit="kg", price_cents=280))
    slot = SlotFactory(cycle_id=cycle.id, capacity=3)
    household = HouseholdFactory(name="Foyer Martin",
                                 price_tier=PriceTierFactory(pay_what_you_can=True, minimum_bp=5000))
    UserFactory(household=household, email="martin@example.org")
    db.session.commit()
    login(client, "martin@example.org")
    saved = post_cart(client, {f"q-{carrots.id}": "1", "slot_id": slot.id})
    assert "Commande enregistrée : 2,80" in text(saved)
    return {"carrots": carrots, "slot": slot}


@pytest.mark.parametrize("typed", ["500", "-5", "abc"])
def test_an_invalid_share_is_told_at_the_top_of_the_cart(client, pay_what_you_can, typed):
    shop = pay_what_you_can
    response = post_cart(client, {f"q-{shop['carrots'].id}": "2", "slot_id": shop["slot"].id,
                                  "share_percent": typed})
    page = text(response)
    assert response.status_code == 422
    assert BANNER in page
    banner = page[page.index(BANNER):page.index("</div>", page.index(BANNER))]
    assert "Ma part du prix (en %)" in banner and 'href="#share_percent"' in banner
    # The banner comes before the order still standing and before the long list of products.
    assert page.index(BANNER) < page.index("Commande en cours : 2,80") < page.index("Carottes")
    db.session.expire_all()
    assert db.session.scalar(sa.select(Order.total_cents)) == 280


def test_a_slot_with_one_place_left_says_place_in_the_singular(app):
    from orders.routes import _slot_label
    from tests.factories import SlotFactory

    slot = SlotFactory(capacity=3, booked=2)
    with app.test_request_context():
        assert _slot_label(slot).endswith("(1 place restante)")
        slot.booked = 1
        assert _slot_label(slot).endswith("(2 places restantes)")
