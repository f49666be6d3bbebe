"""top-ups and credit handed back say how (cash, cheque) and at which distribution

Revision ID: 06fde9681cf2
Revises: e30324cb596d
Create Date: 2026-12-03 10:00:00

ledger_entry: ``method`` ('cash' or 'cheque'), ``cheque_number``, ``cheque_bank`` and ``cycle_id`` (the
distribution whose till the money went into or came out of), all nullable. Top-ups recorded before this
revision keep no method (shown as « non précisé »). Credit handed back wrote its method at the start of its
note (« rendu en espèces : ... », « rendu par chèque n° 123 : ... »): those rows get it back here. No
distribution is guessed for old rows.

Downgrading drops the columns: the method of top-ups and the distribution of every row are lost (the
amounts stay, and the notes of credit handed back still say how).
"""
import sqlalchemy as sa
from alembic import op

revision = "06fde9681cf2"
down_revision = "e30324cb596d"
branch_labels = None
depends_on = None

KNOWN_METHOD = "method IS NULL OR (method IN ('cash', 'cheque') AND kind IN ('topup', 'refund'))"
CHEQUE_WITH_NUMBER = "method IS NULL OR method <> 'cheque' OR cheque_number IS NOT NULL"
#: The note prefixes orders.payments.hand_back_credit wrote (and still writes).
CASH_PREFIX = "rendu en espèces : "
CHEQUE_PREFIX = "rendu par chèque n° "


def _hand_back_method(note: str | None) -> tuple[str, str | None] | None:
    """(method, cheque number) read from a hand-back note, or None when the note says neither."""
    note = note or ""
    if note.startswith(CASH_PREFIX):
        return "cash", None
    if note.startswith(CHEQUE_PREFIX):
        number, separator, _rest = note[len(CHEQUE_PREFIX):].partition(" : ")
        number = number.strip()
        if separator and number and len(number) <= 40:
            return "cheque", number
    return None


def upgrade():
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("method", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("cheque_number", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("cheque_bank", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("cycle_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_ledger_entry_cycle_id"), ["cycle_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_ledger_entry_cycle_id_cycle"), "cycle", ["cycle_id"], ["id"])
        batch_op.create_check_constraint(op.f("ck_ledger_entry_known_method"), KNOWN_METHOD)
        batch_op.create_check_constraint(op.f("ck_ledger_entry_cheque_with_number"), CHEQUE_WITH_NUMBER)

    bind = op.get_bind()
    entry = sa.table("ledger_entry", sa.column("id", sa.Integer), sa.column("kind", sa.String),
                     sa.column("reference", sa.String), sa.column("note", sa.String),
                     sa.column("method", sa.String), sa.column("cheque_number", sa.String))
    rows = bind.execute(
        sa.select(entry.c.id, entry.c.note)
        .where(entry.c.kind == "refund", entry.c.reference.like("handback:%"))
        .order_by(entry.c.id)
    ).all()
    for row in rows:
        found = _hand_back_method(row.note)
        if found is not None:
            method, number = found
            bind.execute(entry.update().where(entry.c.id == row.id).values(method=method, cheque_number=number))


def downgrade():
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ledger_entry_cheque_with_number"), type_="check")
        batch_op.drop_constraint(op.f("ck_ledger_entry_known_method"), type_="check")
        batch_op.drop_constraint(batch_op.f("fk_ledger_entry_cycle_id_cycle"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_ledger_entry_cycle_id"))
        batch_op.drop_column("cycle_id")
        batch_op.drop_column("cheque_bank")
        batch_op.drop_column("cheque_number")
        batch_op.drop_column("method")
