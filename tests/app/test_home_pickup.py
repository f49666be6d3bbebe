"""After the deadline the home page tells the household when and where to collect its bag, and what is left to pay."""
from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

from app.extensions import db
from orders.payment_models import Payment
from tests.factories import CycleFactory, HouseholdFactory, OrderFactory, SiteFactory, SlotFactory, UserFactory
from tests.helpers import login


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True)).replace("\u202f", " ").replace("\xa0", " ")


def test_home_shows_the_next_pickup_once_ordering_has_closed(app, client):
    household = HouseholdFactory()
    UserFactory(email="claire@example.org", name="Claire", household=household, roles=["member"])
    now = datetime.now(UTC)
    thursday = (now + timedelta(days=2)).replace(hour=15, minute=30, second=0, microsecond=0)
    cycle = CycleFactory(site_id=SiteFactory(name="Café des Tilleuls").id, status="closed",
                         opens_at=now - timedelta(days=6), closes_at=now - timedelta(hours=1),
                         distribution_date=thursday.date(), distribution_starts_at=thursday,
                         distribution_ends_at=thursday + timedelta(hours=3))
    slot = SlotFactory(cycle_id=cycle.id, starts_at=thursday + timedelta(minutes=30),
                       ends_at=thursday + timedelta(minutes=60))
    order = OrderFactory(cycle_id=cycle.id, household_id=household.id, slot_id=slot.id, total_cents=2350,
                         bag_number=7)
    later = CycleFactory(status="closed", opens_at=now - timedelta(days=6), closes_at=now - timedelta(hours=1),
                         distribution_date=(thursday + timedelta(days=7)).date(),
                         distribution_starts_at=thursday + timedelta(days=7),
                         distribution_ends_at=thursday + timedelta(days=7, hours=3))
    OrderFactory(cycle_id=later.id, household_id=household.id, total_cents=999)
    db.session.commit()
    page = text(login(client, "claire@example.org"))
    assert "Votre prochain retrait" in page and "à Café des Tilleuls" in page
    local = thursday.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert f"{(local + timedelta(minutes=30)):%H:%M} – {(local + timedelta(minutes=60)):%H:%M}" in page
    assert "Sac n° 7" in page and "Reste à payer au retrait : 23,50 €" in page and "9,99" not in page
    assert f'href="/commandes/commande/{order.id}"' in page

    db.session.add(Payment(order_id=order.id, household_id=household.id, method="cash", amount_cents=2350,
                           status="succeeded"))
    db.session.commit()
    assert "Déjà payée." in text(client.get("/"))

    cycle.status = "cancelled"
    later.status = "cancelled"
    db.session.commit()
    assert "Votre prochain retrait" not in text(client.get("/"))
