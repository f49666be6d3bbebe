"""The pickup demo rows: the rota of the next distributions, loaded twice without adding anything."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from pickup import demo
from pickup.models import RotaRole, RotaSignup
from tests.factories import UserFactory
from tests.pickup.test_rota import _cycle_in


def test_demo_rota_is_idempotent(app):
    for days in (3, 10, 17):
        _cycle_in(days)
    for n in range(4):
        UserFactory(email=f"benevole{n}@example.org", roles=["volunteer"])
    db.session.commit()
    demo.load()
    db.session.commit()
    roles = db.session.scalar(sa.select(sa.func.count(RotaRole.id)))
    signups = db.session.scalar(sa.select(sa.func.count(RotaSignup.id)))
    assert roles == 12 and signups == 9
    demo.load()
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count(RotaRole.id))) == roles
    assert db.session.scalar(sa.select(sa.func.count(RotaSignup.id))) == signups
    # Counters agree with the rows.
    for role in db.session.scalars(sa.select(RotaRole)):
        assert role.filled == len(role.signups)
