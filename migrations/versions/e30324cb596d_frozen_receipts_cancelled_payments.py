"""receipts frozen when issued and replaced by new numbers; desk payments cancelled, never deleted

Revision ID: e30324cb596d
Revises: 5b2e8c0d7a14
Create Date: 2026-11-29 10:00:00

receipt: ``snapshot`` (JSON) holds everything a receipt prints, frozen when it is issued; an order may
now have several receipts (``revision`` 1, 2, ... with ``replaces_id`` naming the previous one), so the
unique constraint on order_id becomes one on (order_id, revision). Receipts issued before this revision
get a snapshot of their order as it is now, the best that is known: it is self-consistent (the printed
payments add up to the printed amount paid), which the PDFs rebuilt on every view were not.

payment: status 'cancelled' (a desk payment recorded by mistake), with who cancelled it, when and why.
"""
from datetime import timezone
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from alembic import op

import app.db

revision = "e30324cb596d"
down_revision = "5b2e8c0d7a14"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('pending', 'succeeded', 'failed', 'expired', 'refunded', 'flagged')"
NEW_STATUSES = "status IN ('pending', 'succeeded', 'failed', 'expired', 'refunded', 'flagged', 'cancelled')"
CANCELLED_WITH_NOTE = ("status <> 'cancelled' OR (method IN ('cash', 'cheque', 'balance') "
                       "AND cancel_note IS NOT NULL AND cancelled_at IS NOT NULL)")
REVISION_REPLACES = "(revision = 1 AND replaces_id IS NULL) OR (revision > 1 AND replaces_id IS NOT NULL)"


def _line_total(unit_price_cents: int, thousandths: int) -> int:
    """app.money.line_total_cents as of this revision (quantities are stored in thousandths)."""
    exact = Decimal(unit_price_cents) * Decimal(int(thousandths)).scaleb(-3)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _iso(moment) -> str:
    """A stored timestamp as ISO text in UTC (SQLite gives it back without a zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _snapshot(bind, receipt_order_id: int) -> dict:
    """orders.receipts.order_snapshot as of this revision, in plain SQL."""
    order = bind.execute(sa.text(
        'SELECT o.id, o.status, h.name AS household, c.distribution_date FROM "order" o '
        "JOIN household h ON h.id = o.household_id JOIN cycle c ON c.id = o.cycle_id WHERE o.id = :id"
    ).columns(distribution_date=sa.Date), {"id": receipt_order_id}).one()
    confirmed = order.status == "confirmed"
    lines = []
    if confirmed:
        for row in bind.execute(sa.text(
            "SELECT p.name, p.unit, l.quantity, l.quantity_allocated, l.quantity_prepared, l.unit_price_cents, "
            "l.missing FROM order_line l JOIN offer f ON f.id = l.offer_id JOIN product p ON p.id = f.product_id "
            "WHERE l.order_id = :id ORDER BY l.id"
        ), {"id": order.id}):
            charged = next(q for q in (row.quantity_prepared, row.quantity_allocated, row.quantity) if q is not None)
            lines.append({
                "product": row.name, "unit": row.unit, "quantity": str(Decimal(int(charged)).scaleb(-3)),
                "unit_price_cents": row.unit_price_cents, "total_cents": _line_total(row.unit_price_cents, charged),
                "missing": bool(row.missing),
            })
    payments = [
        {"id": p.id, "at": _iso(p.completed_at or p.created_at), "method": p.method, "amount_cents": p.amount_cents,
         "refunded_cents": p.refunded_cents,
         "cheque_number": p.provider_reference if p.method == "cheque" else None,
         "cheque_bank": p.cheque_bank if p.method == "cheque" else None}
        for p in bind.execute(sa.text(
            "SELECT id, method, amount_cents, refunded_cents, provider_reference, cheque_bank, completed_at, created_at "
            "FROM payment WHERE order_id = :id AND status = 'succeeded' ORDER BY completed_at, id"
        ).columns(completed_at=sa.DateTime, created_at=sa.DateTime), {"id": order.id})
    ]
    total = sum(line["total_cents"] for line in lines)
    paid = sum(p["amount_cents"] - p["refunded_cents"] for p in payments)
    day = order.distribution_date
    return {
        "version": 1, "order_id": order.id, "household": order.household,
        "distribution_date": day.isoformat(),
        "order_status": order.status, "lines": lines, "total_cents": total, "payments": payments,
        "paid_cents": paid, "credited_cents": max(0, paid - total) if confirmed else paid,
        "due_cents": max(0, total - paid) if confirmed else 0, "replaces": None,
        # Written by this migration from the order as it was then, not when the receipt was issued.
        "rebuilt_by_migration": revision,
    }


def upgrade():
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", app.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("cancelled_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cancel_note", sa.String(length=300), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_payment_cancelled_by_id_user"), "user", ["cancelled_by_id"], ["id"])
        batch_op.drop_constraint(op.f("ck_payment_known_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payment_known_status"), NEW_STATUSES)
        batch_op.create_check_constraint(op.f("ck_payment_cancelled_desk_payment_with_note"), CANCELLED_WITH_NOTE)

    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("snapshot", sa.JSON(), nullable=True))
        batch_op.drop_constraint(op.f("uq_receipt_order_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_receipt_order_id"), ["order_id"], unique=False)

    bind = op.get_bind()
    receipt = sa.table("receipt", sa.column("id", sa.Integer), sa.column("order_id", sa.Integer),
                       sa.column("revision", sa.Integer), sa.column("snapshot", sa.JSON))
    for row in bind.execute(sa.select(receipt.c.id, receipt.c.order_id).order_by(receipt.c.id)).all():
        bind.execute(receipt.update().where(receipt.c.id == row.id)
                     .values(revision=1, snapshot=_snapshot(bind, row.order_id)))

    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.alter_column("revision", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("snapshot", existing_type=sa.JSON(), nullable=False)
        batch_op.create_foreign_key(batch_op.f("fk_receipt_replaces_id_receipt"), "receipt", ["replaces_id"], ["id"])
        batch_op.create_unique_constraint(batch_op.f("uq_receipt_replaces_id"), ["replaces_id"])
        batch_op.create_unique_constraint(op.f("uq_receipt_order_revision"), ["order_id", "revision"])
        batch_op.create_check_constraint(op.f("ck_receipt_revision_replaces"), REVISION_REPLACES)


def downgrade():
    bind = op.get_bind()
    replaced = bind.execute(sa.text("SELECT count(*) FROM receipt WHERE revision > 1")).scalar_one()
    cancelled = bind.execute(sa.text("SELECT count(*) FROM payment WHERE status = 'cancelled'")).scalar_one()
    if replaced or cancelled:
        # The older schema has no place for them; dropping numbered receipts or cancelled payments
        # would lose money records.
        raise RuntimeError(
            f"cannot downgrade: {replaced} replacement receipts and {cancelled} cancelled payments would be lost"
        )
    with op.batch_alter_table("receipt", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_receipt_revision_replaces"), type_="check")
        batch_op.drop_constraint(op.f("uq_receipt_order_revision"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_receipt_replaces_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_receipt_replaces_id_receipt"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_receipt_order_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_receipt_order_id"), ["order_id"])
        batch_op.drop_column("snapshot")
        batch_op.drop_column("replaces_id")
        batch_op.drop_column("revision")

    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payment_cancelled_desk_payment_with_note"), type_="check")
        batch_op.drop_constraint(op.f("ck_payment_known_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payment_known_status"), OLD_STATUSES)
        batch_op.drop_constraint(batch_op.f("fk_payment_cancelled_by_id_user"), type_="foreignkey")
        batch_op.drop_column("cancel_note")
        batch_op.drop_column("cancelled_by_id")
        batch_op.drop_column("cancelled_at")
