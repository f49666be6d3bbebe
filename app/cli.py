"""Command-line commands: `flask users ...`; packages add their own groups here."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from app.auth.services import create_coordinator as create_coordinator_account
from app.extensions import db

users_cli = AppGroup("users", help="Comptes utilisateurs.")


@users_cli.command("create-coordinator")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.password_option()
def create_coordinator(email: str, name: str, password: str) -> None:
    """Create the first coordinator (or give an existing user the coordinator role)."""
    if len(password) < 10:
        raise click.BadParameter("10 caractères au moins.", param_hint="password")
    user = create_coordinator_account(email, name, password)
    db.session.commit()
    click.echo(f"Coordinateur·rice prêt·e : {user.email}")


def register(app: Flask) -> None:
    """Attach every command group to the app."""
    app.cli.add_command(users_cli)
    from workers.cli import cycles_cli, outbox_cli

    app.cli.add_command(cycles_cli)
    app.cli.add_command(outbox_cli)
