"""Command-line commands: `flask users ...`, `flask demo ...`; packages add their own groups here."""
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


demo_cli = AppGroup("demo", help="Données de démonstration.")


@demo_cli.command("load")
def demo_load() -> None:
    """Load the demo data (idempotent: a second run adds nothing)."""
    from app import demo

    created = demo.load()
    click.echo(f"Données de démonstration prêtes ({created} nouvelles lignes).")


@demo_cli.command("logins")
def demo_logins() -> None:
    """Print the demo accounts and their shared password."""
    from app import demo

    for login in demo.logins():
        click.echo(f"  {login.role:<38} {login.email}")
    click.echo(f"  mot de passe de tous les comptes : {demo.DEMO_PASSWORD}")


def register(app: Flask) -> None:
    """Attach every command group to the app."""
    app.cli.add_command(users_cli)
    app.cli.add_command(demo_cli)
    from workers.cli import cycles_cli, outbox_cli

    app.cli.add_command(cycles_cli)
    app.cli.add_command(outbox_cli)
