"""Sign in, sign out, password reset, invitations and roles."""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes  # noqa: F401
