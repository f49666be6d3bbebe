"""Finding a household as a volunteer types it: accents, case, word order, members, phone."""
from __future__ import annotations

from app.extensions import db
from app.search import fold, folded_sort_key, search_households
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import login


def names(text: str, limit: int = 20) -> list[str]:
    """The names found for a typed text."""
    return [h.name for h in search_households(text, limit).households]


def test_fold_drops_accents_case_and_punctuation():
    assert fold("  Mme Hélène ÉCOFFIER-Roux ") == "mme helene ecoffier roux"
    assert fold("Œufs") == "oeufs" and fold("LÉA") == fold("léa") == "lea"
    assert sorted(["Yves", "Élise Leroy", "kiwis", "Pommes"], key=folded_sort_key) == [
        "Élise Leroy", "kiwis", "Pommes", "Yves"]


def test_accents_case_word_order_members_addresses_and_phone(app):
    ecoffier = HouseholdFactory(name="Mme Hélène Écoffier", email=None, phone="04 75 12 34 56")
    dupont = HouseholdFactory(name="Famille Dupont", email=None)
    UserFactory(name="Marie Dupont", email="marie.d@example.org", household=dupont)
    HouseholdFactory(name="Léa Martin", email="lea@example.org")
    HouseholdFactory(name="Ancien foyer Écoffier", email=None, active=False)
    db.session.commit()
    for typed in ("helene", "ecoffier", "Ecoffier", "écoffier", "ÉCOFFIER", "hélène écoffier", "04 75", "0475123456"):
        assert names(typed) == ["Mme Hélène Écoffier"], typed
    assert names("LÉA") == names("lea") == ["Léa Martin"]
    assert names("Dupont Marie") == names("marie.d@") == ["Famille Dupont"]
    assert names("dupont helene") == []  # every word must match the same household
    assert ecoffier.id != dupont.id


def test_at_most_the_limit_by_name_and_says_when_there_are_more(app):
    for name in ("Famille Zola", "famille Abadie", "Famille Élie"):
        HouseholdFactory(name=name)
    db.session.commit()
    found = search_households("famille", limit=2)
    assert [h.name for h in found.households] == ["famille Abadie", "Famille Élie"] and found.more
    assert not search_households("famille", limit=3).more


def test_the_assisted_order_page_finds_a_neighbour_without_email_and_shows_how_to_reach_it(app, client):
    HouseholdFactory(name="Mme Hélène Écoffier", email=None, phone="04 75 12 34 56", notes="Pas d'internet")
    volunteer = UserFactory(roles=["volunteer"], household=None)
    db.session.commit()
    login(client, volunteer.email)
    page = client.get("/commandes/au-cafe?q=ecoffier").get_data(as_text=True)
    assert "Mme Hélène Écoffier</a> · 04 75 12 34 56" in page and "Pas d&#39;internet" in page


def test_the_assisted_order_page_reads_the_members_of_all_households_shown_at_once(app, client, count_queries):
    volunteer = UserFactory(roles=["volunteer"], household=None)
    for n in range(2):
        UserFactory(name=f"Membre {n}", household=HouseholdFactory(name=f"Famille Roux {n}"))
    db.session.commit()
    login(client, volunteer.email)
    with count_queries() as two:
        assert "Famille Roux 1" in client.get("/commandes/au-cafe?q=roux").get_data(as_text=True)
    for n in range(2, 8):
        UserFactory(name=f"Membre {n}", household=HouseholdFactory(name=f"Famille Roux {n}"))
    db.session.commit()
    with count_queries() as eight:
        assert "Famille Roux 7" in client.get("/commandes/au-cafe?q=roux").get_data(as_text=True)
    assert eight["n"] == two["n"]
