"""Error pages in plain French, security headers and cookie flags."""
from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Household, User
from config import ProductionConfig
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import PASSWORD, csrf_token, login


def text(response) -> str:
    """The page as a person reads it."""
    return html.unescape(response.get_data(as_text=True))


def test_unknown_page_is_a_french_404(app, client):
    page = client.get("/nulle-part")
    assert page.status_code == 404
    assert "Page introuvable" in text(page)
    assert '<html lang="fr">' in text(page)


def test_wrong_method_is_a_french_405(app, client):
    page = client.get("/compte/deconnexion")
    assert page.status_code == 405
    assert "Action impossible" in text(page)


def test_forbidden_page_is_a_french_403(app, client):
    UserFactory(email="claire@example.org", roles=["member"])
    db.session.commit()
    login(client, "claire@example.org")
    page = client.get("/compte/foyers")
    assert page.status_code == 403
    assert "Vous n'avez pas le droit d'ouvrir cette page." in text(page)


def test_post_without_csrf_token_is_a_french_400_and_writes_nothing(app, client):
    user = UserFactory(email="claire@example.org", roles=["coordinator"])
    db.session.commit()
    login(client, "claire@example.org")
    for url, data in (("/compte/foyers", {"name": "Foyer pirate", "price_tier_id": "0"}),
                      ("/langue", {"locale": "en"})):
        page = client.post(url, data=data)
        assert page.status_code == 400
        assert "Le formulaire a expiré ou n'est pas valide." in text(page)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 0
    db.session.expire_all()
    assert db.session.get(User, user.id).locale == "fr"


def test_unexpected_error_is_a_french_500_without_trace_and_rolls_back(app, client):
    @app.route("/boom")
    def boom():
        db.session.add(Household(name="Écrit à moitié"))
        db.session.flush()
        raise RuntimeError("détail interne secret")

    page = client.get("/boom")
    body = text(page)
    assert page.status_code == 500
    assert "Erreur du serveur" in body
    assert "Traceback" not in body and "détail interne secret" not in body and "RuntimeError" not in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 0


def test_unknown_language_is_a_400(app, client):
    token = csrf_token(client.get("/compte/connexion").data)
    assert client.post("/langue", data={"csrf_token": token, "locale": "de"}).status_code == 400


def test_security_headers_on_every_page(app, client):
    for response in (client.get("/compte/connexion"), client.get("/nulle-part")):
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def _session_cookie_flags(client_app, remember: bool) -> dict[str, str]:
    """Sign in (optionally remembered) and return the Set-Cookie lines by cookie name."""
    client = client_app.test_client()
    page = client.get("/compte/connexion", base_url="https://localhost")
    data = {"email": "claire@example.org", "password": PASSWORD, "csrf_token": csrf_token(page.data)}
    if remember:
        data["remember"] = "y"
    # Over HTTPS, Flask-WTF also checks that the form came from our own pages (Referer).
    response = client.post("/compte/connexion", data=data, base_url="https://localhost",
                           headers={"Referer": "https://localhost/compte/connexion"})
    assert response.status_code == 302
    return {line.split("=", 1)[0]: line for line in response.headers.getlist("Set-Cookie")}


def test_cookies_are_httponly_and_samesite(app):
    UserFactory(email="claire@example.org")
    db.session.commit()
    cookies = _session_cookie_flags(app, remember=True)
    for name in ("session", "remember_token"):
        assert "HttpOnly" in cookies[name] and "SameSite=Lax" in cookies[name]


@pytest.fixture()
def production_app(_schema, tmp_path):
    """The production configuration on the test database."""
    application = create_app(ProductionConfig, SECRET_KEY="production-test-key",
                             SQLALCHEMY_DATABASE_URI=_schema, INSTANCE_DIR=str(tmp_path))
    yield application
    with application.app_context():
        db.engine.dispose()


def test_production_cookies_are_secure(app, production_app):
    HouseholdFactory()
    UserFactory(email="claire@example.org")
    db.session.commit()
    cookies = _session_cookie_flags(production_app, remember=True)
    for name in ("session", "remember_token"):
        assert "Secure" in cookies[name] and "HttpOnly" in cookies[name] and "SameSite=Lax" in cookies[name]


def test_nul_character_in_a_form_or_query_is_a_french_400_and_writes_nothing(app, client):
    UserFactory(email="claire@example.org", roles=["coordinator"])
    db.session.commit()
    login(client, "claire@example.org")
    token = csrf_token(client.get("/compte/foyers").data)
    page = client.post("/compte/foyers", data={"csrf_token": token, "name": "Foyer\x00", "price_tier_id": "0"})
    assert page.status_code == 400 and "Demande incorrecte" in text(page)
    assert client.get("/compte/utilisateurs?q=a%00b").status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 0


HUGE = "9" * 20


def test_a_huge_number_in_any_url_is_a_404_not_a_server_error(app, client):
    """Every route with an id, asked with an id of 20 digits (more than any column holds) by an account
    with every role: no route may reach the database with it."""
    import re

    from werkzeug.routing import IntegerConverter

    from tests.factories import ProducerFactory

    UserFactory(email="tout@example.org", roles=["member", "volunteer", "coordinator", "producer"],
                household=HouseholdFactory(), producer_id=ProducerFactory().id)
    db.session.commit()
    login(client, "tout@example.org")
    token = csrf_token(client.get("/compte/utilisateurs").data)
    checked = 0
    for rule in app.url_map.iter_rules():
        if not any(isinstance(c, IntegerConverter) for c in rule._converters.values()):
            continue

        def value(match: re.Match) -> str:
            kind = match.group(1) or ""
            if kind.startswith("int"):
                return HUGE
            if kind.startswith("any("):
                return kind[4:].split(",")[0].strip()
            return "x"

        path = re.sub(r"<(?:([^:>]+):)?[^>]+>", value, rule.rule)
        if "GET" in rule.methods:
            response = client.get(path)
        else:
            response = client.post(path, data={"csrf_token": token})
        assert response.status_code == 404, (path, response.status_code)
        checked += 1
    assert checked > 40


def test_a_huge_id_in_a_form_is_refused_without_a_server_error(app, client):
    UserFactory(email="claire@example.org", roles=["member"], household=HouseholdFactory())
    db.session.commit()
    login(client, "claire@example.org")
    token = csrf_token(client.get("/commandes/contrats").data)
    response = client.post("/commandes/contrats/inscription", data={
        "csrf_token": token, "offer_id": HUGE, "quantity": "1"})
    assert 400 <= response.status_code < 500
    assert "Erreur du serveur" not in text(response)


def test_only_a_number_out_of_range_is_the_visitors_fault(app):
    """PostgreSQL's 22003 is a 400; any other DataError (a text too long for its column) is our bug: a 500."""

    class Driver(Exception):
        def __init__(self, sqlstate):
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    @app.route("/_data_error/<state>")
    def _data_error(state):
        raise sa.exc.DataError("UPDATE ...", {}, Driver(state))

    client = app.test_client()
    assert client.get("/_data_error/22003").status_code == 400
    assert client.get("/_data_error/22001").status_code == 500
