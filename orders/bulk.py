"""VRAC bulk buying: how full each case is during the cycle, and sharing whole cases back at close.

The rule (also shown to households)
-----------------------------------
Work in portion steps: every quantity is counted in steps of the product (0.5 kg, 1 bottle).

1. Cases. ``full = floor(total ordered / case size)``; one more case is bought when the rest of the
   last case is not empty and the rest plus every tolerance reaches a whole case. A tolerance never
   makes a case alone: with nothing ordered, or when the orders fill whole cases exactly, tolerances
   add nothing. If the portions that may be given (each household: quantity + tolerance, rounded down
   to the step) cannot hold the cases, cases are removed until they can.
2. Sharing back ``cases x case size``:

   * ``pro_rata`` (default). First the ordered quantities: when less than ordered is bought, each
     household gets its share of the cases in proportion to what it ordered, rounded down to the step;
     the steps left go one each to the largest remainders, ties to the oldest order (then the lowest
     line id). When more than ordered is bought (the extra case), every household gets its quantity
     and the extra is shared the same way in proportion to tolerances, never beyond them.
   * ``first_come``: orders are served oldest first, their quantity then (in the same order) their
     tolerance, until the cases are shared.

3. Guarantees (property-tested): the total given equals cases x case size; nobody gets less than 0 or
   more than quantity + tolerance; every portion is a multiple of the step; the same input gives the
   same result in any order; under pro rata, of two households with the same quantity and tolerance
   the earlier one never gets less.

A withdrawn product gets no case; a stock cap on a bulk offer limits the cases to whole cases within it.

Edge cases: a case size that is not a whole number of steps (25 kg with 0.3 kg portions) cannot be
shared in whole steps, so that product is shared to the thousandth (the storage precision) instead;
the product form should not allow it. Zero quantities get nothing; lines with only a tolerance may get
part of a case that other households' quantities started.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import gettext as _

from app.db import THOUSANDTH, Quantity, to_quantity
from app.extensions import db
from app.models import Household
from orders.models import Cycle, Order, OrderLine
from producers.models import Offer, Producer, Product

POLICIES = ("pro_rata", "first_come")
#: Orders whose bulk lines count: the same as the close pipeline (a cancelled order holds nothing;
#: "cart" is only the default of a row that save_order confirms or cancels in the same transaction).
COUNTED_ORDER_STATUSES = ("confirmed",)


@dataclass(frozen=True)
class Demand:
    """One household line for a bulk product: what it ordered, how much more it accepts, and when."""

    line_id: int
    quantity: Decimal
    tolerance: Decimal
    ordered_at: datetime


@dataclass
class AllocationResult:
    """Whole cases bought and what each line gets."""

    cases: int
    allocations: dict[int, Decimal]


def effective_step(case_size: Decimal, step: Decimal | None) -> Decimal:
    """The portion step used: the product's step when a case holds a whole number of them."""
    if step is None or step <= 0:
        return THOUSANDTH
    if case_size % step != 0:
        return THOUSANDTH
    return step


def count_cases(case_size: Decimal, quantity: Decimal, tolerance: Decimal) -> int:
    """Full cases from the quantities, plus one when the remainder and the tolerances fill it."""
    if case_size <= 0 or quantity <= 0:
        return 0
    full = int(quantity // case_size)
    rest = quantity - full * case_size
    if rest > 0 and rest + tolerance >= case_size:
        full += 1
    return full


def _share(amount: int, weights: list[int], caps: list[int], ranks: list[int]) -> list[int]:
    """Share `amount` steps in proportion to weights, within caps, largest remainders to the best rank.

    Weights are whole numbers (quantities in thousandths), so every comparison is exact integer
    arithmetic: a share is amount * w / W, and remainders compare over the same denominator W.
    """
    n = len(weights)
    given = [0] * n
    active = [i for i in range(n) if weights[i] > 0 and caps[i] > 0]
    remaining = amount
    # Whoever would get more than its cap gets its cap; the rest is shared again among the others.
    while active and remaining > 0:
        total_weight = sum(weights[i] for i in active)
        capped = {i for i in active if remaining * weights[i] >= caps[i] * total_weight}
        if not capped:
            break
        for i in capped:
            given[i] = caps[i]
            remaining -= caps[i]
        active = [i for i in active if i not in capped]
    if active and remaining > 0:
        total_weight = sum(weights[i] for i in active)
        remainder = {}
        for i in active:
            given[i], remainder[i] = divmod(remaining * weights[i], total_weight)
        left = remaining - sum(given[i] for i in active)
        for i in sorted(active, key=lambda i: (-remainder[i], ranks[i])):
            if left == 0:
                break
            if given[i] < caps[i]:
                given[i] += 1
                left -= 1
        remaining = left
    # Safety net (only reachable with odd inputs): what is left goes by rank to whoever has room.
    for i in sorted(range(n), key=lambda i: ranks[i]):
        if remaining <= 0:
            break
        room = caps[i] - given[i]
        take = min(room, remaining)
        given[i] += take
        remaining -= take
    return given


def allocate(
    case_size: Decimal, step: Decimal | None, demands: list[Demand], policy: str = "pro_rata",
    max_cases: int | None = None,
) -> AllocationResult:
    """Buy whole cases for these demands and share them back by the policy (see the module rule).

    `max_cases` limits the cases bought (the supplier's stock); 0 means the product is not delivered.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown allocation policy {policy!r}")
    case_size = to_quantity(case_size)
    if case_size <= 0:
        raise ValueError("case size must be positive")
    unit = effective_step(case_size, to_quantity(step) if step is not None else None)
    ordered = sorted(demands, key=lambda d: (d.ordered_at, d.line_id))
    if not ordered:
        return AllocationResult(0, {})
    quantities = [max(to_quantity(d.quantity), Decimal(0)) for d in ordered]
    tolerances = [max(to_quantity(d.tolerance), Decimal(0)) for d in ordered]
    # In whole steps: what each line may get from its quantity, and in all.
    q_steps = [int(q // unit) for q in quantities]
    caps = [int((q + t) // unit) for q, t in zip(quantities, tolerances)]
    case_steps = int(case_size / unit)
    cases = count_cases(case_size, sum(quantities), sum(tolerances))
    if max_cases is not None:
        cases = min(cases, max(max_cases, 0))
    while cases and cases * case_steps > sum(caps):
        cases -= 1
    amount = cases * case_steps
    ranks = list(range(len(ordered)))
    first = min(amount, sum(q_steps))
    extra_caps = []
    if policy == "pro_rata":
        given = _share(first, [int(q * 1000) for q in quantities], q_steps, ranks)
        extra_caps = [c - g for c, g in zip(caps, given)]
        extra = _share(amount - first, [int(t * 1000) for t in tolerances], extra_caps, ranks)
    else:
        given, left = [], first
        for q in q_steps:
            take = min(q, left)
            given.append(take)
            left -= take
        extra, left = [], amount - first
        for c, g in zip(caps, given):
            take = min(c - g, left)
            extra.append(take)
            left -= take
    allocations = {
        d.line_id: to_quantity((g + e) * unit) for d, g, e in zip(ordered, given, extra)
    }
    return AllocationResult(cases, allocations)


# --- database side --------------------------------------------------------------------------------


@dataclass
class BulkProgress:
    """How full the current case of a bulk product is during the cycle (no household names)."""

    offer_id: int
    product_id: int
    product_name: str
    unit: str
    case_size: Decimal
    step: Decimal
    total_ordered: Decimal
    total_tolerance: Decimal
    full_cases: int
    remainder: Decimal
    #: What is missing to complete the case being filled (a whole case when the last one is full).
    missing: Decimal
    #: True when the tolerances already given would complete the case being filled.
    tolerances_complete: bool
    #: How full the case being filled is, 0-100, for the bar.
    percent: int


def _bulk_offers(cycle_id: int) -> list[tuple[Offer, Product]]:
    """The cycle's offers of bulk products."""
    return list(
        db.session.execute(
            sa.select(Offer, Product)
            .join(Product, Product.id == Offer.product_id)
            .where(Offer.cycle_id == cycle_id, Product.case_size.is_not(None))
            .order_by(Product.name, Offer.id)
        ).tuples()
    )


def bulk_progress(cycle_id: int) -> list[BulkProgress]:
    """For each bulk product of a cycle, how full the case is and what would complete it."""
    offers = _bulk_offers(cycle_id)
    if not offers:
        return []
    sums = {
        offer_id: (quantity or Decimal(0), tolerance or Decimal(0))
        for offer_id, quantity, tolerance in db.session.execute(
            sa.select(OrderLine.offer_id, sa.func.sum(OrderLine.quantity), sa.func.sum(OrderLine.tolerance))
            .join(Order, Order.id == OrderLine.order_id)
            .where(
                OrderLine.offer_id.in_([o.id for o, _p in offers]),
                Order.status.in_(COUNTED_ORDER_STATUSES),
            )
            .group_by(OrderLine.offer_id)
        )
    }
    rows = []
    for offer, product in offers:
        if not offer.active:
            continue
        total, tolerance = sums.get(offer.id, (Decimal(0), Decimal(0)))
        total, tolerance = to_quantity(total), to_quantity(tolerance)
        size = product.case_size
        full = int(total // size)
        rest = to_quantity(total - full * size)
        missing = to_quantity(size - rest)
        rows.append(
            BulkProgress(
                offer_id=offer.id,
                product_id=product.id,
                product_name=product.name,
                unit=product.unit,
                case_size=size,
                step=product.step,
                total_ordered=total,
                total_tolerance=tolerance,
                full_cases=full,
                remainder=rest,
                missing=missing,
                tolerances_complete=rest > 0 and rest + tolerance >= size,
                percent=int(rest * 100 // size),
            )
        )
    return rows


@dataclass
class LineAllocation:
    """What one household line ordered and gets."""

    line_id: int
    order_id: int
    household_id: int
    household_name: str
    bag_number: int | None
    quantity: Decimal
    tolerance: Decimal
    allocated: Decimal


@dataclass
class ProductAllocation:
    """A bulk product's cases and each line's share."""

    offer_id: int
    product_id: int
    product_name: str
    producer_id: int
    unit: str
    case_size: Decimal
    step: Decimal
    price_cents: int
    cases: int
    total_ordered: Decimal
    lines: list[LineAllocation] = field(default_factory=list)

    @property
    def total_allocated(self) -> Decimal:
        """Everything shared back; equals cases x case size."""
        return sum((line.allocated for line in self.lines), Decimal("0.000"))


def _compute(cycle: Cycle, policy: str | None, use_stored: bool,
             offer_ids: list[int] | None = None) -> list[ProductAllocation]:
    """Allocations of every bulk product of a cycle, or of these offers (stored ones when asked and complete)."""
    policy = policy or cycle.allocation_policy or "pro_rata"
    offers = _bulk_offers(cycle.id)
    if offer_ids is not None:
        wanted = set(offer_ids)
        offers = [(offer, product) for offer, product in offers if offer.id in wanted]
    if not offers:
        return []
    lines_by_offer: dict[int, list] = defaultdict(list)
    # Plain column rows, not entities: a cycle can hold tens of thousands of bulk lines.
    for row in db.session.execute(
        sa.select(
            OrderLine.id, OrderLine.offer_id, OrderLine.quantity, OrderLine.tolerance,
            OrderLine.ordered_at, OrderLine.quantity_allocated,
            Order.id.label("order_id"), Order.household_id, Order.bag_number,
            Household.name.label("household_name"),
        )
        .join(Order, Order.id == OrderLine.order_id)
        .join(Household, Household.id == Order.household_id)
        .where(
            OrderLine.offer_id.in_([o.id for o, _p in offers]),
            Order.status.in_(COUNTED_ORDER_STATUSES),
        )
        .order_by(OrderLine.id)
    ):
        lines_by_offer[row.offer_id].append(row)
    result = []
    for offer, product in offers:
        entries = lines_by_offer.get(offer.id, [])
        stored = use_stored and entries and all(line.quantity_allocated is not None for line in entries)
        if stored:
            shares = {line.id: line.quantity_allocated for line in entries}
            cases = int(sum(shares.values(), Decimal(0)) // product.case_size)
        else:
            limit = None
            if not (offer.active and product.active):
                limit = 0  # withdrawn after ordering: nothing is delivered, nothing is charged
            elif offer.stock_cap is not None:
                limit = int(offer.stock_cap // product.case_size)
            outcome = allocate(
                product.case_size,
                product.step,
                [Demand(line.id, line.quantity, line.tolerance, line.ordered_at) for line in entries],
                policy,
                max_cases=limit,
            )
            shares, cases = outcome.allocations, outcome.cases
        allocation = ProductAllocation(
            offer_id=offer.id,
            product_id=product.id,
            product_name=product.name,
            producer_id=product.producer_id,
            unit=product.unit,
            case_size=product.case_size,
            step=product.step,
            price_cents=offer.price_cents,
            cases=cases,
            total_ordered=to_quantity(sum((line.quantity for line in entries), Decimal(0))),
        )
        for line in entries:
            allocation.lines.append(
                LineAllocation(line.id, line.order_id, line.household_id, line.household_name, line.bag_number,
                               line.quantity, line.tolerance, shares.get(line.id, Decimal("0.000")))
            )
        result.append(allocation)
    return result


def allocate_bulk(cycle_id: int, policy: str | None = None) -> list[ProductAllocation]:
    """Share whole cases of each bulk product back to lines and store OrderLine.quantity_allocated.

    Deterministic and idempotent: running it again writes nothing new. Uses the cycle's policy
    unless one is given. The caller commits (and recomputes order totals).
    """
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None:
        raise LookupError(f"no cycle {cycle_id}")
    allocations = _compute(cycle, policy, use_stored=False)
    rows = [
        {"b_id": line.line_id, "b_allocated": line.allocated}
        for product in allocations
        for line in product.lines
    ]
    if rows:
        # One executemany for the whole cycle: writing the same value again changes nothing.
        table = OrderLine.__table__
        db.session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values(quantity_allocated=sa.bindparam("b_allocated", type_=Quantity())),
            rows,
        )
    db.session.expire_all()
    return allocations


@dataclass
class Portion:
    """A household's portion taken out of one case."""

    household_name: str
    bag_number: int | None
    quantity: Decimal


@dataclass
class RepackCase:
    """One case and the portions it is split into."""

    number: int
    portions: list[Portion]


@dataclass
class RepackagingProduct:
    """A bulk product of the repackaging sheet (fiche de reconditionnement)."""

    product_name: str
    unit: str
    case_size: Decimal
    step: Decimal
    cases: list[RepackCase]


def _sheet_offer_ids(cycle: Cycle) -> list[int]:
    """The offers the repackaging sheet lists (those with at least one case), in its order.

    An offer whose lines all hold their stored allocation (every offer once the cycle is
    prepared) costs one SUM; only the others are computed in full.
    """
    offers = _bulk_offers(cycle.id)
    sums = {
        offer_id: allocated
        for offer_id, allocated, unstored in db.session.execute(
            sa.select(OrderLine.offer_id, sa.func.sum(OrderLine.quantity_allocated),
                      sa.func.count() - sa.func.count(OrderLine.quantity_allocated))
            .join(Order, Order.id == OrderLine.order_id)
            .where(OrderLine.offer_id.in_([offer.id for offer, _product in offers]),
                   Order.status.in_(COUNTED_ORDER_STATUSES))
            .group_by(OrderLine.offer_id)
        )
        if not unstored
    }
    # Same case count as _compute with use_stored: whole cases in what the lines were given.
    cases = {offer.id: int(sums[offer.id] // product.case_size) for offer, product in offers if offer.id in sums}
    unstored = [offer.id for offer, _product in offers if offer.id not in sums]
    if unstored:
        cases.update((product.offer_id, product.cases) for product in _compute(cycle, None, True, unstored))
    return [offer.id for offer, _product in offers if cases[offer.id]]


def repackaging_rows(cycle_id: int, positions: slice | None = None) -> list[RepackagingProduct]:
    """Each bulk case split into household portions, in bag order then name (stored allocation first).

    positions keeps only those products of the sheet (a document chunk), without reading the
    lines of the others.
    """
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None:
        raise LookupError(f"no cycle {cycle_id}")
    offer_ids = _sheet_offer_ids(cycle)[positions] if positions is not None else None
    sheet = []
    for product in _compute(cycle, None, use_stored=True, offer_ids=offer_ids):
        if product.cases == 0:
            continue
        getting = sorted(
            (line for line in product.lines if line.allocated > 0),
            key=lambda line: (line.bag_number is None, line.bag_number or 0, line.household_name.lower(), line.line_id),
        )
        cases = [RepackCase(n + 1, []) for n in range(product.cases)]
        index, room = 0, product.case_size
        for line in getting:
            left = line.allocated
            while left > 0 and index < len(cases):
                take = min(left, room)
                cases[index].portions.append(Portion(line.household_name, line.bag_number, take))
                left -= take
                room -= take
                if room == 0:
                    index, room = index + 1, product.case_size
        sheet.append(RepackagingProduct(product.product_name, product.unit, product.case_size, product.step, cases))
    return sheet


@dataclass
class CaseOrder:
    """What to order from the supplier: a bulk product in whole cases."""

    producer_id: int
    producer_name: str
    product_id: int
    product_name: str
    unit: str
    case_size: Decimal
    cases: int
    quantity: Decimal
    price_cents: int


def cases_to_order(cycle_id: int) -> list[CaseOrder]:
    """The producers' bulk orders in whole cases (stored allocation if done, else computed)."""
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None:
        raise LookupError(f"no cycle {cycle_id}")
    rows = []
    for product in _compute(cycle, None, use_stored=True):
        if product.cases == 0:
            continue
        producer = db.session.get(Producer, product.producer_id)
        rows.append(
            CaseOrder(product.producer_id, producer.name, product.product_id, product.product_name, product.unit,
                      product.case_size, product.cases, to_quantity(product.case_size * product.cases),
                      product.price_cents)
        )
    return sorted(rows, key=lambda r: (r.producer_name.lower(), r.product_name.lower()))


@dataclass(frozen=True)
class BulkOutcome:
    """How a bulk product of a closed cycle turned out: bought or not, and by which rule it was shared."""

    #: At least one case was bought (some household got some of it).
    bought: bool
    #: The offer or the product was withdrawn after ordering: nothing was bought.
    withdrawn: bool
    #: The supplier's stock (the offer's cap) did not hold one whole case.
    no_stock: bool
    #: The cycle's sharing policy, "pro_rata" or "first_come".
    policy: str

    def reason(self, quantity: Decimal, allocated: Decimal | None) -> str | None:
        """Why a line got less than it ordered, in short plain French; None when it got all (or before close)."""
        if allocated is None or allocated >= quantity:
            return None
        if self.bought:
            if self.policy == "first_come":
                return _("partagé par ordre d'arrivée des commandes")
            return _("partagé au prorata des commandes")
        # Nothing bought: a withdrawal or the supplier's stock explains it better than the incomplete case.
        if self.withdrawn:
            return _("produit retiré : non acheté")
        if self.no_stock:
            return _("pas assez de stock chez le fournisseur : non acheté")
        return _("colis incomplet : non acheté")


def bulk_outcomes(offer_ids) -> dict[int, BulkOutcome]:
    """Outcome of each of these bulk offers from its stored allocation, in one query (for the reasons shown)."""
    offer_ids = sorted(set(offer_ids))
    if not offer_ids:
        return {}
    getting = (
        sa.select(OrderLine.offer_id, sa.func.count(OrderLine.id).label("getting"))
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.offer_id.in_(offer_ids), Order.status.in_(COUNTED_ORDER_STATUSES),
               OrderLine.quantity_allocated > 0)
        .group_by(OrderLine.offer_id)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(Offer.id, Offer.active, Offer.stock_cap, Product.active, Product.case_size,
                  Cycle.allocation_policy, getting.c.getting)
        .join(Product, Product.id == Offer.product_id)
        .join(Cycle, Cycle.id == Offer.cycle_id)
        .outerjoin(getting, getting.c.offer_id == Offer.id)
        .where(Offer.id.in_(offer_ids), Product.case_size.is_not(None))
    )
    return {
        offer_id: BulkOutcome(
            bought=bool(count), withdrawn=not (offer_active and product_active),
            no_stock=stock_cap is not None and stock_cap < case_size, policy=policy or "pro_rata",
        )
        for offer_id, offer_active, stock_cap, product_active, case_size, policy, count in rows
    }


@dataclass
class OrderBulkLine:
    """A household's bulk line as shown on its order: ordered, accepted extra, and what it gets."""

    product_name: str
    unit: str
    quantity: Decimal
    tolerance: Decimal
    allocated: Decimal | None
    case_size: Decimal
    #: Why it gets less than it ordered (« colis incomplet : non acheté »...); None when it gets all.
    reason: str | None = None


def order_bulk_lines(order_id: int) -> list[OrderBulkLine]:
    """The bulk lines of one order, with their allocation once the cycle is closed and why it is short."""
    rows = db.session.execute(
        sa.select(OrderLine, Product.name, Product.unit, Product.case_size)
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .where(OrderLine.order_id == order_id, Product.case_size.is_not(None))
        .order_by(Product.name)
    ).tuples().all()
    short = [line.offer_id for line, *_rest in rows
             if line.quantity_allocated is not None and line.quantity_allocated < line.quantity]
    # One more query for all the short lines, none when nothing is short: the page stays flat.
    outcomes = bulk_outcomes(short) if short else {}
    return [
        OrderBulkLine(name, unit, line.quantity, line.tolerance, line.quantity_allocated, case_size,
                      outcomes[line.offer_id].reason(line.quantity, line.quantity_allocated)
                      if line.offer_id in outcomes else None)
        for line, name, unit, case_size in rows
    ]
