"""The application starts, signs a member in, and shows the home page in French."""
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import login


def test_member_signs_in_and_sees_french_home(app, client):
    household = HouseholdFactory(name="Foyer Martin")
    UserFactory(email="claire@example.org", name="Claire", household=household, roles=["member"])
    from app.extensions import db

    db.session.commit()
    page = login(client, "claire@example.org")
    assert page.status_code == 200
    assert "Bonjour Claire" in page.get_data(as_text=True)


def test_wrong_password_is_refused_in_french(app, client):
    UserFactory(email="claire@example.org", name="Claire")
    from app.extensions import db

    db.session.commit()
    page = login(client, "claire@example.org", "mauvais")
    assert "Adresse e-mail ou mot de passe incorrect." in page.get_data(as_text=True)
