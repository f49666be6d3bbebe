"""Last week's bags at this week's desk, and tills that count the money they took.

A bag nobody came for is kept at the café; a bag handed out unpaid still owes. The household comes back a
week later: the desk finds the bag, hands it out or takes the money, and that money is in today's till,
not in last week's, which was counted long ago.
"""
from __future__ import annotations

import re
from datetime import time, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.templating import local_date
from app.timeutil import local_to_utc
from orders.ledger import sync_order_charge
from orders.payment_models import Payment
from orders.payments import amount_due_cents, cycle_money
from pickup.models import Pickup
from pickup.services import cash_summary, find_bags, paris_today
from producers.models import Offer
from tests.factories import CycleFactory, HouseholdFactory, OfferFactory, OrderFactory, OrderLineFactory, SiteFactory
from tests.helpers import csrf_token, login
from tests.pickup.conftest import text


def _distribution(site_id: int, days_ago: int, status: str = "distributed"):
    """A distribution of the site that took place some days ago."""
    day = paris_today() - timedelta(days=days_ago)
    starts = local_to_utc(day, time(16, 30))
    return CycleFactory(site_id=site_id, opens_at=starts - timedelta(days=6), closes_at=starts - timedelta(days=2),
                        distribution_date=day, distribution_starts_at=starts,
                        distribution_ends_at=starts + timedelta(hours=3), status=status)


def _bag(cycle, household_id: int, product, pieces: int, bag_number: int, *, collected: bool, no_show: bool = False,
         outcome: str | None = None):
    """A confirmed, charged order of that distribution, with its pickup as the day left it."""
    offer = db.session.scalar(sa.select(Offer).where(Offer.cycle_id == cycle.id, Offer.product_id == product.id))
    offer = offer or OfferFactory(cycle_id=cycle.id, product=product)
    order = OrderFactory(cycle_id=cycle.id, household_id=household_id, bag_number=bag_number)
    OrderLineFactory(order=order, offer_id=offer.id, quantity=Decimal(pieces), quantity_allocated=Decimal(pieces),
                     unit_price_cents=offer.price_cents, base_price_cents=offer.price_cents)
    db.session.flush()
    db.session.refresh(order)
    sync_order_charge(order.id)
    db.session.add(Pickup(order_id=order.id, no_show=no_show, no_show_outcome=outcome,
                          collected_at=utcnow() - timedelta(days=7) if collected else None))
    db.session.flush()
    return order


def _last_week(thursday):
    """Last week's distribution of the same café: the Dupont's bag handed out unpaid (2 salads, 3,00 €) and
    the Petit's bag nobody came for, kept at the café (3 boxes of eggs, 9,00 €)."""
    cycle = _distribution(thursday.site.id, 7)
    petit = HouseholdFactory(name="Foyer Petit", email="petit@example.org")
    dupont = _bag(cycle, thursday.dupont.household_id, thursday.salad, 2, 4, collected=True)
    kept = _bag(cycle, petit.id, thursday.eggs, 3, 5, collected=False, no_show=True,
                outcome="Gardé au café, le foyer passera le chercher")
    db.session.commit()
    return cycle, dupont, kept


def _desk(client, query: str) -> str:
    return text(client.get("/retrait/accueil", query_string={"q": query})).replace("\xa0", " ")


def _pay(client, order_id: int, data: dict):
    """Send the desk's payment form of a bag as a fresh page shows it."""
    url = f"/retrait/accueil/sac/{order_id}"
    page = client.get(url)
    assert page.status_code == 200
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(f"{url}/paiement", data={"csrf_token": csrf_token(page.data), "token": token, **data},
                       follow_redirects=True)


def test_last_weeks_kept_bag_is_found_handed_out_and_paid_into_todays_till(client, thursday):
    last_week, _dupont, kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    found = _desk(client, "petit")
    assert "Foyer Petit" in found and f"sac du {local_date(last_week.distribution_date)}" in found
    assert "À payer : 9,00 €" in found

    page = text(client.get(f"/retrait/accueil/sac/{kept.id}"))
    assert 'id="sac-precedent"' in page and "Personne n'est venu le chercher ce jour-là." in page
    assert "Gardé au café, le foyer passera le chercher" in page
    assert "L'argent pris ici compte dans la caisse d'aujourd'hui." in page
    paid = text(_pay(client, kept.id, {"method": "cash", "amount": "10"})).replace("\xa0", " ")
    assert "À rendre : 1,00 €" in paid
    done = text(client.post(f"/retrait/accueil/sac/{kept.id}/remis",
                            data={"csrf_token": csrf_token(client.get(f"/retrait/accueil/sac/{kept.id}").data)},
                            follow_redirects=True))
    assert "Sac remis." in done

    db.session.expire_all()
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == kept.id))
    assert pickup.collected_at is not None and pickup.no_show is False
    assert amount_due_cents(kept.id) == 0
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == kept.id))
    assert payment.cycle_id == thursday.cycle.id  # today's till, not the bag's own
    # Settled: the desk no longer offers it.
    assert "Foyer Petit" not in _desk(client, "petit")

    today = cash_summary(thursday.cycle.id)
    assert (today.totals["cash"], today.counts["cash"], today.expected_cash) == (900, 1, 900)
    assert [(row.household_name, row.other_day) for row in today.till.other_days] == [
        ("Foyer Petit", last_week.distribution_date)]
    assert cycle_money(thursday.cycle.id).expected_cash_cents == 900  # the money page says the same
    earlier = cash_summary(last_week.id)
    assert (earlier.totals["cash"], earlier.expected_cash) == (0, 0)
    # Last week's money page sees the order paid: money is counted by order there, by till here.
    assert cycle_money(last_week.id).paid_by_method["cash"] == 900
    till_page = text(client.get("/retrait/caisse")).replace("\xa0", " ")
    assert '<dd id="caisse-especes"><strong>9,00 €</strong>' in till_page
    assert 'id="caisse-autres-distributions"' in till_page and "Foyer Petit · sac du" in till_page


def test_a_bag_handed_out_unpaid_last_week_is_paid_this_week_by_cheque(client, thursday):
    last_week, dupont, _kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    found = _desk(client, "dupont")
    # This week's bag first, then last week's, which still owes its 3,00 €.
    assert found.index(f"/retrait/accueil/sac/{thursday.dupont.id}") < found.index(f"/retrait/accueil/sac/{dupont.id}")
    assert "À payer : 3,00 €" in found
    paid = text(_pay(client, dupont.id, {"method": "cheque", "amount": "3,00", "cheque_number": "881",
                                         "cheque_bank": "La Poste"}))
    assert "Paiement enregistré." in paid
    assert f"/retrait/accueil/sac/{dupont.id}" not in _desk(client, "dupont")
    # Paid and handed out: the page still opens (after the redirect), and will not hand it out twice.
    page = text(client.get(f"/retrait/accueil/sac/{dupont.id}"))
    assert "Tout est payé." in page and "Sac remis le" in page
    today = cash_summary(thursday.cycle.id)
    assert [(c.number, c.household, c.other_day) for c in today.cheques] == [
        ("881", "Foyer Dupont", last_week.distribution_date)]
    till_page = text(client.get("/retrait/caisse"))
    assert "881" in till_page and f"sac du {local_date(last_week.distribution_date)}" in till_page


def test_the_desk_lists_earlier_bags_only_for_a_name_or_number_of_its_own_site_and_recent(client, thursday):
    last_week, _dupont, kept = _last_week(thursday)
    # The same household's bag at another café, and one of this café two months ago: not this desk's.
    other_site = _distribution(SiteFactory(name="Épicerie du Port").id, 7)
    elsewhere = _bag(other_site, kept.household_id, thursday.salad, 1, 1, collected=False, no_show=True)
    long_ago = _bag(_distribution(thursday.site.id, 63), kept.household_id, thursday.salad, 1, 2, collected=False,
                    no_show=True)
    db.session.commit()
    bags = find_bags(thursday.cycle.id, "petit")
    assert [bag.order.id for bag in bags] == [kept.id]
    assert bags[0].earlier_day == last_week.distribution_date and not bags[0].lines_to_weigh
    assert [bag.order.id for bag in find_bags(thursday.cycle.id, "5")] == [kept.id]  # its bag number
    # A slot's list is this distribution's bags only.
    assert kept.id not in {bag.order.id for bag in find_bags(thursday.cycle.id, "", slot_id=thursday.slot1.id)}
    login(client, thursday.volunteer_email)
    for order_id in (elsewhere.id, long_ago.id):
        assert client.get(f"/retrait/accueil/sac/{order_id}").status_code == 404
    assert client.get(f"/retrait/accueil/sac/{kept.id}").status_code == 200
    # Last week's bag is at the desk, not in this week's preparation.
    assert client.get(f"/retrait/preparation/sac/{kept.id}").status_code == 404


def test_change_kept_on_the_account_from_last_weeks_bag_goes_into_todays_till(client, thursday):
    _last_week_cycle, _dupont, kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    paid = text(_pay(client, kept.id, {"method": "cash", "amount": "20", "change": "keep"})).replace("\xa0", " ")
    assert "Monnaie gardée sur le compte du foyer : 11,00 €" in paid
    assert cash_summary(thursday.cycle.id).expected_cash == 2000


def test_the_detailed_payment_page_takes_money_into_the_till_the_desk_would(client, thursday):
    """The coordinator's detailed page and the desk agree: the bag's desk's till when it is held today (last
    week's bags included, and after the distribution was ended), no till for a café with no distribution today."""
    from pickup.services import end_distribution

    last_week, dupont, kept = _last_week(thursday)
    elsewhere = _bag(_distribution(SiteFactory(name="Épicerie du Port").id, 7), kept.household_id, thursday.salad,
                     1, 1, collected=True)
    db.session.commit()
    login(client, thursday.coordinator_email)

    def pay(order_id, amount):
        url = f"/commandes/{order_id}/paiement-accueil"
        page = client.get(url)
        token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        client.post(url, data={"csrf_token": csrf_token(page.data), "token": token, "method": "cash",
                               "amount": amount})
        db.session.expire_all()
        return db.session.scalar(sa.select(Payment).where(Payment.order_id == order_id))

    page = text(client.get(f"/commandes/{dupont.id}/paiement-accueil"))
    assert "Espèces et chèques comptent dans la caisse de la distribution du" in page
    assert pay(dupont.id, "3,00").cycle_id == thursday.cycle.id
    # The Petit household has no bag today, only last week's: the desk would take it into today's till.
    assert pay(kept.id, "9,00").cycle_id == thursday.cycle.id
    # Ended, today's distribution still takes money for the rest of its day, at the desk as here.
    end_distribution(thursday.cycle.id)
    db.session.commit()
    assert pay(thursday.martin.id, "7,50").cycle_id == thursday.cycle.id
    page = text(client.get(f"/commandes/{elsewhere.id}/paiement-accueil"))
    assert "ne comptent dans aucune caisse de distribution" in page
    assert pay(elsewhere.id, "1,50").cycle_id is None
    paid = text(client.get(f"/commandes/{elsewhere.id}/paiement-accueil"))
    assert "hors caisse de distribution" in paid
    assert f"caisse du {local_date(thursday.cycle.distribution_date)}" in text(
        client.get(f"/commandes/{kept.id}/paiement-accueil"))
    assert cash_summary(last_week.id).expected_cash == 0
    assert cash_summary(thursday.cycle.id).expected_cash == 300 + 900 + 750


def test_the_detailed_payment_page_does_not_offer_an_estimate(client, thursday):
    """The Dupont's apples are sold by weight and not weighed yet: ≈, a warning, and no amount typed in."""
    login(client, thursday.coordinator_email)
    page = text(client.get(f"/commandes/{thursday.dupont.id}/paiement-accueil")).replace("\xa0", " ")
    assert "(estimé : pesée à faire)" in page and 'id="pesee-a-faire"' in page and "≈ " in page
    assert not re.search(r'name="amount"[^>]*value="[^"]', page)
    weighed = text(client.get(f"/commandes/{thursday.martin.id}/paiement-accueil"))
    assert "pesée à faire" not in weighed and re.search(r'name="amount"[^>]*value="7,50"', weighed)


def test_last_weeks_bag_handed_out_unpaid_today_is_in_todays_unpaid_list(client, thursday):
    last_week, _dupont, kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    client.post(f"/retrait/accueil/sac/{kept.id}/remis",
                data={"csrf_token": csrf_token(client.get(f"/retrait/accueil/sac/{kept.id}").data)})
    unpaid = cash_summary(thursday.cycle.id).unpaid
    # Today's bags are not handed out yet; the Dupont's bag of last week left unpaid last week, not today.
    assert [(bag.household, bag.due_cents, bag.other_day) for bag in unpaid] == [
        ("Foyer Petit", 900, last_week.distribution_date)]
    page = text(client.get("/retrait/caisse")).replace("\xa0", " ")
    assert f"(sac du {local_date(last_week.distribution_date)})" in page


def test_todays_bag_page_says_last_weeks_bag_is_still_to_pay(client, thursday):
    last_week, dupont, _kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    page = text(client.get(f"/retrait/accueil/sac/{thursday.dupont.id}")).replace("\xa0", " ")
    assert 'id="autres-sacs"' in page and f"Sac du {local_date(last_week.distribution_date)}" in page
    assert f"/retrait/accueil/sac/{dupont.id}" in page and "À payer : 3,00 €" in page
    # Last week's bag, handed out, says on which day its slot was, and is not « non préparé » when paid later.
    earlier = text(client.get(f"/retrait/accueil/sac/{dupont.id}"))
    assert f"Créneau du {local_date(last_week.distribution_date)}" in earlier


def test_last_weeks_bag_handed_out_now_is_not_said_unprepared(client, thursday):
    _last_week_cycle, _dupont, kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    done = text(client.post(f"/retrait/accueil/sac/{kept.id}/remis",
                            data={"csrf_token": csrf_token(client.get(f"/retrait/accueil/sac/{kept.id}").data)},
                            follow_redirects=True)).replace("\xa0", " ")
    assert "Sac remis. Attention : il reste 9,00 € à payer." in done and "non préparé" not in done


def test_a_second_payment_of_a_paid_bag_is_refused_out_loud(client, thursday):
    """Two tabs on the same bag: the second « Encaisser » says the bag is already paid."""
    login(client, thursday.volunteer_email)
    first, second = (client.get(f"/retrait/accueil/sac/{thursday.martin.id}") for _ in range(2))

    def send(page):
        token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        return client.post(f"/retrait/accueil/sac/{thursday.martin.id}/paiement",
                           data={"csrf_token": csrf_token(page.data), "token": token, "method": "cash", "amount": "10"})

    assert send(first).status_code == 302
    refused = send(second)
    assert refused.status_code == 422 and "Cette commande est déjà payée." in text(refused)


def test_the_money_page_opens_on_todays_distribution_not_next_weeks(client, thursday):
    from tests.factories import UserFactory

    _distribution(thursday.site.id, -7, status="open")  # next week's, open for orders
    UserFactory(email="argent@example.org", roles=["coordinator"])
    db.session.commit()
    login(client, "argent@example.org")
    page = text(client.get("/commandes/argent"))
    assert f"Distribution du {local_date(thursday.cycle.distribution_date)}" in page


def test_next_weeks_order_paid_today_counts_in_todays_till_and_a_posted_cheque_in_none(client, thursday):
    """The till is the distribution held today at the order's café, whichever week's bag the money pays."""
    next_week = _distribution(thursday.site.id, -7, status="open")
    order = _bag(next_week, thursday.martin.household_id, thursday.salad, 2, 1, collected=False)
    db.session.commit()
    login(client, thursday.coordinator_email)
    url = f"/commandes/{order.id}/paiement-accueil"

    def pay(data):
        page = client.get(url)
        token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
        client.post(url, data={"csrf_token": csrf_token(page.data), "token": token, **data})
        db.session.expire_all()
        return db.session.scalars(sa.select(Payment.cycle_id).where(Payment.order_id == order.id)
                                  .order_by(Payment.id)).all()

    assert "Reçu hors de la caisse du jour" in text(client.get(url))
    assert pay({"method": "cash", "amount": "1,00"}) == [thursday.cycle.id]
    # A cheque that came by post, recorded today: it never went through the till.
    assert pay({"method": "cheque", "amount": "2,00", "cheque_number": "77", "cheque_bank": "CIC",
                "outside_till": "y"}) == [thursday.cycle.id, None]
    today = cash_summary(thursday.cycle.id)
    assert (today.expected_cash, today.cheques_cents) == (100, 0)


def test_money_taken_at_the_desk_before_the_distribution_day_goes_into_no_till(client, app):
    from pickup.services import till_today
    from tests.factories import UserFactory
    from tests.pickup.conftest import make_thursday

    ahead = make_thursday(day=paris_today() + timedelta(days=2))  # prepared two days ahead
    UserFactory(email="prep@example.org", roles=["volunteer"])
    db.session.commit()
    login(client, "prep@example.org")
    assert till_today(ahead.martin.id) is None
    page = text(client.get(f"/retrait/accueil/sac/{ahead.martin.id}"))
    assert 'id="hors-caisse"' in page
    paid = _pay(client, ahead.martin.id, {"method": "cash", "amount": "7,50"})
    assert "Paiement enregistré." in text(paid)
    assert db.session.scalar(sa.select(Payment.cycle_id).where(Payment.order_id == ahead.martin.id)) is None
    assert cash_summary(ahead.cycle.id).expected_cash == 0
    kept = _pay(client, ahead.leroy.id, {"method": "cash", "amount": "20", "change": "keep"})
    assert kept.status_code == 422 and "Un versement sur le compte se prend le jour de la distribution" in text(kept)


def test_a_bag_handed_out_at_a_later_desk_is_unpaid_there_not_in_its_own_distribution(client, thursday):
    last_week, _dupont, kept = _last_week(thursday)
    login(client, thursday.volunteer_email)
    client.post(f"/retrait/accueil/sac/{kept.id}/remis",
                data={"csrf_token": csrf_token(client.get(f"/retrait/accueil/sac/{kept.id}").data)})
    assert [bag.household for bag in cash_summary(thursday.cycle.id).unpaid] == ["Foyer Petit"]
    # Last week's list keeps only what left unpaid last week: the Dupont's bag.
    assert [(bag.household, bag.due_cents) for bag in cash_summary(last_week.id).unpaid] == [("Foyer Dupont", 300)]


def test_a_bag_noted_as_thrown_is_paid_but_not_handed_out(client, thursday):
    last_week = _distribution(thursday.site.id, 7)
    thrown = _bag(last_week, HouseholdFactory(name="Foyer Roux").id, thursday.eggs, 1, 7, collected=False,
                  no_show=True, outcome="Jeté (produits abîmés) — salade pourrie")
    given = _bag(last_week, HouseholdFactory(name="Foyer Blanc").id, thursday.eggs, 1, 8, collected=False,
                 no_show=True, outcome="Donné (association, voisins)")
    from orders.payments import record_desk_payment

    record_desk_payment(given.id, "cash", 300, received_by_id=None)  # paid: nothing left to settle
    db.session.commit()
    assert [bag.order.id for bag in find_bags(thursday.cycle.id, "roux")] == [thrown.id]  # still owes 3,00 €
    assert find_bags(thursday.cycle.id, "blanc") == []
    login(client, thursday.volunteer_email)
    page = text(client.get(f"/retrait/accueil/sac/{thrown.id}"))
    assert "Jeté (produits abîmés)" in page and f"/retrait/accueil/sac/{thrown.id}/remis" not in page
    refused = client.post(f"/retrait/accueil/sac/{thrown.id}/remis", data={"csrf_token": csrf_token(
        client.get(f"/retrait/accueil/sac/{thrown.id}").data)}, follow_redirects=True)
    assert "Ce sac n'est plus au café" in text(refused)
    assert db.session.scalar(sa.select(Pickup.collected_at).where(Pickup.order_id == thrown.id)) is None


def test_after_the_day_is_ended_a_top_up_counts_in_the_same_till_as_a_payment(thursday):
    """Top-ups and hand-backs (by household) and payments (by order) agree on today's till, ended or not."""
    from orders.payments import distribution_today
    from pickup.services import end_distribution, till_today

    end_distribution(thursday.cycle.id)
    db.session.commit()
    assert till_today(thursday.martin.id).id == thursday.cycle.id
    assert distribution_today(thursday.martin.household_id).id == thursday.cycle.id
