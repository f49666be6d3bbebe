"""French as a member reads it: unit words agree with their quantity, « 1er » for the first of a month, no « (s) »."""
from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from app.extensions import db
from app.models import OutboxMessage
from app.templating import local_date, local_datetime
from orders.services import save_order
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login, post_form

D = Decimal


def text(response) -> str:
    """The page as a person reads it."""
    return html.unescape(response.get_data(as_text=True))


# ---- units ---------------------------------------------------------------------------------

def test_order_page_puts_units_in_the_plural_after_two(app, client):
    """« 2 pièces », « 1 pièce », « 1,5 kg » on a member's order, on the first of April (« 1er avril »)."""
    cycle = CycleFactory(distribution_date=date(2027, 4, 1))
    farm = ProducerFactory(name="Ferme des Saules")
    eggs = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Œufs", unit="piece"))
    salad = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Salade", unit="piece"))
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=farm, name="Carottes", unit="kg"))
    slot = SlotFactory(cycle_id=cycle.id)
    household = HouseholdFactory(name="Foyer Bernard")
    UserFactory(email="lea@example.org", household=household)
    db.session.commit()
    order = save_order(cycle.id, household.id, {eggs.id: (D(2), D(0)), salad.id: (D(1), D(0)),
                                                carrots.id: (D("1.5"), D(0))}, slot.id, None)
    db.session.commit()
    login(client, "lea@example.org")

    page = text(client.get(f"/commandes/commande/{order.id}"))
    assert "2 pièces" in page and not re.search(r"2 pièce(?!s)", page)
    assert re.search(r"\b1 pièce(?!s)", page)
    assert "1,5 kg" in page
    assert "Commande du jeudi 1er avril" in page


def test_bulk_progress_names_each_quantity_with_its_own_unit(app, client):
    """A case of 12 pieces: « colis de 12 pièces », then « il manque 3 pièces » and « il manque 1 pièce »."""
    cycle = CycleFactory()
    bulk = ProducerFactory(name="Vrac du Bourg", kind="bulk_supplier")
    soap = OfferFactory(cycle_id=cycle.id, product=ProductFactory(
        producer=bulk, name="Savon d'Alep", unit="piece", price_cents=300, case_size=D(12), portion_step=D(1)))
    slot = SlotFactory(cycle_id=cycle.id)
    first, second = HouseholdFactory(name="Foyer Bernard"), HouseholdFactory(name="Foyer Martin")
    UserFactory(email="lea@example.org", household=first)
    db.session.commit()
    save_order(cycle.id, first.id, {soap.id: (D(9), D(0))}, slot.id, None)
    db.session.commit()
    login(client, "lea@example.org")

    page = text(client.get("/commandes/panier"))
    assert "colis de 12 pièces" in page
    assert "Colis en cours : 9 / 12 pièces, il manque 3 pièces." in page

    save_order(cycle.id, second.id, {soap.id: (D(2), D(0))}, slot.id, None)
    db.session.commit()
    assert "Colis en cours : 11 / 12 pièces, il manque 1 pièce." in text(client.get("/commandes/panier"))


# ---- dates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("locale, day, fmt, expected", [
    ("fr", date(2027, 4, 1), "EEEE d MMMM", "jeudi 1er avril"),
    ("fr", date(2027, 4, 1), "d MMMM yyyy", "1er avril 2027"),
    ("fr", date(2027, 4, 1), "EEE d MMM", "jeu. 1er avr."),
    ("fr", date(2027, 4, 2), "EEEE d MMMM", "vendredi 2 avril"),
    ("fr", date(2027, 4, 11), "EEEE d MMMM", "dimanche 11 avril"),
    ("fr", date(2027, 4, 1), "dd/MM/yyyy", "01/04/2027"),
    ("fr", date(2027, 4, 1), "EEEE", "jeudi"),
    ("en", date(2027, 4, 1), "EEEE d MMMM", "Thursday 1 April"),
])
def test_local_date_says_first_of_the_month_in_french(app, locale, day, fmt, expected):
    with app.test_request_context(), force_locale(locale):
        assert local_date(day, fmt) == expected


def test_local_datetime_takes_the_day_where_the_site_is(app):
    """31 March 22:30 UTC is already 1 April 00:30 in Paris: « 1er avril »; English keeps « 1 April »."""
    moment = datetime(2027, 3, 31, 22, 30, tzinfo=UTC)
    with app.test_request_context():
        with force_locale("fr"):
            assert local_datetime(moment) == "jeudi 1er avril 00:30"
            assert local_datetime(datetime(2027, 4, 1, 22, 30, tzinfo=UTC)) == "vendredi 2 avril 00:30"
        with force_locale("en"):
            assert local_datetime(moment) == "Thursday 1 April 00:30"


# ---- password reset mail -------------------------------------------------------------------

@pytest.mark.parametrize("seconds, words", [(2 * 3600, "pendant 2 heures."), (3600, "pendant 1 heure.")])
def test_reset_mail_says_how_long_the_link_lasts_without_parentheses(app, client, seconds, words):
    from app.extensions import db
    app.config["PASSWORD_RESET_MAX_AGE"] = seconds
    UserFactory(email="claire@example.org", name="Claire")
    db.session.commit()
    post_form(client, "/compte/mot-de-passe-oublie", {"email": "claire@example.org"})
    [mail] = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "password_reset"))
    assert words in mail.body and "(s)" not in mail.body
