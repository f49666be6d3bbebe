"""cash and cheque payments say which distribution's till took them

Revision ID: 7c41d2e9a0b3
Revises: 06fde9681cf2
Create Date: 2026-11-22 14:00:00

payment: ``cycle_id``, the distribution whose till took a cash or cheque payment (NULL for card and
balance, and for money received away from a distribution). Until now the till of a distribution
counted the payments of its own orders, wherever they were taken: existing cash and cheque payments
get their order's distribution, so the reports of past distributions read as they did.

Downgrading drops the column: the tills then count payments by their order's distribution again.
"""
import sqlalchemy as sa
from alembic import op

revision = "7c41d2e9a0b3"
down_revision = "06fde9681cf2"
branch_labels = None
depends_on = None

TILL_FOR_CASH_OR_CHEQUE = "cycle_id IS NULL OR method IN ('cash', 'cheque')"


def upgrade():
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cycle_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_payment_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_payment_cycle_id_cycle"), "cycle", ["cycle_id"], ["id"])
        batch_op.create_check_constraint(op.f("ck_payment_till_for_cash_or_cheque"), TILL_FOR_CASH_OR_CHEQUE)

    payment = sa.table("payment", sa.column("order_id", sa.Integer), sa.column("method", sa.String),
                       sa.column("cycle_id", sa.Integer))
    order = sa.table("order", sa.column("id", sa.Integer), sa.column("cycle_id", sa.Integer))
    op.execute(
        payment.update()
        .where(payment.c.method.in_(("cash", "cheque")), payment.c.order_id.is_not(None))
        .values(cycle_id=sa.select(order.c.cycle_id).where(order.c.id == payment.c.order_id).scalar_subquery())
    )


def downgrade():
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_till_for_cash_or_cheque"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_payment_cycle_id_cycle"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_payment_cycle_id"))
        batch_op.drop_column("cycle_id")
