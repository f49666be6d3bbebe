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
