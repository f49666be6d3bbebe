"""The menu per role: each person sees the pages of their jobs, and only those."""
from __future__ import annotations

import re

import pytest

from app.extensions import db
from tests.factories import HouseholdFactory, ProducerFactory, UserFactory
from tests.helpers import login


def _menu(client) -> list[str]:
    """The labels of the menu, as the signed-in person reads them."""
    page = client.get("/").get_data(as_text=True)
    nav = page[page.index('<nav class="nav"'):page.index("</nav>")]
    return re.findall(r"<li><a [^>]*>([^<]+)</a></li>", nav)


@pytest.mark.parametrize(("roles", "with_household", "with_producer", "shown", "hidden"), [
    (["volunteer"], False, False, ["Documents", "Préparation", "Accueil des foyers"],
     ["Mon catalogue", "Mon solde", "Cycles"]),
    (["producer"], False, True, ["Documents", "Mon catalogue", "Demande en cours"],
     ["Préparation", "Mon solde", "Cycles"]),
    # A producer account not yet linked to a producer has nothing of a producer to show.
    (["producer"], False, False, [], ["Documents", "Mon catalogue", "Demande en cours"]),
    (["member"], True, False, ["Ma commande", "Mon solde"], ["Documents", "Préparation", "Mon catalogue"]),
    (["member", "volunteer"], True, False, ["Ma commande", "Documents", "Accueil des foyers"], ["Mon catalogue"]),
    (["coordinator"], False, False, ["Documents", "Cycles", "Argent", "Préparation"],
     ["Mon catalogue", "Ma commande"]),
])
def test_menu_per_role(client, app, roles, with_household, with_producer, shown, hidden):
    household = HouseholdFactory() if with_household else None
    producer = ProducerFactory() if with_producer else None
    UserFactory(email="quelquun@example.org", roles=roles, household=household,
                producer_id=producer.id if producer else None)
    db.session.commit()
    login(client, "quelquun@example.org")
    menu = _menu(client)
    for label in shown:
        assert label in menu, (roles, menu)
    for label in hidden:
        assert label not in menu, (roles, menu)
