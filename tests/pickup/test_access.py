"""Who may open the pickup pages: volunteers and coordinators; a member gets 403."""
from __future__ import annotations

import pytest

from tests.helpers import login
from tests.pickup.conftest import text

VOLUNTEER_PAGES = ["/retrait/preparation", "/retrait/accueil", "/retrait/permanences"]
COORDINATOR_PAGES = ["/retrait/tableau", "/retrait/non-recuperes", "/retrait/permanences/participation"]


@pytest.mark.parametrize("url", VOLUNTEER_PAGES + COORDINATOR_PAGES)
def test_member_gets_403_on_volunteer_pages(client, thursday, url):
    login(client, thursday.member_email)
    response = client.get(url)
    assert response.status_code == 403
    assert "Accès refusé" in text(response)


@pytest.mark.parametrize("url", COORDINATOR_PAGES)
def test_volunteer_gets_403_on_coordinator_pages(client, thursday, url):
    login(client, thursday.volunteer_email)
    assert client.get(url).status_code == 403


def test_member_cannot_post_a_weight(client, thursday):
    from app.extensions import db
    from orders.models import OrderLine

    login(client, thursday.member_email)
    line = thursday.line(thursday.dupont, thursday.apples)
    response = client.post(f"/retrait/preparation/ligne/{line.id}/poids", data={f"w{line.id}-weight": "1"})
    assert response.status_code in (400, 403)
    db.session.expire_all()
    assert db.session.get(OrderLine, line.id).quantity_prepared is None


def test_volunteer_menu_shows_the_thursday_pages(client, thursday):
    login(client, thursday.volunteer_email)
    page = text(client.get("/retrait/preparation"))
    for label in ("Préparation", "Accueil des foyers", "Permanences"):
        assert f">{label}</a>" in page
