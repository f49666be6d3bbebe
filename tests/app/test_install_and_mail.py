"""What a new association meets first: households, the first coordinator, its names in mails and pages, mail headers."""
from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Household, OutboxMessage, User
from app.outbox import build_email, deliver_pending
from tests.factories import HouseholdFactory, PriceTierFactory, UserFactory
from tests.helpers import login, post_form

SITE = "Les Paniers du Bourg"
ASSOCIATION = "AMAP des Tilleuls"


def text(response) -> str:
    """The page as a person reads it."""
    return html.unescape(response.get_data(as_text=True))


def _coordinator(client):
    """A signed-in coordinator."""
    user = UserFactory(email="coord@example.org", name="Camille Coord", roles=["coordinator"])
    db.session.commit()
    login(client, "coord@example.org")
    return user


# ---- households ----------------------------------------------------------------------------------

def test_new_household_with_a_tier_the_session_has_not_loaded(app, client):
    """The tier lookup used to flush the new household before it had a name (a 500)."""
    _coordinator(client)
    tier = PriceTierFactory(name="Solidaire")
    db.session.commit()
    tier_id = tier.id
    form = client.get("/compte/foyers")
    assert "Solidaire" in text(form)
    # As in production, where each request has its own session: the tier is not in memory.
    db.session.expunge_all()
    page = post_form(client, "/compte/foyers", {
        "name": "Foyer Garnier", "email": "", "phone": "", "notes": "",
        "price_tier_id": str(tier_id), "active": "y"})
    assert page.status_code == 200
    assert "Foyer « Foyer Garnier » créé." in text(page)
    db.session.expunge_all()
    household = db.session.scalar(sa.select(Household).where(Household.name == "Foyer Garnier"))
    assert household.price_tier_id == tier_id


# ---- the first coordinator -----------------------------------------------------------------------

def _count_users() -> int:
    """Accounts in the database."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(User))


def test_first_coordinator_is_asked_for_in_french_and_checked(app, runner):
    """Without options the command asks in French; a wrong address or an empty name is asked again."""
    result = runner.invoke(args=["users", "create-coordinator"], input=(
        "pas-une-adresse\nchef@cafe-du-bourg.fr\n   \nDominique Lefèvre\n"
        "un-mot-de-passe-sur\nun-mot-de-passe-sur\n"))
    assert result.exit_code == 0, result.output
    assert "Adresse e-mail" in result.output and "Nom" in result.output and "Mot de passe" in result.output
    assert "« pas-une-adresse » n'est pas une adresse e-mail valide." in result.output
    user = db.session.scalar(sa.select(User).where(User.email == "chef@cafe-du-bourg.fr"))
    assert user.name == "Dominique Lefèvre" and user.roles == {"coordinator"}
    assert user.check_password("un-mot-de-passe-sur")


@pytest.mark.parametrize("email, name, message", [("chef@", "Dominique", "n'est pas une adresse e-mail valide"),
                                                  ("chef@cafe-du-bourg.fr", "   ", "Indiquez un nom.")])
def test_first_coordinator_refuses_a_bad_address_or_an_empty_name(app, runner, email, name, message):
    result = runner.invoke(args=["users", "create-coordinator", "--email", email, "--name", name,
                                 "--password", "un-mot-de-passe-sur"])
    assert result.exit_code != 0
    assert message in result.output
    assert _count_users() == 0


def test_first_coordinator_refused_on_the_demo_database(app, runner):
    """The demo accounts share a published password: a real coordinator does not belong next to them."""
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    before = _count_users()
    args = ["users", "create-coordinator", "--email", "chef@cafe-du-bourg.fr", "--name", "Dominique",
            "--password", "un-mot-de-passe-sur"]
    refused = runner.invoke(args=args)
    assert refused.exit_code == 1
    assert "comptes de démonstration" in refused.output and "--allow-demo" in refused.output
    assert _count_users() == before

    allowed = runner.invoke(args=[*args, "--allow-demo"])
    assert allowed.exit_code == 0, allowed.output
    assert _count_users() == before + 1


def test_first_coordinator_is_not_asked_for_a_password_on_the_demo_database(app, runner):
    UserFactory(email="benevole@example.org", name="Solène Marchand", roles=["volunteer"])
    db.session.commit()
    result = runner.invoke(args=["users", "create-coordinator", "--email", "chef@cafe-du-bourg.fr",
                                 "--name", "Dominique"], input="un-mot-de-passe-sur\nun-mot-de-passe-sur\n")
    assert result.exit_code == 1
    assert "Mot de passe" not in result.output and "benevole@example.org" in result.output


# ---- the association's names -------------------------------------------------------------------

@pytest.fixture()
def named(app):
    """An installation with its own site and association names and its own sender."""
    app.config.update(SITE_NAME=SITE, ASSOCIATION_NAME=ASSOCIATION,
                      MAIL_SENDER=f"{SITE} <panier@paniers-du-bourg.fr>")
    return app


def _assert_dated_now(message) -> None:
    """The Date header is there and says now."""
    assert message["Date"], message
    sent = parsedate_to_datetime(message["Date"])
    assert abs(sent - datetime.now(UTC)) < timedelta(minutes=5)


def test_invitation_speaks_of_the_association_and_is_dated(named, client, inbox):
    UserFactory(email="coord@example.org", roles=["coordinator"])
    household = HouseholdFactory(name="Foyer Garnier")
    db.session.commit()
    login(client, "coord@example.org")
    post_form(client, "/compte/utilisateurs", {
        "name": "Élodie Garnier", "email": "elodie@example.org", "roles": ["member"],
        "household_id": str(household.id), "producer_id": "0", "locale": "fr"})
    assert deliver_pending() == 1
    [message] = inbox.messages
    assert message["Subject"] == f"Bienvenue sur {SITE}"
    body = message.get_content()
    assert f"sur {SITE}, les commandes groupées de l'association {ASSOCIATION}." in body
    assert "Panier commun" not in body
    _assert_dated_now(message)
    assert re.fullmatch(r"<[0-9a-f]{32}@paniers-du-bourg\.fr>", message["Message-ID"]), message["Message-ID"]


def test_reset_mail_names_the_site_and_its_id_names_the_site_host(app, client, inbox):
    """With the default sender (panier@localhost), the Message-ID takes BASE_URL's host."""
    app.config.update(SITE_NAME=SITE, BASE_URL="https://paniers.example.net")
    UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    post_form(client, "/compte/mot-de-passe-oublie", {"email": "claire@example.org"})
    assert deliver_pending() == 1
    [message] = inbox.messages
    assert message["Subject"] == f"{SITE} : choisir un nouveau mot de passe"
    assert "https://paniers.example.net/compte/" in message.get_content()
    _assert_dated_now(message)
    assert message["Message-ID"].endswith("@paniers.example.net>"), message["Message-ID"]


def test_a_retried_message_keeps_its_message_id(named):
    from app.outbox import queue_message

    row = queue_message("test:retry", "claire@example.org", "Objet", "Texte", kind="test")
    db.session.commit()
    first, second = build_email(row), build_email(db.session.get(OutboxMessage, row.id))
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].endswith("@paniers-du-bourg.fr>")


def test_home_page_uses_the_configured_names(named, client):
    UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    page = text(login(client, "claire@example.org"))
    assert f"Bienvenue sur {SITE}, les commandes groupées de l'association {ASSOCIATION}." in page
    assert "Panier commun" not in page


# ---- Secure cookies and plain HTTP ------------------------------------------------------------

def _production_app(tmp_path, monkeypatch, base_url: str):
    """The app as gunicorn builds it with PANIER_CONFIG=production."""
    monkeypatch.setenv("PANIER_CONFIG", "production")
    return create_app(None, SECRET_KEY="k" * 40, BASE_URL=base_url, SQLALCHEMY_DATABASE_URI="sqlite://",
                      INSTANCE_DIR=str(tmp_path), RATELIMIT_STORAGE_URI="memory://", CELERY_BROKER_URL="memory://")


def test_production_on_plain_http_warns_at_startup(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        application = _production_app(tmp_path, monkeypatch, "http://panier.lan:8000")
    assert application.config["SESSION_COOKIE_SECURE"]
    [warning] = [r for r in caplog.records if "BASE_URL" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "http://panier.lan:8000" in warning.getMessage() and "HTTPS" in warning.getMessage()


def test_production_on_https_does_not_warn(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        _production_app(tmp_path, monkeypatch, "https://panier.example.org")
    assert not [r for r in caplog.records if "BASE_URL" in r.getMessage()]
