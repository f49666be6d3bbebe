"""Contract and bulk pages: members subscribe and declare absences, volunteers record, producers see."""
from __future__ import annotations

import html
from decimal import Decimal

import sqlalchemy as sa
from flask import render_template_string

from app.extensions import db
from orders.contract_models import (
    Contract,
    ContractAbsence,
    ContractInstalment,
    ContractOffer,
)
from orders.contracts import subscribe
from orders.models import Order, OrderLine
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProducerFactory,
    ProductFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login
from tests.orders.test_contracts import NOW, Season, contract_lines


def member(name: str):
    """A household with one member account."""
    household = HouseholdFactory(name=name)
    user = UserFactory(household_id=household.id, roles=["member"])
    return household, user


def test_member_subscribes_and_sees_the_season_total(app, client):
    season = Season()
    _household, user = member("Martin")
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/contrats")
    assert "Petit panier hiver" in page.text and "Contrats AMAP" in page.text
    assert "2 absences possibles (le panier d'une absence reste payé)." in html.unescape(page.text)
    response = client.post("/commandes/contrats/inscription", data={
        "csrf_token": csrf_token(page.data), "offer_id": season.offer.id, "quantity": "2"}, follow_redirects=True)
    assert "Inscription enregistrée" in response.text
    assert "192,00" in response.text  # 8 distributions x 2 x 12,00 €
    assert response.text.count('class="schedule-row"') == 8
    assert ("Le panier d'une absence reste payé avec la saison : le producteur ne le prépare pas."
            in html.unescape(response.text))
    assert db.session.scalar(sa.select(Contract.quantity)) == Decimal(2)


def contract_rows(household_id: int) -> tuple[int, int]:
    """(contracts held or shared, orders) of a household."""
    shared = sa.or_(Contract.household_id == household_id, Contract.co_holder_id == household_id)
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Contract).where(shared)),
            db.session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.household_id == household_id)))


SHARE_SENTENCE = ("Pour partager ce panier avec un autre foyer, demandez-le à la coordination ou à un·e "
                  "bénévole au café : les deux foyers doivent être d'accord.")


def test_member_cannot_make_another_household_co_holder(app, client):
    """Naming a household on the member page neither links it, nor finds it, nor tells its full name."""
    season = Season()
    _household, user = member("Martin")
    dupont, dupont_user = member("Famille Dupont")
    HouseholdFactory(name="Famille Abadie")
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/contrats")
    assert SHARE_SENTENCE in page.text
    assert 'name="co_holder_name"' not in page.text and "Partagé avec le foyer" not in page.text
    token = csrf_token(page.data)
    for typed in ("a", "Dupont"):  # several partial matches, one partial match
        probe = client.post("/commandes/contrats/inscription", data={
            "csrf_token": token, "offer_id": season.large_offer.id, "quantity": "1", "co_holder_name": typed},
            follow_redirects=True)
        assert "Plusieurs foyers" not in probe.text and "Famille Dupont" not in probe.text
        assert "Aucun foyer" not in probe.text
    done = client.post("/commandes/contrats/inscription", data={
        "csrf_token": token, "offer_id": season.offer.id, "quantity": "1", "co_holder_name": "Famille Dupont"},
        follow_redirects=True)
    assert "Inscription enregistrée" in done.text
    assert "96,00" in done.text  # all 8 distributions are Martin's: 8 x 12,00 €
    assert "Famille Dupont" not in done.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Contract).where(
        Contract.co_holder_id.is_not(None))) == 0
    assert contract_rows(dupont.id) == (0, 0)
    # Famille Dupont still subscribes itself.
    client.post("/compte/deconnexion", data={"csrf_token": token})
    login(client, dupont_user.email)
    own = client.post("/commandes/contrats/inscription", data={
        "csrf_token": csrf_token(client.get("/commandes/contrats").data), "offer_id": season.offer.id,
        "quantity": "1"}, follow_redirects=True)
    assert "Inscription enregistrée" in own.text
    assert contract_rows(dupont.id)[0] == 1


def test_member_cannot_hand_a_basket_to_another_household(app, client):
    """A member's absence only skips the basket: nothing lands in another household's order."""
    season = Season()
    household, user = member("Martin")
    neighbour = HouseholdFactory(name="Lefèvre")
    contract = subscribe(season.offer.id, household.id, now=NOW)
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/contrats")
    assert "Pour donner votre panier à un autre foyer, demandez-le à la coordination" in page.text
    assert 'name="handed_to_name"' not in page.text
    token = csrf_token(page.data)
    refused = client.post("/commandes/contrats/absence", data={
        "csrf_token": token, "contract_id": contract.id, "day": season.cycles[1].distribution_date.isoformat(),
        "kind": "handover", "handed_to_name": "lef"}, follow_redirects=True)
    assert "Pour donner votre panier à un autre foyer" in refused.text
    assert "Lefèvre" not in refused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    assert contract_rows(neighbour.id) == (0, 0)
    skipped = client.post("/commandes/contrats/absence", data={
        "csrf_token": token, "contract_id": contract.id, "day": season.cycles[1].distribution_date.isoformat(),
        "kind": "skip"}, follow_redirects=True)
    assert "le producteur apportera un panier de moins" in skipped.text
    assert "absent·e, panier non apporté" in skipped.text
    assert contract_rows(neighbour.id) == (0, 0)
    # The week of the absence reads as such, not as a cancelled order; a basket-only week owes nothing.
    history = client.get("/commandes/mes-commandes").text
    assert history.count("absence : pas de panier") == 1 and "annulée" not in history
    account = client.get("/commandes/solde").text
    assert "Rien à payer" in account and "Payée" not in account


def test_volunteer_hands_a_basket_to_a_neighbour_chosen_in_a_list(app, client):
    """At the café, a volunteer gives an absent household's basket to a household picked from a list.

    (Was a member flow with a typed name; hand-overs are now done by volunteers only.)
    """
    season = Season()
    household, user = member("Martin")
    neighbour = HouseholdFactory(name="Lefèvre")
    contract = subscribe(season.offer.id, household.id, now=NOW)
    volunteer = UserFactory(roles=["volunteer"])
    contract_id, neighbour_id = contract.id, neighbour.id
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/contrat/{contract_id}"
    page = client.get(url)
    assert f'<option value="{neighbour_id}">Lefèvre</option>' in page.text
    token = csrf_token(page.data)
    data = {"csrf_token": token, "contract_id": contract_id, "day": season.cycles[1].distribution_date.isoformat(),
            "household_id": household.id, "kind": "handover"}
    refused = client.post(url + "/absence", data=data, follow_redirects=True)
    assert "Choisissez le foyer qui récupère le panier." in refused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    done = client.post(url + "/absence", data={**data, "handed_to_id": neighbour_id}, follow_redirects=True)
    assert "Lefèvre récupérera le panier" in done.text
    names = db.session.execute(
        sa.select(Order.household_id).join(OrderLine).where(Order.cycle_id == season.cycles[1].id,
                                                             OrderLine.contract_id == contract_id)).scalars().all()
    assert names == [neighbour_id]
    assert db.session.scalar(sa.select(ContractAbsence.declared_by_id)) == volunteer.id
    client.post("/compte/deconnexion", data={"csrf_token": token})
    login(client, user.email)
    assert "panier donné à Lefèvre" in client.get("/commandes/contrats").text


def test_volunteer_shares_a_basket_between_two_households(app, client):
    """A volunteer picks the co-holder from a list; the two households take alternate distributions."""
    season = Season()
    holder = HouseholdFactory(name="Mme Roussel")
    partner, partner_user = member("Famille Dupont")
    volunteer = UserFactory(roles=["volunteer"])
    partner_id = partner.id
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/offre/{season.offer.id}"
    page = client.get(url)
    assert f'<option value="{partner_id}">Famille Dupont</option>' in page.text
    done = client.post(url, data={"csrf_token": csrf_token(page.data), "household_id": holder.id,
                                  "quantity": "1", "co_holder_id": partner_id}, follow_redirects=True)
    assert "Foyer Mme Roussel inscrit" in done.text
    assert "Mme Roussel</a> + Famille Dupont" in done.text
    contract = db.session.scalar(sa.select(Contract))
    assert (contract.household_id, contract.co_holder_id) == (holder.id, partner_id)
    assert contract.subscribed_by_id == volunteer.id
    holder_lines = [name for name, *_ in contract_lines(season.cycles[0].id)]
    partner_lines = [name for name, *_ in contract_lines(season.cycles[1].id)]
    assert (holder_lines, partner_lines) == (["Mme Roussel"], ["Famille Dupont"])
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(page.data)})
    login(client, partner_user.email)
    mine = client.get("/commandes/contrats").text
    assert "Partagé avec" in mine and "Mme Roussel" in mine
    assert mine.count('class="schedule-row"') == 4  # every other of the 8 distributions
    assert "48,00" in mine


def test_member_cannot_open_the_management_pages(app, client):
    Season()
    _household, user = member("Martin")
    db.session.commit()
    login(client, user.email)
    assert client.get("/commandes/contrats/gestion").status_code == 403
    assert client.get("/commandes/contrats/producteur").status_code == 403


def test_coordinator_opens_an_offer_and_bad_dates_are_refused(app, client):
    season = Season()
    coordinator = UserFactory(roles=["coordinator"])
    db.session.commit()
    login(client, coordinator.email)
    token = csrf_token(client.get("/commandes/contrats/gestion").data)
    data = {"csrf_token": token, "product_id": season.small.id, "site_id": season.site.id,
            "name": "Printemps", "first_date": "2030-04-04", "last_date": "2030-03-28",
            "every_weeks": "2", "price": "13,50", "absences_allowed": "3", "shareable": "y"}
    refused = client.post("/commandes/contrats/gestion", data=data)
    assert refused.status_code == 400
    assert "La dernière distribution doit être après la première." in refused.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractOffer)) == 2
    created = client.post("/commandes/contrats/gestion", data={**data, "last_date": "2030-06-27"},
                          follow_redirects=True)
    assert "Printemps" in created.text and "ouvert aux inscriptions" in created.text
    offer = db.session.scalar(sa.select(ContractOffer).where(ContractOffer.name == "Printemps"))
    assert (offer.price_cents, offer.every_weeks, offer.absences_allowed, offer.shareable) == (1350, 2, 3, True)


def test_volunteer_subscribes_a_household_and_records_three_cheques(app, client):
    season = Season(weeks=6)
    roussel = HouseholdFactory(name="Mme Roussel")
    HouseholdFactory(name="Famille Dupont")
    volunteer = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/offre/{season.offer.id}"
    page = client.get(url + "?q=rouss")
    # The search narrows the list of households to choose from.
    assert f'<option value="{roussel.id}">Mme Roussel</option>' in page.text
    chooser = page.text[page.text.index('name="household_id"'):]
    chooser = chooser[:chooser.index("</select>")]
    assert "1 foyer trouvé" in page.text and "Famille Dupont" not in chooser
    done = client.post(url + "?q=rouss", data={"csrf_token": csrf_token(page.data), "household_id": roussel.id,
                                               "quantity": "1"}, follow_redirects=True)
    assert "Foyer Mme Roussel inscrit" in done.text
    contract = db.session.scalar(sa.select(Contract))
    assert contract.subscribed_by_id == volunteer.id
    detail = f"/commandes/contrats/contrat/{contract.id}"
    token = csrf_token(client.get(detail).data)
    rows = {"csrf_token": token, "household_id": contract.household_id}
    for n, (amount, month) in enumerate([("24", "2030-01"), ("24", "2030-02"), ("20", "2030-03")]):
        rows.update({f"rows-{n}-amount": amount, f"rows-{n}-method": "cheque", f"rows-{n}-cheque_number": f"00{n}",
                     f"rows-{n}-bank": "La Poste", f"rows-{n}-cashing_month": month})
    wrong = client.post(detail, data=rows, follow_redirects=True)
    assert "mais la saison coûte 72,00" in wrong.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractInstalment)) == 0
    rows["rows-2-amount"] = "24"
    ok = client.post(detail, data=rows, follow_redirects=True)
    assert "Versements enregistrés" in ok.text
    first = db.session.scalar(sa.select(ContractInstalment).order_by(ContractInstalment.position))
    received = client.post(f"/commandes/contrats/versement/{first.id}/recu", data={"csrf_token": token},
                           follow_redirects=True)
    assert "Versement reçu" in received.text
    passed = client.post(f"/commandes/contrats/versement/{first.id}/remis", data={"csrf_token": token},
                         follow_redirects=True)
    assert "remis au producteur" in passed.text


def test_producer_sees_baskets_per_distribution_and_subscribers(app, client):
    season = Season(weeks=3)
    a, b = HouseholdFactory(name="Martin"), HouseholdFactory(name="Abadie")
    subscribe(season.offer.id, a.id, now=NOW)
    subscribe(season.large_offer.id, b.id, quantity=2, now=NOW)
    farmer_user = UserFactory(producer_id=season.farmer.id, roles=["producer"])
    other_user = UserFactory(producer_id=ProducerFactory().id, roles=["producer"])
    db.session.commit()
    login(client, farmer_user.email)
    page = client.get("/commandes/contrats/producteur").text
    assert page.count('class="distribution"') == 3
    assert '<td class="num" data-basket="Grand panier" data-label="Grand panier">2</td>' in page
    assert '<td class="num" data-basket="Petit panier" data-label="Petit panier">1</td>' in page
    assert "Martin" in page and "Abadie" in page
    token = csrf_token(client.get("/commandes/contrats/producteur").data)
    client.post("/compte/deconnexion", data={"csrf_token": token})
    login(client, other_user.email)
    other = client.get("/commandes/contrats/producteur").text
    assert "Martin" not in other and "Grand panier" not in other


def test_members_see_the_case_filling_up_without_names(app, client):
    cycle = CycleFactory()
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Lentilles vertes", unit="kg",
                                                                  case_size=Decimal(25), portion_step=Decimal("0.5")))
    OrderLineFactory(order=OrderFactory(cycle_id=cycle.id, household_id=HouseholdFactory(name="Secret").id),
                     offer_id=rice.id, quantity=Decimal(18), tolerance=Decimal(2))
    _household, user = member("Martin")
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/vrac").text
    assert "Lentilles vertes" in page
    assert "18 / 25 kg, il manque 7 kg" in page
    assert "Secret" not in page


def test_order_page_partial_shows_ordered_and_allocated(app):
    order = OrderFactory()
    offer = OfferFactory(cycle_id=order.cycle_id, product=ProductFactory(name="Huile", unit="l",
                                                                         case_size=Decimal(6)))
    OrderLineFactory(order=order, offer_id=offer.id, quantity=Decimal(4), tolerance=Decimal(1),
                     quantity_allocated=Decimal(3))
    db.session.commit()
    with app.test_request_context():
        html = render_template_string('{% include "orders/bulk/_allocation.html" %}', order=order)
    assert "Vous recevez" in html and "3 l" in html and "+1" in html


def test_coordinator_closes_subscriptions_and_ends_a_contract(app, client):
    season = Season()
    household = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, household.id, now=NOW)
    coordinator = UserFactory(roles=["coordinator"])
    offer_id, contract_id = season.offer.id, contract.id
    db.session.commit()
    login(client, coordinator.email)
    token = csrf_token(client.get(f"/commandes/contrats/offre/{offer_id}").data)
    closed = client.post(f"/commandes/contrats/offre/{offer_id}/inscriptions", data={"csrf_token": token},
                         follow_redirects=True)
    assert "Inscriptions closes" in closed.text and "Rouvrir les inscriptions" in closed.text
    # One tap is not enough: the tick box confirms it.
    kept = client.post(f"/commandes/contrats/contrat/{contract_id}/resilier", data={"csrf_token": token},
                       follow_redirects=True)
    assert "Cochez la case pour confirmer la résiliation." in kept.text
    assert db.session.get(Contract, contract_id).status == "active"
    ended = client.post(f"/commandes/contrats/contrat/{contract_id}/resilier",
                        data={"csrf_token": token, "confirm": "yes"}, follow_redirects=True)
    assert "Contrat résilié" in ended.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OrderLine)) == 0
    assert db.session.get(Contract, contract_id).status == "cancelled"


def test_cart_shows_the_case_progress(app, client):
    cycle = CycleFactory()
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Lentilles vertes", unit="kg",
                                                                  case_size=Decimal(25), portion_step=Decimal("0.5")))
    OrderLineFactory(order=OrderFactory(cycle_id=cycle.id), offer_id=rice.id, quantity=Decimal(5))
    _household, user = member("Martin")
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/panier").text
    assert "Vrac : remplissons les colis" in page
    assert "5 / 25 kg, il manque 20 kg" in page


def test_volunteer_declares_an_absence_for_a_household_at_the_cafe(app, client):
    season = Season()
    household = HouseholdFactory(name="Mme Roussel")
    contract = subscribe(season.offer.id, household.id, now=NOW)
    volunteer = UserFactory(roles=["volunteer"])
    contract_id, household_id, day = contract.id, household.id, season.cycles[0].distribution_date.isoformat()
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/contrat/{contract_id}"
    page = client.get(url)
    assert "Déclarer une absence" in page.text
    done = client.post(url + "/absence", data={
        "csrf_token": csrf_token(page.data), "contract_id": contract_id, "day": day,
        "household_id": household_id, "kind": "skip"}, follow_redirects=True)
    assert "Absence enregistrée" in done.text and "absent·e" in done.text
    assert db.session.scalar(sa.select(ContractAbsence.declared_by_id)) == volunteer.id


def test_volunteer_subscribes_the_right_one_of_two_households_with_the_same_name(app, client):
    season = Season(weeks=6)
    first, second = HouseholdFactory(name="Famille Martin"), HouseholdFactory(name="Famille Martin")
    volunteer = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/offre/{season.offer.id}"
    page = client.get(url + "?q=martin")
    assert f'<option value="{second.id}">Famille Martin (foyer n° {second.id})</option>' in page.text
    refused = client.post(url + "?q=martin", data={"csrf_token": csrf_token(page.data), "household_id": "",
                                                    "quantity": "1"})
    assert refused.status_code == 400 and "Choisissez le foyer à inscrire." in refused.text
    done = client.post(url + "?q=martin", data={"csrf_token": csrf_token(page.data), "household_id": second.id,
                                                 "quantity": "1"}, follow_redirects=True)
    assert "Foyer Famille Martin inscrit" in done.text
    assert db.session.scalar(sa.select(Contract.household_id)) == second.id
    assert first.id != second.id
