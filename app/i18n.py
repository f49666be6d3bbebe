"""Language and time zone of each request: the user's choice, French by default."""
from __future__ import annotations

from flask import current_app, request, session
from flask_login import current_user


def select_locale() -> str:
    """The signed-in user's language, else the one chosen in the session, else French."""
    languages = current_app.config["LANGUAGES"]
    if current_user and current_user.is_authenticated and current_user.locale in languages:
        return current_user.locale
    chosen = session.get("locale") if request else None
    if chosen in languages:
        return chosen
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def select_timezone() -> str:
    """Every page shows the installation's time zone (DEFAULT_TIMEZONE)."""
    return current_app.config["DEFAULT_TIMEZONE"]
