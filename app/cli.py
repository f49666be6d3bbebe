"""Command-line commands: `flask users`, `flask demo`, `flask photos`; packages add their own groups here."""
from __future__ import annotations

import click
import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import Flask, current_app
from flask.cli import AppGroup

from app.auth.services import create_coordinator as create_coordinator_account
from app.extensions import db
from app.models import User

users_cli = AppGroup("users", help="Comptes utilisateurs.")


class EmailAddress(click.ParamType):
    """An e-mail address checked as the forms check it (asked again when typed at the prompt)."""

    name = "adresse e-mail"

    def convert(self, value, param, ctx):
        """The address as typed, if it is one."""
        try:
            return validate_email(value.strip(), check_deliverability=False).normalized
        except EmailNotValidError:
            self.fail(f"« {value} » n'est pas une adresse e-mail valide.", param, ctx)


class PersonName(click.ParamType):
    """A name that is not only spaces."""

    name = "nom"

    def convert(self, value, param, ctx):
        """The name without surrounding spaces."""
        if not value.strip():
            self.fail("Indiquez un nom.", param, ctx)
        return value.strip()


def demo_accounts() -> list[str]:
    """Addresses of the demo's published accounts present in the database (app/demo.py)."""
    from app import demo

    emails = {login.email for login in demo.logins()} | {demo.COORDINATOR[1]}
    return list(db.session.scalars(sa.select(User.email).where(User.email.in_(emails)).order_by(User.email)))


@users_cli.command("create-coordinator")
@click.option("--email", type=EmailAddress(), prompt="Adresse e-mail", help="Adresse de connexion.")
@click.option("--name", type=PersonName(), prompt="Nom", help="Nom affiché.")
@click.option("--password", help="Mot de passe (demandé s'il manque ; 10 caractères au moins).")
@click.option("--allow-demo", is_flag=True,
              help="Accepter une base qui contient les comptes de démonstration (jamais en service réel).")
def create_coordinator(email: str, name: str, password: str | None, allow_demo: bool) -> None:
    """Create the first coordinator (or give an existing user the coordinator role)."""
    found = demo_accounts()
    if found and not allow_demo:
        # The demo accounts share a published password: a coordinator added next to them would
        # put a real association on a database anybody can sign in to.
        raise click.ClickException(
            f"Cette base contient des comptes de démonstration (par exemple {found[0]}) dont le mot de "
            "passe est publié : elle ne doit jamais servir pour de vrai. Pour une installation "
            "réelle, partez d'une base neuve (DATABASE_URL ou PANIER_INSTANCE, puis flask db upgrade). "
            "Pour ajouter quand même ce compte à la démonstration : --allow-demo."
        )
    if password is None:
        password = click.prompt("Mot de passe", hide_input=True,
                                confirmation_prompt="Le même mot de passe, encore une fois")
    if len(password) < 10:
        raise click.BadParameter("10 caractères au moins.", param_hint="--password")
    user = create_coordinator_account(email, name, password)
    db.session.commit()
    click.echo(f"Coordinateur·rice prêt·e : {user.email}")


demo_cli = AppGroup("demo", help="Données de démonstration.")


@demo_cli.command("load")
@click.option("--allow-real", is_flag=True,
              help="Charger la démonstration dans une base qui a déjà des comptes réels (jamais en service réel).")
def demo_load(allow_real: bool) -> None:
    """Load the demo data (idempotent: a second run adds nothing)."""
    from app import demo

    if not allow_real and not demo_accounts():
        real = db.session.scalar(sa.select(User.email).order_by(User.id).limit(1))
        if real is not None:
            # The demo's accounts share a published password: loaded here, they would let anybody
            # sign in to a real association's database, as coordinator too.
            raise click.ClickException(
                f"Cette base a déjà des comptes réels (par exemple {real}) : la démonstration y ajouterait "
                "des comptes dont le mot de passe est publié. Chargez-la dans une base à part "
                "(PANIER_INSTANCE ou DATABASE_URL). Pour la charger quand même : --allow-real."
            )
    created = demo.load()
    click.echo(f"Données de démonstration prêtes ({created} nouvelles lignes).")


@demo_cli.command("logins")
def demo_logins() -> None:
    """Print the demo accounts and their shared password."""
    from app import demo

    for login in demo.logins():
        click.echo(f"  {login.role:<38} {login.email}")
    click.echo(f"  mot de passe de tous les comptes : {demo.DEMO_PASSWORD}")


photos_cli = AppGroup("photos", help="Photos des produits.")


@photos_cli.command("clean")
def photos_clean() -> None:
    """Enregistre à nouveau, sans métadonnées (position GPS...), les photos gardées avant leur nettoyage."""
    from producers.services import PhotoLimits, clean_stored_photos

    report = clean_stored_photos(current_app.config["INSTANCE_DIR"], PhotoLimits.from_config(current_app.config))
    click.echo(f"Photos nettoyées : {len(report.cleaned)} ; déjà propres : {report.already_clean}.")
    for name in report.missing:
        click.echo(f"Fichier introuvable : {name}")
    for name in report.unreadable:
        click.echo(f"Photo illisible, laissée telle quelle : {name}")


def register(app: Flask) -> None:
    """Attach every command group to the app."""
    app.cli.add_command(users_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(photos_cli)
    from workers.cli import cycles_cli, outbox_cli

    app.cli.add_command(cycles_cli)
    app.cli.add_command(outbox_cli)
