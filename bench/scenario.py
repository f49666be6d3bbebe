"""Scenario generator: fills the database with a realistic cycle (households, producers, offers, orders) fast."""
from __future__ import annotations

import argparse
import math
import os
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import insert
from werkzeug.security import generate_password_hash

from app.db import utcnow
from app.extensions import db
from app.models import Household, PriceTier, User, UserRole
from app.money import apply_basis_points, line_total_cents
from orders.models import Cycle, Order, OrderLine
from pickup.models import Site, Slot
from producers.models import Offer, Producer, Product, name_key

#: Every generated account signs in with this password (bench and tests only).
BENCH_PASSWORD = "bench-motdepasse-123"

_FARM_PRODUCTS = (
    ("Carottes", "kg", 280), ("Pommes de terre", "kg", 190), ("Poireaux", "bunch", 250),
    ("Salade", "piece", 120), ("Œufs (6)", "piece", 240), ("Panier de légumes", "basket", 1500),
    ("Lait cru", "l", 130), ("Tomme", "kg", 1890), ("Radis", "bunch", 150), ("Pommes", "kg", 260),
)
_TRADER_PRODUCTS = (
    ("Panier du marché", "basket", 1200), ("Pain de campagne", "piece", 380), ("Olives", "kg", 1650),
    ("Miel", "piece", 850), ("Fromage de chèvre", "piece", 420), ("Saucisson", "piece", 690),
)
_BULK_PRODUCTS = (
    ("Riz complet", "kg", 320, "25", "0.5"), ("Lentilles vertes", "kg", 410, "25", "0.5"),
    ("Huile de tournesol", "l", 390, "6", "1"), ("Savon de Marseille", "piece", 350, "12", "1"),
    ("Farine T80", "kg", 180, "25", "1"), ("Flocons d'avoine", "kg", 290, "10", "0.5"),
)
_KINDS = ("farmer", "market_trader", "bulk_supplier")


def _insert_returning_ids(model, rows: list[dict]) -> list[int]:
    """Bulk insert rows and return their ids in the order given."""
    if not rows:
        return []
    result = db.session.execute(
        insert(model).returning(model.id, sort_by_parameter_order=True), rows
    )
    return [row[0] for row in result]


def _bulk_insert(model, rows: list[dict]) -> None:
    """Bulk insert rows without reading anything back."""
    if rows:
        db.session.execute(insert(model), rows)


def _cycle_times(status: str, now: datetime) -> dict:
    """Opening, deadline and distribution times that fit the requested status."""
    if status in ("open", "draft"):
        opens = now - timedelta(days=2) if status == "open" else now + timedelta(days=1)
        closes = now + timedelta(days=5)
    else:
        opens = now - timedelta(days=7)
        closes = now - timedelta(hours=1)
    starts = (closes + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    return {
        "opens_at": opens,
        "closes_at": closes,
        "distribution_date": starts.date(),
        "distribution_starts_at": starts,
        "distribution_ends_at": starts + timedelta(hours=3),
    }


def generate(
    households: int = 10000,
    producers: int = 50,
    products: int = 500,
    slots: int = 20,
    orders: int = 0,
    lines_per_order: int = 10,
    seed: int = 1,
    cycle_status: str = "open",
    commit: bool = True,
) -> dict:
    """Fill the current app's database with one cycle of realistic rows; returns their ids."""
    rng = random.Random(seed)
    now = utcnow()
    # A fresh tag keeps names unique when several scenarios share one database.
    tag = f"{seed}-{uuid.uuid4().hex[:6]}"
    password_hash = generate_password_hash(BENCH_PASSWORD)
    orders = min(orders, households)

    site_id = _insert_returning_ids(Site, [{"name": f"Café du Bourg {tag}", "address": "1 place de l'Église",
                                            "timezone": "Europe/Paris"}])[0]
    times = _cycle_times(cycle_status, now)
    cycle_id = _insert_returning_ids(Cycle, [{
        "site_id": site_id, "schedule_id": None, "week": None, "status": cycle_status,
        "allocation_policy": "pro_rata", "created_at": now, **times,
    }])[0]

    # Slots every 30 minutes from the distribution start; room for every household.
    capacity = max(10, math.ceil(households / max(slots, 1)) + 5)
    slot_rows = []
    for i in range(slots):
        start = times["distribution_starts_at"] + timedelta(minutes=30 * i)
        slot_rows.append({"cycle_id": cycle_id, "starts_at": start, "ends_at": start + timedelta(minutes=30),
                          "capacity": capacity, "booked": 0})
    slot_ids = _insert_returning_ids(Slot, slot_rows)

    tier_ids = _insert_returning_ids(PriceTier, [
        {"name": f"Habitant·e du quartier {tag}", "markup_bp": 0, "pay_what_you_can": False,
         "minimum_bp": 10000, "is_default": False},
        {"name": f"Soutien {tag}", "markup_bp": 1000, "pay_what_you_can": False, "minimum_bp": 10000,
         "is_default": False},
        {"name": f"Prix libre {tag}", "markup_bp": 0, "pay_what_you_can": True, "minimum_bp": 7000,
         "is_default": False},
    ])
    tier_markup = {tier_ids[0]: 0, tier_ids[1]: 1000, tier_ids[2]: 0}

    producer_rows = []
    for i in range(producers):
        kind = _KINDS[i % 3]
        producer_rows.append({
            "name": f"{('Ferme', 'Forain', 'Vrac')[i % 3]} {i + 1} ({tag})", "kind": kind,
            "contact_name": f"Contact {i + 1}", "email": f"producteur{i + 1}-{tag}@bench.example",
            "show_household_names": i % 5 == 0, "active": True, "created_at": now,
        })
    producer_ids = _insert_returning_ids(Producer, producer_rows)

    product_rows = []
    product_info = []  # (unit, step, price, is_bulk)
    for j in range(products):
        p_index = j % max(producers, 1)
        kind = _KINDS[p_index % 3]
        row = {"producer_id": producer_ids[p_index], "vat_rate_bp": 550, "active": True, "created_at": now,
               "is_contract_basket": False, "sold_by_weight": False, "case_size": None, "portion_step": None}
        if kind == "bulk_supplier":
            name, unit, price, case, step = _BULK_PRODUCTS[j % len(_BULK_PRODUCTS)]
            row.update(case_size=Decimal(case), portion_step=Decimal(step))
            step_q = Decimal(step)
        else:
            name, unit, price = (_FARM_PRODUCTS if kind == "farmer" else _TRADER_PRODUCTS)[
                j % (len(_FARM_PRODUCTS) if kind == "farmer" else len(_TRADER_PRODUCTS))]
            row["sold_by_weight"] = unit == "kg" and kind == "farmer"
            step_q = Decimal("0.5") if unit in ("kg", "l") else Decimal(1)
            if unit in ("kg", "l"):
                row["portion_step"] = step_q
        price = price + rng.randrange(0, 60) * 5
        row.update(name=f"{name} n°{j + 1}", name_key=name_key(f"{name} n°{j + 1}"), unit=unit, price_cents=price)
        product_rows.append(row)
        product_info.append((unit, step_q, price, kind == "bulk_supplier"))
    product_ids = _insert_returning_ids(Product, product_rows)

    offer_ids = _insert_returning_ids(Offer, [
        {"cycle_id": cycle_id, "product_id": pid, "price_cents": product_info[k][2],
         "stock_cap": None, "reserved": Decimal(0), "active": True}
        for k, pid in enumerate(product_ids)
    ])

    household_rows = []
    for h in range(households):
        household_rows.append({
            "name": f"Foyer {h + 1} {('Martin', 'Bernard', 'Petit', 'Durand', 'Leroy', 'Moreau')[h % 6]}",
            "email": f"foyer{h + 1}-{tag}@bench.example" if h % 7 else None,
            "price_tier_id": tier_ids[h % 10 == 0] if h % 20 else tier_ids[2],
            "active": True, "created_at": now,
        })
    household_ids = _insert_returning_ids(Household, household_rows)

    user_rows = [{"email": f"membre{h + 1}-{tag}@bench.example", "name": f"Membre {h + 1}",
                  "password_hash": password_hash, "household_id": hid, "producer_id": None,
                  "locale": "fr", "active": True, "created_at": now}
                 for h, hid in enumerate(household_ids)]
    user_rows += [{"email": f"producteur{i + 1}-{tag}@bench.example", "name": f"Producteur {i + 1}",
                   "password_hash": password_hash, "household_id": None, "producer_id": pid,
                   "locale": "fr", "active": True, "created_at": now}
                  for i, pid in enumerate(producer_ids)]
    staff = [("benevole", "volunteer"), ("coordination", "coordinator")]
    user_rows += [{"email": f"{who}-{tag}@bench.example", "name": who.capitalize(),
                   "password_hash": password_hash, "household_id": None, "producer_id": None,
                   "locale": "fr", "active": True, "created_at": now} for who, _ in staff]
    user_ids = _insert_returning_ids(User, user_rows)
    roles = ["member"] * households + ["producer"] * producers + [role for _, role in staff]
    _bulk_insert(UserRole, [{"user_id": uid, "role": role} for uid, role in zip(user_ids, roles)])

    order_ids: list[int] = []
    if orders:
        shares = {}
        order_rows = []
        for h in range(orders):
            tier = household_rows[h]["price_tier_id"]
            share = 8000 if tier == tier_ids[2] else None
            shares[h] = share
            order_rows.append({
                "cycle_id": cycle_id, "household_id": household_ids[h], "slot_id": slot_ids[h % slots] if slots else None,
                "status": "confirmed", "entered_by_id": user_ids[h], "entered_by_volunteer": h % 25 == 0,
                "chosen_share_bp": share, "total_cents": 0, "created_at": now, "updated_at": now,
                "confirmed_at": now,
            })
        order_ids = _insert_returning_ids(Order, order_rows)
        reserved: dict[int, Decimal] = defaultdict(Decimal)
        booked: dict[int, int] = defaultdict(int)
        totals = []
        line_rows = []
        per_order = min(lines_per_order, len(offer_ids))
        for h, oid in enumerate(order_ids):
            tier = household_rows[h]["price_tier_id"]
            total = 0
            for k in rng.sample(range(len(offer_ids)), per_order):
                unit, step, price, is_bulk = product_info[k]
                qty = step * rng.randint(1, 6)
                if shares[h] is not None:
                    unit_price = apply_basis_points(price, shares[h] - 10000)
                else:
                    unit_price = apply_basis_points(price, tier_markup[tier])
                line_rows.append({
                    "order_id": oid, "offer_id": offer_ids[k], "contract_id": None, "quantity": qty,
                    "tolerance": step if is_bulk and h % 3 == 0 else Decimal(0),
                    "unit_price_cents": unit_price, "base_price_cents": price, "missing": False,
                    "ordered_at": now - timedelta(seconds=orders - h),
                })
                reserved[offer_ids[k]] += qty
                total += line_total_cents(unit_price, qty)
            totals.append({"b_id": oid, "b_total": total})
            if slots:
                booked[slot_ids[h % slots]] += 1
        for start in range(0, len(line_rows), 20000):
            _bulk_insert(OrderLine, line_rows[start:start + 20000])
        order_table = Order.__table__
        db.session.execute(
            sa.update(order_table).where(order_table.c.id == sa.bindparam("b_id"))
            .values(total_cents=sa.bindparam("b_total")), totals)
        offer_table = Offer.__table__
        db.session.execute(
            sa.update(offer_table).where(offer_table.c.id == sa.bindparam("b_id"))
            .values(reserved=sa.bindparam("b_reserved", type_=offer_table.c.reserved.type)),
            [{"b_id": k, "b_reserved": v} for k, v in reserved.items()])
        slot_table = Slot.__table__
        db.session.execute(
            sa.update(slot_table).where(slot_table.c.id == sa.bindparam("b_id"))
            .values(booked=sa.bindparam("b_booked")),
            [{"b_id": k, "b_booked": v} for k, v in booked.items()])

    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return {
        "tag": tag, "password": BENCH_PASSWORD, "site_id": site_id, "cycle_id": cycle_id,
        "slot_ids": slot_ids, "tier_ids": tier_ids, "producer_ids": producer_ids, "product_ids": product_ids,
        "offer_ids": offer_ids, "household_ids": household_ids, "order_ids": order_ids,
        "member_user_ids": user_ids[:households], "producer_user_ids": user_ids[households:households + producers],
        "volunteer_user_id": user_ids[-2], "coordinator_user_id": user_ids[-1],
        "member_emails": [r["email"] for r in user_rows[:households]],
        "producer_emails": [r["email"] for r in user_rows[households:households + producers]],
        "volunteer_email": user_rows[-2]["email"], "coordinator_email": user_rows[-1]["email"],
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: `python -m bench.scenario --households N ...` against DATABASE_URL (creates missing tables)."""
    parser = argparse.ArgumentParser(description="Fill the database with a generated cycle.")
    parser.add_argument("--households", type=int, default=10000)
    parser.add_argument("--producers", type=int, default=50)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--lines-per-order", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cycle-status", default="open")
    args = parser.parse_args(argv)

    from app import create_app

    overrides = {"SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-scenario-not-secret"}
    if os.environ.get("DATABASE_URL"):
        overrides["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    app = create_app("development", **overrides)
    with app.app_context():
        db.create_all()
        started = datetime.now(UTC)
        ids = generate(households=args.households, producers=args.producers, products=args.products,
                       slots=args.slots, orders=args.orders, lines_per_order=args.lines_per_order,
                       seed=args.seed, cycle_status=args.cycle_status)
        seconds = (datetime.now(UTC) - started).total_seconds()
    print(f"cycle_id={ids['cycle_id']} households={len(ids['household_ids'])} offers={len(ids['offer_ids'])} "
          f"orders={len(ids['order_ids'])} seconds={seconds:.1f} password={ids['password']} "
          f"example_member={ids['member_emails'][0] if ids['member_emails'] else ''}")


if __name__ == "__main__":
    main()
