"""AMAP absences are kept by week, so a holiday can be declared before its week's distribution exists

Revision ID: b5e0a7c3d912
Revises: 7c41d2e9a0b3
Create Date: 2026-11-22 15:00:00

contract_absence: ``week`` (the Monday of the week missed) replaces ``cycle_id``. Existing absences get
the week of their distribution (the week it was made for, kept when it was moved: cycle.week, else the
week of its distribution date). A contract with two absences in one week (possible before, when the
week got a second distribution after the first absence) keeps the first one declared.

Downgrading gives each absence back the distribution of its site that carries that week's baskets (the
first one not cancelled, a scheduled one before one added by hand). It is refused while an absence is
declared for a week that has no distribution yet: those would be lost.
"""
from datetime import date, timedelta

import sqlalchemy as sa
from alembic import op

revision = "b5e0a7c3d912"
down_revision = "7c41d2e9a0b3"
branch_labels = None
depends_on = None

absence = sa.table("contract_absence", sa.column("id", sa.Integer), sa.column("contract_id", sa.Integer),
                   sa.column("cycle_id", sa.Integer), sa.column("week", sa.Date))
cycle = sa.table("cycle", sa.column("id", sa.Integer), sa.column("site_id", sa.Integer),
                 sa.column("week", sa.String), sa.column("distribution_date", sa.Date),
                 sa.column("schedule_id", sa.Integer), sa.column("status", sa.String))
contract = sa.table("contract", sa.column("id", sa.Integer), sa.column("contract_offer_id", sa.Integer))
offer = sa.table("contract_offer", sa.column("id", sa.Integer), sa.column("site_id", sa.Integer))


def _monday(made_for: str | None, day: date) -> date:
    """The week a cycle belongs to, as orders.contracts.cycle_monday says (at this revision)."""
    if made_for:
        try:
            year, week = made_for.split("-W")
            return date.fromisocalendar(int(year), int(week), 1)
        except ValueError:
            pass
    return day - timedelta(days=day.weekday())


def upgrade():
    with op.batch_alter_table("contract_absence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("week", sa.Date(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(absence.c.id, cycle.c.week, cycle.c.distribution_date)
        .join(cycle, cycle.c.id == absence.c.cycle_id).order_by(absence.c.id)
    ).all()
    for absence_id, made_for, day in rows:
        bind.execute(absence.update().where(absence.c.id == absence_id).values(week=_monday(made_for, day)))
    seen = set()
    for absence_id, contract_id, week in bind.execute(
            sa.select(absence.c.id, absence.c.contract_id, absence.c.week).order_by(absence.c.id)).all():
        if (contract_id, week) in seen:
            bind.execute(absence.delete().where(absence.c.id == absence_id))
        seen.add((contract_id, week))
    with op.batch_alter_table("contract_absence", schema=None) as batch_op:
        batch_op.alter_column("week", existing_type=sa.Date(), nullable=False)
        batch_op.drop_constraint("uq_contract_absence_contract_cycle", type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_contract_absence_cycle_id_cycle"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_contract_absence_cycle_id"))
        batch_op.drop_column("cycle_id")
        batch_op.create_unique_constraint("uq_contract_absence_contract_week", ["contract_id", "week"])
        batch_op.create_index(batch_op.f("ix_contract_absence_week"), ["week"], unique=False)


def downgrade():
    with op.batch_alter_table("contract_absence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cycle_id", sa.Integer(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(absence.c.id, absence.c.week, offer.c.site_id)
        .join(contract, contract.c.id == absence.c.contract_id)
        .join(offer, offer.c.id == contract.c.contract_offer_id).order_by(absence.c.id)
    ).all()
    for absence_id, week, site_id in rows:
        candidates = bind.execute(
            sa.select(cycle.c.id, cycle.c.week, cycle.c.distribution_date, cycle.c.schedule_id)
            .where(cycle.c.site_id == site_id, cycle.c.status != "cancelled",
                   cycle.c.distribution_date.between(week - timedelta(days=14), week + timedelta(days=20)))
        ).all()
        chosen = sorted((c for c in candidates if _monday(c.week, c.distribution_date) == week),
                        key=lambda c: (c.schedule_id is None, c.distribution_date, c.id))
        if not chosen:
            raise RuntimeError(f"absence {absence_id}: no distribution in the week of {week} yet; "
                               "delete the absences declared ahead before downgrading")
        bind.execute(absence.update().where(absence.c.id == absence_id).values(cycle_id=chosen[0].id))
    with op.batch_alter_table("contract_absence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contract_absence_week"))
        batch_op.drop_constraint("uq_contract_absence_contract_week", type_="unique")
        batch_op.drop_column("week")
        batch_op.alter_column("cycle_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f("fk_contract_absence_cycle_id_cycle"), "cycle", ["cycle_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_contract_absence_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_unique_constraint("uq_contract_absence_contract_cycle", ["contract_id", "cycle_id"])
