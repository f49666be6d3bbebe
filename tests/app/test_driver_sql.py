"""Statements replayed on the driver's cursor give what Connection.execute gives (app.driver_sql)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.db import Quantity, UTCDateTime, utcnow
from app.driver_sql import DriverStatement
from app.extensions import db

METADATA = sa.MetaData()
THING = sa.Table(
    "driver_sql_thing", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(20), nullable=False, unique=True),
    sa.Column("amount", Quantity, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=True),
    sa.Column("done", sa.Boolean, nullable=False),
    sa.Column("touched_at", UTCDateTime, nullable=True, onupdate=utcnow),
)
SEEN = datetime(2026, 3, 29, 0, 59, 30, 123456, tzinfo=timezone.utc)


@pytest.fixture()
def things(app):
    """Three rows in a table of their own, dropped afterwards."""
    METADATA.create_all(db.engine)
    db.session.execute(THING.insert(), [
        {"id": 1, "name": "pommes", "amount": Decimal("2.5"), "seen_at": SEEN, "done": True},
        {"id": 2, "name": "poires", "amount": Decimal("0.125"), "seen_at": None, "done": False},
        {"id": 3, "name": "coings", "amount": Decimal("12"), "seen_at": SEEN, "done": False},
    ])
    db.session.commit()
    yield
    db.session.rollback()
    METADATA.drop_all(db.engine)


BY_IDS = sa.select(THING.c.id, THING.c.name, THING.c.amount, THING.c.seen_at, THING.c.done).where(
    THING.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(THING.c.id)


def test_rows_come_back_as_connection_execute_gives_them(things):
    conn = db.session.connection()
    expected = [tuple(row) for row in conn.execute(BY_IDS, {"ids": [1, 2, 3]})]
    rows = DriverStatement(BY_IDS, expanding="ids").all(conn, {"ids": [1, 2, 3]})
    assert [tuple(row) for row in rows] == expected
    assert rows[0].amount == Decimal("2.500") and rows[0].seen_at == SEEN and rows[0].done is True
    assert rows[1].seen_at is None and rows[1].done is False


def test_the_in_list_may_change_length_between_calls(things):
    conn = db.session.connection()
    statement = DriverStatement(BY_IDS, expanding="ids")
    assert [row.name for row in statement.all(conn, {"ids": [3]})] == ["coings"]
    assert [row.name for row in statement.all(conn, {"ids": [3, 1, 99]})] == ["pommes", "coings"]
    assert [row.name for row in statement.all(conn, {"ids": [2]})] == ["poires"]


def test_values_bound_inside_the_statement_are_sent(things):
    first_done = DriverStatement(sa.select(THING.c.name).where(THING.c.done.is_(False))
                                 .order_by(THING.c.id.desc()).limit(1))
    assert first_done.first(db.session.connection(), {}).name == "coings"
    nothing = DriverStatement(sa.select(THING.c.name).where(THING.c.id == sa.bindparam("b_id")))
    assert nothing.first(db.session.connection(), {"b_id": 42}) is None


def test_writes_convert_values_and_count_the_rows_they_matched(things):
    conn = db.session.connection()
    update = DriverStatement(sa.update(THING).where(THING.c.id == sa.bindparam("b_id")).values(
        amount=sa.bindparam("b_amount", type_=Quantity), seen_at=sa.bindparam("b_seen", type_=UTCDateTime),
        touched_at=sa.bindparam("b_seen", type_=UTCDateTime)))
    later = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)
    matched = update.run_many(conn, [{"b_id": 1, "b_amount": Decimal("0.001"), "b_seen": later},
                                     {"b_id": 99, "b_amount": Decimal("1"), "b_seen": later},
                                     {"b_id": 3, "b_amount": Decimal("7.25"), "b_seen": later}])
    assert matched == 2
    assert update.run(conn, {"b_id": 2, "b_amount": Decimal("3"), "b_seen": later}) == 1
    rows = conn.execute(sa.select(THING.c.amount, THING.c.seen_at).order_by(THING.c.id)).all()
    assert rows == [(Decimal("0.001"), later), (Decimal("3.000"), later), (Decimal("7.250"), later)]


def test_a_driver_error_comes_out_as_sqlalchemys_and_the_transaction_rolls_back(things):
    rename = DriverStatement(sa.update(THING).where(THING.c.id == sa.bindparam("b_id"))
                             .values(name=sa.bindparam("b_name"), touched_at=sa.bindparam("b_at")))
    with pytest.raises(sa.exc.IntegrityError):
        rename.run(db.session.connection(), {"b_id": 2, "b_name": "pommes", "b_at": SEEN})
    db.session.rollback()
    assert db.session.scalar(sa.select(THING.c.name).where(THING.c.id == 2)) == "poires"


def test_a_statement_that_needs_python_defaults_is_refused(things):
    forgetful = DriverStatement(sa.update(THING).where(THING.c.id == 1).values(done=False))
    with pytest.raises(ValueError, match="Python-side column defaults"):
        forgetful.run(db.session.connection(), {})


def test_query_counters_see_the_statements(things, count_queries):
    statement = DriverStatement(BY_IDS, expanding="ids")
    with count_queries() as counter:
        statement.all(db.session.connection(), {"ids": [1, 2]})
    assert counter["n"] == 1 and "driver_sql_thing" in counter["statements"][0]


def test_a_repeated_value_a_literal_percent_and_many_values_keep_their_places(things):
    """PostgreSQL gets $1, $2... placeholders (psycopg's RawCursor): each value must land where it belongs."""
    conn = db.session.connection()
    low = sa.bindparam("low", type_=sa.Integer)
    window = sa.select(THING.c.name).where(
        THING.c.name.like(sa.literal_column("'%o%'")), THING.c.id >= low, THING.c.id < low + 2,
        THING.c.name != sa.bindparam("not_this")).order_by(THING.c.id)
    values = {"low": 1, "not_this": "pommes"}
    expected = [row.name for row in conn.execute(window, values)]
    assert expected == ["poires"]
    assert [row.name for row in DriverStatement(window).all(conn, values)] == expected
    # More than 50 values, where psycopg's own cursor stops caching its parsing of the query.
    ids = [3, *range(100, 160), 1]
    assert [row.name for row in DriverStatement(BY_IDS, expanding="ids").all(conn, {"ids": ids})] == [
        "pommes", "coings"]


def test_a_batch_write_runs_as_one_statement_on_postgresql_with_the_same_result(things, count_queries):
    """postgresql_many: one statement over arrays (None and Decimal values converted as per row) on psycopg;
    elsewhere the driver's executemany, one statement per row. Both write the same and count the rows matched."""
    conn = db.session.connection()
    update = DriverStatement(
        sa.update(THING).where(THING.c.id == sa.bindparam("b_id")).values(
            amount=sa.bindparam("b_amount", type_=Quantity),
            seen_at=sa.func.coalesce(sa.bindparam("b_seen", type_=UTCDateTime), THING.c.seen_at),
            touched_at=sa.bindparam("b_seen", type_=UTCDateTime)),
        postgresql_many=("UPDATE driver_sql_thing SET amount = d.amount, seen_at = coalesce(d.seen, seen_at),"
                         " touched_at = d.seen FROM unnest({b_id}::integer[], {b_amount}::bigint[],"
                         " {b_seen}::timestamptz[]) AS d (id, amount, seen) WHERE driver_sql_thing.id = d.id"))
    later = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)
    rows = [{"b_id": 3, "b_amount": Decimal("7.25"), "b_seen": None},
            {"b_id": 99, "b_amount": Decimal("1"), "b_seen": later},
            {"b_id": 2, "b_amount": Decimal("0.001"), "b_seen": later}]
    with count_queries() as counter:
        matched = update.run_many(conn, rows)
    assert matched == 2
    on_postgresql = conn.dialect.name == "postgresql"
    assert counter["n"] == 1
    assert ("unnest" in counter["statements"][0]) is on_postgresql
    assert update.run_many(conn, [{"b_id": 1, "b_amount": Decimal("4"), "b_seen": None}]) == 1  # all None
    rows = conn.execute(sa.select(THING.c.amount, THING.c.seen_at).order_by(THING.c.id)).all()
    assert rows == [(Decimal("4.000"), SEEN), (Decimal("0.001"), later), (Decimal("7.250"), SEEN)]
