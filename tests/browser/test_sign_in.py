"""A member signs in, sees the home page in French, and signs out."""
from playwright.sync_api import expect

from app.extensions import db
from tests.browser.conftest import sign_in
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import PASSWORD


def test_member_signs_in_sees_french_home_and_signs_out(app, live_server, page):
    household = HouseholdFactory(name="Foyer Dupont")
    UserFactory(email="marie@example.org", name="Marie", household=household, roles=["member"])
    db.session.commit()

    sign_in(page, live_server, "marie@example.org", PASSWORD)
    expect(page.locator("h1")).to_have_text("Bonjour Marie")
    assert page.locator("html").get_attribute("lang") == "fr"

    page.get_by_role("button", name="Se déconnecter").click()
    expect(page.locator("body")).to_contain_text("Vous êtes déconnecté·e.")
    expect(page.get_by_role("button", name="Se connecter")).to_be_visible()


def test_member_switches_to_english_with_the_footer_form(app, live_server, page):
    household = HouseholdFactory(name="Foyer Smith")
    UserFactory(email="john@example.org", name="John", household=household, roles=["member"])
    db.session.commit()

    sign_in(page, live_server, "john@example.org", PASSWORD)
    page.get_by_label("Langue").select_option("en")
    page.get_by_role("button", name="Changer").click()
    expect(page.locator("h1")).to_have_text("Hello John")
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_forgotten_password_page_answers_the_same_for_anyone(app, live_server, page):
    page.goto(live_server + "/compte/connexion")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    page.get_by_label("Adresse e-mail").fill("personne@example.org")
    page.get_by_role("button", name="Recevoir un lien").click()
    expect(page.locator("body")).to_contain_text("Si un compte existe avec cette adresse")
