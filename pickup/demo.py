"""Demo rows of the pickup package: rota roles of the next distributions with some sign-ups."""
from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import User, UserRole
from pickup import services
from pickup.models import RotaSignup

#: For each of the next distributions, how many volunteers the demo signs up per role;
#: some roles stay short so the "il manque" badges and the alert have something to show.
DEMO_SIGNUPS = (
    {"setup": 2, "preparation": 2, "desk": 1, "closing": 0},
    {"setup": 1, "preparation": 1, "desk": 0, "closing": 1},
    {"setup": 0, "preparation": 1, "desk": 0, "closing": 0},
)


def load() -> None:
    """Create the rota of the next distributions and sign a few volunteers up (idempotent)."""
    volunteers = list(db.session.scalars(
        sa.select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "volunteer", User.active.is_(True))
        .order_by(User.email)
    ).unique())
    if not volunteers:
        return
    for index, (cycle, roles) in enumerate(services.rota_overview(limit=len(DEMO_SIGNUPS))):
        plan = DEMO_SIGNUPS[index]
        turn = index
        for role in roles:
            for _n in range(min(plan[role.role], role.needed)):
                user = volunteers[turn % len(volunteers)]
                turn += 1
                exists = db.session.scalar(
                    sa.select(RotaSignup.id).where(RotaSignup.rota_role_id == role.id, RotaSignup.user_id == user.id)
                )
                if exists is None and role.filled < role.needed:
                    services.sign_up(role.id, user.id)
        db.session.flush()
