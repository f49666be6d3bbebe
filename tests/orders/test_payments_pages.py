"""Account, balances, top-ups, desk payment and money pages, as households and coordinators use them."""
import csv
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.ledger import balance_cents, record_entry, sync_order_charge
from orders.payment_models import LedgerEntry, Payment
from orders.payments import record_desk_payment
from tests.factories import (
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    ProducerFactory,
    ProductFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login


def _form_token(page) -> str:
    """The one-time token of the form on a page."""
    return page.get_data(as_text=True).split('name="token" type="hidden" value="')[1].split('"')[0]


def make_order(total_cents, **kwargs):
    """A confirmed order with one line worth total_cents."""
    order = OrderFactory(**kwargs)
    OrderLineFactory(order=order, unit_price_cents=total_cents, base_price_cents=total_cents, quantity=Decimal(1))
    order.total_cents = total_cents
    db.session.flush()
    return order


@pytest.fixture()
def household_user(app):
    """A member of the Foyer Dupont."""
    household = HouseholdFactory(name="Foyer Dupont")
    user = UserFactory(email="marie@example.org", household=household, roles=["member"])
    db.session.commit()
    return user


@pytest.fixture()
def coordinator(app):
    """A coordinator account."""
    user = UserFactory(email="coord@example.org", roles=["coordinator"])
    db.session.commit()
    return user


def test_without_stripe_keys_card_is_not_offered_and_the_rest_works(client, household_user):
    order = make_order(1800, household_id=household_user.household_id)
    record_entry(household_user.household_id, 2000, "topup", "topup:test:1")
    db.session.commit()
    login(client, household_user.email)
    page = client.get("/commandes/solde")
    text = page.get_data(as_text=True)
    assert "Payer par carte" not in text
    assert "Payer avec mon solde" in text
    assert client.post(f"/commandes/{order.id}/payer/carte",
                       data={"csrf_token": csrf_token(page.data)}).status_code == 404
    assert client.post("/commandes/stripe/webhook", data="{}", content_type="application/json").status_code == 400
    done = client.post(f"/commandes/{order.id}/payer/solde", data={"csrf_token": csrf_token(page.data)},
                       follow_redirects=True).get_data(as_text=True)
    assert "Payé depuis votre solde." in done
    assert "Reçu R-000001" in done
    assert balance_cents(household_user.household_id) == 200


def test_account_shows_balance_history_and_what_is_owed(client, household_user):
    hid = household_user.household_id
    paid = make_order(1250, household_id=hid)
    record_desk_payment(paid.id, "cash", 1250, received_by_id=None)
    owed = make_order(990, household_id=hid)
    sync_order_charge(owed.id)
    record_entry(hid, 500, "topup", "topup:test:2", note="versement au café")
    db.session.commit()
    login(client, household_user.email)
    text = client.get("/commandes/solde").get_data(as_text=True)
    assert "-4,90" in text  # 5,00 top-up - 9,90 owed
    assert "versement au café" in text
    assert "Ce montant reste à payer." in text
    assert "Reçu R-000001" in text
    assert "9,90" in text


def test_members_cannot_see_other_accounts_or_coordinator_pages(client, household_user):
    other = HouseholdFactory()
    db.session.commit()
    login(client, household_user.email)
    assert client.get("/commandes/soldes").status_code == 403
    assert client.get(f"/commandes/soldes/{other.id}").status_code == 403
    assert client.get("/commandes/argent").status_code == 403


def test_coordinator_balances_page_and_csv_add_up_to_the_ledger(client, coordinator):
    a, b = HouseholdFactory(name="Foyer A"), HouseholdFactory(name="Foyer B")
    record_entry(a.id, 1500, "topup", "t:a")
    order = make_order(2000, household_id=b.id)
    sync_order_charge(order.id)
    record_desk_payment(order.id, "cash", 500, received_by_id=None)
    db.session.commit()
    login(client, coordinator.email)
    page = client.get("/commandes/soldes").get_data(as_text=True)
    assert "Foyer A" in page and "15,00" in page and "-15,00" in page
    response = client.get("/commandes/soldes?format=csv")
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # a French spreadsheet reads it as UTF-8 (semicolons, decimal commas)
    rows = {r["foyer"]: r["solde"] for r in csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";")}
    assert rows["Foyer A"] == "15,00"
    assert rows["Foyer B"] == "-15,00"
    total = db.session.scalar(sa.select(sa.func.sum(LedgerEntry.amount_cents)))
    assert sum(int(v.replace(",", "")) for v in rows.values() if v) == total == 0


@pytest.mark.parametrize("amount, message", [
    ("-5", "supérieur à zéro"),
    ("0", "supérieur à zéro"),
    ("100000", "trop élevé"),
    ("12,345", "montant en euros"),
    ("abc", "montant en euros"),
    ("", "Indiquez un montant"),
])
def test_bad_topups_are_refused_in_french_and_write_nothing(client, coordinator, amount, message):
    household = HouseholdFactory()
    db.session.commit()
    login(client, coordinator.email)
    url = f"/commandes/soldes/{household.id}/versement"
    page = client.get(url)
    token = page.get_data(as_text=True).split('name="token" type="hidden" value="')[1].split('"')[0]
    response = client.post(url, data={"csrf_token": csrf_token(page.data), "amount": amount, "token": token})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.query(LedgerEntry).count() == 0


def test_topup_submitted_twice_counts_once(client, coordinator):
    household = HouseholdFactory()
    db.session.commit()
    login(client, coordinator.email)
    url = f"/commandes/soldes/{household.id}/versement"
    page = client.get(url)
    token = page.get_data(as_text=True).split('name="token" type="hidden" value="')[1].split('"')[0]
    data = {"csrf_token": csrf_token(page.data), "method": "cash", "amount": "20,00", "token": token,
            "note": "espèces"}
    first = client.post(url, data=data, follow_redirects=True)
    client.post(url, data=data, follow_redirects=True)
    assert "Versement enregistré." in first.get_data(as_text=True)
    assert balance_cents(household.id) == 2000
    assert db.session.query(LedgerEntry).one().created_by_id == coordinator.id


def test_desk_payment_form_refuses_cheque_without_number_then_records_cash(client, app):
    volunteer = UserFactory(email="benevole@example.org", roles=["volunteer"])
    order = make_order(1490)
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/{order.id}/paiement-accueil"
    page = client.get(url)
    token = _form_token(page)
    bad = client.post(url, data={"csrf_token": csrf_token(page.data), "method": "cheque", "amount": "14,90",
                                 "cheque_bank": "Crédit Agricole", "token": token})
    assert "Indiquez le numéro du chèque." in bad.get_data(as_text=True)
    assert db.session.query(Payment).count() == 0
    too_much = client.post(url, data={"csrf_token": csrf_token(page.data), "method": "cash", "amount": "20",
                                      "token": token})
    assert "dépasse ce qui reste à payer" in too_much.get_data(as_text=True)
    assert db.session.query(Payment).count() == 0
    done = client.post(url, data={"csrf_token": csrf_token(page.data), "method": "cash", "amount": "14,90",
                                  "token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Paiement enregistré." in done
    assert "Reçu R-000001" in done
    again = client.post(url, data={"csrf_token": csrf_token(page.data), "method": "cash", "amount": "1",
                                   "token": token},
                        follow_redirects=True).get_data(as_text=True)
    assert db.session.query(Payment).count() == 1
    assert "Payée" in again


def test_desk_payment_page_sent_twice_records_one_payment(client, app):
    volunteer = UserFactory(email="benevole@example.org", roles=["volunteer"])
    order = make_order(1490)
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/{order.id}/paiement-accueil"
    page = client.get(url)
    data = {"csrf_token": csrf_token(page.data), "method": "cash", "amount": "5", "token": _form_token(page)}
    first = client.post(url, data=data, follow_redirects=True).get_data(as_text=True)
    second = client.post(url, data=data, follow_redirects=True).get_data(as_text=True)
    assert "Paiement enregistré." in first
    assert "Ce paiement est déjà enregistré." in second and "9,90" in second
    assert db.session.query(Payment).count() == 1
    # Without the form's token (a page from before, a script) nothing is recorded.
    page = client.get(url)
    stale = client.post(url, data={"csrf_token": csrf_token(page.data), "method": "cash", "amount": "5"})
    assert "Le formulaire a expiré. Rechargez la page." in stale.get_data(as_text=True)
    assert db.session.query(Payment).count() == 1


def test_money_view_per_cycle_with_producers_and_csv(client, coordinator):
    farm, baker = ProducerFactory(name="Ferme des Saules"), ProducerFactory(name="Fournil du Bourg")
    eggs = ProductFactory(producer=farm, name="Œufs", price_cents=350)
    bread = ProductFactory(producer=baker, name="Pain", price_cents=420)
    a, b = HouseholdFactory(name="Foyer A"), HouseholdFactory(name="Foyer B")
    first = OrderFactory(household_id=a.id)
    cycle_id = first.cycle_id
    egg_offer = OfferFactory(product=eggs, cycle_id=cycle_id)
    bread_offer = OfferFactory(product=bread, cycle_id=cycle_id)
    # Foyer A pays a solidarity markup: 3,85 an egg box; the farm is owed its base price.
    OrderLineFactory(order=first, offer_id=egg_offer.id, unit_price_cents=385, base_price_cents=350,
                     quantity=Decimal(2))
    OrderLineFactory(order=first, offer_id=bread_offer.id, unit_price_cents=420, base_price_cents=420,
                     quantity=Decimal(1))
    first.total_cents = 1190
    second = OrderFactory(household_id=b.id, cycle_id=cycle_id)
    OrderLineFactory(order=second, offer_id=bread_offer.id, unit_price_cents=420, base_price_cents=420,
                     quantity=Decimal(3))
    second.total_cents = 1260
    db.session.flush()
    record_desk_payment(first.id, "cash", 1190, received_by_id=None)
    record_desk_payment(second.id, "cheque", 1000, received_by_id=None, cheque_number="9", cheque_bank="CIC")
    db.session.commit()

    login(client, coordinator.email)
    page = client.get(f"/commandes/argent?cycle={cycle_id}").get_data(as_text=True)
    assert "24,50" in page  # due
    assert "2,60" in page  # still owed
    assert "Ferme des Saules" in page and "7,00" in page
    assert "Fournil du Bourg" in page and "16,80" in page
    response = client.get(f"/commandes/argent?cycle={cycle_id}&format=csv")
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert "commande;Foyer A;" in text and ";11,90;0,00;11,90;0,00;0,00;0,00" in text
    assert ";12,60;0,00;0,00;10,00;0,00;2,60" in text
    assert "producteur;Ferme des Saules;7,00" in text
    # As the purchase orders: a French spreadsheet opens it as it is (BOM, semicolons, decimal commas),
    # and the totals of the page are its last order row.
    assert text.startswith("\ufefftype;foyer;commande;")
    assert "total;;;;24,50;0,00;11,90;10,00;0,00;2,60;0,00" in text
    assert "producteur;Fournil du Bourg;16,80" in text
    assert client.get("/commandes/argent?cycle=99999").status_code == 404


def test_payment_options_on_the_order_page(client, household_user):
    order = make_order(1200, household_id=household_user.household_id)
    record_entry(household_user.household_id, 300, "topup", "t:partial")
    db.session.commit()
    login(client, household_user.email)
    html = client.get(f"/commandes/commande/{order.id}").get_data(as_text=True)
    assert "Reste à payer : 12,00" in html
    assert "Payer avec mon solde (3,00" in html
    assert "Payer par carte" not in html
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    volunteer = UserFactory(email="benevole@example.org", roles=["volunteer"])
    db.session.commit()
    login(client, volunteer.email)
    html = client.get(f"/commandes/commande/{order.id}").get_data(as_text=True)
    assert "Payer avec mon solde" not in html
    assert f"/commandes/{order.id}/paiement-accueil" in html


def test_paying_a_paid_or_someone_elses_order_from_the_balance_is_refused(client, household_user):
    hid = household_user.household_id
    record_entry(hid, 5000, "topup", "t:refused")
    paid = make_order(1000, household_id=hid)
    record_desk_payment(paid.id, "cash", 1000, received_by_id=None)
    other_order = make_order(700, household_id=HouseholdFactory().id)
    db.session.commit()
    before = (db.session.query(Payment).count(), db.session.query(LedgerEntry).count())
    login(client, household_user.email)
    page = client.get("/commandes/solde")
    refused = client.post(f"/commandes/{paid.id}/payer/solde", data={"csrf_token": csrf_token(page.data)},
                          follow_redirects=True).get_data(as_text=True)
    assert "Cette commande est déjà payée." in refused
    assert client.post(f"/commandes/{other_order.id}/payer/solde",
                       data={"csrf_token": csrf_token(page.data)}).status_code == 404
    assert client.post(f"/commandes/{paid.id}/payer/solde", data={}).status_code == 400  # no CSRF token
    assert (db.session.query(Payment).count(), db.session.query(LedgerEntry).count()) == before


def test_money_view_adds_up_when_a_paid_bag_shrinks_and_the_surplus_goes_to_the_balance(client, coordinator):
    from pickup import services as pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    # Foyer Dupont pays its 6,30 in full, then its apples weigh 0,9 kg instead of 1,5 (2,88 instead of 4,80).
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None)
    apples = thursday.line(thursday.dupont, thursday.apples)
    pickup.record_weight(apples.id, Decimal("0.9"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert balance_cents(thursday.dupont.household_id) == 192

    login(client, coordinator.email)
    page = client.get(f"/commandes/argent?cycle={thursday.cycle.id}").get_data(as_text=True).replace("\xa0", " ")
    due = 438 + 750 + 300  # Dupont after weighing, Martin, Leroy
    assert f'<dd id="du">{due // 100},{due % 100:02d} €</dd>' in page
    assert "Trop-perçu porté au crédit des soldes" in page
    assert '<dd id="porte-au-solde">1,92 €</dd>' in page
    # 14,88 due - 6,30 paid + 1,92 to the balance = 10,50 still owed (Martin and Leroy).
    assert '<dd id="reste-du">10,50 €</dd>' in page
    assert "1,92 € porté au solde" in page
    csv_text = client.get(f"/commandes/argent?cycle={thursday.cycle.id}&format=csv").get_data(as_text=True)
    assert ";4,38;0,00;6,30;0,00;0,00;0,00;1,92" in csv_text


def test_money_taken_for_a_distribution_later_cancelled_stays_in_its_report(client, coordinator):
    """Cash taken, then the distribution cancelled: the report still shows the cash, as gone to the balance."""
    from orders.models import Cycle
    from orders.services import cancel_cycle

    household = HouseholdFactory(name="Foyer Richard")
    order = make_order(1180, household_id=household.id)
    cycle_id = order.cycle_id
    db.session.get(Cycle, cycle_id).status = "open"
    record_desk_payment(order.id, "cash", 1180, received_by_id=None)
    db.session.commit()
    cancel_cycle(cycle_id)
    db.session.commit()

    login(client, coordinator.email)
    page = client.get(f"/commandes/argent?cycle={cycle_id}").get_data(as_text=True)
    assert "Foyer Richard" in page and "Annulée" in page
    assert 'id="porte-au-solde">11,80' in page and 'id="reste-du">0,00' in page
    text = client.get(f"/commandes/argent?cycle={cycle_id}&format=csv").get_data(as_text=True)
    assert "commande;Foyer Richard;" in text and ";0,00;0,00;11,80;0,00;0,00;0,00;11,80" in text
    assert balance_cents(household.id) == 1180


def test_coordinator_topup_says_cash_or_cheque_and_a_second_submit_records_nothing(client, coordinator):
    import html
    import re

    household = HouseholdFactory(name="Foyer C")
    record_entry(household.id, 800, "topup", "topup:old:1", note="ancien versement")  # before the method was asked
    db.session.commit()
    login(client, coordinator.email)
    url = f"/commandes/soldes/{household.id}/versement"
    page = client.get(url)
    assert re.search(r'type="radio"[^>]*value="cash" checked', page.get_data(as_text=True))

    def send(**data):
        return html.unescape(client.post(url, data={"csrf_token": csrf_token(page.data), "token": _form_token(page),
                                                    **data}, follow_redirects=True).get_data(as_text=True))

    assert "Indiquez le numéro du chèque." in send(method="cheque", amount="35", cheque_bank="La Banque Postale")
    assert "Indiquez la banque du chèque." in send(method="cheque", amount="35", cheque_number="1234567")
    assert "Choisissez espèces ou chèque." in send(amount="35")
    assert db.session.query(LedgerEntry).count() == 1
    cheque = dict(method="cheque", amount="35", cheque_number="1234567", cheque_bank="La Banque Postale",
                  note="avance")
    assert "Versement enregistré." in send(**cheque)
    again = send(**cheque)
    assert "Ce versement est déjà enregistré." in again and "Versement enregistré." not in again
    db.session.expire_all()
    entry = db.session.scalars(sa.select(LedgerEntry).order_by(LedgerEntry.id.desc())).first()
    assert (entry.amount_cents, entry.method, entry.cheque_number, entry.cheque_bank, entry.cycle_id,
            entry.created_by_id) == (3500, "cheque", "1234567", "La Banque Postale", None, coordinator.id)
    assert balance_cents(household.id) == 4300
    # Cash keeps no cheque details, even when some were left typed in.
    page = client.get(url)
    send(method="cash", amount="5", cheque_number="999", cheque_bank="CIC")
    db.session.expire_all()
    cash = db.session.scalars(sa.select(LedgerEntry).order_by(LedgerEntry.id.desc())).first()
    assert (cash.amount_cents, cash.method, cash.cheque_number, cash.cheque_bank) == (500, "cash", None, None)
    history = html.unescape(client.get(f"/commandes/soldes/{household.id}").get_data(as_text=True))
    assert "Versement · chèque n° 1234567 (La Banque Postale)" in history
    assert "Versement · en espèces" in history
    assert "Versement · moyen de paiement non précisé" in history


def test_money_view_counts_topups_and_cash_handed_back_at_its_distribution(client, coordinator):
    import html

    from orders.payments import hand_back_credit, record_topup

    a, b = HouseholdFactory(name="Foyer A"), HouseholdFactory(name="Foyer B")
    order = make_order(1190, household_id=a.id)
    cycle_id = order.cycle_id
    record_desk_payment(order.id, "cash", 1190, received_by_id=None, cycle_id=cycle_id)
    record_topup(b.id, 2000, method="cash", token="topupcash01", created_by_id=None, cycle_id=cycle_id)
    record_topup(b.id, 1500, method="cheque", cheque_number="42", cheque_bank="CIC", token="topupcheque01",
                 created_by_id=None, cycle_id=cycle_id)
    # Taken by the coordinator on another day: in no distribution's till.
    record_topup(b.id, 5000, method="cash", token="topupelsewhere1", created_by_id=None)
    hand_back_credit(b.id, 500, "cash", note="départ", token="handback01", created_by_id=None, cycle_id=cycle_id)
    db.session.commit()
    login(client, coordinator.email)
    page = html.unescape(client.get(f"/commandes/argent?cycle={cycle_id}").get_data(as_text=True)).replace("\xa0", " ")
    assert 'id="versements-cash">20,00 €' in page and 'id="versements-cheque">15,00 €' in page
    assert "(1 versement)" in page
    assert 'id="rendu-cash">− 5,00 €' in page and "(1 remboursement)" in page
    assert '<strong id="especes-attendues">26,90 €</strong>' in page
    rows = client.get(f"/commandes/argent?cycle={cycle_id}&format=csv").get_data(as_text=True).splitlines()
    assert {"versement;especes;20,00;1", "versement;cheque;15,00;1", "avoir_rendu;especes;5,00;1",
            "avoir_rendu;cheque;0,00;0", "caisse;especes_attendues;26,90;"} <= set(rows)
    # The orders' rows are as before.
    assert any(row.startswith("commande;Foyer A;") and ";11,90;0,00;11,90;" in row for row in rows)


def test_coordinator_topup_on_a_distribution_day_goes_into_that_distributions_till(client, coordinator):
    import html

    from tests.pickup.conftest import make_thursday

    household = HouseholdFactory(name="Foyer Sans Sac")
    db.session.commit()
    login(client, coordinator.email)
    url = f"/commandes/soldes/{household.id}/versement"
    page = client.get(url)
    assert "Pas de distribution aujourd'hui : cet argent ne compte dans la caisse d'aucune distribution." in (
        html.unescape(page.get_data(as_text=True)))
    thursday = make_thursday()
    db.session.commit()
    household_id = thursday.dupont.household_id
    url = f"/commandes/soldes/{household_id}/versement"
    page = client.get(url)
    shown = html.unescape(page.get_data(as_text=True))
    assert "L'argent reçu aujourd'hui entre dans la caisse de la distribution du" in shown
    assert "il est compté dans sa « Caisse du jour »" in shown
    done = client.post(url, data={"csrf_token": csrf_token(page.data), "token": _form_token(page), "method": "cash",
                                  "amount": "20"}, follow_redirects=True)
    assert "Versement enregistré." in done.get_data(as_text=True)
    db.session.expire_all()
    entry = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "topup")).one()
    assert (entry.household_id, entry.amount_cents, entry.method, entry.cycle_id) == (
        household_id, 2000, "cash", thursday.cycle.id)
    # The desk's « Caisse du jour » expects that cash.
    till = html.unescape(client.get("/retrait/caisse").get_data(as_text=True)).replace("\xa0", " ")
    assert '<dd id="caisse-versements-especes">+ 20,00 €' in till
    assert '<dd id="caisse-especes-attendues"><strong>20,00 €</strong>' in till


def test_the_coordinator_reads_the_households_account_in_the_third_person(client, coordinator):
    import html

    household = HouseholdFactory(name="Foyer Durand")
    record_entry(household.id, 500, "topup", "topup:test:1")
    db.session.commit()
    login(client, coordinator.email)
    page = html.unescape(client.get(f"/commandes/soldes/{household.id}").get_data(as_text=True))
    assert "C'est un avoir : il sert à payer ses prochaines commandes." in page and "vos" not in page
