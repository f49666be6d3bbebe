"""A coordinator sets up a pickup site and its weekly rhythm; the distributions then exist by themselves."""
from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.extensions import db
from orders.models import Cycle, Schedule
from pickup.models import Site, Slot
from tests.factories import SiteFactory, UserFactory
from tests.helpers import login, post_form

PARIS = ZoneInfo("Europe/Paris")
THURSDAY = {"name": "Distribution du jeudi", "opens_weekday": "4", "opens_time": "08:00",
            "closes_weekday": "1", "closes_time": "23:59", "distribution_weekday": "3",
            "distribution_start": "16:30", "distribution_end": "19:30", "slot_minutes": "30",
            "slot_capacity": "8", "weeks_ahead": "3", "allocation_policy": "pro_rata", "active": "y"}


def sign_in_coordinator(client):
    """A coordinator, signed in."""
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)


def cycles() -> list[Cycle]:
    """Every cycle, soonest first."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Cycle).order_by(Cycle.distribution_date)))


def test_new_site_and_rhythm_create_the_coming_distributions(app, client):
    sign_in_coordinator(client)
    page = post_form(client, "/commandes/rythmes/lieu", {"name": "Café des Tilleuls", "address": "3 place du Marché"})
    assert "Lieu enregistré" in page.get_data(as_text=True)
    site = db.session.scalar(sa.select(Site).where(Site.name == "Café des Tilleuls"))
    page = post_form(client, "/commandes/rythmes/nouveau", {"site_id": str(site.id), **THURSDAY})
    text = page.get_data(as_text=True)
    assert "Rythme enregistré" in text
    assert "commandes du vendredi 08:00 au mardi 23:59, distribution le jeudi de 16:30 à 19:30" in text
    created = cycles()
    # Three weeks ahead; this week's distribution is skipped when its deadline has already passed.
    assert len(created) in (2, 3)
    for cycle in created:
        starts = cycle.distribution_starts_at.astimezone(PARIS)
        closes = cycle.closes_at.astimezone(PARIS)
        assert (starts.weekday(), starts.time()) == (3, time(16, 30))
        assert (closes.weekday(), closes.time()) == (1, time(23, 59))
        slots = db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle.id)).all()
        assert len(slots) == 6 and {s.capacity for s in slots} == {8}


def test_changing_the_rhythm_keeps_the_existing_distributions(app, client):
    site = SiteFactory()
    db.session.commit()
    sign_in_coordinator(client)
    post_form(client, "/commandes/rythmes/nouveau", {"site_id": str(site.id), **THURSDAY})
    before = {c.id: c.distribution_starts_at for c in cycles()}
    schedule = db.session.scalar(sa.select(Schedule))
    url = f"/commandes/rythmes/{schedule.id}"
    assert 'value="16:30"' in client.get(url).get_data(as_text=True)
    page = post_form(client, url, {"site_id": str(site.id), **THURSDAY, "distribution_start": "17:00",
                                   "distribution_end": "20:00", "weeks_ahead": "5"})
    assert "Rythme enregistré" in page.get_data(as_text=True)
    after = cycles()
    assert {c.id: c.distribution_starts_at for c in after if c.id in before} == before
    added = [c for c in after if c.id not in before]
    assert len(added) == 2
    assert all(c.distribution_starts_at.astimezone(PARIS).time() == time(17) for c in added)


def test_impossible_rhythms_are_refused_in_french(app, client):
    site = SiteFactory()
    db.session.commit()
    sign_in_coordinator(client)
    url = "/commandes/rythmes/nouveau"
    cases = [
        ({"distribution_start": "19:30", "distribution_end": "16:30"}, "La distribution doit finir après son début."),
        ({"slot_minutes": "240"}, "Les créneaux sont plus longs que la distribution."),
        ({"slot_capacity": "0"}, "Entre 1 et 1000."),
        ({"weeks_ahead": "99"}, "Entre 1 et 12."),
        ({"opens_time": "25:00"}, "pas un horaire valide"),
        ({"site_id": "999999"}, "Choisissez un lieu de retrait."),
    ]
    for change, message in cases:
        page = post_form(client, url, {"site_id": str(site.id), **THURSDAY, **change})
        assert message in page.get_data(as_text=True), change
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Schedule)) == 0
    assert cycles() == []


def test_site_names_are_unique(app, client):
    SiteFactory(name="La Ferme")
    db.session.commit()
    sign_in_coordinator(client)
    page = post_form(client, "/commandes/rythmes/lieu", {"name": "La Ferme"})
    assert "Un lieu porte déjà ce nom." in page.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Site)) == 1


def test_rhythm_page_asks_for_a_site_first(app, client):
    sign_in_coordinator(client)
    page = client.get("/commandes/rythmes/nouveau").get_data(as_text=True)
    assert "Ajoutez d'abord un lieu de retrait." in page


def test_cycles_page_names_the_place_when_there_are_several(app, client):
    first, second = SiteFactory(name="Café du Bourg"), SiteFactory(name="École Jules Ferry")
    db.session.commit()
    sign_in_coordinator(client)
    for site in (first, second):
        post_form(client, "/commandes/rythmes/nouveau", {"site_id": str(site.id), **THURSDAY})
    page = client.get("/commandes/cycles").get_data(as_text=True)
    assert page.count("<small>École Jules Ferry</small>") == len(cycles()) // 2


def test_an_installation_elsewhere_runs_on_its_own_time_zone(app_config, request):
    """DEFAULT_TIMEZONE=Indian/Reunion (UTC+4, no summer time): rhythms and pages follow La Réunion's clock."""
    app_config["DEFAULT_TIMEZONE"] = "Indian/Reunion"
    app = request.getfixturevalue("app")
    client = app.test_client()
    sign_in_coordinator(client)
    post_form(client, "/commandes/rythmes/lieu", {"name": "Case des Hauts"})
    site = db.session.scalar(sa.select(Site))
    assert site.timezone == "Indian/Reunion"
    post_form(client, "/commandes/rythmes/nouveau", {"site_id": str(site.id), **THURSDAY})
    created = cycles()
    assert created and all(c.distribution_starts_at.hour == 12 and c.distribution_starts_at.minute == 30
                           for c in created)
    assert "16:30" in client.get("/commandes/cycles").get_data(as_text=True)
