"""Error pages in plain French, without stack traces."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, current_app, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("panier")


def _megabytes(size: int | None) -> str:
    """A request limit in whole megabytes, as the 413 page states it ("?" if there is none)."""
    return str(size // (1024 * 1024)) if size else "?"


def _titles() -> dict[int, tuple[str, str]]:
    """Title and explanation for each status, translated at request time."""
    return {
        400: (_("Demande incorrecte"), _("La demande n'a pas pu être comprise. Revenez en arrière et réessayez.")),
        403: (_("Accès refusé"), _("Vous n'avez pas le droit d'ouvrir cette page.")),
        404: (_("Page introuvable"), _("Cette page n'existe pas ou plus.")),
        405: (_("Action impossible"), _("Cette action n'est pas possible ici.")),
        409: (_("Conflit"), _("Cette action entre en conflit avec une autre. Rechargez la page.")),
        413: (_("Fichier trop gros"), _("Le fichier envoyé dépasse %(mb)s Mo et le formulaire n'a pas pu être lu. "
                                         "Revenez à la page précédente, vérifiez ce que vous aviez tapé, choisissez "
                                         "une photo ou un fichier plus léger, puis envoyez à nouveau.",
                                         mb=_megabytes(current_app.config.get("MAX_CONTENT_LENGTH")))),
        429: (_("Trop d'essais"), _("Trop d'essais en peu de temps. Attendez quelques minutes puis réessayez.")),
        500: (_("Erreur du serveur"), _("Un problème est survenu de notre côté. Réessayez dans un moment.")),
    }


def render_error(status: int, message: str | None = None):
    """The error page for a status, with an optional specific message."""
    titles = _titles()
    title, text = titles.get(status, titles[500] if status >= 500 else titles[400])
    return render_template("errors/error.html", status=status, title=title, text=message or text), status


def _has_nul(values) -> bool:
    """True if any submitted value holds a NUL character."""
    return any("\x00" in value for value in values)


def register(app: Flask) -> None:
    """Attach the handlers to the app."""

    @app.before_request
    def refuse_nul_characters():
        """No text field accepts NUL (PostgreSQL cannot store it): refuse such input with a 400 up front."""
        if _has_nul(request.args.values()) or (
            request.method in ("POST", "PUT", "PATCH") and _has_nul(request.form.values())
        ):
            return render_error(400)
        return None

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        """A form sent without its security token (or after too long)."""
        return render_error(400, _("Le formulaire a expiré ou n'est pas valide. Rechargez la page et recommencez."))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """Any 4xx or 5xx raised with abort()."""
        message = error.description if getattr(error, "panier_message", False) else None
        return render_error(error.code or 500, message)

    @app.errorhandler(OverflowError)
    @app.errorhandler(sa.exc.DataError)
    def value_out_of_range(error: Exception):
        """A number no column can hold (a forged id of 20 digits, say): the request is wrong, not the
        server. SQLite's driver raises OverflowError, PostgreSQL a DataError with SQLSTATE 22003. Any other
        DataError (a text too long for its column...) is a missing check of ours: a 500, logged as such."""
        from app.extensions import db

        if isinstance(error, sa.exc.DataError) and getattr(error.orig, "sqlstate", None) != "22003":
            return unexpected_error(error)
        db.session.rollback()
        log.warning("value out of range on %s %s: %s", request.method, request.path, error)
        return render_error(400)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        """Anything else: log it, roll back, show a plain page."""
        from app.extensions import db

        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500)
