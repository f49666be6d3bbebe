"""Bulk buying in a cycle: orders with tolerances, case progress, allocation at close, repackaging."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from orders.bulk import (
    allocate_bulk,
    bulk_progress,
    cases_to_order,
    order_bulk_lines,
    repackaging_rows,
)
from orders.models import Order, OrderLine
from orders.services import OrderRefused, save_order
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
)

D = Decimal


class Shop:
    """An open cycle with rice (25 kg sacks, 0.5 kg portions) and oil (cases of 6 bottles)."""

    def __init__(self, policy: str = "pro_rata"):
        self.cycle = CycleFactory(allocation_policy=policy)
        self.slot = SlotFactory(cycle_id=self.cycle.id)
        supplier = ProducerFactory(name="Épicerie en gros", kind="bulk_supplier")
        self.rice = OfferFactory(cycle_id=self.cycle.id, price_cents=240, product=ProductFactory(
            producer=supplier, name="Riz complet", unit="kg", price_cents=240,
            case_size=D("25"), portion_step=D("0.5")))
        self.oil = OfferFactory(cycle_id=self.cycle.id, price_cents=900, product=ProductFactory(
            producer=supplier, name="Huile d'olive", unit="piece", price_cents=900,
            case_size=D("6"), portion_step=D("1")))
        self.now = self.cycle.opens_at + timedelta(hours=1)

    def order(self, name: str, rice=("0", "0"), oil=("0", "0"), minutes: int = 0) -> Order:
        """A household orders through the cart service, `minutes` after the first order."""
        household = HouseholdFactory(name=name)
        quantities = {self.rice.id: (D(rice[0]), D(rice[1])), self.oil.id: (D(oil[0]), D(oil[1]))}
        order = save_order(self.cycle.id, household.id, quantities, self.slot.id, None,
                           now=self.now + timedelta(minutes=minutes))
        db.session.flush()
        return order


def line_count() -> int:
    """Order lines in the database."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(OrderLine))


def test_bad_bulk_quantities_are_refused_in_french_and_write_nothing(app):
    shop = Shop()
    household = HouseholdFactory()
    with pytest.raises(OrderRefused) as refused:
        save_order(shop.cycle.id, household.id, {shop.rice.id: (D("0"), D("2"))}, shop.slot.id, None, now=shop.now)
    assert "tolérance sans quantité" in str(refused.value)
    with pytest.raises(OrderRefused) as refused:
        save_order(shop.cycle.id, household.id, {shop.rice.id: (D("1.2"), D("0"))}, shop.slot.id, None, now=shop.now)
    assert "multiples de 0,5" in str(refused.value)
    with pytest.raises(OrderRefused) as refused:
        save_order(shop.cycle.id, household.id, {shop.rice.id: (D("2"), D("0.3"))}, shop.slot.id, None, now=shop.now)
    assert "multiples de 0,5" in str(refused.value)
    assert line_count() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_every_member_sees_how_full_the_case_is(app):
    shop = Shop()
    shop.order("Martin", rice=("10", "2"))
    shop.order("Diallo", rice=("30", "0"), oil=("4", "0"))
    rows = {row.product_name: row for row in bulk_progress(shop.cycle.id)}
    rice = rows["Riz complet"]
    assert (rice.total_ordered, rice.full_cases, rice.remainder, rice.missing) == (D("40"), 1, D("15"), D("10"))
    assert rice.percent == 60 and not rice.tolerances_complete
    shop.order("Nguyen", rice=("2", "6"))
    rice = {row.product_name: row for row in bulk_progress(shop.cycle.id)}["Riz complet"]
    assert (rice.missing, rice.tolerances_complete) == (D("8"), True)
    oil = {row.product_name: row for row in bulk_progress(shop.cycle.id)}["Huile d'olive"]
    assert (oil.full_cases, oil.remainder, oil.missing) == (0, D("4"), D("2"))


def test_allocation_at_close_charges_only_what_each_household_gets(app):
    shop = Shop()
    martin = shop.order("Martin", rice=("10", "3"), oil=("4", "0"), minutes=1)
    diallo = shop.order("Diallo", rice=("10", "5"), oil=("3", "0"), minutes=2)
    # Rice: 20 kg ordered, 8 kg of tolerance: one 25 kg sack. Oil: 7 bottles: one case of 6.
    allocations = {p.product_name: p for p in allocate_bulk(shop.cycle.id)}
    assert allocations["Riz complet"].cases == 1
    assert allocations["Riz complet"].total_allocated == D("25")
    assert allocations["Huile d'olive"].cases == 1
    db.session.commit()
    got = {(line.order_id, line.offer_id): line.quantity_allocated
           for line in db.session.scalars(sa.select(OrderLine))}
    assert got[(martin.id, shop.rice.id)] + got[(diallo.id, shop.rice.id)] == D("25")
    assert got[(martin.id, shop.rice.id)] >= D("10") and got[(diallo.id, shop.rice.id)] >= D("10")
    assert (got[(martin.id, shop.oil.id)], got[(diallo.id, shop.oil.id)]) == (D("3"), D("3"))  # 3,43 / 2,57
    line = db.session.scalar(sa.select(OrderLine).where(OrderLine.order_id == martin.id,
                                                        OrderLine.offer_id == shop.oil.id))
    assert line.charged_quantity == D("3") and line.total_cents == 2700
    # The household sees what it ordered and what it gets.
    shown = {b.product_name: (b.quantity, b.allocated) for b in order_bulk_lines(martin.id)}
    assert shown["Huile d'olive"] == (D("4"), D("3"))
    # Idempotent: a second run changes nothing.
    again = {p.product_name: [(line.line_id, line.allocated) for line in p.lines]
             for p in allocate_bulk(shop.cycle.id)}
    assert again == {name: [(line.line_id, line.allocated) for line in p.lines] for name, p in allocations.items()}


def test_first_come_policy_of_the_cycle(app):
    shop = Shop(policy="first_come")
    late = shop.order("Tard", oil=("4", "0"), minutes=9)
    early = shop.order("Tôt", oil=("4", "0"), minutes=1)
    allocate_bulk(shop.cycle.id)
    got = {line.order_id: line.quantity_allocated for line in db.session.scalars(sa.select(OrderLine))}
    assert (got[early.id], got[late.id]) == (D("4"), D("2"))


def test_repackaging_sheet_and_cases_to_order(app):
    shop = Shop()
    shop.order("Martin", rice=("20", "0"), minutes=1)
    shop.order("Diallo", rice=("20", "0"), minutes=2)
    shop.order("Abadie", rice=("10", "0"), minutes=3)
    allocate_bulk(shop.cycle.id)
    sheet = {p.product_name: p for p in repackaging_rows(shop.cycle.id)}
    rice = sheet["Riz complet"]
    assert len(rice.cases) == 2
    for case in rice.cases:
        assert sum(p.quantity for p in case.portions) == D("25")
    portions = [(p.household_name, p.quantity) for case in rice.cases for p in case.portions]
    assert portions == [("Abadie", D("10")), ("Diallo", D("15")), ("Diallo", D("5")), ("Martin", D("20"))]
    assert "Huile d'olive" not in sheet  # nothing ordered, no case
    orders = cases_to_order(shop.cycle.id)
    assert [(o.producer_name, o.product_name, o.cases, o.quantity) for o in orders] == [
        ("Épicerie en gros", "Riz complet", 2, D("50"))]


def test_repackaging_sheet_chunk_has_the_rows_of_the_whole_sheet(app):
    """A document chunk reads only its products and shows them as the whole sheet does."""
    shop = Shop()
    shop.order("Martin", rice=("20", "0"), oil=("5", "1"), minutes=1)
    shop.order("Diallo", rice=("20", "0"), oil=("2", "0"), minutes=2)

    def portions(rows):
        return [(p.product_name, [[(x.household_name, x.quantity) for x in case.portions] for case in p.cases])
                for p in rows]

    for allocated in (False, True):  # computed on the fly, then read from the stored allocation
        if allocated:
            allocate_bulk(shop.cycle.id)
        whole = repackaging_rows(shop.cycle.id)
        assert [p.product_name for p in whole] == ["Huile d'olive", "Riz complet"]
        for positions in (slice(0, 1), slice(1, 2), slice(0, 2), slice(2, 3)):
            assert portions(repackaging_rows(shop.cycle.id, positions)) == portions(whole[positions])


def test_stock_cap_and_withdrawn_product_limit_the_cases(app):
    shop = Shop()
    shop.rice.stock_cap = D("45")  # the supplier has one sack and a bit: one whole sack at most
    db.session.flush()
    # 40 kg ordered with 10 kg of tolerance would make two sacks without the cap.
    shop.order("Martin", rice=("20", "5"), oil=("6", "0"), minutes=1)
    shop.order("Diallo", rice=("20", "5"), oil=("6", "0"), minutes=2)
    shop.oil.active = False  # withdrawn after ordering
    db.session.flush()
    allocations = {p.product_name: p for p in allocate_bulk(shop.cycle.id)}
    assert allocations["Riz complet"].cases == 1
    assert [line.allocated for line in allocations["Riz complet"].lines] == [D("12.5"), D("12.5")]
    assert allocations["Huile d'olive"].cases == 0
    assert {line.allocated for line in allocations["Huile d'olive"].lines} == {D("0")}
