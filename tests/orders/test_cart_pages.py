"""The cart pages through the real forms: ordering, changing, bad input, assisted ordering."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.models import OutboxMessage
from app.templating import local_date
from orders.models import Order, OrderLine
from pickup.models import Slot
from producers.models import Offer
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login

D = Decimal


@pytest.fixture()
def shop(app, client):
    """An open cycle, two producers, a signed-in member."""
    cycle = CycleFactory()
    farm, bulk = ProducerFactory(name="Ferme des Saules"), ProducerFactory(name="Vrac & Co", kind="bulk_supplier")
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Carottes", unit="kg",
                                                                      price_cents=280))
    eggs = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Œufs", price_cents=240),
                        stock_cap=D(4))
    rice = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=bulk, name="Riz", unit="kg", price_cents=320, case_size=D(25), portion_step=D("0.5")))
    slot = SlotFactory(cycle_id=cycle.id, capacity=3)
    household = HouseholdFactory(name="Foyer Martin")
    member = UserFactory(household=household, email="martin@example.org")
    db.session.commit()
    login(client, member.email)
    return {"cycle": cycle, "carrots": carrots, "eggs": eggs, "rice": rice, "slot": slot, "household": household, "member": member}


def post_cart(client, data: dict, url: str = "/commandes/panier"):
    """Send the cart form as the browser would (token and shown prices from the page)."""
    page = client.get(url)
    html = page.get_data(as_text=True)
    import re

    payload = {"csrf_token": csrf_token(html)}
    payload.update(dict(re.findall(r'name="(p-\d+)" value="(\d+)"', html)))
    payload.update(dict(re.findall(r'name="(cycle_id)" type="hidden" value="(\d+)"', html)))
    payload.update(data)
    return client.post(url, data=payload, follow_redirects=True)


def nothing_written(shop) -> bool:
    """No order, no reserved stock, no booked slot."""
    db.session.expire_all()
    return (db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
            and db.session.scalar(sa.select(sa.func.sum(Offer.reserved))) == 0
            and db.session.get(Slot, shop["slot"].id).booked == 0)


def test_member_orders_and_sees_history(client, shop):
    """A member orders carrots and rice with tolerance, sees the total, then the history."""
    s = shop
    page = client.get("/commandes/panier").get_data(as_text=True)
    assert "Ferme des Saules" in page and "Vrac &amp; Co" in page and "reste 4" in page
    assert "Tolérance (kg) : combien de plus vous acceptez pour compléter un colis" in page
    assert "Votre commande en cours" not in page  # nothing saved yet
    response = post_cart(client, {f"q-{s['carrots'].id}": "1,5", f"q-{s['rice'].id}": "2,5",
                                  f"t-{s['rice'].id}": "1", "slot_id": s["slot"].id})
    text = response.get_data(as_text=True)
    assert "Commande enregistrée : 12,20" in text  # 4,20 + 8,00
    assert "Votre commande en cours : 12,20\xa0€." in text  # beside the button, for the next change
    history = client.get("/commandes/mes-commandes").get_data(as_text=True)
    assert "12,20" in history and "confirmée" in history
    order = db.session.scalar(sa.select(Order))
    detail = client.get(f"/commandes/commande/{order.id}").get_data(as_text=True)
    assert "Carottes" in detail and "Riz" in detail and "(+1)" in detail
    # No card payment set up and nothing on the balance: the desk is the one way to pay, not an « aussi ».
    assert "Vous payez au retrait, en espèces ou par chèque." in detail and "aussi payer" not in detail


@pytest.mark.parametrize("typed, message", [
    ("-1", "négative"), ("abc", "n&#39;est pas une quantité"), ("100000", "500 au plus"),
    ("1,0004", "trois décimales"), ("1,5", "nombre entier"),
    # What Python's Decimal reads but nobody means as a quantity: 1e2 would have been 100 eggs.
    ("1e2", "n&#39;est pas une quantité"), ("NaN", "n&#39;est pas une quantité"),
    ("1_0", "n&#39;est pas une quantité"), ("\u0663", "n&#39;est pas une quantité"),
    # A unit typed after the number: the field already shows it.
    ("2 kg", "écrivez seulement le nombre, sans l&#39;unité"), ("3 Pièces", "sans l&#39;unité"),
])
def test_bad_quantities_are_refused_with_nothing_written(client, shop, typed, message):
    """Negative, non-numeric, absurd, over-precise or fractional-piece quantities: a message, nothing written."""
    response = post_cart(client, {f"q-{shop['eggs'].id}": typed, "slot_id": shop["slot"].id})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_a_refused_cart_comes_back_with_what_was_typed_and_can_be_sent_again(client, shop):
    """The page shown again after a refusal keeps the typed quantities and carries a fresh CSRF token."""
    import re

    response = post_cart(client, {f"q-{shop['eggs'].id}": "-1", f"q-{shop['carrots'].id}": "2",
                                  "slot_id": shop["slot"].id})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(rf'name="q-{shop["carrots"].id}"[^>]*value="2"', html)
    payload = {"csrf_token": csrf_token(html), f"q-{shop['eggs'].id}": "1", f"q-{shop['carrots'].id}": "2",
               "slot_id": shop["slot"].id}
    payload.update(dict(re.findall(r'name="(p-\d+)" value="(\d+)"', html)))
    payload.update(dict(re.findall(r'name="(cycle_id)" type="hidden" value="(\d+)"', html)))
    again = client.post("/commandes/panier", data=payload)
    assert again.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OrderLine)) == 2


def test_zero_everywhere_writes_nothing(client, shop):
    """An all-zero cart is refused: there is nothing to order."""
    response = post_cart(client, {f"q-{shop['eggs'].id}": "0", "slot_id": shop["slot"].id})
    assert "panier est vide" in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_tolerance_without_quantity_is_refused(client, shop):
    """A tolerance alone cannot make an order."""
    response = post_cart(client, {f"t-{shop['rice'].id}": "1", "slot_id": shop["slot"].id})
    assert "tolérance sans quantité" in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_quantity_off_the_portion_step_is_refused(client, shop):
    """Rice comes by 0,5 kg: 0,3 kg is refused."""
    response = post_cart(client, {f"q-{shop['rice'].id}": "0,3", "slot_id": shop["slot"].id})
    assert "multiples de 0,5" in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_offer_of_another_cycle_is_refused(client, shop):
    """An offer id taken from another cycle is refused."""
    other = OfferFactory()
    db.session.commit()
    response = post_cart(client, {f"q-{other.id}": "1", "slot_id": shop["slot"].id})
    assert "ne fait pas partie" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_closed_cycle_is_refused(client, shop):
    """A POST naming a closed cycle is refused."""
    closed = CycleFactory(status="closed")
    db.session.commit()
    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", "slot_id": shop["slot"].id,
                                  "cycle_id": str(closed.id)})
    assert "pas ouverte" in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_inactive_producer_product_is_refused(client, shop):
    """Once a producer is made inactive its products cannot be ordered."""
    page = client.get("/commandes/panier").get_data(as_text=True)
    shop["eggs"].product.producer.active = False
    db.session.commit()
    response = client.post("/commandes/panier", data={
        "csrf_token": csrf_token(page), "cycle_id": shop["cycle"].id, f"q-{shop['eggs'].id}": "1",
        "slot_id": shop["slot"].id})
    assert "n&#39;est plus proposé" in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_full_slot_is_refused(client, shop):
    """A slot with no place left refuses the order."""
    db.session.execute(sa.update(Slot).values(booked=3))
    db.session.commit()
    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", "slot_id": shop["slot"].id})
    assert "complet" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_tampered_price_is_refused(client, shop):
    """A shown price changed in the form is refused; the price is never taken from the browser."""
    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", f"p-{shop['carrots'].id}": "1",
                                  "slot_id": shop["slot"].id})
    assert "Le prix de Carottes a changé" in response.get_data(as_text=True)
    assert nothing_written(shop)
    assert client.post("/commandes/panier", data={
        "csrf_token": csrf_token(client.get("/commandes/panier").data), f"p-{shop['carrots'].id}": "abc",
    }).status_code == 400


def test_another_households_order_is_not_found(client, shop):
    """A member cannot open another household's order."""
    other = OrderFactory(cycle_id=shop["cycle"].id)
    db.session.commit()
    assert client.get(f"/commandes/commande/{other.id}").status_code == 404


def test_page_left_open_past_the_deadline(client, shop):
    """The page was shown before the deadline; the deadline passes; the submit is refused."""
    s = shop
    post_cart(client, {f"q-{s['carrots'].id}": "2", "slot_id": s["slot"].id})
    page = client.get("/commandes/panier").get_data(as_text=True)
    s["cycle"].closes_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.post("/commandes/panier", data={
        "csrf_token": csrf_token(page), "cycle_id": s["cycle"].id, f"q-{s['carrots'].id}": "5",
        "slot_id": s["slot"].id}, follow_redirects=True)
    assert "La date limite de commande est passée" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(sa.select(OrderLine.quantity)) == D(2)


def test_volunteer_orders_for_a_household_and_it_is_told(app, client, shop):
    """A volunteer finds the household, orders for it; the order says so; an e-mail is queued."""
    s = shop
    volunteer = UserFactory(roles=["volunteer"], household=None)
    db.session.commit()
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, volunteer.email)
    found = client.get("/commandes/au-cafe?q=mart").get_data(as_text=True)
    assert "Foyer Martin" in found
    url = f"/commandes/au-cafe/foyer/{s['household'].id}"
    response = post_cart(client, {f"q-{s['eggs'].id}": "2", "slot_id": s["slot"].id}, url=url)
    assert "Commande enregistrée" in response.get_data(as_text=True)
    order = db.session.scalar(sa.select(Order))
    assert order.entered_by_id == volunteer.id and order.entered_by_volunteer
    message = db.session.scalar(sa.select(OutboxMessage))
    assert message.key.startswith(f"assisted:{order.id}:") and "Œufs" in message.body
    assert message.recipient == s["household"].email
    assert "Créneau de retrait : " in message.body  # when to come
    assert f"http://localhost/commandes/commande/{order.id}" in message.body  # and where to look it up


def test_cart_page_queries_do_not_grow_with_offers(app, client, shop, count_queries):
    """The cart runs the same number of SQL queries for 5 or 500 offers."""
    def measure():
        db.session.commit()  # each measure starts from a fresh transaction, like a real request
        with count_queries() as counter:
            assert client.get("/commandes/panier").status_code == 200
        return counter["n"]

    client.get("/commandes/panier")  # warm up (first request of the session)
    few = measure()
    for _ in range(497):
        OfferFactory(cycle_id=shop["cycle"].id)
    db.session.commit()
    assert "Produit" in client.get("/commandes/panier").get_data(as_text=True)
    assert measure() == few


def test_the_saved_message_follows_the_save_and_the_session_cookie_is_left_alone(client, shop):
    """After a save the cart says so with the total; a plain visit does not; the save sets no cookie."""
    s = shop
    page = client.get("/commandes/panier").get_data(as_text=True)
    import re

    payload = {"csrf_token": csrf_token(page), f"q-{s['carrots'].id}": "2", "slot_id": s["slot"].id}
    payload.update(dict(re.findall(r'name="(p-\d+)" value="(\d+)"', page)))
    payload.update(dict(re.findall(r'name="(cycle_id)" type="hidden" value="(\d+)"', page)))
    saved = client.post("/commandes/panier", data=payload)
    assert saved.status_code == 302 and "Set-Cookie" not in saved.headers
    assert "Commande enregistrée : 5,60" in client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Commande enregistrée" not in client.get("/commandes/panier").get_data(as_text=True)
    emptied = post_cart(client, {f"q-{s['carrots'].id}": "0"})
    assert "Votre commande est vide : elle est annulée." in emptied.get_data(as_text=True)


def test_pay_what_you_can_household_changes_its_share(client, shop):
    """Changing the share on the page (shown prices included in the form) is accepted and charged."""
    from tests.factories import PriceTierFactory

    s = shop
    s["household"].price_tier = PriceTierFactory(pay_what_you_can=True, minimum_bp=5000)
    db.session.commit()
    first = post_cart(client, {f"q-{s['carrots'].id}": "1", "slot_id": s["slot"].id})
    assert "Commande enregistrée : 2,80" in first.get_data(as_text=True)
    second = post_cart(client, {f"q-{s['carrots'].id}": "1", "slot_id": s["slot"].id, "share_percent": "50"})
    assert "Commande enregistrée : 1,40" in second.get_data(as_text=True)
    assert 'value="50"' in client.get("/commandes/panier").get_data(as_text=True)


def test_unreadable_share_and_slot_are_explained(client, shop):
    """A share or a slot that is not a number gets a French message on the form, nothing written."""
    from tests.factories import PriceTierFactory

    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", "slot_id": "abc", "share_percent": "beaucoup"})
    assert response.status_code == 422
    assert "Choix non valide" in response.get_data(as_text=True)
    assert nothing_written(shop)
    shop["household"].price_tier = PriceTierFactory(pay_what_you_can=True, minimum_bp=5000)
    db.session.commit()
    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", "slot_id": shop["slot"].id,
                                  "share_percent": "beaucoup"})
    assert response.status_code == 422 and "Entre 0 et 200 %." in response.get_data(as_text=True)
    assert nothing_written(shop)


def test_huge_ids_are_not_found_rather_than_errors(client, shop):
    """Ids beyond any integer column answer 404 or 400 (PostgreSQL would otherwise fail on them)."""
    huge = "9" * 20
    assert client.get(f"/commandes/commande/{huge}").status_code == 404
    assert client.get(f"/producteurs/demande?cycle_id={huge}").status_code in (403, 404)
    response = post_cart(client, {f"q-{shop['carrots'].id}": "1", "slot_id": shop["slot"].id, "cycle_id": huge})
    assert response.status_code == 400
    assert nothing_written(shop)


def test_the_assisted_order_mail_is_in_the_households_language(app, client, shop):
    """Written from a translated template: French for most, English for a household whose member chose it."""
    s = shop
    volunteer = UserFactory(roles=["volunteer"], household=None)
    db.session.commit()
    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/").data)})
    login(client, volunteer.email)
    url = f"/commandes/au-cafe/foyer/{s['household'].id}"
    post_cart(client, {f"q-{s['eggs'].id}": "2", "slot_id": s["slot"].id}, url=url)
    french = db.session.scalar(sa.select(OutboxMessage))
    assert french.subject == "Votre commande a été enregistrée au café"
    assert "Un·e bénévole du café a enregistré votre commande pour la distribution du" in french.body
    assert "Œufs" in french.body and "Total : " in french.body and "Créneau de retrait : " in french.body
    abroad = HouseholdFactory(name="Foyer Smith", email=None)
    UserFactory(household=abroad, email="smith@example.org", locale="en")
    db.session.commit()
    post_cart(client, {f"q-{s['eggs'].id}": "1", "slot_id": s["slot"].id}, url=f"/commandes/au-cafe/foyer/{abroad.id}")
    english = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.recipient == "smith@example.org"))
    assert english.subject == "Your order was entered at the café"
    assert "A café volunteer entered your order for the distribution of" in english.body
    assert "Pickup slot: " in english.body and "Your order online: http://localhost/commandes/commande/" in english.body


def test_between_two_weeks_the_cart_says_when_the_next_one_opens_and_links_the_orders(app, client):
    from datetime import UTC, datetime, timedelta

    opens = datetime(2030, 3, 1, 7, tzinfo=UTC)  # Friday 1 March 2030, 08:00 in Paris
    CycleFactory(status="draft", opens_at=opens, closes_at=opens + timedelta(days=4))
    member = UserFactory(household=HouseholdFactory(name="Foyer Roux"))
    db.session.commit()
    login(client, member.email)
    page = client.get("/commandes/panier").get_data(as_text=True)
    assert "Aucune commande de la semaine n'est ouverte en ce moment." in page
    assert "La prochaine ouvre le vendredi 1er mars 08:00 (distribution du" in page
    assert 'href="/commandes/mes-commandes"' in page


def test_history_says_when_the_bag_was_collected_or_that_it_was_not(app, client):
    """Confirmed orders read « retirée le … » once the bag is handed out, « non retirée » for a no-show."""
    from app.models import Household
    from pickup import services as pickup
    from pickup.models import Pickup
    from tests.pickup.conftest import make_thursday

    thursday = make_thursday()
    household = db.session.get(Household, thursday.dupont.household_id)
    UserFactory(email="marie@example.org", household=household, roles=["member"])
    earlier = CycleFactory(status="distributed", opens_at=utcnow() - timedelta(days=20),
                           closes_at=utcnow() - timedelta(days=16))
    missed = OrderFactory(cycle_id=earlier.id, household_id=household.id, total_cents=500)
    db.session.add(Pickup(order_id=missed.id, no_show=True))
    db.session.commit()
    login(client, "marie@example.org")

    def states():
        page = client.get("/commandes/mes-commandes").get_data(as_text=True)
        return [" ".join(cell.split()) for cell in re.findall(r'data-label="État">(.*?)</td>', page, re.S)]

    assert states() == ["confirmée", "non retirée"]
    pickup.collect_bag(thursday.dupont.id, cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    day = local_date(thursday.cycle.distribution_date)
    assert states() == [f"retirée le {day}", "non retirée"]
