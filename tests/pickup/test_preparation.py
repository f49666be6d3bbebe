"""Thursday preparation: bags per slot, weighed products, missing items, bag ready."""
from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage
from orders.ledger import balance_cents
from orders.models import OrderLine
from orders.payment_models import LedgerEntry
from pickup.models import Pickup, Shortfall
from tests.helpers import login, post_form
from tests.pickup.conftest import make_thursday, text


def _bag_url(order):
    return f"/retrait/preparation/sac/{order.id}"


def test_volunteer_sees_bags_grouped_by_slot(client, thursday):
    login(client, thursday.volunteer_email)
    page = text(client.get("/retrait/preparation"))
    assert "Préparation des sacs" in page
    assert page.index("16:30–17:00") < page.index("Sac n° 1 · Foyer Dupont") < page.index("17:00–17:30")
    assert page.index("17:00–17:30") < page.index("Sac n° 3 · Foyer Leroy")
    assert "0 sac prêt sur 2" in page


def test_weight_sets_the_line_price_and_the_charge(client, thursday):
    login(client, thursday.volunteer_email)
    line = thursday.line(thursday.dupont, thursday.apples)
    before = balance_cents(thursday.dupont.household_id)
    response = post_form(client, f"/retrait/preparation/ligne/{line.id}/poids",
                         {f"w{line.id}-weight": "1,8"}, form_url=_bag_url(thursday.dupont))
    page = text(response)
    assert "Poids enregistré." in page
    assert "Pesé : 1,8 kg, soit 5,76" in page
    db.session.expire_all()
    line = db.session.get(OrderLine, line.id)
    assert line.quantity_prepared == Decimal("1.800")
    assert line.order.total_cents == 576 + 150
    # 1.5 kg were charged at finalize; the 0.3 kg more are one more charge entry.
    assert balance_cents(thursday.dupont.household_id) == before - 96


def test_zero_or_tenfold_weight_asks_for_confirmation_and_writes_nothing(client, thursday):
    login(client, thursday.volunteer_email)
    line = thursday.line(thursday.dupont, thursday.apples)
    url = f"/retrait/preparation/ligne/{line.id}/poids"
    for weight in ("0", "15"):
        response = post_form(client, url, {f"w{line.id}-weight": weight}, form_url=_bag_url(thursday.dupont))
        assert response.status_code == 422
        page = text(response)
        assert "Je confirme" in page
        db.session.expire_all()
        assert db.session.get(OrderLine, line.id).quantity_prepared is None
    # The second submit with the box ticked is accepted.
    response = post_form(client, url, {f"w{line.id}-weight": "15", f"w{line.id}-confirm": "y"},
                         form_url=_bag_url(thursday.dupont))
    assert "Pesé : 15 kg" in text(response)


@pytest.mark.parametrize("typed", ["beaucoup", "1e1", "Infinity", "1_5"])
def test_not_a_number_is_refused_on_the_form(client, thursday, typed):
    """Words, and what Python's Decimal reads but a scale never shows (1e1 would be 10 kg)."""
    login(client, thursday.volunteer_email)
    line = thursday.line(thursday.dupont, thursday.apples)
    response = post_form(client, f"/retrait/preparation/ligne/{line.id}/poids",
                         {f"w{line.id}-weight": typed}, form_url=_bag_url(thursday.dupont))
    assert response.status_code == 422
    assert "Écrivez un nombre" in text(response)
    db.session.expire_all()
    assert db.session.get(OrderLine, line.id).quantity_prepared is None


def test_missing_item_credits_household_records_producer_and_tells_household(client, thursday):
    login(client, thursday.volunteer_email)
    line = thursday.line(thursday.dupont, thursday.salad)
    before = balance_cents(thursday.dupont.household_id)
    response = post_form(client, f"/retrait/preparation/ligne/{line.id}/manque",
                         {f"s{line.id}-received": "0"}, form_url=_bag_url(thursday.dupont))
    page = text(response)
    assert "Manque enregistré" in page
    assert "Manque signalé : reçu 0" in page
    db.session.expire_all()
    line = db.session.get(OrderLine, line.id)
    assert line.missing and line.quantity_prepared == 0
    assert line.order.total_cents == 480
    assert balance_cents(thursday.dupont.household_id) == before + 150
    credit = db.session.scalar(sa.select(LedgerEntry).where(LedgerEntry.order_id == line.order_id,
                                                            LedgerEntry.kind == "credit"))
    assert credit.amount_cents == 150
    shortfall = db.session.scalar(sa.select(Shortfall))
    assert shortfall.producer_id == thursday.salad.producer_id and shortfall.quantity_missing == 1
    mail = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.recipient == "dupont@example.org"))
    assert mail.kind == "shortage" and "Salade manque" in mail.body and "1,50" in mail.body

    # Every address of the household is told (its own and its member's), once per distribution.
    assert db.session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 2
    # Reporting the same line again sends no second e-mail and credits nothing more.
    post_form(client, f"/retrait/preparation/ligne/{line.id}/manque",
              {f"s{line.id}-received": "0"}, form_url=_bag_url(thursday.dupont))
    assert db.session.scalar(sa.select(sa.func.count(OutboxMessage.id))) == 2
    assert balance_cents(thursday.dupont.household_id) == before + 150


def test_partial_shortage_stays_in_the_checklist_with_what_was_received(client, thursday):
    """Short, not missing: the volunteer still packs what came, so it is still to put in and to tick."""
    login(client, thursday.volunteer_email)
    eggs = thursday.line(thursday.martin, thursday.eggs)
    salad = thursday.line(thursday.martin, thursday.salad)
    post_form(client, f"/retrait/preparation/ligne/{eggs.id}/manque", {f"s{eggs.id}-received": "1"},
              form_url=_bag_url(thursday.martin))
    page = text(post_form(client, f"/retrait/preparation/ligne/{salad.id}/manque", {f"s{salad.id}-received": "0"},
                          form_url=_bag_url(thursday.martin)))
    card = page[page.index(f'id="ligne-{eggs.id}"'):page.index(f'id="ligne-{salad.id}"')]
    assert "À mettre : 1 pièce" in card and "À mettre : 2" not in card
    assert "Manque signalé : reçu 1 pièce au lieu de 2 pièces" in card
    checklist = page[page.index("Cochez chaque produit mis dans le sac"):]
    # The box for the one box of eggs received; none for the salad, of which nothing came.
    assert f'id="coche-{eggs.id}"' in checklist and "Œufs (boîte de 6) (1 pièce)" in checklist
    assert f'id="coche-{salad.id}"' not in checklist
    assert "Rien à mettre : le produit manque." in page[page.index(f'id="ligne-{salad.id}"'):]

    url = f"/retrait/preparation/sac/{thursday.martin.id}/pret"
    response = post_form(client, url, {}, form_url=_bag_url(thursday.martin))
    assert response.status_code == 422
    assert "Pas encore coché : Œufs (boîte de 6)." in text(response)
    response = post_form(client, url, {"line": [str(eggs.id)]}, form_url=_bag_url(thursday.martin))
    assert "Sac prêt." in text(response)
    db.session.expire_all()
    assert db.session.get(OrderLine, eggs.id).quantity_prepared == 1


def test_shortfall_visible_to_coordinator_and_to_that_producer_only(client, thursday, app):
    from pickup import services

    line = thursday.line(thursday.martin, thursday.eggs)
    services.record_shortage(line.id, Decimal(1), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    login(client, thursday.coordinator_email)
    page = text(client.get("/retrait/manques"))
    assert "Poulailler Martin" in page and "Œufs (boîte de 6)" in page
    client.post("/compte/deconnexion", data={})
    other = app.test_client()
    login(other, thursday.producer_email)  # the Ferme du Coteau, not the hens
    page = text(other.get("/retrait/manques"))
    assert "Œufs" not in page and "Aucun manque enregistré." in page


def test_short_received_must_be_below_expected(client, thursday):
    login(client, thursday.volunteer_email)
    line = thursday.line(thursday.martin, thursday.eggs)
    response = post_form(client, f"/retrait/preparation/ligne/{line.id}/manque",
                         {f"s{line.id}-received": "2"}, form_url=_bag_url(thursday.martin))
    assert response.status_code == 422
    assert "plus petite que la quantité prévue (2)" in text(response)
    assert db.session.scalar(sa.select(sa.func.count(Shortfall.id))) == 0


def test_bag_ready_only_when_every_product_is_ticked_and_weighed(client, thursday):
    login(client, thursday.volunteer_email)
    apples = thursday.line(thursday.dupont, thursday.apples)
    salad = thursday.line(thursday.dupont, thursday.salad)
    url = f"/retrait/preparation/sac/{thursday.dupont.id}/pret"
    response = post_form(client, url, {"line": [str(apples.id)]}, form_url=_bag_url(thursday.dupont))
    assert response.status_code == 422
    assert "Pas encore coché : Salade" in text(response)
    response = post_form(client, url, {"line": [str(apples.id), str(salad.id)]}, form_url=_bag_url(thursday.dupont))
    assert "Pesez d'abord : Pommes" in text(response)
    assert db.session.scalar(sa.select(Pickup.prepared_at)) is None

    post_form(client, f"/retrait/preparation/ligne/{apples.id}/poids", {f"w{apples.id}-weight": "1.4"},
              form_url=_bag_url(thursday.dupont))
    response = post_form(client, url, {"line": [str(apples.id), str(salad.id)]}, form_url=_bag_url(thursday.dupont))
    assert "Sac prêt." in text(response)
    assert "1 sac prêt sur 2" in text(response)
    pickup = db.session.scalar(sa.select(Pickup).where(Pickup.order_id == thursday.dupont.id))
    assert pickup.prepared_at is not None and pickup.prepared_by_id is not None


def test_bag_or_line_of_another_distribution_is_refused(client, thursday):
    from datetime import timedelta

    from pickup.services import paris_today

    other = make_thursday(day=paris_today() + timedelta(days=7), tag=" bis")
    db.session.commit()
    login(client, thursday.volunteer_email)
    response = client.get(_bag_url(other.dupont))
    assert response.status_code == 404
    assert "n'appartient pas à la distribution en cours" in text(response)
    line = other.line(other.dupont, other.apples)
    response = post_form(client, f"/retrait/preparation/ligne/{line.id}/poids", {f"w{line.id}-weight": "1"},
                         form_url=_bag_url(thursday.dupont))
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(OrderLine, line.id).quantity_prepared is None


def test_preparation_page_queries_do_not_grow_with_the_bags(client, thursday, count_queries):
    from decimal import Decimal as D

    from tests.factories import HouseholdFactory, OrderFactory, OrderLineFactory

    login(client, thursday.volunteer_email)
    with count_queries() as few:
        assert client.get("/retrait/preparation").status_code == 200
    offer_id = thursday.line(thursday.martin, thursday.eggs).offer_id
    for n in range(10):
        order = OrderFactory(cycle_id=thursday.cycle.id, household_id=HouseholdFactory().id,
                             slot_id=thursday.slot2.id, bag_number=10 + n)
        OrderLineFactory(order=order, offer_id=offer_id, quantity=D(1), unit_price_cents=300, base_price_cents=300)
    db.session.commit()
    with count_queries() as many:
        page = text(client.get("/retrait/preparation"))
    assert "Sac n° 19" in page
    # The same SELECTs for 3 bags and for 13 (BEGIN depends on the connection's state, not on the page).
    selects = [[s for s in c["statements"] if s.lstrip().upper().startswith("SELECT")] for c in (few, many)]
    assert len(selects[1]) == len(selects[0]) <= 10


def test_changes_after_the_bag_was_handed_out_are_refused_with_a_message(client, thursday):
    from pickup import services

    services.collect_bag(thursday.dupont.id, cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    login(client, thursday.volunteer_email)
    apples = thursday.line(thursday.dupont, thursday.apples)
    salad = thursday.line(thursday.dupont, thursday.salad)
    refused = "Ce sac a déjà été remis au foyer : il ne peut plus être modifié."
    for url, data in [
        (f"/retrait/preparation/ligne/{salad.id}/manque", {f"s{salad.id}-received": "0"}),
        (f"/retrait/preparation/ligne/{apples.id}/poids", {f"w{apples.id}-weight": "1,2"}),
        (f"/retrait/preparation/sac/{thursday.dupont.id}/pret", {"line": [str(apples.id), str(salad.id)]}),
    ]:
        response = post_form(client, url, data, form_url=_bag_url(thursday.dupont))
        assert response.status_code == 422, url
        assert refused in text(response), url
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Shortfall.id))) == 0
    assert db.session.get(OrderLine, apples.id).quantity_prepared is None
    assert db.session.scalar(sa.select(Pickup.prepared_at).where(Pickup.order_id == thursday.dupont.id)) is None


def test_household_order_page_shows_what_was_prepared_and_charged(client, thursday):
    from pickup import services

    apples = thursday.line(thursday.dupont, thursday.apples)
    salad = thursday.line(thursday.dupont, thursday.salad)
    services.record_weight(apples.id, Decimal("0.512"), cycle_id=thursday.cycle.id, user_id=None)
    services.record_shortage(salad.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    login(client, thursday.member_email)
    page = text(client.get(f"/commandes/commande/{thursday.dupont.id}"))
    rows = {row.split("</td>")[0].split(">")[-1]: row for row in page.split("<tr>")[2:]}
    assert "0,512 kg" in rows["Pommes"] and "1,64\xa0€" in rows["Pommes"] and "commandé : 1,5" in rows["Pommes"]
    assert "manquant" in rows["Salade"] and "0,00\xa0€" in rows["Salade"]
    # The total is what the household is charged: 0,512 kg at 3,20 € and no salad.
    assert "<th class=\"num\">1,64\xa0€</th>" in page


def test_shortfall_valued_at_producer_price_household_refunded_at_its_own(client, thursday):
    from pickup import services

    # Foyer Martin pays the solidarity tier: 3,63 € a box the farm sells 3,30 €.
    line = thursday.line(thursday.martin, thursday.eggs)
    line.unit_price_cents, line.base_price_cents = 363, 330
    db.session.flush()
    services._money_after_change(thursday.martin.id)
    db.session.commit()
    before = balance_cents(thursday.martin.household_id)
    services.record_shortage(line.id, Decimal(1), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert balance_cents(thursday.martin.household_id) == before + 363
    login(client, thursday.coordinator_email)
    page = text(client.get("/retrait/manques"))
    row = page[page.index("Œufs (boîte de 6)"):]
    row = row[:row.index("</tr>")]
    assert "3,30\xa0€" in row and "3,63" not in row
