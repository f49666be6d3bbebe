"""French first; English for whoever chooses it, remembered on the account or in the session."""
from __future__ import annotations

import html
from datetime import UTC

from app.extensions import db
from app.models import User
from tests.factories import UserFactory
from tests.helpers import csrf_token, login


def text(response) -> str:
    """The page as a person reads it."""
    return html.unescape(response.get_data(as_text=True))


def test_french_by_default(app, client):
    page = text(client.get("/compte/connexion"))
    assert '<html lang="fr">' in page and "Mot de passe oublié ?" in page


def test_member_who_chose_english_sees_english(app, client):
    user = UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    home = login(client, "claire@example.org")
    assert "Bonjour Claire" in text(home)
    changed = client.post("/langue", data={"csrf_token": csrf_token(home.data), "locale": "en"},
                          headers={"Referer": "http://localhost/"}, follow_redirects=True)
    page = text(changed)
    assert "Hello Claire" in page and "Sign out" in page and '<html lang="en">' in page
    db.session.expire_all()
    assert db.session.get(User, user.id).locale == "en"

    # The choice follows the account to another device.
    other = app.test_client()
    assert "Hello Claire" in text(login(other, "claire@example.org"))


def test_english_account_reads_error_pages_and_mails_in_english(app, client):
    UserFactory(email="john@example.org", name="John", locale="en")
    db.session.commit()
    login(client, "john@example.org")
    assert "Page not found" in text(client.get("/nulle-part"))


def test_anonymous_visitor_can_switch_to_english(app, client):
    token = csrf_token(client.get("/compte/connexion").data)
    page = text(client.post("/langue", data={"csrf_token": token, "locale": "en"},
                            headers={"Referer": "http://localhost/compte/connexion"}, follow_redirects=True))
    assert "Forgot your password?" in page
    back = text(client.post("/langue", data={"csrf_token": csrf_token(page), "locale": "fr"},
                            headers={"Referer": "http://localhost/compte/connexion"}, follow_redirects=True))
    assert "Mot de passe oublié ?" in back


def test_referer_from_another_site_is_not_followed(app, client):
    token = csrf_token(client.get("/compte/connexion").data)
    response = client.post("/langue", data={"csrf_token": token, "locale": "en"},
                           headers={"Referer": "https://evil.example/"})
    assert response.headers["Location"] == "/"


def test_home_tells_a_member_about_this_weeks_deadline(app, client):
    from datetime import datetime, timedelta

    from tests.factories import CycleFactory, HouseholdFactory, OrderFactory

    household = HouseholdFactory()
    UserFactory(email="claire@example.org", name="Claire", household=household, roles=["member"])
    closes = datetime(2031, 3, 4, 22, 59, tzinfo=UTC)  # Tuesday 23:59 in Paris
    cycle = CycleFactory(opens_at=datetime.now(UTC) - timedelta(days=1), closes_at=closes)
    db.session.commit()
    page = text(login(client, "claire@example.org"))
    assert "mardi 4 mars 23:59" in page
    assert "Votre foyer n'a pas encore commandé cette semaine." in page

    OrderFactory(cycle_id=cycle.id, household_id=household.id, status="confirmed", total_cents=2350)
    db.session.commit()
    assert "Votre commande est enregistrée : 23,50" in text(client.get("/"))


def test_every_string_of_the_base_layout_accounts_home_and_errors_has_an_english_translation():
    from pathlib import Path

    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2]
    with open(root / "app/translations/en/LC_MESSAGES/messages.po", "rb") as handle:
        catalogue = read_po(handle)
    missing = [
        message.id for message in catalogue
        if message.id and any(path.startswith("app/") for path, _ in message.locations)
        and (not message.string or "fuzzy" in message.flags)
    ]
    assert missing == []
