"""A member signs in, sees the home page in French, and signs out."""
from app.extensions import db
from tests.browser.conftest import sign_in
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import PASSWORD


def test_member_signs_in_sees_french_home_and_signs_out(app, live_server, page):
    household = HouseholdFactory(name="Foyer Dupont")
    UserFactory(email="marie@example.org", name="Marie", household=household, roles=["member"])
    db.session.commit()

    sign_in(page, live_server, "marie@example.org", PASSWORD)
    assert page.locator("h1").inner_text() == "Bonjour Marie"
    assert page.locator("html").get_attribute("lang") == "fr"

    page.get_by_role("button", name="Se déconnecter").click()
    assert "Vous êtes déconnecté·e." in page.content()
    assert page.get_by_role("button", name="Se connecter").is_visible()


def test_member_switches_to_english_with_the_footer_form(app, live_server, page):
    household = HouseholdFactory(name="Foyer Smith")
    UserFactory(email="john@example.org", name="John", household=household, roles=["member"])
    db.session.commit()

    sign_in(page, live_server, "john@example.org", PASSWORD)
    page.get_by_label("Langue").select_option("en")
    page.get_by_role("button", name="Changer").click()
    assert page.locator("h1").inner_text() == "Hello John"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("button", name="Sign out").is_visible()


def test_forgotten_password_page_answers_the_same_for_anyone(app, live_server, page):
    page.goto(live_server + "/compte/connexion")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    page.get_by_label("Adresse e-mail").fill("personne@example.org")
    page.get_by_role("button", name="Recevoir un lien").click()
    assert "Si un compte existe avec cette adresse" in page.content()
