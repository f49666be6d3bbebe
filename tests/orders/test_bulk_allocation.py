"""The bulk allocation rule: whole cases, shared back fairly (examples and hypothesis properties)."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.bulk import Demand, allocate, count_cases

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
D = Decimal


def demand(line_id, quantity, tolerance="0", minutes=0):
    """A demand placed `minutes` after T0."""
    return Demand(line_id, D(quantity), D(tolerance), T0 + timedelta(minutes=minutes))


def test_full_cases_only_when_remainder_cannot_be_completed():
    result = allocate(D("25"), D("0.5"), [demand(1, "20", minutes=1), demand(2, "10", minutes=2)])
    assert result.cases == 1
    # 25 kg shared 2:1, in half kilos: 16.667 -> 16.5 and 8.333 -> 8.5 (largest remainder).
    assert result.allocations == {1: D("16.500"), 2: D("8.500")}


def test_tolerances_complete_the_last_case():
    result = allocate(D("25"), D("0.5"), [demand(1, "10", "3", 1), demand(2, "10", "5", 2)])
    assert result.cases == 1
    assert sum(result.allocations.values()) == D("25")
    # Each gets its 10 kg, and the 5 kg extra is shared 3:5 over the tolerances.
    assert result.allocations[1] <= D("13") and result.allocations[2] <= D("15")
    assert result.allocations[1] >= D("10") and result.allocations[2] >= D("10")


def test_tolerance_never_makes_a_case_alone():
    assert count_cases(D("25"), D("0"), D("100")) == 0
    result = allocate(D("25"), D("0.5"), [demand(1, "0", "30"), demand(2, "0", "30")])
    assert result.cases == 0
    assert result.allocations == {1: D("0"), 2: D("0")}
    # Whole cases already: tolerances add no case.
    result = allocate(D("6"), D("1"), [demand(1, "6", "5")])
    assert result.cases == 1 and result.allocations == {1: D("6")}


def test_first_come_serves_the_oldest_order_first():
    demands = [demand(1, "4", minutes=5), demand(2, "4", minutes=1), demand(3, "4", minutes=3)]
    result = allocate(D("6"), D("1"), demands, "first_come")
    assert result.cases == 2
    assert result.allocations == {2: D("4"), 3: D("4"), 1: D("4")}
    result = allocate(D("10"), D("1"), demands, "first_come")
    assert result.cases == 1
    assert result.allocations == {2: D("4"), 3: D("4"), 1: D("2")}


def test_ties_go_to_the_earlier_order():
    demands = [demand(1, "1", minutes=2), demand(2, "1", minutes=1), demand(3, "1", minutes=3)]
    # Three households ordered 1 bottle of a 2-bottle case... one case is not full: 3 // 2 = 1 case.
    result = allocate(D("2"), D("1"), demands)
    assert result.cases == 1
    assert result.allocations == {2: D("1"), 1: D("1"), 3: D("0")}


def test_case_size_not_a_multiple_of_step_is_shared_to_the_thousandth():
    result = allocate(D("25"), D("0.3"), [demand(1, "20"), demand(2, "10", minutes=1)])
    assert result.cases == 1
    assert sum(result.allocations.values()) == D("25")


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        allocate(D("25"), D("1"), [demand(1, "3")], "lottery")


# --- properties ----------------------------------------------------------------------------------

STEPS = [D("0.5"), D("1"), D("0.25"), D("0.1"), D("0.001")]


@st.composite
def scenarios(draw):
    """A case size that is a whole number of steps, and demands in whole steps."""
    step = draw(st.sampled_from(STEPS))
    case_steps = draw(st.integers(min_value=1, max_value=60))
    n = draw(st.integers(min_value=0, max_value=14))
    demands = []
    for i in range(n):
        q = draw(st.integers(min_value=0, max_value=3 * case_steps))
        t = draw(st.integers(min_value=0, max_value=case_steps))
        minute = draw(st.integers(min_value=0, max_value=5))  # many equal times: ties by line id
        demands.append(Demand(i + 1, q * step, t * step, T0 + timedelta(minutes=minute)))
    policy = draw(st.sampled_from(["pro_rata", "first_come"]))
    max_cases = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=4)))
    return case_steps * step, step, demands, policy, max_cases


PROPERTY_SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenarios())
def test_allocation_invariants(scenario):
    case_size, step, demands, policy, max_cases = scenario
    result = allocate(case_size, step, demands, policy, max_cases=max_cases)
    total = sum(result.allocations.values(), D(0))
    assert total == result.cases * case_size
    wanted = count_cases(case_size, sum((d.quantity for d in demands), D(0)),
                         sum((d.tolerance for d in demands), D(0)))
    assert result.cases == (wanted if max_cases is None else min(wanted, max_cases))
    for d in demands:
        got = result.allocations[d.line_id]
        assert D(0) <= got <= d.quantity + d.tolerance
        assert got % step == 0
    # Deterministic, whatever the order the demands come in.
    shuffled = list(demands)
    random.Random(len(demands)).shuffle(shuffled)
    assert allocate(case_size, step, shuffled, policy, max_cases=max_cases) == result


@PROPERTY_SETTINGS
@given(scenarios())
def test_pro_rata_never_favours_a_later_identical_order(scenario):
    case_size, step, demands, _policy, max_cases = scenario
    result = allocate(case_size, step, demands, "pro_rata", max_cases=max_cases)
    ranked = sorted(demands, key=lambda d: (d.ordered_at, d.line_id))
    for i, early in enumerate(ranked):
        for late in ranked[i + 1:]:
            if (early.quantity, early.tolerance) == (late.quantity, late.tolerance):
                assert result.allocations[early.line_id] >= result.allocations[late.line_id]


@PROPERTY_SETTINGS
@given(scenarios())
def test_pro_rata_gives_quantities_before_tolerances(scenario):
    case_size, step, demands, _policy, max_cases = scenario
    result = allocate(case_size, step, demands, "pro_rata", max_cases=max_cases)
    ordered = sum((d.quantity for d in demands), D(0))
    if result.cases * case_size >= ordered:
        # An extra case was bought with the tolerances: everyone gets at least what it ordered.
        for d in demands:
            assert result.allocations[d.line_id] >= d.quantity


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=1, max_value=40_000), st.integers(min_value=1, max_value=3_000),
       st.lists(st.tuples(st.integers(0, 60_000), st.integers(0, 20_000)), max_size=10))
def test_any_case_size_and_step_still_balance(case_milli, step_milli, pairs):
    """Whatever the product's setup (even a case that is not a whole number of steps), cases balance."""
    case_size, step = D(case_milli) / 1000, D(step_milli) / 1000
    demands = [Demand(i + 1, D(q) / 1000, D(t) / 1000, T0) for i, (q, t) in enumerate(pairs)]
    result = allocate(case_size, step, demands)
    used_step = step if case_size % step == 0 else D("0.001")
    assert sum(result.allocations.values(), D(0)) == result.cases * case_size
    for d in demands:
        got = result.allocations[d.line_id]
        assert D(0) <= got <= d.quantity + d.tolerance
        assert got % used_step == 0
