"""Volunteer rota: roles per distribution, sign-up and withdrawal, reminders, alerts, participation."""
from __future__ import annotations

from datetime import time, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage, User
from app.timeutil import local_to_utc
from pickup.models import RotaRole, RotaSignup
from pickup.services import ensure_rota, paris_today, set_rota_default, sign_up
from pickup.tasks import send_rota_alerts, send_rota_reminders
from tests.factories import CycleFactory, SiteFactory, UserFactory
from tests.helpers import csrf_token, login, post_form
from tests.pickup.conftest import text


def _cycle_in(days: int, site=None):
    """A distribution `days` from today (orders still open or not, it does not matter for the rota)."""
    site = site or SiteFactory()
    day = paris_today() + timedelta(days=days)
    start = local_to_utc(day, time(16, 30))
    return CycleFactory(site_id=site.id, opens_at=start - timedelta(days=7), closes_at=start - timedelta(days=1),
                        distribution_date=day, distribution_starts_at=start,
                        distribution_ends_at=start + timedelta(hours=3), status="open")


def _role(cycle, name: str) -> RotaRole:
    return next(r for r in ensure_rota(cycle.id) if r.role == name)


def _volunteer(email: str, name: str) -> User:
    return UserFactory(email=email, name=name, roles=["volunteer"])


def test_volunteer_signs_up_and_withdraws(client, app):
    cycle = _cycle_in(5)
    _volunteer("paul@example.org", "Paul")
    db.session.commit()
    login(client, "paul@example.org")
    page = text(client.get("/retrait/permanences"))
    for label in ("Installation", "Préparation des sacs", "Accueil et caisse", "Rangement"):
        assert label in page
    desk = _role(cycle, "desk")
    response = post_form(client, f"/retrait/permanences/{desk.id}/inscription", {}, form_url="/retrait/permanences")
    page = text(response)
    assert "Merci, vous êtes inscrit·e." in page and "1 inscrit·e sur 2 : Paul" in page
    response = post_form(client, f"/retrait/permanences/{desk.id}/desinscription", {},
                         form_url="/retrait/permanences")
    assert "Vous êtes désinscrit·e." in text(response)
    db.session.expire_all()
    assert db.session.get(RotaRole, desk.id).filled == 0
    assert db.session.scalar(sa.select(sa.func.count(RotaSignup.id))) == 0


def test_full_role_is_refused_and_nothing_written(client, app):
    cycle = _cycle_in(5)
    first = _volunteer("anne@example.org", "Anne")
    _volunteer("paul@example.org", "Paul")
    closing = _role(cycle, "closing")
    closing.needed = 1
    sign_up(closing.id, first.id)
    db.session.commit()
    login(client, "paul@example.org")
    page = client.get("/retrait/permanences")
    response = client.post(f"/retrait/permanences/{closing.id}/inscription",
                           data={"csrf_token": csrf_token(page.data)}, follow_redirects=True)
    assert "Ce rôle est complet" in text(response)
    db.session.expire_all()
    assert db.session.get(RotaRole, closing.id).filled == 1
    assert db.session.scalar(sa.select(sa.func.count(RotaSignup.id))) == 1


def test_coordinator_sets_people_needed_and_site_defaults_apply(client, app):
    site = SiteFactory()
    set_rota_default(site.id, "preparation", 5)
    cycle = _cycle_in(5, site)
    UserFactory(email="coord@example.org", name="Claire", roles=["coordinator"])
    db.session.commit()
    assert _role(cycle, "preparation").needed == 5
    db.session.commit()
    login(client, "coord@example.org")
    desk = _role(cycle, "desk")
    response = post_form(client, f"/retrait/permanences/{desk.id}/besoin", {f"r{desk.id}-needed": "4"},
                         form_url="/retrait/permanences")
    assert "Nombre de personnes enregistré." in text(response)
    db.session.expire_all()
    assert db.session.get(RotaRole, desk.id).needed == 4
    response = post_form(client, f"/retrait/permanences/{desk.id}/besoin", {f"r{desk.id}-needed": "-2"},
                         form_url="/retrait/permanences")
    assert "Entre 0 et 50 personnes." in text(response)
    assert db.session.get(RotaRole, desk.id).needed == 4


def test_reminder_two_days_before_once_per_volunteer(app):
    soon, later = _cycle_in(2), _cycle_in(9)
    paul, anne = _volunteer("paul@example.org", "Paul"), _volunteer("anne@example.org", "Anne")
    sign_up(_role(soon, "desk").id, paul.id)
    sign_up(_role(soon, "setup").id, anne.id)
    sign_up(_role(later, "desk").id, anne.id)
    db.session.commit()
    assert send_rota_reminders(paris_today().isoformat()) == 2
    assert send_rota_reminders(paris_today().isoformat()) == 2  # the same keys: nothing new queued
    messages = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.recipient)).all()
    assert [m.recipient for m in messages] == ["anne@example.org", "paul@example.org"]
    assert "« Accueil et caisse »" in messages[1].body and messages[1].kind == "rota_reminder"


def test_alert_three_days_before_when_a_role_is_empty(app):
    cycle = _cycle_in(3)
    paul, anne = _volunteer("paul@example.org", "Paul"), _volunteer("anne@example.org", "Anne")
    UserFactory(email="marie@example.org", roles=["member"])
    for role in ("setup", "preparation", "desk"):
        sign_up(_role(cycle, role).id, paul.id)
    db.session.commit()
    assert send_rota_alerts(paris_today().isoformat()) == 2  # both volunteers, not the member
    send_rota_alerts(paris_today().isoformat())
    messages = db.session.scalars(sa.select(OutboxMessage)).all()
    assert sorted(m.recipient for m in messages) == ["anne@example.org", "paul@example.org"]
    assert "Rangement : il manque 2 personnes" in messages[0].body

    # Once every role has someone, no alert for another distribution.
    other = _cycle_in(3)
    for role in ("setup", "preparation", "desk", "closing"):
        sign_up(_role(other, role).id, anne.id)
    db.session.commit()
    assert send_rota_alerts(paris_today().isoformat()) == 2  # only the first distribution's, already queued
    assert db.session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 2


def test_participation_counts_each_volunteer(client, app):
    past, coming = _cycle_in(-7), _cycle_in(7)
    paul, anne = _volunteer("paul@example.org", "Paul"), _volunteer("anne@example.org", "Anne")
    _volunteer("luc@example.org", "Luc")
    db.session.add_all([RotaSignup(rota_role_id=_role(past, "desk").id, user_id=paul.id),
                        RotaSignup(rota_role_id=_role(past, "setup").id, user_id=anne.id)])
    sign_up(_role(coming, "desk").id, paul.id)
    UserFactory(email="coord@example.org", name="Claire", roles=["coordinator"])
    db.session.commit()
    login(client, "coord@example.org")
    page = text(client.get("/retrait/permanences/participation"))
    rows = [r.split("</tr>")[0] for r in page.split("<tr>")[2:]]
    cells = [[c.split("<")[0] for c in r.split(">")[1::2]] for r in rows]
    assert ["Paul", "1", "1"] in cells and ["Anne", "1", "0"] in cells and ["Luc", "0", "0"] in cells


def test_coordinator_changes_site_defaults_for_new_distributions(client, app):
    site = SiteFactory(name="Café des Tilleuls")
    UserFactory(email="coord@example.org", name="Claire", roles=["coordinator"])
    db.session.commit()
    login(client, "coord@example.org")
    response = post_form(client, f"/retrait/permanences/reglages?site={site.id}",
                         {"setup": "1", "preparation": "4", "desk": "3", "closing": "1"})
    assert "Réglages enregistrés" in text(response)
    cycle = _cycle_in(6, site)
    db.session.commit()
    assert {r.role: r.needed for r in ensure_rota(cycle.id)} == {
        "setup": 1, "preparation": 4, "desk": 3, "closing": 1}
    response = post_form(client, f"/retrait/permanences/reglages?site={site.id}",
                         {"setup": "1", "preparation": "-1", "desk": "3", "closing": "1"})
    assert "Entre 0 et 50 personnes." in text(response)


@pytest.fixture()
def app_config(app_config):
    """Enough pooled connections for the parallel volunteers."""
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 15, "max_overflow": 0, "pool_timeout": 60}
    return app_config


@pytest.mark.postgres_only
def test_parallel_sign_ups_never_overfill_a_role(app):
    """Ten volunteers press « Je m'inscris » together on a role needing two: two are taken."""
    import threading

    from pickup.services import PickupError

    cycle = _cycle_in(5)
    role_id = _role(cycle, "desk").id
    user_ids = [_volunteer(f"b{n}@example.org", f"B{n}").id for n in range(10)]
    db.session.commit()
    barrier = threading.Barrier(len(user_ids))
    outcomes: list[str] = []

    def press(user_id: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                sign_up(role_id, user_id)
                db.session.commit()
                outcomes.append("in")
            except PickupError:
                db.session.rollback()
                outcomes.append("full")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=press, args=(uid,)) for uid in user_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.expire_all()
    assert sorted(outcomes) == ["full"] * 8 + ["in"] * 2
    assert db.session.get(RotaRole, role_id).filled == 2
    assert db.session.scalar(sa.select(sa.func.count(RotaSignup.id)).where(RotaSignup.rota_role_id == role_id)) == 2
