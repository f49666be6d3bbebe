"""Accounts: password reset and invitation links, the coordinator's pages, rate limits, the CLI."""
from __future__ import annotations

import html
import re
import time

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.auth import services
from app.extensions import db
from app.models import Household, OutboxMessage, User
from tests.factories import HouseholdFactory, PriceTierFactory, ProducerFactory, UserFactory
from tests.helpers import PASSWORD, csrf_token, login, post_form

NEW_PASSWORD = "un-nouveau-mot-de-passe"


def _mails(kind: str) -> list[OutboxMessage]:
    """Queued mails of a kind, oldest first."""
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)))


def _link_path(body: str) -> str:
    """The path of the link in a mail (links start with BASE_URL, http://localhost in tests)."""
    match = re.search(r"http://localhost(/compte/\S+)", body)
    assert match, body
    return match.group(1)


def text(response) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(response.get_data(as_text=True))


def _count(model) -> int:
    """Rows in a table."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _coordinator(client):
    """A signed-in coordinator."""
    user = UserFactory(email="coord@example.org", name="Camille Coord", roles=["coordinator"])
    db.session.commit()
    login(client, "coord@example.org")
    return user


# ---- password reset -------------------------------------------------------------------------

def test_reset_link_sets_a_new_password_once(app, client):
    user = UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    page = post_form(client, "/compte/mot-de-passe-oublie", {"email": " Claire@Example.org "})
    assert "Si un compte existe avec cette adresse" in text(page)
    [mail] = _mails("password_reset")
    assert mail.recipient == "claire@example.org"
    path = _link_path(mail.body)

    page = post_form(client, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert "Votre mot de passe est enregistré" in text(page)
    assert "Bonjour Claire" in text(login(client, "claire@example.org", NEW_PASSWORD))

    # The same link a second time: refused, and the password stays the new one.
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    again = client.get(path)
    assert again.status_code == 400
    assert "a déjà servi" in text(again)
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(NEW_PASSWORD)


def test_reused_link_cannot_post_a_password(app, client):
    UserFactory(email="claire@example.org")
    db.session.commit()
    post_form(client, "/compte/mot-de-passe-oublie", {"email": "claire@example.org"})
    path = _link_path(_mails("password_reset")[0].body)
    token = csrf_token(client.get(path).data)
    assert client.post(path, data={"csrf_token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    second = client.post(path, data={"csrf_token": token, "password": "encore-un-autre-mdp", "confirm": "encore-un-autre-mdp"})
    assert second.status_code == 400
    db.session.expire_all()
    user = db.session.scalar(sa.select(User).where(User.email == "claire@example.org"))
    assert user.check_password(NEW_PASSWORD) and not user.check_password("encore-un-autre-mdp")


def test_unknown_email_gets_the_same_answer_and_no_mail(app, client):
    page = post_form(client, "/compte/mot-de-passe-oublie", {"email": "personne@example.org"})
    assert page.status_code == 200
    assert "Si un compte existe avec cette adresse" in text(page)
    assert _count(OutboxMessage) == 0


def test_expired_reset_link_is_refused_in_french(app, client):
    user = UserFactory(email="claire@example.org")
    db.session.commit()

    class ThreeHoursAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 3 * 3600

    assert app.config["PASSWORD_RESET_MAX_AGE"] < 3 * 3600
    old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=services.RESET_SALT, signer=ThreeHoursAgo).dumps(
        {"id": user.id, "fp": services._password_fingerprint(user)})
    page = client.get(f"/compte/mot-de-passe/{old}")
    assert page.status_code == 400
    assert "Ce lien a expiré" in text(page)
    fresh = services.make_link_token(user)
    assert client.get(f"/compte/mot-de-passe/{fresh}").status_code == 200


def test_tampered_link_is_refused(app, client):
    page = client.get("/compte/mot-de-passe/pas-un-vrai-lien")
    assert page.status_code == 400
    assert "Lien plus valable" in text(page)


def test_too_short_new_password_is_refused_and_nothing_changes(app, client):
    user = UserFactory(email="claire@example.org")
    db.session.commit()
    path = f"/compte/mot-de-passe/{services.make_link_token(user)}"
    page = post_form(client, path, {"password": "court", "confirm": "court"})
    assert "Le mot de passe doit compter entre 10 et 200 caractères." in text(page)
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(PASSWORD)


# ---- sign in ----------------------------------------------------------------------------------

def test_unknown_email_and_wrong_password_get_the_same_message(app, client):
    user = UserFactory(email="claire@example.org")
    db.session.commit()
    for email, password in (("inconnu@example.org", PASSWORD), ("claire@example.org", "mauvais")):
        page = login(client, email, password)
        assert "Adresse e-mail ou mot de passe incorrect." in text(page)
    db.session.expire_all()
    assert db.session.get(User, user.id).last_login_at is None


def test_login_without_csrf_token_is_a_french_400_and_signs_nobody_in(app, client):
    user = UserFactory(email="claire@example.org")
    db.session.commit()
    page = client.post("/compte/connexion", data={"email": "claire@example.org", "password": PASSWORD})
    assert page.status_code == 400
    assert "Le formulaire a expiré ou n'est pas valide" in text(page)
    db.session.expire_all()
    assert db.session.get(User, user.id).last_login_at is None
    assert client.get("/").status_code == 302


def test_next_parameter_only_follows_local_paths(app, client):
    UserFactory(email="claire@example.org")
    db.session.commit()
    page = client.get("/compte/connexion?next=//evil.example/x")
    response = client.post("/compte/connexion?next=//evil.example/x", data={
        "email": "claire@example.org", "password": PASSWORD, "csrf_token": csrf_token(page.data)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_deactivated_account_cannot_sign_in(app, client):
    UserFactory(email="claire@example.org", active=False)
    db.session.commit()
    assert "Adresse e-mail ou mot de passe incorrect." in text(login(client, "claire@example.org"))


def test_one_account_attacked_from_many_addresses_is_limited(app, client):
    UserFactory(email="claire@example.org")
    db.session.commit()
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    token = csrf_token(client.get("/compte/connexion").data)
    statuses = []
    for n in range(limit + 1):
        response = client.post("/compte/connexion", data={
            "email": "claire@example.org", "password": f"essai-{n}", "csrf_token": token},
            environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"})
        statuses.append(response.status_code)
    assert statuses[:limit] == [200] * limit
    assert statuses[-1] == 429
    assert "Trop d'essais" in text(response)
    # Even the right password is refused for now: the account is protected, not guessed.
    right = client.post("/compte/connexion", data={
        "email": "claire@example.org", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert right.status_code == 429


def test_every_page_with_a_rate_limit_is_in_the_list_flask_limiter_checks(app):
    """A limit put on a page outside RATE_LIMITED_ENDPOINTS would be skipped by the request filter."""
    from flask_limiter.util import get_qualified_name

    from app.auth.routes import RATE_LIMITED_ENDPOINTS
    from app.extensions import limiter

    limited = {endpoint for endpoint, view in app.view_functions.items()
               if get_qualified_name(view) in limiter._marked_for_limiting}
    assert limited == RATE_LIMITED_ENDPOINTS


def test_one_address_trying_many_accounts_is_limited(app, client):
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    token = csrf_token(client.get("/compte/connexion").data)
    statuses = [
        client.post("/compte/connexion", data={
            "email": f"victime{n}@example.org", "password": "essai", "csrf_token": token},
            environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code
        for n in range(limit + 1)
    ]
    assert statuses[:limit] == [200] * limit
    assert statuses[-1] == 429
    # Another address is not affected.
    other = client.post("/compte/connexion", data={
        "email": "quelquun@example.org", "password": "essai", "csrf_token": token},
        environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other.status_code == 200


# ---- coordinator pages ----------------------------------------------------------------------

def test_member_opening_a_coordinator_page_gets_a_french_403(app, client):
    household = HouseholdFactory()
    UserFactory(email="claire@example.org", household=household, roles=["member", "volunteer"])
    db.session.commit()
    login(client, "claire@example.org")
    for url in ("/compte/utilisateurs", "/compte/foyers", f"/compte/foyers/{household.id}"):
        page = client.get(url)
        assert page.status_code == 403
        assert "Accès refusé" in text(page)
    refused = client.post("/compte/utilisateurs", data={
        "csrf_token": csrf_token(client.get("/").data), "name": "Intrus", "email": "intrus@example.org",
        "roles": "coordinator", "household_id": "0", "producer_id": "0", "locale": "fr"})
    assert refused.status_code == 403
    assert _count(User) == 1


def test_anonymous_visitor_is_sent_to_sign_in(app, client):
    response = client.get("/compte/utilisateurs")
    assert response.status_code == 302
    assert "/compte/connexion" in response.headers["Location"]


def test_coordinator_invites_a_member_who_sets_a_password(app, client):
    _coordinator(client)
    household = HouseholdFactory(name="Foyer Benali")
    db.session.commit()
    page = post_form(client, "/compte/utilisateurs", {
        "name": "Yasmine Benali", "email": "Yasmine@Example.org", "roles": ["member", "volunteer"],
        "household_id": str(household.id), "producer_id": "0", "locale": "fr"})
    assert "Invitation envoyée à yasmine@example.org." in text(page)
    user = db.session.scalar(sa.select(User).where(User.email == "yasmine@example.org"))
    assert user.roles == {"member", "volunteer"} and user.household_id == household.id
    assert user.password_hash is None
    [mail] = _mails("invitation")
    assert mail.recipient == "yasmine@example.org" and "Bonjour Yasmine Benali" in mail.body
    path = _link_path(mail.body)
    assert path.startswith("/compte/bienvenue/")

    other = app.test_client()
    assert "Bienvenue Yasmine Benali" in text(other.get(path))
    post_form(other, path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    home = login(other, "yasmine@example.org", NEW_PASSWORD)
    assert "Bonjour Yasmine Benali" in text(home)
    assert other.get(path).status_code == 400


def test_invitation_link_is_not_a_reset_link(app, client):
    user = UserFactory(email="claire@example.org")
    db.session.commit()
    invite = services.make_link_token(user, "invite")
    assert client.get(f"/compte/mot-de-passe/{invite}").status_code == 400


def test_inviting_an_existing_address_is_refused(app, client):
    _coordinator(client)
    UserFactory(email="claire@example.org")
    db.session.commit()
    page = post_form(client, "/compte/utilisateurs", {
        "name": "Claire bis", "email": "CLAIRE@example.org", "roles": ["member"],
        "household_id": "0", "producer_id": "0", "locale": "fr"})
    assert "Un compte existe déjà avec cette adresse e-mail." in text(page)
    assert _count(User) == 2 and _count(OutboxMessage) == 0


def test_too_long_or_malformed_fields_are_refused_and_nothing_is_written(app, client):
    _coordinator(client)
    too_long = post_form(client, "/compte/utilisateurs", {
        "name": "N" * 121, "email": "long@example.org", "roles": ["member"],
        "household_id": "0", "producer_id": "0", "locale": "fr"})
    assert "Ce nom est trop long (120 caractères au plus)." in text(too_long)
    malformed = post_form(client, "/compte/utilisateurs", {
        "name": "Jean", "email": "jean(at)example", "roles": ["member"],
        "household_id": "0", "producer_id": "0", "locale": "fr"})
    assert "Cette adresse e-mail n'est pas valide." in text(malformed)
    bad_role = post_form(client, "/compte/utilisateurs", {
        "name": "Jean", "email": "jean@example.org", "roles": ["admin"],
        "household_id": "0", "producer_id": "0", "locale": "fr"})
    assert bad_role.status_code == 200 and "Invitation envoyée" not in text(bad_role)
    missing_household = post_form(client, "/compte/utilisateurs", {
        "name": "Jean", "email": "jean@example.org", "roles": ["member"],
        "household_id": "99999", "producer_id": "0", "locale": "fr"})
    assert "Invitation envoyée" not in text(missing_household)
    assert _count(User) == 1 and _count(OutboxMessage) == 0


def test_coordinator_changes_roles_and_deactivates_an_account(app, client):
    _coordinator(client)
    user = UserFactory(email="claire@example.org", name="Claire", roles=["member"], household=HouseholdFactory())
    db.session.commit()
    url = f"/compte/utilisateurs/{user.id}"
    home = str(user.household_id)
    page = post_form(client, url, {"name": "Claire Martin", "roles": ["member", "volunteer"],
                                   "household_id": home, "producer_id": "0", "active": "y"})
    assert "Compte enregistré." in text(page)
    db.session.expire_all()
    assert db.session.get(User, user.id).roles == {"member", "volunteer"}

    post_form(client, url, {"name": "Claire Martin", "roles": ["member"], "household_id": home, "producer_id": "0"})
    db.session.expire_all()
    assert db.session.get(User, user.id).active is False
    other = app.test_client()
    assert "Adresse e-mail ou mot de passe incorrect." in text(login(other, "claire@example.org"))


def test_deactivated_user_is_signed_out_of_open_sessions(app, client):
    user = UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    login(client, "claire@example.org")
    assert client.get("/").status_code == 200
    db.session.execute(sa.update(User).where(User.id == user.id).values(active=False))
    db.session.commit()
    assert client.get("/").status_code == 302


def test_coordinator_cannot_lock_themselves_out(app, client):
    me = _coordinator(client)
    page = post_form(client, f"/compte/utilisateurs/{me.id}", {
        "name": "Camille", "roles": ["volunteer"], "household_id": "0", "producer_id": "0", "active": "y"})
    assert "Vous ne pouvez pas retirer votre propre rôle de coordination" in text(page)
    db.session.expire_all()
    assert "coordinator" in db.session.get(User, me.id).roles


def test_unknown_user_page_is_404(app, client):
    _coordinator(client)
    assert client.get("/compte/utilisateurs/99999").status_code == 404


def test_coordinator_creates_a_household_with_a_tier_and_attaches_members(app, client):
    _coordinator(client)
    tier = PriceTierFactory(name="Solidaire")
    claire = UserFactory(email="claire@example.org", name="Claire", roles=["volunteer"])
    db.session.commit()
    listing = text(client.get("/compte/foyers"))
    assert "Solidaire" in listing  # the tier select is shown when tiers exist
    page = post_form(client, "/compte/foyers", {
        "name": "Foyer Martin", "email": "", "phone": "06 12 34 56 78", "notes": "",
        "price_tier_id": str(tier.id), "active": "y"})
    assert "Foyer « Foyer Martin » créé." in text(page)
    household = db.session.scalar(sa.select(Household).where(Household.name == "Foyer Martin"))
    assert household.price_tier_id == tier.id

    url = f"/compte/foyers/{household.id}"
    page = post_form(client, f"{url}/membres", {"user_id": str(claire.id)}, form_url=url)
    assert "Claire fait maintenant partie du foyer." in text(page)
    db.session.expire_all()
    claire = db.session.get(User, claire.id)
    assert claire.household_id == household.id and "member" in claire.roles

    page = post_form(client, f"{url}/membres/{claire.id}/retirer", {}, form_url=url)
    assert "Claire ne fait plus partie du foyer." in text(page)
    db.session.expire_all()
    assert db.session.get(User, claire.id).household_id is None

    # Someone in another household is not offered, and is not taken out of it without a word.
    dupont = HouseholdFactory(name="Famille Dupont")
    marie = UserFactory(name="Marie Dupont", household=dupont)
    db.session.commit()
    page = text(client.get(url))
    assert "Marie Dupont" not in page and "Seules les personnes sans foyer sont proposées." in page
    refused = post_form(client, f"{url}/membres", {"user_id": str(marie.id)}, form_url=url)
    assert refused.status_code == 400
    from app.auth.services import AccountError, attach_member
    with pytest.raises(AccountError, match="Marie Dupont fait déjà partie du foyer Famille Dupont"):
        attach_member(household.id, marie.id)
    db.session.rollback()
    assert db.session.get(User, marie.id).household_id == dupont.id


def test_household_without_tiers_hides_the_select_and_refuses_bad_input(app, client):
    _coordinator(client)
    page = text(client.get("/compte/foyers"))
    assert 'name="price_tier_id" value="0"' in page and "<select id=\"price_tier_id\"" not in page
    bad = post_form(client, "/compte/foyers", {"name": "", "email": "pas-une-adresse", "price_tier_id": "0"})
    shown = text(bad)
    assert "Indiquez un nom." in shown and "Cette adresse e-mail n'est pas valide." in shown
    assert _count(Household) == 0


# ---- CLI ------------------------------------------------------------------------------------------

def test_cli_creates_the_first_coordinator(app, runner):
    result = runner.invoke(args=["users", "create-coordinator", "--email", "Chef@Example.org",
                                 "--name", "Dominique"], input="un-mot-de-passe-sur\nun-mot-de-passe-sur\n")
    assert result.exit_code == 0, result.output
    assert "chef@example.org" in result.output
    user = db.session.scalar(sa.select(User).where(User.email == "chef@example.org"))
    assert user.roles == {"coordinator"} and user.check_password("un-mot-de-passe-sur")
    # Running it again keeps a single account.
    again = runner.invoke(args=["users", "create-coordinator", "--email", "chef@example.org",
                                "--name", "Dominique", "--password", "un-mot-de-passe-sur"])
    assert again.exit_code == 0 and _count(User) == 1


def test_cli_refuses_a_short_password(app, runner):
    result = runner.invoke(args=["users", "create-coordinator", "--email", "chef@example.org",
                                 "--name", "Dominique", "--password", "court"])
    assert result.exit_code != 0
    assert _count(User) == 0


def test_coordinator_resends_an_invitation_with_a_new_link(app, client):
    _coordinator(client)
    home = HouseholdFactory()
    db.session.commit()
    post_form(client, "/compte/utilisateurs", {
        "name": "Yasmine Benali", "email": "yasmine@example.org", "roles": ["member"],
        "household_id": str(home.id), "producer_id": "0", "locale": "fr"})
    user = db.session.scalar(sa.select(User).where(User.email == "yasmine@example.org"))
    url = f"/compte/utilisateurs/{user.id}"
    page = post_form(client, f"{url}/invitation", {}, form_url=url)
    assert "Invitation envoyée à yasmine@example.org." in text(page)
    first, second = _mails("invitation")
    assert _link_path(first.body) != _link_path(second.body)
    # Once a password is chosen, there is nothing to resend.
    post_form(app.test_client(), _link_path(second.body), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    page = post_form(client, f"{url}/invitation", {}, form_url=url)
    assert "Cette personne a déjà choisi son mot de passe." in text(page)
    assert len(_mails("invitation")) == 2


def test_reset_requests_for_one_account_are_limited(app, client):
    UserFactory(email="claire@example.org")
    db.session.commit()
    limit = int(app.config["LOGIN_RATE_LIMIT"].split()[0])
    token = csrf_token(client.get("/compte/mot-de-passe-oublie").data)
    statuses = [
        client.post("/compte/mot-de-passe-oublie", data={"csrf_token": token, "email": "claire@example.org"},
                    environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"}).status_code
        for n in range(limit + 1)
    ]
    assert statuses[-1] == 429 and statuses[:limit] == [302] * limit
    assert len(_mails("password_reset")) == limit


def test_behind_a_trusted_proxy_each_visitor_has_their_own_limit(_schema, tmp_path):
    from app import create_app
    from app.extensions import limiter
    from config import TestConfig

    proxied = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=_schema, INSTANCE_DIR=str(tmp_path),
                         TRUSTED_PROXIES=1)
    limiter.reset()
    limit = int(proxied.config["LOGIN_RATE_LIMIT"].split()[0])
    client = proxied.test_client()
    token = csrf_token(client.get("/compte/connexion").data)

    def attempt(visitor: str, n: int) -> int:
        """One failed sign-in through the proxy (same REMOTE_ADDR for everyone)."""
        return client.post("/compte/connexion", data={
            "email": f"{visitor}{n}@example.org", "password": "essai", "csrf_token": token},
            headers={"X-Forwarded-For": visitor}, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code

    assert [attempt("198.51.100.20", n) for n in range(limit + 1)][-1] == 429
    assert attempt("198.51.100.21", 0) == 200  # another visitor behind the same proxy
    with proxied.app_context():
        db.engine.dispose()


def test_coordinator_finds_accounts_by_name_or_role(app, client):
    _coordinator(client)
    UserFactory(email="claire@example.org", name="Claire Martin", roles=["member"])
    UserFactory(email="karim@example.org", name="Karim Haddad", roles=["volunteer"])
    UserFactory(email="percent@example.org", name="Cent % sûr", roles=["member"])
    db.session.commit()
    by_name = text(client.get("/compte/utilisateurs?q=martin"))
    assert "Claire Martin" in by_name and "Karim Haddad" not in by_name and "1 compte" in by_name
    by_role = text(client.get("/compte/utilisateurs?role=volunteer"))
    assert "Karim Haddad" in by_role and "Claire Martin" not in by_role
    assert "Cent % sûr" in text(client.get("/compte/utilisateurs?q=%25"))
    assert "Claire Martin" not in text(client.get("/compte/utilisateurs?q=%25"))


def test_ids_beyond_the_integer_range_are_404_or_refused(app, client):
    """Absurd ids in URLs and selects: a 404 or a refused form, never a database error."""
    _coordinator(client)
    hid = HouseholdFactory().id
    db.session.commit()
    for url in ("/compte/utilisateurs/99999999999", "/compte/utilisateurs/99999999999999999999999",
                "/compte/foyers/99999999999", "/compte/foyers/99999999999999999999999"):
        assert client.get(url).status_code == 404, url
    token = csrf_token(client.get(f"/compte/foyers/{hid}").data)
    r = client.post(f"/compte/foyers/{hid}/membres",
                    data={"csrf_token": token, "user_id": "99999999999999999999"})
    assert r.status_code == 400
    r = client.post(f"/compte/foyers/{hid}/membres/99999999999999999999/retirer", data={"csrf_token": token})
    assert r.status_code == 404
    r = client.post("/compte/utilisateurs", data={
        "csrf_token": token, "name": "X", "email": "x@example.org", "roles": "member",
        "household_id": "99999999999999999999", "producer_id": "0", "locale": "fr"})
    assert r.status_code == 200 and "Invitation envoyée" not in text(r)
    assert _count(User) == 1


def test_an_account_whose_roles_cannot_work_is_refused(app, client):
    """A member needs a household to order for, a producer the producer whose catalogue it keeps;
    invited without, the person could sign in to no page at all."""
    _coordinator(client)
    producer = ProducerFactory()
    db.session.commit()
    for roles, household, producer_id, message in (
            (["member"], "0", "0", "choisissez son foyer"),
            (["producer"], "0", "0", "choisissez lequel"),
            ([], "0", "0", "Choisissez au moins un rôle")):
        page = post_form(client, "/compte/utilisateurs", {
            "name": "Yasmine Benali", "email": "yasmine@example.org", "roles": roles,
            "household_id": household, "producer_id": producer_id, "locale": "fr"})
        assert message in text(page)
    assert _count(User) == 1 and _mails("invitation") == []
    page = post_form(client, "/compte/utilisateurs", {
        "name": "Yasmine Benali", "email": "yasmine@example.org", "roles": ["producer"],
        "household_id": "0", "producer_id": str(producer.id), "locale": "fr"})
    assert len(_mails("invitation")) == 1


def test_a_new_password_signs_out_every_other_session(app, client):
    """A phone left signed in (or a stolen cookie, remember-me included) stops working once the
    password is reset; the person signs in again with the new one."""
    UserFactory(email="claire@example.org", name="Claire", household=HouseholdFactory())
    db.session.commit()
    phone = app.test_client()
    token = csrf_token(phone.get("/compte/connexion").data)
    phone.post("/compte/connexion", data={"email": "claire@example.org", "password": PASSWORD,
                                          "remember": "y", "csrf_token": token})
    assert phone.get("/commandes/panier").status_code == 200
    post_form(client, "/compte/mot-de-passe-oublie", {"email": "claire@example.org"})
    post_form(client, _link_path(_mails("password_reset")[0].body), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    signed_out = phone.get("/commandes/panier")
    assert signed_out.status_code == 302 and "/compte/connexion" in signed_out.headers["Location"]
    phone.delete_cookie("session")  # the remember-me cookie alone does not bring the session back either
    assert phone.get("/commandes/panier").status_code == 302
    assert "Bonjour Claire" in text(login(client, "claire@example.org", NEW_PASSWORD))


def test_a_member_changes_their_password_on_the_account_page(app, client):
    """The name in the header leads to « Mon compte »; the current password is asked first; this
    session goes on, another device is signed out."""
    UserFactory(email="claire@example.org", name="Claire", household=HouseholdFactory(name="Foyer Martin"))
    db.session.commit()
    other_device = app.test_client()
    login(other_device, "claire@example.org")
    home = text(login(client, "claire@example.org"))
    assert 'href="/compte/mon-compte"' in home
    page = text(client.get("/compte/mon-compte"))
    assert "claire@example.org" in page and "Foyer Martin" in page and "Adhérent·e (foyer)" in page
    wrong = post_form(client, "/compte/mon-compte", {"current": "pas-le-bon", "password": NEW_PASSWORD,
                                                    "confirm": NEW_PASSWORD})
    assert wrong.status_code == 400 and "Le mot de passe actuel n'est pas le bon." in text(wrong)
    changed = post_form(client, "/compte/mon-compte", {"current": PASSWORD, "password": NEW_PASSWORD,
                                                      "confirm": NEW_PASSWORD})
    assert "Votre mot de passe est changé" in text(changed)
    assert client.get("/commandes/panier").status_code == 200
    assert other_device.get("/commandes/panier").status_code == 302
    db.session.expire_all()
    assert db.session.scalar(sa.select(User).where(User.email == "claire@example.org")).check_password(NEW_PASSWORD)


def test_a_second_household_of_the_same_name_needs_the_box_ticked(client):
    _coordinator(client)
    HouseholdFactory(name="Mme Hélène Écoffier")
    db.session.commit()
    fields = {"name": "mme helene ECOFFIER", "email": "", "phone": "", "notes": "", "price_tier_id": "0",
              "active": "y"}
    refused = post_form(client, "/compte/foyers", fields)
    page = text(refused)
    assert "Un foyer « Mme Hélène Écoffier » existe déjà (créé le" in page
    assert "C'est bien un autre foyer, qui porte le même nom" in html.unescape(page)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 1
    created = post_form(client, "/compte/foyers", {**fields, "same_name_ok": "y"})
    assert "Foyer « mme helene ECOFFIER » créé." in text(created)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 2
    # Once both exist, changing a twin's phone asks nothing again.
    twin = db.session.scalar(sa.select(Household).where(Household.name == "mme helene ECOFFIER"))
    url = f"/compte/foyers/{twin.id}"
    saved = post_form(client, url, {**fields, "phone": "04 75 00 00 00"}, form_url=url)
    assert "Foyer enregistré." in text(saved)
    db.session.expire_all()
    assert db.session.get(Household, twin.id).phone == "04 75 00 00 00"
