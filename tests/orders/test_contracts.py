"""AMAP contracts: subscriptions, season totals, contract lines in each cycle, absences, instalments."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.timeutil import local_to_utc
from orders.contract_models import (
    Contract,
    ContractAbsence,
    ContractInstalment,
    ContractOffer,
)
from orders.contracts import (
    ContractError,
    InstalmentInput,
    cancel_absence,
    contract_view,
    create_contract_offer,
    declare_absence,
    generate_contract_lines,
    mark_instalment_passed_on,
    mark_instalment_received,
    producer_distributions,
    record_instalments,
    season_subscribers,
    season_total_cents,
    subscribe,
)
from orders.models import Cycle, Order, OrderLine
from producers.models import Offer
from tests.factories import (
    HouseholdFactory,
    ProducerFactory,
    ProductFactory,
    SiteFactory,
)

#: The season starts on Thursday 3 January 2030; "now" is the Monday before.
FIRST = date(2030, 1, 3)
NOW = datetime(2029, 12, 31, 9, 0, tzinfo=UTC)


def make_cycle(site_id: int, thursday: date, status: str = "open", week: bool = True) -> Cycle:
    """A cycle for the week of `thursday`: closes Tuesday 20:00 Paris, distribution 17:00-19:00."""
    cycle = Cycle(
        site_id=site_id,
        week=f"{thursday.isocalendar()[0]}-W{thursday.isocalendar()[1]:02d}" if week else None,
        opens_at=local_to_utc(thursday - timedelta(days=7), time(8)),
        closes_at=local_to_utc(thursday - timedelta(days=2), time(20)),
        distribution_date=thursday,
        distribution_starts_at=local_to_utc(thursday, time(17)),
        distribution_ends_at=local_to_utc(thursday, time(19)),
        status=status,
    )
    db.session.add(cycle)
    db.session.flush()
    return cycle


class Season:
    """A farmer with a small and a large basket, a season of 8 weekly distributions, and cycles."""

    def __init__(self, weeks: int = 8, every_weeks: int = 1, cycles: int = 3, absences: int = 2,
                 shareable: bool = True):
        self.site = SiteFactory()
        self.farmer = ProducerFactory(name="Ferme des Saules")
        self.small = ProductFactory(producer=self.farmer, name="Petit panier", unit="basket",
                                    price_cents=1200, is_contract_basket=True)
        self.large = ProductFactory(producer=self.farmer, name="Grand panier", unit="basket",
                                    price_cents=2000, is_contract_basket=True)
        last = FIRST + timedelta(weeks=weeks - 1)
        self.offer = create_contract_offer(self.small.id, self.site.id, "Petit panier hiver", FIRST, last,
                                           every_weeks, 1200, absences, shareable)
        self.large_offer = create_contract_offer(self.large.id, self.site.id, "Grand panier hiver", FIRST, last,
                                                 every_weeks, 2000, absences, shareable)
        self.cycles = [make_cycle(self.site.id, FIRST + timedelta(weeks=k)) for k in range(cycles)]


def contract_lines(cycle_id: int) -> list[tuple[str, int, Decimal]]:
    """(household name, contract id, quantity) of the contract lines of a cycle."""
    from app.models import Household

    return sorted(
        db.session.execute(
            sa.select(Household.name, OrderLine.contract_id, OrderLine.quantity)
            .join(Order, Order.id == OrderLine.order_id)
            .join(Household, Household.id == Order.household_id)
            .where(Order.cycle_id == cycle_id, OrderLine.contract_id.is_not(None))
        ).tuples()
    )


def test_subscription_shows_the_season_total_and_schedule(app):
    season = Season()
    home = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, home.id, quantity=2, now=NOW)
    view = contract_view(contract, home.id, now=NOW)
    assert view.total_cents == 8 * 1200 * 2
    assert [row.day for row in view.rows] == [FIRST + timedelta(weeks=k) for k in range(8)]
    # Cycles exist for the first three weeks only; the later weeks' absences are declared ahead.
    assert [row.cycle is not None for row in view.rows] == [True] * 3 + [False] * 5
    assert [row.can_declare for row in view.rows] == [True] * 8


def test_shared_basket_alternates_and_each_household_pays_its_weeks(app):
    season = Season(weeks=7)
    holder, partner = HouseholdFactory(name="Martin"), HouseholdFactory(name="Nguyen")
    contract = subscribe(season.offer.id, holder.id, co_holder_id=partner.id, now=NOW)
    assert season_total_cents(contract, holder.id) == 4 * 1200
    assert season_total_cents(contract, partner.id) == 3 * 1200
    assert contract_lines(season.cycles[0].id) == [("Martin", contract.id, Decimal(1))]
    assert contract_lines(season.cycles[1].id) == [("Nguyen", contract.id, Decimal(1))]
    assert contract_lines(season.cycles[2].id) == [("Martin", contract.id, Decimal(1))]


def test_generation_puts_paid_basket_lines_in_confirmed_orders_and_is_idempotent(app):
    season = Season()
    home = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, home.id, now=NOW)
    cycle = season.cycles[0]
    order = db.session.scalar(sa.select(Order).where(Order.cycle_id == cycle.id, Order.household_id == home.id))
    assert order.status == "confirmed"
    line = order.lines[0]
    offer = db.session.get(Offer, line.offer_id)
    assert (offer.product_id, offer.price_cents, offer.stock_cap, offer.reserved) == (
        season.small.id, 1200, None, Decimal(1))
    assert line.contract_id == contract.id
    # Paid for the season by instalments: the weekly order does not charge the basket again.
    assert (line.unit_price_cents, line.base_price_cents, line.total_cents) == (0, 1200, 0)
    assert generate_contract_lines(cycle.id) == 0
    assert generate_contract_lines(cycle.id) == 0
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OrderLine)) == 3
    assert db.session.get(Offer, offer.id).reserved == Decimal(1)


def test_late_cycle_moved_cycle_and_cancelled_cycle(app):
    season = Season(cycles=1)
    home = HouseholdFactory(name="Martin")
    subscribe(season.offer.id, home.id, now=NOW)
    # A cycle made after the subscription gets its lines when generation runs.
    later = make_cycle(season.site.id, FIRST + timedelta(weeks=1))
    assert generate_contract_lines(later.id) == 1
    # The distribution of week 3 moved to Wednesday (and made without a schedule week): still the basket.
    moved = make_cycle(season.site.id, FIRST + timedelta(weeks=2, days=-1), week=False)
    assert generate_contract_lines(moved.id) == 1
    # A cancelled cycle gets nothing.
    cancelled = make_cycle(season.site.id, FIRST + timedelta(weeks=3), status="cancelled")
    assert generate_contract_lines(cancelled.id) == 0
    assert contract_lines(cancelled.id) == []
    # Outside the season: nothing.
    outside = make_cycle(season.site.id, FIRST + timedelta(weeks=9))
    assert generate_contract_lines(outside.id) == 0


def test_every_other_week(app):
    season = Season(every_weeks=2, cycles=4)
    home = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, home.id, now=NOW)
    assert season_total_cents(contract) == 4 * 1200  # 8 weeks, one in two
    assert [bool(contract_lines(c.id)) for c in season.cycles] == [True, False, True, False]


def test_late_subscription_starts_at_the_next_open_deadline(app):
    season = Season()
    home = HouseholdFactory(name="Martin")
    # Wednesday 9 January: the second cycle's deadline (Tuesday 8) has passed.
    contract = subscribe(season.offer.id, home.id, now=datetime(2030, 1, 9, 9, tzinfo=UTC))
    assert contract.starts_on == FIRST + timedelta(weeks=2)
    assert season_total_cents(contract) == 6 * 1200


def test_stock_cap_does_not_push_out_contract_baskets(app):
    season = Season(cycles=1)
    cycle = season.cycles[0]
    capped = Offer(cycle_id=cycle.id, product_id=season.small.id, price_cents=1200,
                   stock_cap=Decimal(1), reserved=Decimal(1))
    db.session.add(capped)
    db.session.flush()
    subscribe(season.offer.id, HouseholdFactory().id, now=NOW)
    db.session.refresh(capped)
    assert (capped.reserved, capped.stock_cap) == (Decimal(2), Decimal(2))


def test_skip_absence_drops_the_producers_count_before_or_after_generation(app):
    season = Season()
    a, b = HouseholdFactory(name="Martin"), HouseholdFactory(name="Diallo")
    first = subscribe(season.offer.id, a.id, now=NOW)
    subscribe(season.offer.id, b.id, now=NOW)
    week0, week2 = season.cycles[0], season.cycles[2]
    declare_absence(first.id, week0.id, a.id, "skip", now=NOW)  # lines already generated
    assert [name for name, *_ in contract_lines(week0.id)] == ["Diallo"]
    offer = db.session.scalar(sa.select(Offer).where(Offer.cycle_id == week0.id))
    assert offer.reserved == Decimal(1)
    counts = {row.day: (row.baskets["Petit panier"], row.skipped) for row in producer_distributions(
        season.farmer.id, today=date(2030, 1, 1))}
    assert counts[FIRST] == (Decimal(1), Decimal(1))
    assert counts[FIRST + timedelta(weeks=1)] == (Decimal(2), Decimal(0))
    # Declared on a cycle whose lines were removed since: generation respects the absence.
    db.session.execute(sa.delete(OrderLine))
    declare_absence(first.id, week2.id, a.id, "skip", now=NOW)
    assert [name for name, *_ in contract_lines(week2.id)] == ["Diallo"]
    assert generate_contract_lines(week2.id) == 0
    assert [name for name, *_ in contract_lines(week2.id)] == ["Diallo"]


def test_handover_gives_the_basket_to_the_named_household(app):
    season = Season()
    a = HouseholdFactory(name="Martin")
    neighbour = HouseholdFactory(name="Lefèvre")
    contract = subscribe(season.offer.id, a.id, now=NOW)
    declare_absence(contract.id, season.cycles[1].id, a.id, "handover", handed_to_id=neighbour.id, now=NOW)
    assert contract_lines(season.cycles[1].id) == [("Lefèvre", contract.id, Decimal(1))]
    order = db.session.scalar(sa.select(Order).where(Order.household_id == neighbour.id))
    assert order.status == "confirmed"
    assert generate_contract_lines(season.cycles[1].id) == 0
    from orders.contracts import baskets_received

    received = baskets_received(neighbour.id, today=date(2030, 1, 1))
    assert [(r.day, r.product_name, r.from_name) for r in received] == [
        (FIRST + timedelta(weeks=1), "Petit panier", "Martin")]
    # Taken back before the deadline: the basket returns to its holder.
    absence = db.session.scalar(sa.select(ContractAbsence))
    cancel_absence(absence.id, a.id, now=NOW)
    assert contract_lines(season.cycles[1].id) == [("Martin", contract.id, Decimal(1))]


def test_households_that_share_a_name_are_told_apart_in_the_volunteers_lists(app):
    from orders.contracts import household_choices
    from tests.factories import UserFactory

    first, second = HouseholdFactory(name="Famille Martin"), HouseholdFactory(name="Famille Martin")
    UserFactory(name="Claire Martin", household=first)
    HouseholdFactory(name="Famille Abadie")
    labels = dict(household_choices())
    assert labels[first.id] == "Famille Martin (Claire Martin)"
    assert labels[second.id] == f"Famille Martin (foyer n° {second.id})"
    assert "Famille Abadie" in labels.values()


def rows_written():
    """Rows a refused operation must not add."""
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(m))
                 for m in (ContractOffer, Contract, ContractAbsence, ContractInstalment, OrderLine))


def test_bad_absences_are_refused_in_french_and_write_nothing(app):
    season = Season(absences=1)
    a = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, a.id, now=NOW)
    declare_absence(contract.id, season.cycles[0].id, a.id, "skip", now=NOW)
    before = rows_written()
    with pytest.raises(ContractError, match="absences autorisées"):
        declare_absence(contract.id, season.cycles[1].id, a.id, "skip", now=NOW)
    with pytest.raises(ContractError, match="date limite"):
        declare_absence(contract.id, season.cycles[2].id, a.id, "skip",
                        now=season.cycles[2].closes_at + timedelta(minutes=1))
    with pytest.raises(ContractError, match="Foyer inconnu"):
        declare_absence(contract.id, season.cycles[1].id, a.id, "handover", handed_to_id=999999, now=NOW)
    with pytest.raises(ContractError, match="pas celui de votre foyer"):
        declare_absence(contract.id, season.cycles[1].id, HouseholdFactory().id, "skip", now=NOW)
    assert rows_written() == before


def test_contract_offer_ending_before_it_starts_is_refused(app):
    season = Season()
    before = rows_written()
    with pytest.raises(ContractError, match="après la première"):
        create_contract_offer(season.small.id, season.site.id, "À l'envers", FIRST, FIRST - timedelta(days=7),
                              1, 1200)
    with pytest.raises(ContractError, match="panier de saison"):
        create_contract_offer(ProductFactory().id, season.site.id, "Pas un panier", FIRST, FIRST, 1, 1200)
    assert rows_written() == before


def test_subscription_refusals(app):
    season = Season(shareable=False)
    a, b = HouseholdFactory(), HouseholdFactory()
    subscribe(season.offer.id, a.id, now=NOW)
    with pytest.raises(ContractError, match="déjà inscrit"):
        subscribe(season.offer.id, a.id, now=NOW)
    with pytest.raises(ContractError, match="partagé"):
        subscribe(season.large_offer.id, a.id, co_holder_id=b.id, now=NOW)
    with pytest.raises(ContractError, match="terminée"):
        subscribe(season.large_offer.id, b.id, now=NOW + timedelta(days=365))


def test_instalments_must_add_up_and_move_once(app):
    from tests.factories import UserFactory

    season = Season(weeks=6)
    volunteer = UserFactory(roles=["volunteer"])
    a = HouseholdFactory()
    contract = subscribe(season.offer.id, a.id, now=NOW)  # 6 x 12,00 = 72,00
    before = rows_written()
    with pytest.raises(ContractError, match="saison coûte"):
        record_instalments(contract.id, a.id, [InstalmentInput(3000), InstalmentInput(3000)])
    assert rows_written() == before
    plan = record_instalments(contract.id, a.id, [
        InstalmentInput(2400, cheque_number="0001", bank="Crédit Mutuel", cashing_month=date(2030, 1, 15)),
        InstalmentInput(2400, cheque_number="0002", bank="Crédit Mutuel", cashing_month=date(2030, 2, 1)),
        InstalmentInput(2400, cheque_number="0003", bank="Crédit Mutuel", cashing_month=date(2030, 3, 1)),
    ], recorded_by_id=volunteer.id)
    assert [i.cashing_month for i in plan] == [date(2030, 1, 1), date(2030, 2, 1), date(2030, 3, 1)]
    assert not mark_instalment_passed_on(plan[0].id, volunteer.id)  # not received yet
    assert mark_instalment_received(plan[0].id, volunteer.id)
    assert not mark_instalment_received(plan[0].id, volunteer.id)
    assert mark_instalment_passed_on(plan[0].id, volunteer.id)
    assert not mark_instalment_passed_on(plan[0].id, volunteer.id)
    with pytest.raises(ContractError, match="déjà reçus"):
        record_instalments(contract.id, a.id, [InstalmentInput(7200)])


def test_producer_sees_subscribers_by_name(app):
    season = Season(weeks=4)
    a, b, c = HouseholdFactory(name="Martin"), HouseholdFactory(name="Nguyen"), HouseholdFactory(name="Abadie")
    subscribe(season.offer.id, a.id, co_holder_id=b.id, now=NOW)
    subscribe(season.offer.id, c.id, quantity=2, now=NOW)
    rows = season_subscribers(season.offer.id)
    assert [(r.household_name, r.co_holder_name, r.quantity, r.distributions, r.total_cents) for r in rows] == [
        ("Abadie", None, Decimal(2), 4, 9600),
        ("Martin", "Nguyen", Decimal(1), 4, 4800),
    ]


def test_cycles_generated_from_the_schedule_already_hold_the_baskets(app):
    from orders.models import Schedule
    from orders.services import generate_cycles

    season = Season(cycles=0)
    home = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, home.id, now=NOW)
    db.session.add(Schedule(site_id=season.site.id, name="Jeudi", opens_weekday=3, opens_time=time(8),
                            closes_weekday=1, closes_time=time(20), distribution_weekday=3,
                            distribution_start=time(17), distribution_end=time(19), weeks_ahead=3))
    db.session.flush()
    created = generate_cycles(now=NOW)
    assert created
    for cycle in created:
        assert contract_lines(cycle.id) == [("Martin", contract.id, Decimal(1))], cycle.distribution_date


def test_emptying_the_weekly_order_keeps_the_season_basket(app):
    from orders.services import save_order
    from tests.factories import OfferFactory, SlotFactory

    season = Season(cycles=1)
    cycle = season.cycles[0]
    home = HouseholdFactory(name="Martin")
    subscribe(season.offer.id, home.id, now=NOW)
    carrots = OfferFactory(cycle_id=cycle.id, product=ProductFactory(producer=season.farmer, name="Carottes"))
    slot = SlotFactory(cycle_id=cycle.id)
    moment = cycle.opens_at + timedelta(hours=1)
    save_order(cycle.id, home.id, {carrots.id: (Decimal(2), Decimal(0))}, slot.id, None, now=moment)
    order = save_order(cycle.id, home.id, {carrots.id: (Decimal(0), Decimal(0))}, None, None, now=moment)
    assert order.status == "confirmed"
    assert contract_lines(cycle.id) == [("Martin", order.lines[0].contract_id, Decimal(1))]
    # An order cancelled some other way gets its basket back, confirmed, when lines are generated.
    order.status = "cancelled"
    db.session.flush()
    generate_contract_lines(cycle.id)
    assert db.session.get(Order, order.id).status == "confirmed"


def test_co_holder_declares_absences_on_its_own_weeks(app):
    season = Season()
    holder, partner = HouseholdFactory(name="Martin"), HouseholdFactory(name="Nguyen")
    contract = subscribe(season.offer.id, holder.id, co_holder_id=partner.id, now=NOW)
    view = contract_view(contract, partner.id, now=NOW)
    assert [row.day for row in view.rows] == [FIRST + timedelta(weeks=k) for k in (1, 3, 5, 7)]
    with pytest.raises(ContractError, match="pas de panier"):
        declare_absence(contract.id, season.cycles[0].id, partner.id, "skip", now=NOW)
    declare_absence(contract.id, season.cycles[1].id, partner.id, "handover", handed_to_id=holder.id, now=NOW)
    assert contract_lines(season.cycles[1].id) == [("Martin", contract.id, Decimal(1))]
    assert contract_view(contract, partner.id, now=NOW).absences_left == 1
    assert contract_view(contract, holder.id, now=NOW).absences_left == 2
    # Nobody else may take back the co-holder's absence.
    absence = db.session.scalar(sa.select(ContractAbsence))
    with pytest.raises(ContractError, match="Absence inconnue"):
        cancel_absence(absence.id, holder.id, now=NOW)


def test_an_extra_distribution_in_the_week_leaves_the_baskets_with_the_regular_one(app):
    from orders.models import Schedule

    season = Season(cycles=0)
    schedule = Schedule(site_id=season.site.id, name="Jeudi", opens_weekday=4, opens_time=time(8),
                        closes_weekday=1, closes_time=time(20), distribution_weekday=3,
                        distribution_start=time(17), distribution_end=time(19))
    db.session.add(schedule)
    db.session.flush()
    thursday = make_cycle(season.site.id, FIRST)
    thursday.schedule_id = schedule.id
    home = HouseholdFactory(name="Martin")
    subscribe(season.offer.id, home.id, now=NOW)
    assert len(contract_lines(thursday.id)) == 1
    # A one-off market on the Monday of the same week, added by hand (no schedule).
    extra = make_cycle(season.site.id, FIRST - timedelta(days=3), week=False)
    assert generate_contract_lines(extra.id) == 0
    assert generate_contract_lines(thursday.id) == 0
    assert contract_lines(extra.id) == [] and len(contract_lines(thursday.id)) == 1


def test_money_view_does_not_owe_the_producer_the_baskets_paid_by_season_cheques(app):
    """The producer is owed the weekly products at base price; its AMAP baskets are listed apart, not owed."""
    from orders.payments import cycle_money, cycle_money_csv

    season = Season()
    home = HouseholdFactory(name="Martin")
    subscribe(season.large_offer.id, home.id, now=NOW)
    cycle = season.cycles[0]
    order = db.session.scalar(sa.select(Order).where(Order.cycle_id == cycle.id, Order.household_id == home.id))
    eggs = ProductFactory(producer=season.farmer, name="Œufs", price_cents=350)
    offer = Offer(cycle_id=cycle.id, product_id=eggs.id, price_cents=350, reserved=Decimal(2), active=True)
    db.session.add(offer)
    db.session.flush()
    db.session.add(OrderLine(order_id=order.id, offer_id=offer.id, quantity=Decimal(2), tolerance=Decimal(0),
                             unit_price_cents=350, base_price_cents=350, missing=False, ordered_at=NOW))
    order.total_cents = 700
    db.session.commit()

    (farm,) = cycle_money(cycle.id).producers
    assert (farm.name, farm.owed_cents, farm.contract_cents) == ("Ferme des Saules", 700, 2000)
    assert "producteur;Ferme des Saules;7,00;20,00" in cycle_money_csv(cycle.id)


def test_an_absence_on_a_basket_only_order_cancels_it_and_cancelling_the_absence_brings_it_back(app):
    """The order keeps its slot and its place: cancelling the absence brings the order back in its slot."""
    from pickup.models import Slot
    from tests.factories import SlotFactory

    season = Season(cycles=1)
    cycle = season.cycles[0]
    home = HouseholdFactory(name="Martin")
    contract = subscribe(season.offer.id, home.id, now=NOW)
    order = db.session.scalar(sa.select(Order).where(Order.cycle_id == cycle.id, Order.household_id == home.id))
    slot = SlotFactory(cycle_id=cycle.id, booked=1)
    order.slot_id = slot.id  # the household chose where to collect its basket
    db.session.flush()

    absence = declare_absence(contract.id, cycle.id, home.id, "skip", now=NOW)
    db.session.refresh(order)
    assert (order.status, order.lines) == ("cancelled", [])  # no empty bag on Thursday
    assert (order.slot_id, db.session.get(Slot, slot.id).booked) == (slot.id, 1)  # its place stays held

    cancel_absence(absence.id, home.id, now=NOW)
    db.session.refresh(order)
    assert (order.status, order.slot_id) == ("confirmed", slot.id)  # back in the slot the household chose
    assert db.session.get(Slot, slot.id).booked == 1
    assert contract_lines(cycle.id) == [("Martin", contract.id, Decimal(1))]
