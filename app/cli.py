"""Command-line commands: `flask users ...`; packages add their own groups here."""
from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from app.auth.services import normalize_email
from app.extensions import db
from app.models import User

users_cli = AppGroup("users", help="Comptes utilisateurs.")


@users_cli.command("create-coordinator")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.password_option()
def create_coordinator(email: str, name: str, password: str) -> None:
    """Create the first coordinator (or give an existing user the coordinator role)."""
    email = normalize_email(email)
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name)
        db.session.add(user)
    user.set_password(password)
    user.set_roles(user.roles | {"coordinator"})
    db.session.commit()
    click.echo(f"Coordinateur·rice prêt·e : {email}")


def register(app: Flask) -> None:
    """Attach every command group to the app."""
    app.cli.add_command(users_cli)
