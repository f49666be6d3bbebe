"""Demo rows of the producers package: which producers may see household names."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from producers.models import Producer


def load() -> None:
    """Let the farmers see household names in their demand (the market traders do not); idempotent."""
    db.session.execute(sa.update(Producer).where(Producer.kind == "farmer", Producer.show_household_names.is_(False))
                       .values(show_household_names=True))
    db.session.flush()
