"""Who is signed in: a read-only snapshot of the account, loaded with one query per request.

Flask-Login calls `load_user` on every request that reads `current_user`. Loading the ORM User
(and its roles) cost a fifth of a saved order; the pages only read a few columns and the roles.
Pages that change an account load the User model themselves (app.auth.routes, the user admin).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

import sqlalchemy as sa
from flask_login import UserMixin

from app.db_setup import read_connection
from app.driver_sql import DriverStatement
from app.models import RoleHolder, User, UserRole, login_id

_SIGNED_IN = DriverStatement(
    sa.select(User.id, User.email, User.name, User.household_id, User.producer_id, User.locale, User.password_hash,
              UserRole.role)
    .outerjoin(UserRole, UserRole.user_id == User.id)
    .where(User.id == sa.bindparam("user_id"), User.active.is_(True))
)


@dataclass(frozen=True, eq=False)
class SignedInUser(RoleHolder, UserMixin):
    """The signed-in account as read at the start of the request; `current_user` is one of these."""

    id: int
    email: str
    name: str
    household_id: int | None
    producer_id: int | None
    locale: str
    roles: frozenset[str]
    login_id: str  # app.models.login_id

    #: Only active accounts are loaded (the query filters on it).
    is_active = True

    def get_id(self) -> str:
        """What the session keeps (the same as User.get_id)."""
        return self.login_id


def load_user(session_id: str) -> SignedInUser | None:
    """Flask-Login's loader: the active account the session names, or None (which signs the visitor
    out), also when its password changed since the session signed in (app.models.login_id)."""
    user_id = session_id.partition(".")[0]
    if not user_id.isdigit() or len(user_id) > 9:
        return None
    with read_connection() as conn:
        rows = _SIGNED_IN.all(conn, {"user_id": int(user_id)})
    if not rows:
        return None
    first = rows[0]
    current = login_id(first.id, first.password_hash)
    if not hmac.compare_digest(current, session_id):
        return None
    return SignedInUser(first.id, first.email, first.name, first.household_id, first.producer_id, first.locale,
                        frozenset(row.role for row in rows if row.role is not None), current)
