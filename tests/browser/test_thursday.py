"""A whole Thursday on a 390 px phone: prepare a slot's bags, hand them out, end with a no-show."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from app.extensions import db
from app.models import Household
from tests.browser.conftest import sign_in
from tests.factories import UserFactory
from tests.helpers import PASSWORD
from tests.pickup.conftest import make_thursday


def _fits_the_phone(page) -> None:
    """Nothing sticks out sideways on a 390 px screen."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_thursday_on_a_phone(app, live_server, page):
    day = make_thursday()
    UserFactory(email="coord@example.org", name="Claire Coordinatrice", roles=["coordinator"])
    UserFactory(email="marie@example.org", name="Marie Dupont", roles=["member"],
                household=db.session.get(Household, day.dupont.household_id))
    apples_id = day.line(day.dupont, day.apples).id
    salad_id = day.line(day.dupont, day.salad).id
    slot1_id = day.slot1.id
    # Commit, then leave the database alone: on SQLite even a read here would hold the write lock.
    db.session.commit()

    assert page.viewport_size["width"] == 390
    sign_in(page, live_server, "coord@example.org", PASSWORD)

    # Preparation: the 16:30 slot has the Dupont and Martin bags.
    page.get_by_role("link", name="Préparation").first.click()
    expect(page.get_by_role("heading", name="Préparation des sacs")).to_be_visible()
    _fits_the_phone(page)
    page.get_by_role("link", name="Sac n° 1 · Foyer Dupont").click()

    # The apples are weighed: 1,8 kg instead of 1,5 kg ordered, the price follows.
    page.locator(f"#ligne-{apples_id}").get_by_label("Poids pesé (kg)").fill("1,8")
    page.get_by_role("button", name="Enregistrer le poids").click()
    expect(page.get_by_text("Pesé : 1,8 kg, soit 5,76 €")).to_be_visible()

    # The salad did not come: reported missing.
    salad_card = page.locator(f"#ligne-{salad_id}")
    salad_card.get_by_text("Il en manque ?").click()
    salad_card.get_by_label("Quantité reçue").fill("0")
    salad_card.get_by_role("button", name="Signaler le manque").click()
    expect(page.get_by_text("Manque enregistré")).to_be_visible()
    expect(page.locator(f"#ligne-{salad_id}").get_by_text("Manque signalé : reçu 0")).to_be_visible()
    _fits_the_phone(page)

    page.get_by_label("Pommes").check()
    page.get_by_role("button", name="Sac prêt").click()
    expect(page.get_by_text("Sac prêt.")).to_be_visible()

    page.get_by_role("link", name="Sac n° 2 · Foyer Martin").click()
    page.get_by_label("Œufs (boîte de 6)").check()
    page.get_by_label("Salade").check()
    page.get_by_role("button", name="Sac prêt").click()
    expect(page.get_by_text("2 sacs prêts sur 2")).to_be_visible()

    # Desk: Dupont pays cash; what it owes drops to nothing; the bag is handed over.
    page.get_by_role("link", name="Accueil des foyers").first.click()
    page.get_by_label("Nom du foyer ou numéro de sac").fill("Dupont")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("link", name="Sac n° 1 · Foyer Dupont").click()
    expect(page.locator("#reste-a-payer")).to_have_text(re.compile(r"5,76\s€"))
    _fits_the_phone(page)
    page.get_by_label("Espèces", exact=True).check()
    page.get_by_label("Montant reçu (€)").fill("5,76")
    page.get_by_role("button", name="Encaisser").click()
    expect(page.get_by_text("Paiement enregistré.")).to_be_visible()
    expect(page.get_by_text("Tout est payé.")).to_be_visible()
    page.get_by_role("button", name="Sac remis au foyer").click()
    expect(page.get_by_text("Sac remis. Bonne semaine !")).to_be_visible()

    # Martin pays by cheque, found by its bag number.
    page.get_by_label("Nom du foyer ou numéro de sac").fill("2")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("link", name="Sac n° 2 · Foyer Martin").click()
    expect(page.locator("#reste-a-payer")).to_have_text(re.compile(r"7,50\s€"))
    page.get_by_label("Chèque", exact=True).check()
    page.get_by_label("Montant reçu (€)").fill("7,50")
    page.get_by_label("Numéro du chèque").fill("0012345")
    page.get_by_label("Banque du chèque").fill("Crédit Mutuel")
    page.get_by_role("button", name="Encaisser").click()
    expect(page.locator("#reste-a-payer")).to_have_text(re.compile(r"0,00\s€"))
    page.get_by_role("button", name="Sac remis au foyer").click()

    # Back on Dupont's bag: it shows as handed over, by whom.
    page.get_by_label("Nom du foyer ou numéro de sac").fill("Dupont")
    page.get_by_role("button", name="Chercher").click()
    expect(page.locator("li", has_text="Foyer Dupont").get_by_text("Remis")).to_be_visible()
    page.get_by_role("link", name="Sac n° 1 · Foyer Dupont").click()
    expect(page.get_by_text(re.compile(r"Sac remis le .* par Claire Coordinatrice"))).to_be_visible()
    expect(page.get_by_role("button", name="Sac remis au foyer")).to_have_count(0)

    # The board shows the 16:30 bags handed out and the money by method.
    page.get_by_role("link", name="Accueil des foyers").first.click()
    page.get_by_role("link", name="Tableau de la distribution").click()
    expect(page.locator(f"#tableau-{slot1_id} [data-count=collected]")).to_have_text("2")
    expect(page.locator(f"#tableau-{slot1_id} [data-count=expected]")).to_have_text("0")
    _fits_the_phone(page)
    expect(page.locator("dl.money")).to_contain_text("Espèces")
    assert re.search(r"Espèces\s*5,76\s€", page.locator("dl.money").inner_text())
    assert re.search(r"Chèque\s*7,50\s€", page.locator("dl.money").inner_text())

    # End of the afternoon: the Leroy bag (17:00 slot) was never collected.
    page.get_by_role("button", name="Terminer la distribution").click()
    expect(page.get_by_text("1 sac n'a pas été remis.")).to_be_visible()  # asked first, nothing done yet
    page.get_by_role("button", name="Oui, terminer la distribution").click()
    expect(page.get_by_text("Distribution terminée : 1 sac non récupéré.")).to_be_visible()
    expect(page.get_by_role("heading", name="Sac n° 3 · Foyer Leroy")).to_be_visible()
    expect(page.get_by_role("heading", name="Sac n° 1 · Foyer Dupont")).to_have_count(0)
    _fits_the_phone(page)
    card = page.locator("section.no-show", has_text="Foyer Leroy")
    card.get_by_label("Donné (association, voisins)").check()
    card.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_text("Fait : Donné (association, voisins)")).to_be_visible()
