"""A coordinator invites a neighbour, who chooses a password from the mailed link and signs in."""
import re

import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.models import OutboxMessage
from tests.browser.conftest import sign_in
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import PASSWORD


def test_invitation_from_the_accounts_page_to_first_sign_in(app, live_server, page_factory):
    UserFactory(email="coord@example.org", name="Camille", roles=["coordinator"])
    HouseholdFactory(name="Foyer Nguyen")
    db.session.commit()

    coordinator = page_factory(360, 740)
    sign_in(coordinator, live_server, "coord@example.org", PASSWORD)
    coordinator.get_by_role("link", name="Comptes").first.click()
    coordinator.get_by_label("Nom", exact=True).fill("Linh Nguyen")
    coordinator.get_by_label("Adresse e-mail", exact=True).fill("linh@example.org")
    coordinator.get_by_label("Adhérent·e (foyer)").check()
    coordinator.get_by_label("Foyer", exact=True).select_option(label="Foyer Nguyen")
    coordinator.get_by_role("button", name="Inviter").click()
    expect(coordinator.locator("body")).to_contain_text("Invitation envoyée à linh@example.org.")

    db.session.expire_all()
    body = db.session.scalar(sa.select(OutboxMessage.body).where(OutboxMessage.kind == "invitation"))
    link = re.search(r"(/compte/bienvenue/\S+)", body).group(1)
    db.session.rollback()  # release SQLite's lock (transactions begin IMMEDIATE) for the server thread

    neighbour = page_factory(360, 740)
    neighbour.goto(live_server + link)
    neighbour.get_by_label("Nouveau mot de passe").fill("une phrase facile")
    neighbour.get_by_label("Le même mot de passe, encore une fois").fill("une phrase facile")
    neighbour.get_by_role("button", name="Enregistrer le mot de passe").click()
    expect(neighbour.locator("body")).to_contain_text("Votre mot de passe est enregistré")
    sign_in(neighbour, live_server, "linh@example.org", "une phrase facile")
    expect(neighbour.locator("h1")).to_have_text("Bonjour Linh Nguyen")
