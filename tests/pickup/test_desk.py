"""Hand-out desk: find a household, take payment, hand the bag over, end the distribution."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Household
from orders.payment_models import Payment
from orders.payments import amount_due_cents
from pickup.models import Pickup
from pickup.services import paris_today
from tests.helpers import login, post_form
from tests.pickup.conftest import make_thursday, text


def _desk_url(order):
    return f"/retrait/accueil/sac/{order.id}"


def _form_fields(client, url):
    """The CSRF token and the one-time form token of the payment form on a page."""
    from tests.helpers import csrf_token

    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', page).group(1)
    return {"csrf_token": csrf_token(page), "token": token}


def _pay(client, order, data):
    """Fill the desk's payment form of a bag, as shown by a fresh page, and send it."""
    return client.post(f"{_desk_url(order)}/paiement", data={**_form_fields(client, _desk_url(order)), **data},
                       follow_redirects=True)


def test_find_household_by_name_bag_number_or_slot(client, thursday):
    login(client, thursday.volunteer_email)
    page = text(client.get("/retrait/accueil?q=dup"))
    assert "Foyer Dupont" in page and "Foyer Martin" not in page
    page = text(client.get("/retrait/accueil?q=3"))
    assert "Sac n° 3 · Foyer Leroy" in page and "Foyer Dupont" not in page
    page = text(client.get(f"/retrait/accueil?slot={thursday.slot1.id}"))
    assert "Foyer Dupont" in page and "Foyer Martin" in page and "Foyer Leroy" not in page
    page = text(client.get("/retrait/accueil?q=personne"))
    assert "Aucun foyer trouvé" in page
    # Accents and case aside, as volunteers type on a phone.
    db.session.get(Household, thursday.dupont.household_id).name = "Foyer Dupont-Écoffier"
    db.session.commit()
    page = text(client.get("/retrait/accueil?q=ECOFFIER"))
    assert "Foyer Dupont-Écoffier" in page and "Foyer Martin" not in page


def test_cash_then_cheque_payment_lowers_amount_due(client, thursday):
    login(client, thursday.volunteer_email)
    order = thursday.martin  # 2 boxes of eggs and a salad: 7,50 €
    page = client.get(_desk_url(order)).get_data(as_text=True)
    assert "Reste à payer" in page and "7,50" in page
    response = _pay(client, order, {"method": "cash", "amount": "5"})
    page = text(response)
    assert "Paiement enregistré." in page and '<strong id="reste-a-payer">2,50' in page

    # A cheque without its number is refused on the form, nothing recorded.
    response = _pay(client, order, {"method": "cheque", "amount": "2,50"})
    assert response.status_code == 422
    assert "indiquez son numéro et sa banque" in text(response)
    assert amount_due_cents(order.id) == 250

    response = _pay(client, order, {"method": "cheque", "amount": "2,50", "cheque_number": "0012345",
                                     "cheque_bank": "Crédit Mutuel"})
    assert "Tout est payé." in text(response)
    cheque = db.session.scalar(sa.select(Payment).where(Payment.method == "cheque"))
    assert cheque.provider_reference == "0012345" and cheque.cheque_bank == "Crédit Mutuel"
    assert cheque.received_by_id is not None


def test_bag_collected_once_second_time_refused(client, thursday):
    login(client, thursday.volunteer_email)
    url = f"{_desk_url(thursday.leroy)}/remis"
    response = post_form(client, url, {}, form_url=_desk_url(thursday.leroy))
    assert "Sac remis." in text(response)
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == thursday.leroy.id))
    first = (pickup.collected_at, pickup.collected_by_id)
    assert first[0] is not None

    # The same button pressed again (a second tab, a double tap) is refused in French.
    response = client.post(url, data={"csrf_token": _token(client, thursday.leroy)}, follow_redirects=True)
    page = text(response)
    assert "Ce sac a déjà été remis" in page and "Paul Bénévole" in page
    db.session.expire_all()
    pickup = db.session.get(Pickup, pickup.id)
    assert (pickup.collected_at, pickup.collected_by_id) == first


def _token(client, order):
    from tests.helpers import csrf_token

    return csrf_token(client.get("/retrait/accueil").data)


def test_bag_of_another_distribution_cannot_be_collected(client, thursday):
    other = make_thursday(day=paris_today() + timedelta(days=7), tag=" bis")
    db.session.commit()
    login(client, thursday.volunteer_email)
    assert client.get(_desk_url(other.dupont)).status_code == 404
    response = client.post(f"{_desk_url(other.dupont)}/remis", data={"csrf_token": _token(client, other.dupont)})
    assert response.status_code == 404
    assert "n'appartient pas à la distribution en cours" in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Pickup.id)).where(Pickup.collected_at.is_not(None))) == 0


def test_end_of_distribution_lists_no_shows_for_the_coordinator(client, thursday):
    login(client, thursday.coordinator_email)
    post_form(client, f"{_desk_url(thursday.dupont)}/remis", {}, form_url=_desk_url(thursday.dupont))
    response = post_form(client, f"/retrait/distribution/{thursday.cycle.id}/fin", {}, form_url="/retrait/accueil")
    page = text(response)
    assert "2 sacs non récupérés" in page
    assert "Foyer Martin" in page and "Foyer Leroy" in page and "Foyer Dupont" not in page
    # Pressing the button again marks nothing more, and says the day is already over.
    no_shows = db.session.scalar(sa.select(sa.func.count(Pickup.id)).where(Pickup.no_show.is_(True)))
    response = post_form(client, f"/retrait/distribution/{thursday.cycle.id}/fin", {}, form_url="/retrait/accueil")
    assert "Cette distribution est déjà terminée." in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Pickup.id)).where(Pickup.no_show.is_(True))) == no_shows == 2

    response = post_form(client, f"/retrait/non-recuperes/{thursday.martin.id}",
                         {f"n{thursday.martin.id}-outcome": "kept", f"n{thursday.martin.id}-note": "passera vendredi"},
                         form_url="/retrait/non-recuperes")
    assert "Fait : Gardé au café, le foyer passera le chercher — passera vendredi" in text(response)
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == thursday.martin.id))
    assert pickup.no_show and pickup.no_show_outcome.startswith("Gardé au café")


def test_board_counts_bags_and_money_by_method(client, thursday):
    login(client, thursday.coordinator_email)
    _pay(client, thursday.leroy, {"method": "cash", "amount": "3"})
    post_form(client, f"{_desk_url(thursday.leroy)}/remis", {}, form_url=_desk_url(thursday.leroy))
    response = client.get("/retrait/tableau")
    assert response.headers["Refresh"] == "30"
    page = text(response)
    assert 'http-equiv="refresh"' in page
    card = page[page.index(f'id="tableau-{thursday.slot2.id}"'):]
    card = card[:card.index("</section>")]
    counts = dict(re.findall(r'data-count="(\w+)">(?:<strong>)?(\d+)', card))
    assert counts == {"bags": "1", "prepared": "0", "collected": "1", "expected": "0", "no_show": "0"}
    assert "<dt>Espèces</dt><dd>3,00\xa0€</dd>" in page


def test_card_hint_only_when_stripe_is_configured(client, thursday, app):
    login(client, thursday.volunteer_email)
    assert "Carte bancaire" not in text(client.get(_desk_url(thursday.martin)))
    app.config["STRIPE_SECRET_KEY"] = "sk_test_not_used"
    assert "Carte bancaire : le foyer peut payer sur son téléphone" in text(client.get(_desk_url(thursday.martin)))


def test_late_household_still_gets_its_bag_after_the_end(client, thursday):
    login(client, thursday.coordinator_email)
    post_form(client, f"/retrait/distribution/{thursday.cycle.id}/fin", {}, form_url="/retrait/accueil")
    response = post_form(client, f"{_desk_url(thursday.leroy)}/remis", {}, form_url=_desk_url(thursday.leroy))
    assert "Sac remis." in text(response)
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == thursday.leroy.id))
    assert pickup.collected_at is not None and not pickup.no_show
    assert "Foyer Leroy" not in text(client.get("/retrait/non-recuperes"))


def test_outcome_only_for_a_bag_not_collected(client, thursday):
    login(client, thursday.coordinator_email)
    response = post_form(client, f"/retrait/non-recuperes/{thursday.dupont.id}",
                         {f"n{thursday.dupont.id}-outcome": "donated"}, form_url="/retrait/non-recuperes",
                         follow_redirects=False)
    assert response.status_code == 404
    assert db.session.scalar(sa.select(Pickup.no_show_outcome).where(Pickup.order_id == thursday.dupont.id)) is None


def test_desk_payment_sent_twice_is_recorded_once(client, thursday):
    login(client, thursday.volunteer_email)
    order = thursday.martin  # 7,50 €
    form = {**_form_fields(client, _desk_url(order)), "method": "cash", "amount": "5"}
    first = client.post(f"{_desk_url(order)}/paiement", data=form, follow_redirects=True)
    assert "Paiement enregistré." in text(first)
    # The same form again (double tap on a slow connection): nothing more, a plain notice.
    second = client.post(f"{_desk_url(order)}/paiement", data=form, follow_redirects=True)
    page = text(second)
    assert second.status_code == 200
    assert "Ce paiement est déjà enregistré." in page and '<strong id="reste-a-payer">2,50' in page
    assert db.session.scalar(sa.select(sa.func.count(Payment.id))) == 1
    assert amount_due_cents(order.id) == 250
    # A new form (the page shown again) takes a second payment as usual.
    assert "Tout est payé." in text(_pay(client, order, {"method": "cash", "amount": "2,50"}))


def test_desk_payment_without_its_form_token_records_nothing(client, thursday):
    login(client, thursday.volunteer_email)
    fields = _form_fields(client, _desk_url(thursday.martin))
    response = client.post(f"{_desk_url(thursday.martin)}/paiement",
                           data={"csrf_token": fields["csrf_token"], "method": "cash", "amount": "5"})
    assert response.status_code == 422
    assert "Le formulaire a expiré. Rechargez la page." in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Payment.id))) == 0


def test_ending_the_distribution_asks_for_confirmation_first(client, thursday):
    login(client, thursday.volunteer_email)
    _pay(client, thursday.dupont, {"method": "cash", "amount": "1"})
    post_form(client, f"{_desk_url(thursday.dupont)}/remis", {}, form_url=_desk_url(thursday.dupont))
    end_url = f"/retrait/distribution/{thursday.cycle.id}/fin"
    for page_url in ("/retrait/accueil", "/retrait/tableau"):
        # No page sends the end of the distribution in one tap.
        assert f'method="post" action="{end_url}"' not in client.get(page_url).get_data(as_text=True)
    page = text(client.get(end_url))
    assert "Terminer la distribution ?" in page and "2 sacs n'ont pas été remis." in page
    assert "Foyer Martin" in page and "Foyer Leroy" in page and "Foyer Dupont" not in page
    assert db.session.scalar(sa.select(sa.func.count(Pickup.id)).where(Pickup.no_show.is_(True))) == 0

    response = post_form(client, end_url, {}, form_url=end_url)
    assert "Distribution terminée : 2 sacs non récupérés." in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Pickup.id)).where(Pickup.no_show.is_(True))) == 2
    assert "Tous les sacs ont été remis ou sont déjà notés" in text(client.get(end_url))


def test_documents_page_says_the_cycle_status_in_french(client, thursday):
    login(client, thursday.coordinator_email)
    post_form(client, f"/retrait/distribution/{thursday.cycle.id}/fin", {}, form_url="/retrait/accueil")
    page = text(client.get(f"/commandes/cycles/{thursday.cycle.id}/documents"))
    assert "distribuée" in page and "distributed" not in page


def test_handing_out_an_unprepared_unpaid_bag_warns_the_volunteer(client, thursday):
    from pickup import services

    login(client, thursday.volunteer_email)
    response = post_form(client, f"{_desk_url(thursday.leroy)}/remis", {}, form_url=_desk_url(thursday.leroy))
    page = text(response)
    assert "Sac remis. Attention : il reste 3,00\xa0€ à payer ; sac non préparé." in page
    assert "Bonne semaine" not in page
    assert db.session.scalar(sa.select(Pickup.collected_at).where(Pickup.order_id == thursday.leroy.id)) is not None

    # A bag prepared and paid is handed out with the usual words.
    martin = thursday.martin
    services.mark_prepared(martin.id, {line.id for line in martin.lines}, cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    _pay(client, martin, {"method": "cash", "amount": "7,50"})
    response = post_form(client, f"{_desk_url(martin)}/remis", {}, form_url=_desk_url(martin))
    assert "Sac remis. Bonne semaine !" in text(response) and "Attention" not in text(response)


def test_households_without_a_slot_have_their_button_at_the_desk(client, thursday):
    thursday.leroy.slot_id = None  # an AMAP basket only: no slot chosen
    db.session.commit()
    login(client, thursday.volunteer_email)
    page = text(client.get("/retrait/accueil"))
    assert 'href="/retrait/accueil?slot=aucun">Sans créneau (1)</a>' in page
    page = text(client.get("/retrait/accueil?slot=aucun"))
    assert "Sac n° 3 · Foyer Leroy" in page and "Foyer Dupont" not in page and "Foyer Martin" not in page


def test_desk_balance_leaves_out_orders_of_distributions_still_to_come(client, thursday):
    from datetime import datetime, time, timezone
    from decimal import Decimal

    from orders.ledger import balance_cents, sync_order_charge
    from tests.factories import CycleFactory, OrderFactory, OrderLineFactory

    household_id = thursday.dupont.household_id

    def charged_order(day, cents, status):
        starts = datetime.combine(day, time(15, 30), tzinfo=timezone.utc)
        cycle = CycleFactory(distribution_date=day, distribution_starts_at=starts,
                             opens_at=starts - timedelta(days=9), closes_at=starts - timedelta(days=2), status=status)
        order = OrderFactory(cycle_id=cycle.id, household_id=household_id)
        OrderLineFactory(order=order, unit_price_cents=cents, base_price_cents=cents, quantity=Decimal(1))
        order.total_cents = cents
        db.session.flush()
        sync_order_charge(order.id)

    charged_order(paris_today() - timedelta(days=7), 200, "distributed")  # last week's bag, still unpaid
    charged_order(paris_today() + timedelta(days=7), 7681, "finalized")  # next week's, charged at close
    db.session.commit()
    assert balance_cents(household_id) == -(630 + 200 + 7681)

    login(client, thursday.volunteer_email)
    page = text(client.get(_desk_url(thursday.dupont))).replace("\xa0", " ")
    assert '<strong id="reste-a-payer">6,30 €' in page
    # Today's bag and last week's debt, not next week's order.
    assert "Solde du foyer, ses sacs jusqu'à aujourd'hui déduits" in page and '<dd id="solde">-8,30 €' in page
    assert "76,81 € à payer plus tard, pas aujourd'hui" in page
    assert "-85,11" not in page


def test_slot_list_shows_what_each_bag_owes_with_one_query_for_the_slot(client, thursday, app):
    from tests.factories import OrderFactory, OrderLineFactory

    login(client, thursday.volunteer_email)
    _pay(client, thursday.martin, {"method": "cash", "amount": "5"})
    _pay(client, thursday.dupont, {"method": "cash", "amount": "6,30"})
    url = f"/retrait/accueil?slot={thursday.slot1.id}"
    page = text(client.get(url)).replace("\xa0", " ")
    assert "Foyer Martin" in page and "À payer : 2,50 €" in page
    dupont = page[page.index("Foyer Dupont"):page.index("Foyer Martin")]
    assert "Payé" in dupont and "À payer" not in dupont

    def statements(path):
        seen = []
        engine = db.engine
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            client.get(path)
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        return len(seen)

    before = statements(url)
    for number in range(10, 15):  # five more bags in the slot, each with a payment
        order = OrderFactory(cycle_id=thursday.cycle.id, slot_id=thursday.slot1.id, bag_number=number,
                             total_cents=250)
        OrderLineFactory(order=order, quantity_allocated=1)
        db.session.add(Payment(order_id=order.id, household_id=order.household_id, method="cash",
                               amount_cents=100, status="succeeded"))
    db.session.commit()
    assert text(client.get(url)).count("À payer : 1,50") == 5
    assert statements(url) == before


def test_detailed_payment_page_uses_radio_buttons_and_prefills_the_amount_due(client, thursday):
    login(client, thursday.volunteer_email)
    page = client.get(f"/commandes/{thursday.martin.id}/paiement-accueil").get_data(as_text=True)
    assert 'type="radio"' in page and '<select id="method"' not in page
    assert re.search(r'type="radio"[^>]*value="cash" checked', page)
    assert re.search(r'name="amount"[^>]*value="7,50"', page) or re.search(r'value="7,50"[^>]*name="amount"', page)


def test_volunteers_see_the_days_till_read_only(client, thursday, app):
    from orders.payments import record_desk_payment
    from tests.factories import UserFactory

    till = thursday.cycle.id
    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None, cycle_id=till)
    record_desk_payment(thursday.martin.id, "cheque", 750, received_by_id=None, cheque_number="0042",
                        cheque_bank="La Poste", cycle_id=till)
    record_desk_payment(thursday.leroy.id, "cash", 100, received_by_id=None, cycle_id=till)
    db.session.commit()
    login(client, thursday.volunteer_email)
    # The board and the money page stay the coordinator's.
    assert client.get("/retrait/tableau").status_code == 403
    desk = text(client.get("/retrait/accueil"))
    assert "Caisse du jour" in desk and 'href="/retrait/caisse"' in desk
    page = text(client.get("/retrait/caisse")).replace("\xa0", " ")
    assert '<dd id="caisse-especes"><strong>7,30 €</strong>' in page and "(2 paiements)" in page
    assert '<dd id="caisse-cheques"><strong>7,50 €</strong>' in page and "(1 chèque)" in page
    assert "0042" in page and "La Poste" in page and "Foyer Martin" in page
    assert '<dd id="caisse-carte">0,00 €' in page
    assert "Total de la distribution : 14,80 €" in page
    UserFactory(email="adherent@example.org", roles=["member"])
    db.session.commit()
    member = app.test_client()
    login(member, "adherent@example.org")
    assert member.get("/retrait/caisse").status_code == 403


# --- top-ups at the desk, and what the till expects ----------------------------------------------


def _topup_url(order):
    return f"{_desk_url(order)}/versement"


def _topup(client, order, data):
    """Fill the desk's top-up form of a bag's household, as shown by a fresh page, and send it."""
    return client.post(_topup_url(order), data={**_form_fields(client, _topup_url(order)), **data},
                       follow_redirects=True)


def _topups():
    """Every top-up of the ledger, oldest first."""
    from orders.payment_models import LedgerEntry

    db.session.expire_all()
    return list(db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "topup").order_by(LedgerEntry.id)))


def _till(client) -> str:
    """The « Caisse du jour » page as read, with plain spaces."""
    return text(client.get("/retrait/caisse")).replace("\xa0", " ")


def test_volunteer_takes_a_topup_at_the_desk_and_the_till_expects_its_cash(client, thursday):
    from app.models import User
    from orders.ledger import balance_cents

    login(client, thursday.volunteer_email)
    assert f'href="{_topup_url(thursday.dupont)}"' in client.get(_desk_url(thursday.dupont)).get_data(as_text=True)
    form = client.get(_topup_url(thursday.dupont)).get_data(as_text=True)
    assert "Versement de Foyer Dupont" in text(client.get(_topup_url(thursday.dupont)))
    assert re.search(r'type="radio"[^>]*value="cash"[^>]*checked|checked[^>]*value="cash"', form)
    _pay(client, thursday.martin, {"method": "cash", "amount": "7,50"})

    page = text(_topup(client, thursday.dupont, {"method": "cash", "amount": "20"})).replace("\xa0", " ")
    assert "Versement enregistré : 20,00 € gardés sur le compte du foyer." in page
    # Dupont's bag costs 6,30 €: 20,00 € handed in leave 13,70 € on the account; the bag is still to pay.
    assert '<dd id="solde">13,70 €' in page and '<strong id="reste-a-payer">6,30' in page
    _topup(client, thursday.leroy, {"method": "cheque", "amount": "15", "cheque_number": "0077",
                                    "cheque_bank": "Crédit Mutuel"})
    volunteer = db.session.scalar(sa.select(User.id).where(User.email == thursday.volunteer_email))
    assert [(e.household_id, e.amount_cents, e.method, e.cheque_number, e.cheque_bank, e.cycle_id, e.created_by_id)
            for e in _topups()] == [
        (thursday.dupont.household_id, 2000, "cash", None, None, thursday.cycle.id, volunteer),
        (thursday.leroy.household_id, 1500, "cheque", "0077", "Crédit Mutuel", thursday.cycle.id, volunteer),
    ]
    assert balance_cents(thursday.dupont.household_id) == 1370

    till = _till(client)
    assert '<dd id="caisse-especes"><strong>7,50 €</strong>' in till and "(1 paiement)" in till
    assert '<dd id="caisse-versements-especes">+ 20,00 €' in till and "(1 versement)" in till
    assert '<dd id="caisse-especes-attendues"><strong>27,50 €</strong>' in till
    # The top-up's cheque is in the till with the payments' cheques, marked as a top-up.
    assert '<dd id="caisse-cheques"><strong>15,00 €</strong>' in till and "(1 chèque)" in till
    assert "0077" in till and "Crédit Mutuel" in till and "Foyer Leroy" in till
    assert "Versement de Foyer Leroy · Chèque · 15,00 €" in till
    # The distribution's total stays what its orders brought in.
    assert "Total de la distribution : 7,50 €" in till


def test_desk_topup_sent_twice_is_recorded_once(client, thursday):
    login(client, thursday.volunteer_email)
    form = {**_form_fields(client, _topup_url(thursday.martin)), "method": "cash", "amount": "20"}
    first = client.post(_topup_url(thursday.martin), data=form, follow_redirects=True)
    second = client.post(_topup_url(thursday.martin), data=form, follow_redirects=True)
    assert "Versement enregistré" in text(first)
    assert second.status_code == 200 and "Ce versement est déjà enregistré." in text(second)
    assert [e.amount_cents for e in _topups()] == [2000]
    assert '<dd id="caisse-especes-attendues"><strong>20,00 €</strong>' in _till(client)


def test_desk_topup_refuses_what_the_till_cannot_check_and_writes_nothing(client, thursday):
    login(client, thursday.volunteer_email)
    for data, message in (
        ({"method": "cheque", "amount": "15"}, "Pour un chèque, indiquez son numéro et sa banque."),
        ({"method": "cheque", "amount": "15", "cheque_number": "12"}, "indiquez son numéro et sa banque"),
        ({"amount": "15"}, "Choisissez espèces ou chèque."),
        ({"method": "cash", "amount": "500,01"}, "Ce montant est trop élevé pour un versement (500,00 € au plus)."),
        ({"method": "cash", "amount": "0"}, "Le montant doit être supérieur à zéro."),
    ):
        response = _topup(client, thursday.dupont, data)
        assert response.status_code == 422, data
        assert message in text(response), data
    fields = _form_fields(client, _topup_url(thursday.dupont))
    no_token = client.post(_topup_url(thursday.dupont), data={"csrf_token": fields["csrf_token"], "method": "cash",
                                                              "amount": "5"})
    assert no_token.status_code == 422 and "Le formulaire a expiré. Rechargez la page." in text(no_token)
    assert _topups() == []
    # 500,00 € is still taken.
    assert "Versement enregistré" in text(_topup(client, thursday.dupont, {"method": "cash", "amount": "500"}))


def test_cash_handed_back_on_the_distribution_day_lowers_the_cash_expected(client, thursday):
    from orders.ledger import record_entry
    from orders.payment_models import LedgerEntry
    from orders.payments import record_desk_payment

    record_desk_payment(thursday.dupont.id, "cash", 630, received_by_id=None, cycle_id=thursday.cycle.id)
    record_entry(thursday.leroy.household_id, 1000, "topup", "topup:before:1")  # Leroy's credit: 10,00 - 3,00
    db.session.commit()
    login(client, thursday.coordinator_email)
    url = f"/commandes/soldes/{thursday.leroy.household_id}/rendre"
    assert "sortent de la caisse de la distribution du" in text(client.get(url))
    post_form(client, url, {"token": "handback0001", "method": "cash", "amount": "4", "note": "départ"})
    post_form(client, url, {"token": "handback0002", "method": "cheque", "amount": "1", "cheque_number": "55",
                            "note": "départ"})
    refunds = db.session.scalars(sa.select(LedgerEntry).where(LedgerEntry.kind == "refund")
                                 .order_by(LedgerEntry.id)).all()
    assert [(e.amount_cents, e.method, e.cheque_number, e.cycle_id) for e in refunds] == [
        (-400, "cash", None, thursday.cycle.id), (-100, "cheque", "55", thursday.cycle.id)]

    till = _till(client)
    assert '<dd id="caisse-especes"><strong>6,30 €</strong>' in till
    assert '<dd id="caisse-rendu-especes">− 4,00 €' in till and "(1 remboursement)" in till
    assert '<dd id="caisse-especes-attendues"><strong>2,30 €</strong>' in till
    # The association's cheque is not in the till: listed, never counted with the cheques taken.
    assert '<dd id="caisse-cheques"><strong>0,00 €</strong>' in till
    assert "Rendu à Foyer Leroy · chèque de l'association n° 55 · − 1,00 €" in till


def test_members_and_producers_cannot_take_a_topup_and_volunteers_stay_off_the_ledger_pages(client, thursday, app):
    from tests.helpers import csrf_token

    url = _topup_url(thursday.dupont)
    household_id = thursday.dupont.household_id
    for email in (thursday.member_email, thursday.producer_email):
        other = app.test_client()
        login(other, email)
        token = csrf_token(other.get("/").data)
        assert other.get(url).status_code == 403, email
        assert other.post(url, data={"csrf_token": token, "token": "a1b2c3d4e5f6", "method": "cash",
                                     "amount": "20"}).status_code == 403, email
    login(client, thursday.volunteer_email)
    token = csrf_token(client.get("/").data)
    for page in (f"/commandes/soldes/{household_id}", f"/commandes/soldes/{household_id}/versement",
                 f"/commandes/soldes/{household_id}/rendre", "/commandes/argent", "/commandes/soldes"):
        assert client.get(page).status_code == 403, page
    assert client.post(f"/commandes/soldes/{household_id}/versement",
                       data={"csrf_token": token, "token": "a1b2c3d4e5f6", "method": "cash",
                             "amount": "20"}).status_code == 403
    assert _topups() == []


# --- change at the desk, and bags handed over unpaid ---------------------------------------------


def test_cash_above_what_is_due_records_what_is_due_and_says_the_change(client, thursday):
    from orders.ledger import balance_cents

    login(client, thursday.volunteer_email)
    order = thursday.martin  # 7,50 €
    page = text(client.get(_desk_url(order)))
    assert "Montant reçu (€)" in page and "Rendre la monnaie" in page
    assert re.search(r'type="radio"[^>]*value="give" checked|checked[^>]*value="give"', page)
    # A 20 € note for a 7,50 € bag: the payment is 7,50 €, the volunteer gives 12,50 € back.
    page = text(_pay(client, order, {"method": "cash", "amount": "20"})).replace("\xa0", " ")
    assert "Paiement enregistré : 7,50 € (reçu 20,00 €)." in page
    assert '<p class="flash flash-warning" role="status">À rendre : 12,50 €</p>' in page
    assert "Tout est payé." in page
    assert [(p.method, p.amount_cents) for p in db.session.scalars(sa.select(Payment))] == [("cash", 750)]
    assert _topups() == []
    assert balance_cents(order.household_id) == 0
    till = _till(client)
    assert '<dd id="caisse-especes-attendues"><strong>7,50 €</strong>' in till


def test_change_kept_on_the_account_is_a_cash_topup_of_the_distribution_recorded_once(client, thursday):
    from orders.ledger import balance_cents

    login(client, thursday.volunteer_email)
    order = thursday.dupont  # 6,30 €
    form = {**_form_fields(client, _desk_url(order)), "method": "cash", "amount": "10", "change": "keep"}
    page = text(client.post(f"{_desk_url(order)}/paiement", data=form, follow_redirects=True)).replace("\xa0", " ")
    assert "Paiement enregistré : 6,30 €. Monnaie gardée sur le compte du foyer : 3,70 €." in page
    assert "À rendre" not in page and '<dd id="solde">3,70 €' in page
    # The same form sent again (double tap): neither the payment nor the top-up is recorded twice.
    again = text(client.post(f"{_desk_url(order)}/paiement", data=form, follow_redirects=True))
    assert "Ce paiement est déjà enregistré." in again
    assert [(p.method, p.amount_cents) for p in db.session.scalars(sa.select(Payment))] == [("cash", 630)]
    assert [(e.household_id, e.amount_cents, e.method, e.cycle_id) for e in _topups()] == [
        (order.household_id, 370, "cash", thursday.cycle.id)]
    assert balance_cents(order.household_id) == 370
    till = _till(client)
    assert '<dd id="caisse-especes"><strong>6,30 €</strong>' in till
    assert '<dd id="caisse-versements-especes">+ 3,70 €' in till
    assert '<dd id="caisse-especes-attendues"><strong>10,00 €</strong>' in till
    # Exact cash with « keep » chosen records no top-up.
    _pay(client, thursday.leroy, {"method": "cash", "amount": "3", "change": "keep"})
    assert [e.amount_cents for e in _topups()] == [370]


def test_cheques_and_the_balance_stay_exact_and_a_typo_is_not_change(client, thursday):
    login(client, thursday.volunteer_email)
    order = thursday.martin  # 7,50 €
    response = _pay(client, order, {"method": "cheque", "amount": "20", "cheque_number": "0012345",
                                    "cheque_bank": "Crédit Mutuel", "change": "keep"})
    page = text(response).replace("\xa0", " ")
    assert response.status_code == 422
    assert "Un chèque se fait du montant exact : 7,50 €." in page
    assert "enregistrez tout le chèque comme versement sur son compte, puis payez le sac avec le solde" in page
    response = _pay(client, order, {"method": "balance", "amount": "20"})
    assert response.status_code == 422 and "Le montant dépasse ce qui reste à payer" in text(response)
    # « 750 » typed for 7,50 €: 742,50 € of change is a typo, refused.
    response = _pay(client, order, {"method": "cash", "amount": "750"})
    assert response.status_code == 422 and "vérifiez le montant" in text(response)
    # « 150 » typed for 15,00 € is no note anyone pays with: more than 100 € of change is refused too.
    response = _pay(client, order, {"method": "cash", "amount": "110"})
    assert response.status_code == 422 and "vérifiez le montant" in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Payment.id))) == 0 and _topups() == []
    assert amount_due_cents(order.id) == 750


def test_the_till_lists_bags_handed_over_unpaid_in_a_fixed_number_of_queries(client, thursday):
    from tests.factories import OrderFactory, OrderLineFactory

    login(client, thursday.volunteer_email)
    page = _till(client)
    assert "Sacs remis sans être payés" in page and "Aucun sac remis sans être payé." in page
    _pay(client, thursday.martin, {"method": "cash", "amount": "5"})  # 2,50 € still due
    _pay(client, thursday.dupont, {"method": "cash", "amount": "6,30"})  # paid
    for order in (thursday.martin, thursday.dupont, thursday.leroy):
        post_form(client, f"{_desk_url(order)}/remis", {}, form_url=_desk_url(order))
    section = _till(client)
    section = section[section.index('id="sacs-impayes"'):]
    section = section[:section.index("</section>")]
    assert "Foyer Martin" in section and "n° 2" in section and "2,50 €" in section
    assert "Foyer Leroy" in section and "n° 3" in section and "3,00 €" in section
    assert "Foyer Dupont" not in section
    assert "Total (2 sacs)" in section and '<td class="num" id="sacs-impayes-total"><strong>5,50 €</strong>' in section

    def statements():
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        sa.event.listen(db.engine, "before_cursor_execute", listener)
        try:
            client.get("/retrait/caisse")
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    before = statements()
    for number in range(10, 15):  # five more bags handed over, each partly paid
        order = OrderFactory(cycle_id=thursday.cycle.id, slot_id=thursday.slot1.id, bag_number=number,
                             total_cents=250)
        OrderLineFactory(order=order, quantity_allocated=1)
        db.session.add(Payment(order_id=order.id, household_id=order.household_id, method="card",
                               amount_cents=100, status="succeeded"))
        db.session.add(Pickup(order_id=order.id, no_show=False, collected_at=thursday.cycle.distribution_starts_at))
    db.session.commit()
    page = _till(client)
    assert page.count("1,50 €</td>") == 5 and "Total (7 sacs)" in page and "13,00 €" in page
    assert statements() == before


def _amount_input(page: str) -> str:
    """The payment form's amount field as written in the page."""
    return re.search(r'<input[^>]*name="amount"[^>]*>', page).group(0)


def test_an_amount_waiting_for_the_scale_reads_as_an_estimate_and_is_not_offered_as_the_amount_to_take(
        client, thursday):
    """Dupont's 1,5 kg of apples are sold by weight and not weighed: 6,30 € is an estimate until they are."""
    from decimal import Decimal

    from pickup import services

    login(client, thursday.volunteer_email)
    listing = text(client.get("/retrait/accueil?q=dupont")).replace("\xa0", " ")
    assert "À payer : ≈ 6,30 € (estimé : pesée à faire)" in listing and "À payer : 6,30 €" not in listing
    page = text(client.get(_desk_url(thursday.dupont))).replace("\xa0", " ")
    assert re.search(r'<dd id="montant-commande">≈ 6,30 € <span class="estimate">\(estimé : pesée à faire\)', page)
    assert '≈ <strong id="reste-a-payer">6,30 €</strong> <span class="estimate">(estimé : pesée à faire)' in page
    assert "Pommes : 1,5 kg · ≈ 4,80 €" in page and "à peser" in page
    # The volunteer is told to weigh first, and the estimate is not typed in for them.
    assert "Pesez d'abord le sac : le prix de Pommes dépend de son poids." in page
    assert 'value=""' in _amount_input(page)
    # A bag without anything sold by weight still gets its exact amount, written in.
    martin = text(client.get(_desk_url(thursday.martin))).replace("\xa0", " ")
    assert "≈" not in martin and "pesée à faire" not in martin and 'value="7,50"' in _amount_input(martin)

    # Weighed: 1,8 kg. The amount is known, said as such and offered again.
    services.record_weight(thursday.line(thursday.dupont, thursday.apples).id, Decimal("1.8"),
                           cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    listing = text(client.get("/retrait/accueil?q=dupont")).replace("\xa0", " ")
    assert "À payer : 7,26 €" in listing and "≈" not in listing and "pesée à faire" not in listing
    page = text(client.get(_desk_url(thursday.dupont))).replace("\xa0", " ")
    assert '<strong id="reste-a-payer">7,26 €' in page and "≈" not in page and "Pesez d'abord" not in page
    assert 'value="7,26"' in _amount_input(page)


def test_an_estimate_paid_in_advance_is_not_said_all_paid_and_a_bag_handed_out_is_no_estimate(client, thursday):
    login(client, thursday.volunteer_email)
    _pay(client, thursday.dupont, {"method": "cash", "amount": "6,30"})
    page = text(client.get(_desk_url(thursday.dupont))).replace("\xa0", " ")
    assert "Le montant estimé est payé. Après la pesée, il peut rester un peu à payer" in page
    assert "Tout est payé." not in page
    listing = text(client.get("/retrait/accueil?q=dupont"))
    assert "Payé" in listing and "(montant estimé : pesée à faire)" in listing
    # Handed out unweighed: nothing can be weighed any more, the amount is what it is.
    post_form(client, f"{_desk_url(thursday.dupont)}/remis", {}, form_url=_desk_url(thursday.dupont))
    page = text(client.get(_desk_url(thursday.dupont)))
    assert "≈" not in page and "pesée à faire" not in page and "Tout est payé." in page


def test_a_slipped_comma_kept_as_change_and_a_phone_number_typed_in_the_search_are_caught(client, thursday):
    login(client, thursday.volunteer_email)
    order = thursday.martin  # 7,50 €
    page = text(_pay(client, order, {"method": "cash", "amount": "75", "change": "keep"})).replace("\xa0", " ")
    assert "Vérifiez le montant reçu : 75,00 € pour 7,50 € à payer." in html.unescape(page)
    assert db.session.scalars(sa.select(Payment)).all() == [] and _topups() == []
    # Given back, the same 75 € shows its change: the volunteer sees the slip.
    page = text(_pay(client, order, {"method": "cash", "amount": "75", "change": "give"})).replace("\xa0", " ")
    assert "À rendre : 67,50 €" in page
    assert "Aucun foyer trouvé" in text(client.get("/retrait/accueil?q=0612345678"))


def test_money_is_kept_on_an_account_at_the_desk_only_on_the_distribution_day(app):
    from pickup.services import PickupError, desk_topup

    later = make_thursday(day=paris_today() + timedelta(days=2), tag=" plus tard")
    with pytest.raises(PickupError, match="Un versement sur le compte se prend le jour de la distribution"):
        desk_topup(later.dupont.id, cycle_id=later.cycle.id, method="cash", amount_cents=2000, user_id=None,
                   token="t1")
    assert _topups() == []


def test_handing_out_a_bag_never_weighed_says_the_estimate_becomes_the_price(client, thursday):
    login(client, thursday.volunteer_email)
    response = post_form(client, f"{_desk_url(thursday.dupont)}/remis", {}, form_url=_desk_url(thursday.dupont))
    assert "Pommes n'a pas été pesé : le montant estimé devient le prix" in text(response)


def test_ending_the_distribution_early_or_twice_is_said(client, thursday):
    from app.db import utcnow

    login(client, thursday.volunteer_email)
    url = f"/retrait/distribution/{thursday.cycle.id}/fin"
    page = text(client.get(url))
    if utcnow() < thursday.cycle.distribution_ends_at:  # the fixture's afternoon ends at 19:30, Paris time
        assert 'id="pas-finie"' in page and "La distribution n'est pas finie" in page
    post_form(client, url, {})
    again = text(post_form(client, url, {}))
    assert "Cette distribution est déjà terminée." in again and "0 sac non récupéré" not in again
    assert 'id="deja-terminee"' in text(client.get(url))
