"""The migrations build, on an empty database, exactly the schema the models describe."""
from __future__ import annotations

import tempfile

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
    assert _differences(application) == [], "models changed: run bin/regenerate-initial-migration"
    with application.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
    assert {"user", "household", "cycle", "order", "order_line", "offer", "slot", "outbox_message"} <= tables


def test_downgrade_then_upgrade_again(fresh_database_url):
    application = _app_on(fresh_database_url)
    runner = application.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    with application.app_context():
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert _differences(application) == [], "models changed: run bin/regenerate-initial-migration"
    with application.app_context():
        db.engine.dispose()
