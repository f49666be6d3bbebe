"""Fixtures: the app on SQLite or a private PostgreSQL cluster, a clean database per test, clients."""
from __future__ import annotations

import os
import tempfile

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db, limiter
from config import TestConfig
from tests.servers import PostgresCluster

#: "sqlite" (default) or "postgresql": the test command runs the suite once with each.
TEST_DB = os.environ.get("PANIER_TEST_DB", "sqlite")


def pytest_report_header(config):
    """Say which database this run uses."""
    return f"panier: database={TEST_DB}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, worker_id):
    """A database for this test process: a SQLite file, or a fresh private PostgreSQL cluster."""
    if TEST_DB == "postgresql":
        if os.environ.get("TEST_DATABASE_URL"):
            yield os.environ["TEST_DATABASE_URL"]
            return
        cluster = PostgresCluster().start()
        try:
            yield cluster.create_database(f"panier_test_{worker_id}")
        finally:
            cluster.stop()
    else:
        path = tmp_path_factory.mktemp("db") / "panier-test.db"
        yield f"sqlite:///{path}"


@pytest.fixture()
def fresh_database_url(database_url, tmp_path):
    """An empty extra database (no tables) on the same engine as this run, dropped afterwards."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    import uuid

    import psycopg

    url = sa.engine.make_url(database_url)
    name = f"panier_fresh_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _schema(database_url):
    """Create every table once per test process."""
    application = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=database_url,
                             INSTANCE_DIR=tempfile.mkdtemp(prefix="panier-instance-"))
    with application.app_context():
        db.create_all()
        db.engine.dispose()
    return database_url


@pytest.fixture()
def app_config(tmp_path) -> dict:
    """Per-test configuration overrides; tests may add to it before asking for `app`."""
    instance = tmp_path / "instance"
    instance.mkdir()
    return {"INSTANCE_DIR": str(instance), "DOCUMENTS_DIR": str(instance / "documents")}


@pytest.fixture()
def app(_schema, app_config):
    """The application with an app context pushed, and an empty database afterwards."""
    application = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=_schema, **app_config)

    @application.before_request
    def _forget_cached_user():
        """Requests share the test's app context (and its g): never reuse another request's
        signed-in user, CSRF token or language, which Flask-Login, Flask-WTF and Flask-Babel cache on g."""
        from flask import g

        for cached in ("_login_user", "csrf_token", "_flask_babel"):
            g.pop(cached, None)

    limiter.reset()
    ctx = application.app_context()
    ctx.push()
    try:
        yield application
    finally:
        db.session.remove()
        empty_database()
        db.engine.dispose()
        ctx.pop()


def empty_database() -> None:
    """Delete every row of every table (faster than recreating the schema)."""
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                conn.execute(table.delete())
            if conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'"
            ).first():
                conn.exec_driver_sql("DELETE FROM sqlite_sequence")


@pytest.fixture()
def client(app):
    """A test client (CSRF on, as in production)."""
    return app.test_client()


@pytest.fixture()
def runner(app):
    """A CLI runner."""
    return app.test_cli_runner()


@pytest.fixture()
def count_queries(app):
    """Count SQL statements run inside a `with count_queries() as counter:` block."""
    from contextlib import contextmanager

    @contextmanager
    def counting():
        counter = {"n": 0, "statements": []}

        def before(conn, cursor, statement, parameters, context, executemany):
            counter["n"] += 1
            counter["statements"].append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", before)

    return counting


@pytest.fixture(scope="session")
def worker_id(request):
    """xdist worker name, or "master" when not distributed."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


def pytest_configure(config):
    """Register the markers used across the suite."""
    config.addinivalue_line("markers", "postgres_only: needs PostgreSQL (parallel clients)")
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")
    config.addinivalue_line("markers", "celery: starts real celery worker processes")


def pytest_collection_modifyitems(config, items):
    """Skip PostgreSQL-only tests on the SQLite run (the PostgreSQL run executes them)."""
    if TEST_DB == "postgresql":
        return
    skip = pytest.mark.skip(reason="runs in the PostgreSQL pass of the test command")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)

