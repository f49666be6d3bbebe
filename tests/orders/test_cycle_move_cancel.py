"""A coordinator moves or cancels a distribution: money, AMAP baskets, slots, weeks and households' e-mails."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage
from orders.ledger import balance_cents
from orders.models import Cycle, Order, Schedule
from orders.payment_models import LedgerEntry
from orders.payments import record_desk_payment
from orders.services import CycleRefused, cancel_cycle, generate_cycles, move_cycle, open_due_cycles, save_order
from pickup.models import Slot
from producers.models import Offer
from tests.factories import HouseholdFactory, OfferFactory, ProductFactory, SiteFactory, UserFactory
from tests.helpers import login, post_form

D = Decimal
PARIS = ZoneInfo("Europe/Paris")
#: Friday 4 December 2026 at noon: the cycle of Thursday 10 December (week 2026-W50) is open.
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
THURSDAY = date(2026, 12, 10)


def paris(*args) -> datetime:
    """A Paris wall-clock time, as the move form gives it."""
    return datetime(*args, tzinfo=PARIS)


def make_schedule(weeks_ahead: int = 3, slot_capacity: int = 12) -> Schedule:
    """Orders Friday 08:00 to Tuesday 23:59, distribution Thursday 16:30-19:30 in 30-minute slots (Paris)."""
    site = SiteFactory()
    rhythm = Schedule(site_id=site.id, name="Jeudi au café", opens_weekday=4, opens_time=time(8, 0),
                      closes_weekday=1, closes_time=time(23, 59), distribution_weekday=3,
                      distribution_start=time(16, 30), distribution_end=time(19, 30), slot_minutes=30,
                      slot_capacity=slot_capacity, weeks_ahead=weeks_ahead)
    db.session.add(rhythm)
    db.session.commit()
    return rhythm


@pytest.fixture()
def week(app):
    """The open cycle of 10 December with a 12,00 € product and its six slots."""
    make_schedule()
    generate_cycles(today=NOW.date(), now=NOW)
    open_due_cycles(now=NOW)
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.distribution_date == THURSDAY))
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(name="Colis de légumes", price_cents=1200),
                         price_cents=1200, stock_cap=D(20))
    db.session.commit()
    return cycle, offer


def slots_of(cycle_id: int) -> list[Slot]:
    """The cycle's slots, earliest first, as stored."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id).order_by(Slot.starts_at)))


def local_times(cycle_id: int) -> list[str]:
    """'16:30-17:00' for each slot, in Paris time."""
    return [f"{s.starts_at.astimezone(PARIS):%H:%M}-{s.ends_at.astimezone(PARIS):%H:%M}" for s in slots_of(cycle_id)]


def order_in(cycle: Cycle, offer: Offer, slot: Slot, quantity: int = 1, **household) -> Order:
    """A household (with an e-mail address) orders in a slot while the cycle is open."""
    home = HouseholdFactory(**household)
    order = save_order(cycle.id, home.id, {offer.id: (D(quantity), D(0))}, slot.id, None, now=NOW)
    db.session.commit()
    return order


def messages(kind: str) -> list[OutboxMessage]:
    """Queued e-mails of a kind."""
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == kind)
                                   .order_by(OutboxMessage.id)))


def slot_of(order_id: int) -> Slot:
    """The slot an order points at now."""
    db.session.expire_all()
    return db.session.get(Slot, db.session.get(Order, order_id).slot_id)


# --------------------------------------------------------------------------- cancelling


def test_cancelling_withdraws_the_charge_and_keeps_the_cash_as_credit(week):
    cycle, offer = week
    first = slots_of(cycle.id)[0]
    order = order_in(cycle, offer, first, quantity=2, name="Foyer Abadie", email="abadie@example.org")
    record_desk_payment(order.id, "cash", 2000, received_by_id=None)
    db.session.commit()
    assert balance_cents(order.household_id) == -400  # 24,00 charged, 20,00 paid in cash

    cancel_cycle(cycle.id)
    db.session.commit()

    assert balance_cents(order.household_id) == 2000  # the cash stays, as credit
    entries = db.session.execute(sa.select(LedgerEntry.kind, LedgerEntry.amount_cents, LedgerEntry.note)
                                 .where(LedgerEntry.order_id == order.id).order_by(LedgerEntry.id)).all()
    assert entries[-1] == ("credit", 2400, "avoir : distribution annulée")
    assert db.session.get(Order, order.id).status == "cancelled"
    assert db.session.get(Offer, offer.id).reserved == 0 and slots_of(cycle.id)[0].booked == 0
    [mail] = messages("cycle_cancelled")
    assert mail.recipient == "abadie@example.org" and mail.status == "pending"
    assert "annulée" in mail.subject and "jeudi 10 décembre" in mail.subject
    assert "24,00" in mail.body and "Votre solde est maintenant de 20,00" in mail.body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.order_id == order.id)) == len(entries)


def test_every_household_with_an_order_and_an_address_is_told(week):
    cycle, offer = week
    slot = slots_of(cycle.id)[1]
    order_in(cycle, offer, slot, email="martin@example.org")
    silent = order_in(cycle, offer, slot, email=None)
    cancel_cycle(cycle.id)
    db.session.commit()
    assert [m.recipient for m in messages("cycle_cancelled")] == ["martin@example.org"]
    assert balance_cents(silent.household_id) == 0  # never charged, nothing to give back
    assert "rien ne vous sera facturé" in messages("cycle_cancelled")[0].body


def test_cancelled_week_takes_no_basket_and_gives_the_absence_back(week):
    from orders.contract_models import ContractAbsence
    from orders.contracts import create_contract_offer, declare_absence, generate_contract_lines, subscribe

    cycle, _offer = week
    basket = ProductFactory(name="Panier AMAP", unit="basket", price_cents=1500, is_contract_basket=True)
    season = create_contract_offer(basket.id, cycle.site_id, "Hiver", THURSDAY, THURSDAY + timedelta(weeks=3),
                                   1, 1500, 1, False)
    taker = HouseholdFactory(email="amap@example.org")
    away = HouseholdFactory(email=None)
    subscribe(season.id, taker.id, now=NOW)
    contract = subscribe(season.id, away.id, now=NOW)
    generate_contract_lines(cycle.id, NOW)
    declare_absence(contract.id, cycle.id, away.id, "skip", now=NOW)
    db.session.commit()

    cancel_cycle(cycle.id)
    db.session.commit()

    assert balance_cents(taker.id) == 0  # the basket is paid by the season, never in the weekly order
    # The taker has orders in the season's later weeks too: this week's is the one cancelled (the query read
    # whichever row PostgreSQL returned first).
    assert db.session.scalar(sa.select(Order.status).where(Order.household_id == taker.id,
                                                          Order.cycle_id == cycle.id)) == "cancelled"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContractAbsence)) == 0
    [mail] = messages("cycle_cancelled")
    assert "panier AMAP de cette semaine n'est pas livré" in mail.body
    # The absence came back: the household may use it on a later week.
    later = db.session.scalar(sa.select(Cycle).where(Cycle.distribution_date == THURSDAY + timedelta(weeks=1)))
    declare_absence(contract.id, later.id, away.id, "skip", now=NOW)


def test_baskets_of_a_cancelled_week_go_to_the_other_distribution_of_that_week(week):
    from orders.contracts import create_contract_offer, generate_contract_lines, subscribe

    cycle, _offer = week
    extra = Cycle(site_id=cycle.site_id, opens_at=cycle.opens_at, closes_at=cycle.closes_at,
                  distribution_date=THURSDAY + timedelta(days=1),
                  distribution_starts_at=cycle.distribution_starts_at + timedelta(days=1),
                  distribution_ends_at=cycle.distribution_ends_at + timedelta(days=1), status="open")
    db.session.add(extra)
    basket = ProductFactory(name="Panier AMAP", unit="basket", price_cents=1500, is_contract_basket=True)
    season = create_contract_offer(basket.id, cycle.site_id, "Hiver", THURSDAY, THURSDAY, 1, 1500, 0, False)
    taker = HouseholdFactory(email="amap@example.org")
    subscribe(season.id, taker.id, now=NOW)
    generate_contract_lines(cycle.id, NOW)
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.cycle_id == extra.id)) == 0

    cancel_cycle(cycle.id, now=NOW)
    db.session.commit()

    moved = db.session.scalar(sa.select(Order).where(Order.cycle_id == extra.id))
    assert moved.household_id == taker.id and moved.status == "confirmed"
    assert "vendredi 11 décembre" in messages("cycle_cancelled")[0].body


def test_cancel_page_credits_and_queues_the_mail(week, client):
    cycle, offer = week
    order = order_in(cycle, offer, slots_of(cycle.id)[0], email="page@example.org")
    record_desk_payment(order.id, "cash", 1200, received_by_id=None)
    boss = UserFactory(roles=["coordinator"], household=None, locale="en")  # the household still reads French
    db.session.commit()
    login(client, boss.email)
    url = f"/commandes/cycles/{cycle.id}"
    assert post_form(client, f"{url}/annuler", {"sure": "y"}, form_url=url).status_code == 200
    assert balance_cents(order.household_id) == 1200
    [mail] = messages("cycle_cancelled")
    assert mail.recipient == "page@example.org" and mail.body.startswith("Bonjour")


# --------------------------------------------------------------------------- moving: slots


def test_moving_by_whole_slots_moves_every_slot_with_its_bags(week):
    cycle, offer = week
    slots = slots_of(cycle.id)
    early = order_in(cycle, offer, slots[0], email="early@example.org")
    late = order_in(cycle, offer, slots[-1], email="late@example.org")

    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 17), paris(2026, 12, 10, 20))
    db.session.commit()

    assert local_times(cycle.id) == ["17:00-17:30", "17:30-18:00", "18:00-18:30", "18:30-19:00", "19:00-19:30",
                                     "19:30-20:00"]
    assert slot_of(early.id).id == slots[0].id and slot_of(early.id).booked == 1
    assert slot_of(late.id).starts_at == paris(2026, 12, 10, 19, 30)
    assert sorted(m.recipient for m in messages("cycle_moved")) == ["early@example.org", "late@example.org"]
    assert "de 17:00 à 17:30" in next(m.body for m in messages("cycle_moved") if m.recipient.startswith("early"))


def test_moving_earlier_by_whole_slots_too(week):
    cycle, offer = week
    order = order_in(cycle, offer, slots_of(cycle.id)[2])
    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 15, 30), paris(2026, 12, 10, 18, 30))
    db.session.commit()
    assert local_times(cycle.id)[0] == "15:30-16:00" and len(slots_of(cycle.id)) == 6
    assert slot_of(order.id).starts_at == paris(2026, 12, 10, 16, 30)


def test_shortening_removes_the_late_slots_and_moves_their_bags_to_the_nearest(week):
    cycle, offer = week
    slots = slots_of(cycle.id)
    stays = order_in(cycle, offer, slots[1], email="stays@example.org")  # 17:00
    moves = order_in(cycle, offer, slots[5], email="moves@example.org")  # 19:00

    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 16, 30), paris(2026, 12, 10, 18))
    db.session.commit()

    assert local_times(cycle.id) == ["16:30-17:00", "17:00-17:30", "17:30-18:00"]
    assert slot_of(stays.id).id == slots[1].id
    assert slot_of(moves.id).starts_at == paris(2026, 12, 10, 17, 30) and slot_of(moves.id).booked == 1
    # Only the household whose time changed hears about it.
    [mail] = messages("cycle_moved")
    assert mail.recipient == "moves@example.org" and "de 17:30 à 18:00" in mail.body and "de 19:00 à 19:30" in mail.body


def test_the_testers_shortened_window_keeps_no_slot_past_its_end(week):
    cycle, offer = week
    slots = slots_of(cycle.id)
    at_five = order_in(cycle, offer, slots[1])  # 17:00
    at_seven = order_in(cycle, offer, slots[5])  # 19:00

    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 16, 45), paris(2026, 12, 10, 18))
    db.session.commit()

    assert local_times(cycle.id) == ["16:45-17:15", "17:15-17:45"]
    assert slot_of(at_five.id).starts_at == paris(2026, 12, 10, 16, 45)  # 17:00 lies in it
    assert slot_of(at_seven.id).starts_at == paris(2026, 12, 10, 17, 15)
    assert [s.booked for s in slots_of(cycle.id)] == [1, 1]


def test_bags_go_to_the_next_nearest_slot_when_the_nearest_is_full(app):
    make_schedule(slot_capacity=1)
    generate_cycles(today=NOW.date(), now=NOW)
    open_due_cycles(now=NOW)
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.distribution_date == THURSDAY))
    offer = OfferFactory(cycle_id=cycle.id, price_cents=500)
    db.session.commit()
    slots = slots_of(cycle.id)
    orders = [order_in(cycle, offer, slot) for slot in (slots[0], slots[4], slots[5])]  # 16:30, 18:30, 19:00

    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 16, 30), paris(2026, 12, 10, 18))
    db.session.commit()

    assert [slot_of(o.id).starts_at.astimezone(PARIS).strftime("%H:%M") for o in orders] == ["16:30", "17:30", "17:00"]
    assert [s.booked for s in slots_of(cycle.id)] == [1, 1, 1]


def test_shortening_without_room_for_the_bags_is_refused_and_writes_nothing(app):
    make_schedule(slot_capacity=1)
    generate_cycles(today=NOW.date(), now=NOW)
    open_due_cycles(now=NOW)
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.distribution_date == THURSDAY))
    offer = OfferFactory(cycle_id=cycle.id, price_cents=500)
    db.session.commit()
    slots = slots_of(cycle.id)
    for slot in slots[:3]:
        order_in(cycle, offer, slot)

    with pytest.raises(CycleRefused) as refused:
        move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 16, 30), paris(2026, 12, 10, 17))
    db.session.rollback()

    assert "Le créneau de 17:00 à 17:30 a 1 sac à placer" in str(refused.value)
    assert len(slots_of(cycle.id)) == 6
    assert db.session.get(Cycle, cycle.id).distribution_ends_at == paris(2026, 12, 10, 19, 30)


def test_lengthening_adds_slots(week):
    cycle, offer = week
    order = order_in(cycle, offer, slots_of(cycle.id)[3])
    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 10, 16), paris(2026, 12, 10, 20, 30))
    db.session.commit()
    times = local_times(cycle.id)
    assert len(times) == 9 and times[0] == "16:00-16:30" and times[-1] == "20:00-20:30"
    assert {s.capacity for s in slots_of(cycle.id)} == {12}
    assert slot_of(order.id).starts_at == paris(2026, 12, 10, 18)  # kept its time
    assert messages("cycle_moved") == []


def test_moving_the_whole_page_never_gives_a_500(week, client):
    cycle, offer = week
    order_in(cycle, offer, slots_of(cycle.id)[0])
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)
    response = post_form(client, f"/commandes/cycles/{cycle.id}", {
        "opens_at": "2026-12-04T08:00", "closes_at": "2026-12-08T23:59",
        "starts_at": "2026-12-10T17:00", "ends_at": "2026-12-10T20:00"})
    assert response.status_code == 200 and "Distribution déplacée" in response.get_data(as_text=True)
    assert local_times(cycle.id)[0] == "17:00-17:30"
    # A deadline typed in the past closes the week: the page says so, and no e-mail is promised.
    response = post_form(client, f"/commandes/cycles/{cycle.id}", {
        "opens_at": "2026-11-01T08:00", "closes_at": "2026-11-02T12:00",
        "starts_at": "2026-12-10T17:00", "ends_at": "2026-12-10T20:00"})
    page = response.get_data(as_text=True)
    assert "Sa date limite est passée : les commandes se closent dans la minute" in page
    assert "Les foyers concernés reçoivent un e-mail" not in page


# --------------------------------------------------------------------------- moving: one distribution a week


def test_a_distribution_moved_to_the_next_week_is_not_created_again(app):
    schedule = make_schedule(weeks_ahead=1)
    [cycle] = generate_cycles(today=NOW.date(), now=NOW)
    db.session.commit()
    assert cycle.week == "2026-W50"
    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 17, 16, 30), paris(2026, 12, 17, 19, 30))
    db.session.commit()

    schedule.weeks_ahead = 4
    created = generate_cycles(today=NOW.date(), now=NOW)
    db.session.commit()

    assert sorted(c.distribution_date for c in created) == [date(2026, 12, 24), date(2026, 12, 31)]
    days = db.session.scalars(sa.select(Cycle.distribution_date).order_by(Cycle.distribution_date)).all()
    assert days == [date(2026, 12, 17), date(2026, 12, 24), date(2026, 12, 31)]


def test_moving_onto_a_week_that_has_its_distribution_is_refused(app):
    make_schedule(weeks_ahead=3)
    first, second, _third = generate_cycles(today=NOW.date(), now=NOW)
    db.session.commit()
    with pytest.raises(CycleRefused) as refused:
        move_cycle(first.id, first.opens_at, first.closes_at, paris(2026, 12, 18, 16, 30),
                   paris(2026, 12, 18, 19, 30))
    db.session.rollback()
    assert "déjà une distribution cette semaine-là (le 17/12/2026)" in str(refused.value)
    # Within its own week, or onto a week whose distribution was cancelled, it may move.
    move_cycle(first.id, first.opens_at, first.closes_at, paris(2026, 12, 11, 16, 30), paris(2026, 12, 11, 19, 30))
    cancel_cycle(second.id)
    move_cycle(first.id, first.opens_at, first.closes_at, paris(2026, 12, 17, 16, 30), paris(2026, 12, 17, 19, 30))
    db.session.commit()
    assert db.session.get(Cycle, first.id).distribution_date == date(2026, 12, 17)


# --------------------------------------------------------------------------- moving: DST


def test_a_time_that_does_not_exist_at_the_spring_change_is_refused(app, client):
    make_schedule(weeks_ahead=1)
    [cycle] = generate_cycles(today=date(2027, 3, 26), now=datetime(2027, 3, 26, 9, tzinfo=UTC))
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    before = cycle.closes_at
    login(client, boss.email)
    page = post_form(client, f"/commandes/cycles/{cycle.id}", {
        "opens_at": "2027-03-26T08:00", "closes_at": "2027-03-28T02:30",
        "starts_at": "2027-04-01T16:30", "ends_at": "2027-04-01T19:30"}).get_data(as_text=True)
    assert "cette heure n&#39;existe pas ce jour-là (changement d&#39;heure)" in page
    db.session.expire_all()
    assert db.session.get(Cycle, cycle.id).closes_at == before


def test_an_ambiguous_autumn_time_is_its_first_occurrence(app):
    make_schedule(weeks_ahead=1)
    [cycle] = generate_cycles(today=date(2027, 10, 29), now=datetime(2027, 10, 29, 9, tzinfo=UTC))
    db.session.commit()
    move_cycle(cycle.id, cycle.opens_at, paris(2027, 10, 31, 2, 30), cycle.distribution_starts_at,
               cycle.distribution_ends_at)
    db.session.commit()
    assert db.session.get(Cycle, cycle.id).closes_at == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST


# --------------------------------------------------------------------------- moving the deadline; households without e-mail


def test_a_deadline_moved_earlier_is_written_to_every_household_and_a_later_one_is_not(week):
    cycle, offer = week
    order_in(cycle, offer, slots_of(cycle.id)[0], name="Famille Martin", email="martin@example.org")
    HouseholdFactory(name="Famille Diallo", email="diallo@example.org")  # has not ordered yet
    HouseholdFactory(name="Mme Écoffier", email=None)  # no address: phoned
    db.session.commit()

    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at + timedelta(hours=12), cycle.distribution_starts_at,
               cycle.distribution_ends_at, now=NOW)
    db.session.commit()
    assert messages("cycle_deadline") == []  # later: nobody misses it

    move_cycle(cycle.id, cycle.opens_at, paris(2026, 12, 7, 20), cycle.distribution_starts_at,
               cycle.distribution_ends_at, now=NOW)
    db.session.commit()
    mails = messages("cycle_deadline")
    assert sorted(m.recipient for m in mails) == ["diallo@example.org", "martin@example.org"]
    assert "Commandez ou modifiez votre commande avant le lundi 7 décembre 20:00" in mails[0].body
    assert "(au lieu du mercredi 9 décembre 11:59)" in mails[0].body
    assert messages("cycle_moved") == []  # the pickup time did not change

    # Brought to a time already past, the week simply closes: nobody is asked to order before it.
    move_cycle(cycle.id, cycle.opens_at, NOW - timedelta(minutes=5), cycle.distribution_starts_at,
               cycle.distribution_ends_at, now=NOW)
    db.session.commit()
    assert len(messages("cycle_deadline")) == 2


def test_the_cycle_page_lists_the_households_to_phone(week, client):
    cycle, offer = week
    order_in(cycle, offer, slots_of(cycle.id)[0], name="Mme Écoffier", email=None, phone="04 75 00 00 00",
             notes="Pas d'internet, appeler le matin")
    HouseholdFactory(name="M. Bernard", email=None)
    reached = HouseholdFactory(name="Famille Roux", email=None)
    UserFactory(household=reached)  # a member's address reaches the household
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)
    url = f"/commandes/cycles/{cycle.id}"
    response = post_form(client, f"{url}/annuler", {"sure": "y"}, form_url=url)
    page = response.get_data(as_text=True)
    assert "prévenez par téléphone ceux de la liste « Foyers sans e-mail »" in page
    listed = page[page.index('id="sans-email"'):]
    assert 'M. Bernard — pas de téléphone noté' in listed
    assert ('Mme Écoffier — <a href="tel:0475000000">04 75 00 00 00</a> · <strong>a une commande</strong>'
            in listed)
    assert "Pas d&#39;internet, appeler le matin" in listed and "Famille Roux" not in listed
    assert "Annuler la distribution" not in page  # a cancelled distribution has nothing left to move or cancel


def test_a_distribution_moved_to_another_day_says_the_day_changes(week):
    cycle, offer = week
    order_in(cycle, offer, slots_of(cycle.id)[0], email="day@example.org")
    move_cycle(cycle.id, cycle.opens_at, cycle.closes_at, paris(2026, 12, 11, 16, 30), paris(2026, 12, 11, 19, 30))
    db.session.commit()
    [mail] = messages("cycle_moved")
    assert "Le jour de retrait de votre commande change." in mail.body and "vendredi 11 décembre" in mail.body
    assert "L'heure de retrait" not in mail.body
