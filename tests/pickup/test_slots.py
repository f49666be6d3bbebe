"""The household's slot: choose, change until the deadline, capacity under concurrency, .ics file."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta

import icalendar
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.timeutil import local_to_utc
from orders.models import Cycle, Order
from pickup.models import Slot
from pickup.services import PickupError, choose_slot
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OrderFactory,
    SiteFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login, post_form
from tests.pickup.conftest import text


def _open_cycle(capacity: int = 2, slots: int = 3):
    """An open cycle closing in two days, its distribution on the day after, with slots."""
    site = SiteFactory(name="Café des Tilleuls", address="3 rue des Tilleuls, 26000 Valence")
    now = datetime.now(UTC)
    day = (now + timedelta(days=3)).date()
    start = local_to_utc(day, time(16, 30))
    cycle = CycleFactory(site_id=site.id, opens_at=now - timedelta(days=1), closes_at=now + timedelta(days=2),
                         distribution_date=day, distribution_starts_at=start,
                         distribution_ends_at=start + timedelta(hours=3), status="open")
    made = [SlotFactory(cycle_id=cycle.id, starts_at=start + timedelta(minutes=30 * i),
                        ends_at=start + timedelta(minutes=30 * (i + 1)), capacity=capacity) for i in range(slots)]
    return cycle, made


@pytest.fixture()
def app_config(app_config):
    """Enough pooled connections for the parallel clients."""
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 20, "max_overflow": 0, "pool_timeout": 60}
    return app_config


@pytest.fixture()
def member(app):
    """A member whose household has an order in an open cycle, without a slot yet."""
    cycle, slots = _open_cycle()
    household = HouseholdFactory(name="Foyer Dupont")
    UserFactory(email="marie@example.org", name="Marie", household=household, roles=["member"])
    order = OrderFactory(cycle_id=cycle.id, household_id=household.id, status="confirmed")
    db.session.commit()
    return {"cycle": cycle, "slots": slots, "order": order, "household": household}


def _booked(slot_id: int) -> int:
    db.session.expire_all()
    return db.session.get(Slot, slot_id).booked


def test_member_chooses_then_changes_slot(client, member):
    login(client, "marie@example.org")
    order, (first, second, _third) = member["order"], member["slots"]
    page = text(client.get("/retrait/mon-creneau"))
    assert "pas encore choisi de créneau" in page and "16:30–17:00" in page and "(2 places restantes)" in page
    response = post_form(client, f"/retrait/mon-creneau/{order.id}", {f"o{order.id}-slot": str(first.id)},
                         form_url="/retrait/mon-creneau")
    page = text(response)
    assert "votre créneau est enregistré" in page and "Votre créneau : 16:30–17:00" in page
    assert _booked(first.id) == 1
    post_form(client, f"/retrait/mon-creneau/{order.id}", {f"o{order.id}-slot": str(second.id)},
              form_url="/retrait/mon-creneau")
    assert (_booked(first.id), _booked(second.id)) == (0, 1)
    assert db.session.get(Order, order.id).slot_id == second.id


def test_one_place_left_is_written_in_the_singular(client, member):
    first = member["slots"][0]
    db.session.execute(sa.update(Slot).where(Slot.id == first.id).values(booked=Slot.capacity - 1))
    db.session.commit()
    login(client, "marie@example.org")
    page = text(client.get("/retrait/mon-creneau"))
    assert "(1 place restante)" in page and "(2 places restantes)" in page


def test_the_cart_links_to_the_slot_page_and_its_calendar_file(client, member):
    """Once the order is confirmed, the cart leads to "Mon créneau de retrait", then to the .ics file."""
    order, slot = member["order"], member["slots"][0]
    slot_page = f'href="/retrait/mon-creneau#commande-{order.id}"'
    ics = f'href="/retrait/mon-creneau/{order.id}/creneau.ics"'
    order.status = "cancelled"
    db.session.commit()
    login(client, "marie@example.org")
    assert slot_page not in text(client.get("/commandes/panier"))
    order = db.session.get(Order, order.id)
    order.status = "confirmed"
    db.session.commit()
    page = text(client.get("/commandes/panier"))
    assert slot_page in page and "Mon créneau de retrait" in page
    assert ics not in page  # no slot chosen yet
    order.slot_id = slot.id
    db.session.commit()
    page = text(client.get("/commandes/panier"))
    assert ics in page and "Ajouter le créneau à mon agenda" in page
    assert client.get(f"/retrait/mon-creneau/{order.id}/creneau.ics").status_code == 200


def test_full_slot_is_refused(client, member):
    first = member["slots"][0]
    db.session.execute(sa.update(Slot).where(Slot.id == first.id).values(booked=Slot.capacity))
    db.session.commit()
    login(client, "marie@example.org")
    order = member["order"]
    page = text(client.get("/retrait/mon-creneau"))
    assert "(complet)" in page
    response = post_form(client, f"/retrait/mon-creneau/{order.id}", {f"o{order.id}-slot": str(first.id)},
                         form_url="/retrait/mon-creneau")
    assert "complet" in text(response)
    assert db.session.get(Order, order.id).slot_id is None


def test_slot_change_after_deadline_is_refused(client, member):
    order, slots = member["order"], member["slots"]
    login(client, "marie@example.org")
    post_form(client, f"/retrait/mon-creneau/{order.id}", {f"o{order.id}-slot": str(slots[0].id)},
              form_url="/retrait/mon-creneau")
    token_page = client.get("/retrait/mon-creneau")
    cycle = db.session.get(Cycle, member["cycle"].id)
    cycle.closes_at = datetime.now(UTC) - timedelta(minutes=1)
    db.session.commit()
    from tests.helpers import csrf_token

    response = client.post(f"/retrait/mon-creneau/{order.id}",
                           data={"csrf_token": csrf_token(token_page.data), f"o{order.id}-slot": str(slots[1].id)},
                           follow_redirects=True)
    page = text(response)
    assert "La date limite est passée" in page
    assert (_booked(slots[0].id), _booked(slots[1].id)) == (1, 0)
    assert db.session.get(Order, order.id).slot_id == slots[0].id


def test_another_households_order_is_not_found(client, member):
    other = OrderFactory(cycle_id=member["cycle"].id, household_id=HouseholdFactory().id)
    db.session.commit()
    login(client, "marie@example.org")
    response = post_form(client, f"/retrait/mon-creneau/{other.id}",
                         {f"o{other.id}-slot": str(member["slots"][0].id)},
                         form_url="/retrait/mon-creneau", follow_redirects=False)
    assert response.status_code == 404
    assert client.get(f"/retrait/mon-creneau/{other.id}/creneau.ics").status_code == 404
    assert _booked(member["slots"][0].id) == 0


def test_ics_has_local_time_zone_and_site_address(client, member):
    order, slot = member["order"], member["slots"][1]
    order.slot_id = slot.id
    db.session.commit()
    login(client, "marie@example.org")
    response = client.get(f"/retrait/mon-creneau/{order.id}/creneau.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    calendar = icalendar.Calendar.from_ical(response.data)
    event = next(iter(calendar.walk("VEVENT")))
    assert "3 rue des Tilleuls, 26000 Valence" in str(event["LOCATION"])
    start = event.decoded("DTSTART")
    assert str(start.tzinfo) == "Europe/Paris" and start.strftime("%H:%M") == "17:00"
    assert start == slot.starts_at
    assert calendar.walk("VTIMEZONE")[0]["TZID"] == "Europe/Paris"
    assert b"TZID=Europe/Paris" in response.data


@pytest.mark.postgres_only
def test_parallel_households_never_overbook_a_slot(app, member):
    """Twelve households race for a slot of three places; exactly three get it."""
    cycle_id, slot_id = member["cycle"].id, member["slots"][0].id
    db.session.execute(sa.update(Slot).where(Slot.id == slot_id).values(capacity=3))
    orders = [OrderFactory(cycle_id=cycle_id, household_id=HouseholdFactory().id) for _ in range(12)]
    jobs = [(o.id, o.household_id) for o in orders]
    # Only plain ids cross into the threads: each thread has its own app context and session.
    db.session.commit()
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []

    def book(order_id: int, household_id: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                choose_slot(household_id, order_id, slot_id)
                db.session.commit()
                outcomes.append("booked")
            except PickupError as refused:
                db.session.rollback()
                outcomes.append("full" if "complet" in refused.message else refused.message)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=book, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.expire_all()
    assert outcomes.count("booked") == 3 and outcomes.count("full") == 9
    assert db.session.get(Slot, slot_id).booked == 3
    assert db.session.scalar(sa.select(sa.func.count(Order.id)).where(Order.slot_id == slot_id)) == 3
