"""product names unique per producer whatever their case and spaces, in the database

Revision ID: 5b2e8c0d7a14
Revises: 041d1d8bf67c
Create Date: 2026-11-22 09:00:00

The service already refused "riz" beside "Riz"; two saves at the same moment could still write both.
product.name_key holds the normalised name and carries the unique constraint instead of the name.
"""
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "5b2e8c0d7a14"
down_revision = "041d1d8bf67c"
branch_labels = None
depends_on = None


def _key(name: str) -> str:
    """producers.models.name_key as of this revision (a migration keeps its own copy)."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def upgrade():
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=120), nullable=True))
    product = sa.table("product", sa.column("id", sa.Integer), sa.column("producer_id", sa.Integer),
                       sa.column("name", sa.String), sa.column("name_key", sa.String))
    bind = op.get_bind()
    taken: set[tuple[int, str]] = set()
    for row in bind.execute(sa.select(product.c.id, product.c.producer_id, product.c.name).order_by(product.c.id)):
        key = _key(row.name)
        if (row.producer_id, key) in taken:
            # Two names that only differ by case, written before this revision: both stay, told apart by id.
            key = f"{key[:100]} #{row.id}"
        taken.add((row.producer_id, key))
        bind.execute(product.update().where(product.c.id == row.id).values(name_key=key))
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=120), nullable=False)
        batch_op.drop_constraint("uq_product_producer_name", type_="unique")
        batch_op.create_unique_constraint("uq_product_producer_name_key", ["producer_id", "name_key"])


def downgrade():
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_constraint("uq_product_producer_name_key", type_="unique")
        batch_op.create_unique_constraint("uq_product_producer_name", ["producer_id", "name"])
        batch_op.drop_column("name_key")
