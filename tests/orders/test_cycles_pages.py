"""The coordinator's cycles pages: list in local time, create, move and cancel distributions."""
from __future__ import annotations

import re
from datetime import UTC, datetime, time

import sqlalchemy as sa

from app.extensions import db
from orders.models import Cycle, Schedule
from tests.factories import CycleFactory, SiteFactory, UserFactory
from tests.helpers import login, post_form


def sign_in_coordinator(client):
    """A coordinator, signed in."""
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)


def test_cycles_listed_with_local_deadline(app, client):
    """The deadline shows in Paris time (23:59 local is 22:59 UTC in winter)."""
    CycleFactory(closes_at=datetime(2026, 12, 1, 22, 59, tzinfo=UTC),
                 opens_at=datetime(2026, 11, 27, 7, tzinfo=UTC), status="draft")
    sign_in_coordinator(client)
    page = client.get("/commandes/cycles").get_data(as_text=True)
    assert "mardi 1er décembre 23:59" in page and "à venir" in page  # French: « 1er » for the first


def test_generate_button_creates_coming_cycles(app, client):
    """The button creates the schedule's coming cycles once; a second press creates none."""
    site = SiteFactory()
    db.session.add(Schedule(site_id=site.id, name="Jeudi", opens_weekday=4, opens_time=time(8),
                            closes_weekday=1, closes_time=time(23, 59), distribution_weekday=3,
                            distribution_start=time(16, 30), distribution_end=time(19, 30), weeks_ahead=2))
    sign_in_coordinator(client)
    first = post_form(client, "/commandes/cycles/generer", {}, form_url="/commandes/cycles")
    assert re.search(r"\b[12] distributions? créées?, ", first.get_data(as_text=True))
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Cycle))
    assert count >= 1
    post_form(client, "/commandes/cycles/generer", {}, form_url="/commandes/cycles")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Cycle)) == count


def test_move_and_cancel_a_distribution(app, client):
    """A coordinator moves a distribution (Paris times) then cancels it; a cancelled one cannot move."""
    cycle = CycleFactory(opens_at=datetime(2026, 11, 27, 7, tzinfo=UTC),
                         closes_at=datetime(2026, 12, 1, 22, 59, tzinfo=UTC), status="draft")
    sign_in_coordinator(client)
    url = f"/commandes/cycles/{cycle.id}"
    response = post_form(client, url, {"opens_at": "2026-11-27T08:00", "closes_at": "2026-12-02T20:00",
                                       "starts_at": "2026-12-04T17:00", "ends_at": "2026-12-04T20:00"})
    assert "Distribution déplacée" in response.get_data(as_text=True)
    db.session.expire_all()
    moved = db.session.get(Cycle, cycle.id)
    assert moved.closes_at == datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
    assert moved.distribution_starts_at == datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
    response = post_form(client, f"{url}/annuler", {}, form_url=url)  # the box is not ticked
    assert "Cochez la case pour confirmer" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Cycle, cycle.id).status == "draft"
    response = post_form(client, f"{url}/annuler", {"sure": "y"}, form_url=url)
    assert "Distribution annulée" in response.get_data(as_text=True)
    response = post_form(client, url, {"opens_at": "2026-11-27T08:00", "closes_at": "2026-12-02T20:00",
                                       "starts_at": "2026-12-04T17:00", "ends_at": "2026-12-04T20:00"})
    assert "ne peut plus être déplacée" in response.get_data(as_text=True)


def test_members_cannot_open_cycles(app, client):
    """Only coordinators manage cycles."""
    member = UserFactory()
    db.session.commit()
    login(client, member.email)
    assert client.get("/commandes/cycles").status_code == 403
