"""The migrations build, on an empty database, exactly the schema the models describe."""
from __future__ import annotations

import tempfile

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import create_app
from app.extensions import db
from config import TestConfig


def _app_on(url: str):
    """An app bound to the given database, with its own instance folder."""
    return create_app(TestConfig, SQLALCHEMY_DATABASE_URI=url,
                      INSTANCE_DIR=tempfile.mkdtemp(prefix="panier-migrate-"))


def _differences(application) -> list:
    """What alembic's autogenerate would still change to reach the models."""
    with application.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(context, db.metadata)


def _insert_site_and_cycle(conn, cycle_id: int, status: str) -> None:
    """Site 1 and one of its cycles (distribution on 8 January 2026), written as SQL at an old revision."""
    conn.execute(sa.text("INSERT INTO site (id, name, timezone) VALUES (1, 'Café', 'Europe/Paris')"))
    conn.execute(sa.text(
        "INSERT INTO cycle (id, site_id, opens_at, closes_at, distribution_date, distribution_starts_at, "
        "distribution_ends_at, status, allocation_policy, created_at) VALUES (:id, 1, '2026-01-01 08:00:00', "
        "'2026-01-05 22:59:00', '2026-01-08', '2026-01-08 15:30:00', '2026-01-08 18:30:00', :status, "
        "'pro_rata', '2026-01-01 00:00:00')"), {"id": cycle_id, "status": status})


def test_upgrade_on_empty_database_matches_the_models(fresh_database_url):
    application = _app_on(fresh_database_url)
    result = application.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert _differences(application) == [], "models changed: write a migration (flask db migrate)"
    with application.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
    assert {"user", "household", "cycle", "order", "order_line", "offer", "slot", "outbox_message"} <= tables


def test_product_names_that_differ_by_case_get_their_key(fresh_database_url):
    """5b2e8c0d7a14: existing products get name_key; a legacy pair "Riz" / "riz " stays, told apart."""
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "041d1d8bf67c"]).exit_code == 0
    with application.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO producer (id, name, kind, show_household_names, active, created_at) "
                             "VALUES (1, 'Ferme', 'farmer', false, true, '2026-01-01 00:00:00')"))
        for product_id, name in ((1, "Riz"), (2, "riz "), (3, "Carottes  nouvelles")):
            conn.execute(sa.text(
                "INSERT INTO product (id, producer_id, name, unit, price_cents, vat_rate_bp, sold_by_weight, "
                "is_contract_basket, active, created_at) VALUES (:id, 1, :name, 'kg', 100, 550, false, false, true, "
                "'2026-01-01 00:00:00')"), {"id": product_id, "name": name})
        # An offer points at the product: SQLite's table rebuild must not trip over it.
        _insert_site_and_cycle(conn, 1, "open")
        conn.execute(sa.text("INSERT INTO offer (id, cycle_id, product_id, price_cents, reserved, active) "
                             "VALUES (1, 1, 1, 100, 0, true)"))
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        with db.engine.connect() as conn:
            keys = dict(conn.execute(sa.text("SELECT id, name_key FROM product")).all())
        assert keys == {1: "riz", 2: "riz #2", 3: "carottes nouvelles"}
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT product_id FROM offer")).scalar_one() == 1
        with db.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text(
                "INSERT INTO product (producer_id, name, name_key, unit, price_cents, vat_rate_bp, sold_by_weight, "
                "is_contract_basket, active, created_at) VALUES (1, 'RIZ', 'riz', 'kg', 100, 550, false, false, "
                "true, '2026-01-01 00:00:00')"))
        db.engine.dispose()


def test_downgrade_then_upgrade_again(fresh_database_url):
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    with application.app_context():
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert _differences(application) == [], "models changed: write a migration (flask db migrate)"
    with application.app_context():
        db.engine.dispose()


def test_credit_handed_back_gets_its_method_back_from_its_note(fresh_database_url):
    """06fde9681cf2: hand-backs read their method from their note; top-ups and card refunds keep none."""
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "e30324cb596d"]).exit_code == 0
    with application.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO household (id, name, active, created_at) "
                             "VALUES (1, 'Foyer Dupont', true, '2026-01-01 00:00:00')"))
        for entry_id, amount, kind, reference, note in (
            (1, 3000, "topup", "topup:1:aaaaaaaa", "versement"),
            (2, -500, "refund", "handback:1:bbbbbbbb", "rendu en espèces : rendu à sa demande"),
            (3, -700, "refund", "handback:1:cccccccc", "rendu par chèque n° 0000123 : départ du foyer"),
            (4, -100, "refund", "stripe:re_1", "remboursé sur la carte"),
        ):
            conn.execute(sa.text(
                "INSERT INTO ledger_entry (id, household_id, amount_cents, kind, reference, note, created_at) "
                "VALUES (:id, 1, :amount, :kind, :reference, :note, '2026-01-01 00:00:00')"),
                {"id": entry_id, "amount": amount, "kind": kind, "reference": reference, "note": note})
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, method, cheque_number, cycle_id FROM ledger_entry ORDER BY id"))
            assert [tuple(row) for row in rows] == [
                (1, None, None, None), (2, "cash", None, None), (3, "cheque", "0000123", None), (4, None, None, None)]
        with db.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
            # A cheque always has its number.
            conn.execute(sa.text(
                "INSERT INTO ledger_entry (household_id, amount_cents, kind, reference, method, created_at) "
                "VALUES (1, 100, 'topup', 'topup:1:dddddddd', 'cheque', '2026-01-01 00:00:00')"))
        db.engine.dispose()
    down = runner.invoke(args=["db", "downgrade", "e30324cb596d"])
    assert down.exit_code == 0, down.output
    with application.app_context():
        columns = {column["name"] for column in sa.inspect(db.engine).get_columns("ledger_entry")}
        assert not {"method", "cheque_number", "cheque_bank", "cycle_id"} & columns
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(amount_cents) FROM ledger_entry")).scalar_one() == 1700
        db.engine.dispose()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert _differences(application) == []
    with application.app_context():
        db.engine.dispose()


def test_cash_and_cheque_payments_get_the_till_of_their_order(fresh_database_url):
    """7c41d2e9a0b3: existing cash and cheque payments count in their order's till, as the reports read them."""
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "06fde9681cf2"]).exit_code == 0
    with application.app_context(), db.engine.begin() as conn:
        _insert_site_and_cycle(conn, 7, "distributed")
        conn.execute(sa.text("INSERT INTO household (id, name, active, created_at) "
                             "VALUES (1, 'Foyer Dupont', true, '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO \"order\" (id, cycle_id, household_id, status, entered_by_volunteer, total_cents, "
            "created_at, updated_at) VALUES (3, 7, 1, 'confirmed', false, 4000, '2026-01-02 10:00:00', "
            "'2026-01-02 10:00:00')"))
        for payment_id, method in ((1, "cash"), (2, "cheque"), (3, "card"), (4, "balance")):
            conn.execute(sa.text(
                "INSERT INTO payment (id, order_id, household_id, method, amount_cents, status, refunded_cents, "
                "created_at) VALUES (:id, 3, 1, :method, 1000, 'succeeded', 0, '2026-01-08 17:00:00')"),
                {"id": payment_id, "method": method})
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, cycle_id FROM payment ORDER BY id"))
            assert [tuple(row) for row in rows] == [(1, 7), (2, 7), (3, None), (4, None)]
        with db.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
            # A card payment goes through no till.
            conn.execute(sa.text("UPDATE payment SET cycle_id = 7 WHERE id = 3"))
        db.engine.dispose()
    down = runner.invoke(args=["db", "downgrade", "06fde9681cf2"])
    assert down.exit_code == 0, down.output
    with application.app_context():
        assert "cycle_id" not in {column["name"] for column in sa.inspect(db.engine).get_columns("payment")}
        db.engine.dispose()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert _differences(application) == []
    with application.app_context():
        db.engine.dispose()


def test_absences_are_kept_by_the_week_of_their_distribution(fresh_database_url):
    """b5e0a7c3d912: an absence gets its distribution's week (the one it was made for, even once moved)."""
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "7c41d2e9a0b3"]).exit_code == 0
    with application.app_context(), db.engine.begin() as conn:
        _insert_site_and_cycle(conn, 7, "open")  # distribution on Thursday 8 January 2026, no week written
        # Made for week 3 (Thursday 15 January), moved to Monday 19 January.
        conn.execute(sa.text(
            "INSERT INTO cycle (id, site_id, week, opens_at, closes_at, distribution_date, distribution_starts_at, "
            "distribution_ends_at, status, allocation_policy, created_at) VALUES (8, 1, '2026-W03', "
            "'2026-01-08 08:00:00', '2026-01-12 22:59:00', '2026-01-19', '2026-01-19 15:30:00', "
            "'2026-01-19 18:30:00', 'open', 'pro_rata', '2026-01-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO household (id, name, active, created_at) "
                             "VALUES (1, 'Foyer Dupont', true, '2026-01-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO producer (id, name, kind, show_household_names, active, created_at) "
                             "VALUES (1, 'Ferme', 'farmer', false, true, '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO product (id, producer_id, name, name_key, unit, price_cents, vat_rate_bp, sold_by_weight, "
            "is_contract_basket, active, created_at) VALUES (1, 1, 'Panier', 'panier', 'basket', 1200, 550, "
            "false, true, true, '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO contract_offer (id, producer_id, product_id, site_id, name, first_date, last_date, "
            "every_weeks, price_cents, absences_allowed, shareable, open_for_subscription, created_at) VALUES "
            "(1, 1, 1, 1, 'Hiver', '2026-01-08', '2026-03-26', 1, 1200, 3, false, true, '2026-01-01 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO contract (id, contract_offer_id, household_id, quantity, status, created_at) "
            "VALUES (1, 1, 1, 1000, 'active', '2026-01-01 00:00:00')"))
        # A Saturday market the same week as cycle 7, on which a second absence of the contract was declared.
        conn.execute(sa.text(
            "INSERT INTO cycle (id, site_id, opens_at, closes_at, distribution_date, distribution_starts_at, "
            "distribution_ends_at, status, allocation_policy, created_at) VALUES (9, 1, '2026-01-01 08:00:00', "
            "'2026-01-07 22:59:00', '2026-01-10', '2026-01-10 09:00:00', '2026-01-10 12:00:00', 'open', "
            "'pro_rata', '2026-01-01 00:00:00')"))
        for absence_id, cycle_id in ((1, 7), (2, 8), (3, 9)):
            conn.execute(sa.text(
                "INSERT INTO contract_absence (id, contract_id, cycle_id, household_id, kind, created_at) "
                "VALUES (:id, 1, :cycle, 1, 'skip', '2026-01-02 00:00:00')"), {"id": absence_id, "cycle": cycle_id})
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with application.app_context():
        with db.engine.connect() as conn:
            weeks = conn.execute(sa.text("SELECT id, week FROM contract_absence ORDER BY id")).all()
            # One absence per contract and week: the first declared stays.
            assert [(row[0], str(row[1])) for row in weeks] == [(1, "2026-01-05"), (2, "2026-01-12")]
        db.engine.dispose()
    down = runner.invoke(args=["db", "downgrade", "7c41d2e9a0b3"])
    assert down.exit_code == 0, down.output
    with application.app_context():
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id, cycle_id FROM contract_absence ORDER BY id")).all() == [
                (1, 7), (2, 8)]
        db.engine.dispose()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with application.app_context():
        # An absence declared ahead, for a week without a distribution: downgrading would lose it.
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO contract_absence (id, contract_id, week, household_id, kind, created_at) "
                                 "VALUES (3, 1, '2026-02-16', 1, 'skip', '2026-01-02 00:00:00')"))
        db.engine.dispose()
    refused = runner.invoke(args=["db", "downgrade", "7c41d2e9a0b3"])
    assert refused.exit_code != 0
    assert _differences(application) == []
    with application.app_context():
        db.engine.dispose()
