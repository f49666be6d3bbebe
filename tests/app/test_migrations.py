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
        conn.execute(sa.text("INSERT INTO site (id, name, timezone) VALUES (1, 'Café', 'Europe/Paris')"))
        conn.execute(sa.text(
            "INSERT INTO cycle (id, site_id, opens_at, closes_at, distribution_date, distribution_starts_at, "
            "distribution_ends_at, status, allocation_policy, created_at) VALUES (1, 1, '2026-01-01 08:00:00', "
            "'2026-01-05 22:59:00', '2026-01-08', '2026-01-08 15:30:00', '2026-01-08 18:30:00', 'open', "
            "'pro_rata', '2026-01-01 00:00:00')"))
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
