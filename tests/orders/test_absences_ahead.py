"""AMAP absences declared months ahead, before the week's distribution exists (holidays, Christmas).

The absence is kept by week: the producer counts it at once, and the week's distribution, created weeks
later by the schedule, leaves the basket out of the household's order.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.contract_models import Contract, ContractAbsence
from orders.contracts import (
    ContractError,
    cancel_absence,
    contract_view,
    declare_absence_on,
    generate_contract_lines,
    producer_distributions,
    subscribe,
)
from tests.factories import HouseholdFactory, UserFactory
from tests.helpers import csrf_token, login
from tests.orders.test_contracts import FIRST, NOW, Season, contract_lines, make_cycle, rows_written

#: The sixth distribution of the season: its week has no cycle yet (Season makes the first three).
SIXTH = FIRST + timedelta(weeks=5)


def test_an_absence_declared_ahead_is_counted_at_once_and_kept_out_of_the_weeks_order(app):
    season = Season()
    martin, diallo = HouseholdFactory(name="Martin"), HouseholdFactory(name="Diallo")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    subscribe(season.offer.id, diallo.id, now=NOW)
    absence = declare_absence_on(contract.id, SIXTH, martin.id, "skip", now=NOW)
    assert absence.week == SIXTH - timedelta(days=SIXTH.weekday())
    view = contract_view(contract, martin.id, now=NOW)
    sixth = next(row for row in view.rows if row.day == SIXTH)
    assert sixth.cycle is None and sixth.absence is not None and not sixth.can_declare
    assert view.absences_used == 1 and view.absences_left == 1
    # The producer plans with it before the week exists.
    counts = {row.day: (row.baskets["Petit panier"], row.skipped)
              for row in producer_distributions(season.farmer.id, today=date(2030, 1, 1))}
    assert counts[SIXTH] == (Decimal(1), Decimal(1))

    # Weeks later the schedule creates the week: Martin's basket is not in it, Diallo's is.
    cycle = make_cycle(season.site.id, SIXTH)
    generate_contract_lines(cycle.id, now=NOW)
    assert [name for name, *_ in contract_lines(cycle.id)] == ["Diallo"]


def test_an_absence_declared_ahead_is_taken_back_at_any_time_before_its_week(app):
    season = Season()
    martin = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    absence = declare_absence_on(contract.id, SIXTH, martin.id, "skip", now=NOW)
    cancel_absence(absence.id, martin.id, now=NOW)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    cycle = make_cycle(season.site.id, SIXTH)
    generate_contract_lines(cycle.id, now=NOW)
    assert [name for name, *_ in contract_lines(cycle.id)] == ["Martin"]


def test_absences_ahead_share_the_allowance_and_cannot_be_handed_over_yet(app):
    season = Season(absences=2)
    martin, neighbour = HouseholdFactory(name="Martin"), HouseholdFactory(name="Lefèvre")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    declare_absence_on(contract.id, FIRST, martin.id, "skip", now=NOW)  # a week with its distribution
    declare_absence_on(contract.id, SIXTH, martin.id, "skip", now=NOW)  # a week without
    contract_id, martin_id, neighbour_id = contract.id, martin.id, neighbour.id
    db.session.commit()
    before = rows_written()
    for day, kind, handed_to, message in (
        (SIXTH + timedelta(weeks=1), "skip", None, "absences autorisées"),
        (SIXTH, "skip", None, "déjà déclarée"),
        (SIXTH + timedelta(weeks=1), "handover", neighbour_id, "quand la commande de cette semaine sera créée"),
        (FIRST + timedelta(weeks=8), "skip", None, "pas de panier"),  # after the season
    ):
        with pytest.raises(ContractError, match=message):
            declare_absence_on(contract_id, day, martin_id, kind, handed_to_id=handed_to, now=NOW)
        db.session.rollback()
        assert rows_written() == before


def test_a_week_already_begun_cannot_be_declared_ahead(app):
    season = Season(cycles=0)
    martin = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    during_the_first_week = NOW + timedelta(days=4)  # Friday 4 January 2030, after the first distribution
    with pytest.raises(ContractError, match="date limite"):
        declare_absence_on(contract.id, FIRST, martin.id, "skip", now=during_the_first_week)


def test_a_member_declares_christmas_from_the_contracts_page(client, app):
    season = Season(weeks=8)
    martin = HouseholdFactory(name="Martin")
    user = UserFactory(roles=["member"], household=martin)
    subscribe(season.offer.id, martin.id, now=NOW)
    db.session.commit()
    login(client, user.email)
    page = client.get("/commandes/contrats")
    assert "même des mois à l'avance" in page.text
    assert f'name="day" value="{SIXTH.isoformat()}"' in page.text
    contract_id = db.session.scalar(sa.select(Contract.id))
    done = client.post("/commandes/contrats/absence", data={
        "csrf_token": csrf_token(page.data), "contract_id": contract_id, "day": SIXTH.isoformat(), "kind": "skip"},
        follow_redirects=True)
    assert "le producteur apportera un panier de moins" in done.text
    assert "absent·e, panier non apporté" in done.text and "Annuler l'absence" in done.text
    assert db.session.scalar(sa.select(ContractAbsence.week)) == SIXTH - timedelta(days=SIXTH.weekday())
    # A date that is not one of the season's is refused in French, nothing written.
    bad = client.post("/commandes/contrats/absence", data={
        "csrf_token": csrf_token(page.data), "contract_id": contract_id, "day": "2030-13-45", "kind": "skip"},
        follow_redirects=True)
    assert bad.status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 1


def test_a_volunteer_takes_back_an_absence_entered_by_mistake(client, app):
    season = Season()
    martin = HouseholdFactory(name="Martin")
    volunteer = UserFactory(roles=["volunteer"])
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    declare_absence_on(contract.id, SIXTH, martin.id, "skip", now=NOW)
    contract_id = contract.id
    db.session.commit()
    login(client, volunteer.email)
    url = f"/commandes/contrats/contrat/{contract_id}"
    page = client.get(url)
    assert "Annuler l'absence" in page.text and "1 absence déclarée" in page.text
    # Ahead of its week, the basket can only be skipped: no hand-over offered for that row.
    assert "Le donner à un autre foyer sera possible quand la commande de cette semaine sera créée" in page.text
    absence_id = db.session.scalar(sa.select(ContractAbsence.id))
    done = client.post(f"{url}/absence/{absence_id}/annuler", data={"csrf_token": csrf_token(page.data)},
                       follow_redirects=True)
    assert "Absence annulée : le foyer récupère son panier." in done.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    # A bad date sent back is refused in French.
    bad = client.post(f"{url}/absence", data={"csrf_token": csrf_token(page.data), "contract_id": contract_id,
                                              "day": "abc", "household_id": martin.id, "kind": "skip"},
                      follow_redirects=True)
    assert "Contrat ou distribution inconnus." in bad.text and "isoformat" not in bad.text


def test_a_basket_is_not_handed_to_a_household_away_that_week(app):
    season = Season()
    martin, lefevre = HouseholdFactory(name="Martin"), HouseholdFactory(name="Lefèvre")
    mine = subscribe(season.offer.id, martin.id, now=NOW)
    theirs = subscribe(season.large_offer.id, lefevre.id, now=NOW)
    from orders.contracts import declare_absence

    declare_absence(theirs.id, season.cycles[1].id, lefevre.id, "skip", now=NOW)
    with pytest.raises(ContractError, match="Lefèvre a déclaré être absent cette semaine-là"):
        declare_absence(mine.id, season.cycles[1].id, martin.id, "handover", handed_to_id=lefevre.id, now=NOW)


def test_cancelling_an_extra_distribution_keeps_the_weeks_absences(app):
    """A market added by hand on the Saturday never carried the baskets: cancelling it gives no absence back."""
    from orders.services import cancel_cycle

    season = Season()
    martin = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    declare_absence_on(contract.id, FIRST + timedelta(weeks=1), martin.id, "skip", now=NOW)
    season.cycles[1].status = "closed"  # Thursday's orders are closed: no other distribution takes the baskets
    extra = make_cycle(season.site.id, FIRST + timedelta(weeks=1, days=2), week=False)
    db.session.flush()
    cancel_cycle(extra.id, now=NOW)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 1
    assert contract_view(contract, martin.id, now=NOW).absences_used == 1


def test_a_household_that_collects_a_neighbours_basket_cannot_skip_that_week(app):
    from orders.contracts import declare_absence

    season = Season()
    martin, lefevre, diallo = (HouseholdFactory(name=name) for name in ("Martin", "Lefèvre", "Diallo"))
    mine = subscribe(season.offer.id, martin.id, now=NOW)
    theirs = subscribe(season.large_offer.id, lefevre.id, now=NOW)
    declare_absence(mine.id, season.cycles[1].id, martin.id, "handover", handed_to_id=lefevre.id, now=NOW)
    with pytest.raises(ContractError, match="récupère cette semaine-là le panier de Martin"):
        declare_absence(theirs.id, season.cycles[1].id, lefevre.id, "skip", now=NOW)
    # Nor can a basket go to Martin, who hands his own on that week.
    third = subscribe(season.offer.id, diallo.id, now=NOW)
    with pytest.raises(ContractError, match="Martin a déclaré être absent cette semaine-là"):
        declare_absence(third.id, season.cycles[1].id, diallo.id, "handover", handed_to_id=martin.id, now=NOW)


def test_a_cancelled_contract_takes_its_absences_to_come_with_it(app):
    from orders.contracts import baskets_received, cancel_contract, declare_absence

    season = Season()
    martin, lefevre = HouseholdFactory(name="Martin"), HouseholdFactory(name="Lefèvre")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    declare_absence(contract.id, season.cycles[1].id, martin.id, "handover", handed_to_id=lefevre.id, now=NOW)
    declare_absence_on(contract.id, SIXTH, martin.id, "skip", now=NOW)
    assert cancel_contract(contract.id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    assert baskets_received(lefevre.id, today=date(2030, 1, 1)) == []
    # Subscribed again, the household starts with its whole allowance.
    again = subscribe(season.offer.id, martin.id, now=NOW)
    assert contract_view(again, martin.id, now=NOW).absences_left == 2


def test_the_order_history_reads_absences_in_one_query_per_site(app, client):
    from orders.contracts import absence_cycle_ids

    season = Season(weeks=8, absences=8)
    martin = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, martin.id, now=NOW)
    for week in (1, 2, 4, 6):
        declare_absence_on(contract.id, FIRST + timedelta(weeks=week), martin.id, "skip", now=NOW)
    statements = []
    from sqlalchemy import event

    def count(*args):
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        ids = absence_cycle_ids(martin.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert ids == {season.cycles[1].id, season.cycles[2].id}
    assert len(statements) == 2  # the absences, then the site's cycles


def test_a_season_is_checked_against_the_cafes_distribution_day_and_its_length(app):
    from datetime import time

    from orders.contracts import create_contract_offer
    from orders.models import Schedule
    from tests.factories import ProducerFactory, ProductFactory, SiteFactory

    site = SiteFactory()
    db.session.add(Schedule(site_id=site.id, name="Jeudi", opens_weekday=4, opens_time=time(8), closes_weekday=1,
                            closes_time=time(20), distribution_weekday=3, distribution_start=time(17),
                            distribution_end=time(19)))  # Thursdays
    basket = ProductFactory(producer=ProducerFactory(), name="Panier", unit="basket", is_contract_basket=True)
    monday = FIRST + timedelta(days=4)
    with pytest.raises(ContractError, match=r"jour de distribution du lieu \(jeudi\)"):
        create_contract_offer(basket.id, site.id, "Lundi", monday, monday + timedelta(weeks=4), 1, 1200, today=FIRST)
    with pytest.raises(ContractError, match="Au plus 5 absences : la saison compte 5 distributions"):
        create_contract_offer(basket.id, site.id, "Trop", FIRST, FIRST + timedelta(weeks=4), 1, 1200, 30, today=FIRST)
    with pytest.raises(ContractError, match="déjà finie"):
        create_contract_offer(basket.id, site.id, "Passée", FIRST, FIRST + timedelta(weeks=4), 1, 1200,
                              today=FIRST + timedelta(weeks=5))
    assert create_contract_offer(basket.id, site.id, "Jeudis", FIRST, FIRST + timedelta(weeks=4), 1, 1200, 2,
                                 today=FIRST).id
