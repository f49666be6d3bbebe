"""`flask cycles ...` and `flask outbox ...`: the close pipeline and the mail queue by hand."""
from __future__ import annotations

import logging

import click
from flask.cli import AppGroup

from app.extensions import db

cycles_cli = AppGroup("cycles", help="Fermeture et finalisation des cycles.")
outbox_cli = AppGroup("outbox", help="Courriels en attente.")
log = logging.getLogger("panier.close")


@cycles_cli.command("close")
@click.argument("cycle_id")
@click.option("--force", is_flag=True, help="Fermer même avant la date limite.")
@click.option("--finalize/--no-finalize", default=True, help="Finaliser tout de suite (par défaut).")
def close_command(cycle_id: str, force: bool, finalize: bool) -> None:
    """Close a cycle past its deadline (or before it with --force), then finalize it here."""
    from orders import close

    try:
        cycle = close.load_cycle(cycle_id)
    except close.FinalizeError as exc:
        raise click.ClickException(str(exc)) from None
    if cycle.status == "open":
        if not close.close_cycle(cycle.id, force=force):
            raise click.ClickException(
                f"Le cycle n°{cycle.id} n'a pas encore atteint sa date limite : utilisez --force pour le fermer.")
        db.session.commit()
        click.echo(f"Cycle n°{cycle.id} fermé.")
    elif cycle.status != "closed":
        click.echo(f"Cycle n°{cycle.id} déjà {cycle.status}.")
        return
    if finalize:
        _finalize(cycle.id, queue=False)


@cycles_cli.command("finalize")
@click.argument("cycle_id")
@click.option("--queue", is_flag=True, help="Confier les documents aux workers au lieu de les faire ici.")
def finalize_command(cycle_id: str, queue: bool) -> None:
    """Run or resume the finalize pipeline of a closed cycle."""
    _finalize(cycle_id, queue=queue)


def _finalize(cycle_id, *, queue: bool) -> None:
    """Finalize and report in French; a refusal or failure exits with status 1."""
    from orders import close

    try:
        close.reprocess(cycle_id)
        db.session.commit()
        result = close.finalize_cycle(cycle_id, inline=not queue)
    except close.FinalizeError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the error is stored on the cycle and shown; exit non-zero
        raise click.ClickException(f"Échec de la finalisation du cycle n°{cycle_id} : {exc}") from None
    for note in result.notes:
        click.echo(f"- {note}")
    if result.status == "finalized":
        click.echo(f"Cycle n°{result.cycle_id} finalisé ({result.chunks_total} documents).")
    else:
        click.echo(f"Cycle n°{result.cycle_id} : {result.enqueued} documents confiés aux workers.")


@cycles_cli.command("close-due")
def close_due_command() -> None:
    """Close every cycle past its deadline (what beat does every minute) and finalize them here."""
    from orders import close

    closed = close.close_due_cycles()
    db.session.commit()
    click.echo(f"{len(closed)} cycle(s) fermé(s).")
    for cycle_id in closed:
        _finalize(cycle_id, queue=False)


@outbox_cli.command("send")
@click.option("--limit", type=int, default=None)
def send_command(limit: int | None) -> None:
    """Send the pending e-mails now."""
    from app.outbox import deliver_pending

    click.echo(f"{deliver_pending(limit)} courriel(s) envoyé(s).")
