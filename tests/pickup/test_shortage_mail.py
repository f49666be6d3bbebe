"""Shortage e-mails: one per household address and distribution, summing up the whole bag."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.db import utcnow
from app.extensions import db
from app.models import Household, OutboxMessage, User
from app.outbox import deliver_pending
from orders.ledger import sync_order_charge
from pickup import services
from producers.models import Offer
from tests.factories import OfferFactory, OrderLineFactory, ProductFactory, UserFactory
from tests.helpers import login, post_form


def _mails(order=None):
    """Shortage e-mails queued, oldest first."""
    return list(db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.kind == "shortage").order_by(OutboxMessage.id)
    ))


def _eggs_line(thursday):
    """A third product in the Dupont bag (two eggs boxes at 3,00 €)."""
    offer = db.session.scalar(sa.select(Offer).where(Offer.product_id == thursday.eggs.id))
    line = OrderLineFactory(order=thursday.dupont, offer_id=offer.id, quantity=Decimal(2),
                            quantity_allocated=Decimal(2), unit_price_cents=300, base_price_cents=300)
    db.session.flush()
    sync_order_charge(thursday.dupont.id)
    db.session.commit()
    return line


def test_three_missing_items_make_one_mail_per_address_held_until_the_bag_is_ready(client, app, thursday):
    household = db.session.get(Household, thursday.dupont.household_id)
    UserFactory(email="paul.dupont@example.org", household=household, roles=["member"])
    eggs = _eggs_line(thursday)
    login(client, thursday.volunteer_email)
    bag = f"/retrait/preparation/sac/{thursday.dupont.id}"
    salad = thursday.line(thursday.dupont, thursday.salad)
    apples = thursday.line(thursday.dupont, thursday.apples)
    for line, received in ((salad, "0"), (apples, "0"), (eggs, "1")):
        post_form(client, f"/retrait/preparation/ligne/{line.id}/manque", {f"s{line.id}-received": received},
                  form_url=bag)

    mails = _mails()
    # Before: 3 lines x 3 addresses = 9 e-mails. Now one per address, each listing the three products.
    assert sorted(m.recipient for m in mails) == [
        "dupont@example.org", "marie@example.org", "paul.dupont@example.org"]
    body = mails[0].body.replace("\xa0", " ")
    assert "3 produits manquent" in body
    assert "Salade manque (1,50 € retirés de la commande)" in body
    assert "Pommes manque (4,80 € retirés de la commande)" in body
    assert "Œufs (boîte de 6) : vous recevrez 1 pièce au lieu de 2 pièces (3,00 € retirés de la commande)" in body
    assert "Nous avons retiré 9,30 € au total" in body
    assert "Nouveau montant de la commande : 3,00 €" in body

    # Held back while the bag is being prepared: a worker run now sends nothing.
    app.config["MAIL_TRANSPORT"] = "file"
    assert deliver_pending() == 0
    # "Sac prêt" releases them at once (the one box of eggs received is still ticked: it goes in the bag).
    response = post_form(client, f"{bag}/pret", {"line": [str(eggs.id)]}, form_url=bag)
    assert response.status_code == 200
    assert deliver_pending() == 3
    assert all(m.status == "sent" for m in _mails())


def test_mail_leaves_after_the_delay_even_if_the_bag_is_never_marked_ready(app, thursday):
    salad = thursday.line(thursday.dupont, thursday.salad)
    services.record_shortage(salad.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    app.config["MAIL_TRANSPORT"] = "file"
    assert deliver_pending() == 0
    later = utcnow() + services.shortage_mail_delay() + timedelta(seconds=1)
    assert deliver_pending(now=later) == 2


def test_a_shortage_found_after_the_mail_left_sends_a_follow_up_summing_up_the_bag(app, thursday):
    salad = thursday.line(thursday.dupont, thursday.salad)
    apples = thursday.line(thursday.dupont, thursday.apples)
    services.record_shortage(salad.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    app.config["MAIL_TRANSPORT"] = "file"
    deliver_pending(now=utcnow() + timedelta(days=1))
    services.record_shortage(apples.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    mails = _mails()
    assert [m.status for m in mails] == ["sent", "sent", "pending", "pending"]
    assert "Salade manque" in mails[-1].body and "Pommes manque" in mails[-1].body
    # Reporting the same shortage again adds nothing.
    services.record_shortage(apples.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert len(_mails()) == 4


def test_a_shortage_corrected_before_the_mail_left_is_not_told(client, thursday):
    apples = thursday.line(thursday.dupont, thursday.apples)
    services.record_shortage(apples.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert len(_mails()) == 2
    services.record_weight(apples.id, Decimal("1.4"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert _mails() == []


def test_missing_amap_basket_at_no_charge_says_the_association_will_see_with_the_producer(thursday):
    basket = ProductFactory(producer_id=thursday.apples.producer_id, name="Panier de légumes", unit="basket",
                            price_cents=0)
    offer = OfferFactory(cycle_id=thursday.cycle.id, product=basket, price_cents=0)
    line = OrderLineFactory(order=thursday.leroy, offer_id=offer.id, quantity=Decimal(1),
                            quantity_allocated=Decimal(1), unit_price_cents=0, base_price_cents=0)
    db.session.commit()
    services.record_shortage(line.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    body = _mails()[0].body.replace("\xa0", " ")
    assert "Panier de légumes manque" in body
    assert "l'association verra avec le producteur" in body
    assert "0,00 €" not in body and "Nous avons retiré" not in body


def test_the_mail_is_in_the_households_language_not_the_volunteers(client, app, thursday):
    """The volunteer who weighs the bag reads English; the Dupont household reads French, and gets French."""
    volunteer = db.session.scalar(sa.select(User).where(User.email == thursday.volunteer_email))
    volunteer.locale = "en"
    db.session.commit()
    login(client, thursday.volunteer_email)
    bag = f"/retrait/preparation/sac/{thursday.dupont.id}"
    salad = thursday.line(thursday.dupont, thursday.salad)
    post_form(client, f"/retrait/preparation/ligne/{salad.id}/manque", {f"s{salad.id}-received": "0"}, form_url=bag)
    mail = _mails()[0]
    assert mail.subject == "Un produit manque dans votre sac" and "Salade manque" in mail.body


def test_a_total_still_waiting_for_the_scale_is_told_as_an_estimate_and_quantities_carry_their_unit(app, thursday):
    """The salad is missing while Dupont's 1,5 kg of apples (sold by weight) are not weighed yet."""
    salad = thursday.line(thursday.dupont, thursday.salad)
    apples = thursday.line(thursday.dupont, thursday.apples)
    services.record_shortage(salad.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    body = _mails()[0].body.replace("\xa0", " ")
    assert "Montant estimé : ≈ 4,80 € (le poids de ce produit reste à peser : Pommes)." in body
    assert "Nouveau montant" not in body

    # Weighed before the mail left (1,8 kg): the mail waiting is rewritten with the amount now known.
    services.record_weight(apples.id, Decimal("1.8"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    mails = _mails()
    assert len(mails) == 2 and all(m.status == "pending" for m in mails)
    body = mails[0].body.replace("\xa0", " ")
    assert "Nouveau montant de la commande : 5,76 €." in body and "≈" not in body and "estimé" not in body

    # Only 0,3 kg of the 1,8 kg weighed is there after all: the quantities say their unit.
    services.record_shortage(apples.id, Decimal("0.3"), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    body = _mails()[0].body.replace("\xa0", " ")
    assert "Pommes : vous recevrez 0,3 kg au lieu de 1,5 kg" in body


def test_a_weight_recorded_after_the_shortage_mail_left_sends_no_other_mail(app, thursday):
    salad = thursday.line(thursday.dupont, thursday.salad)
    services.record_shortage(salad.id, Decimal(0), cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    app.config["MAIL_TRANSPORT"] = "file"
    assert deliver_pending(now=utcnow() + timedelta(days=1)) == 2
    services.record_weight(thursday.line(thursday.dupont, thursday.apples).id, Decimal("1.8"),
                           cycle_id=thursday.cycle.id, user_id=None)
    db.session.commit()
    assert [m.status for m in _mails()] == ["sent", "sent"]
