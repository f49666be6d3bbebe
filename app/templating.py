"""Jinja filters and globals: money, quantities, local dates, role-aware navigation."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from flask import Flask, current_app, url_for
from flask_babel import format_date, format_datetime, get_locale, to_user_timezone
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.routing import BuildError

from app.money import cents_to_input, format_cents


def money(cents: int | None) -> str:
    """Cents as euros in the current language."""
    locale = str(get_locale() or "fr")
    return format_cents(cents, "fr_FR" if locale.startswith("fr") else "en_GB")


def quantity(value: Decimal | None) -> str:
    """A quantity without trailing zeros, with a French decimal comma."""
    if value is None:
        return ""
    text = format(Decimal(value).normalize(), "f")
    if str(get_locale() or "fr").startswith("fr"):
        text = text.replace(".", ",")
    return text


def _first_of_month(fmt: str, day: int) -> str:
    """The pattern with « 1er » for the first of a month in French ("jeudi 1er avril"), which CLDR does not do."""
    if day != 1 or not str(get_locale() or "fr").startswith("fr"):
        return fmt
    # Quoted parts of a pattern are literal text; only the day-of-month field outside them is touched,
    # and only beside a month in words (« 1er avril », never « 1er/4 »).
    parts = re.split(r"('[^']*')", fmt)
    if not any(re.search("MMM|LLL", part) for part in parts[::2]):
        return fmt
    return "".join(part if index % 2 else re.sub(r"(?<!d)d(?!d)", "d'er'", part) for index, part in enumerate(parts))


def local_datetime(moment: datetime | None, fmt: str = "EEEE d MMMM HH:mm") -> str:
    """A UTC datetime shown in the site's zone."""
    if not moment:
        return ""
    return format_datetime(moment, _first_of_month(fmt, to_user_timezone(moment).day))


def local_time(moment: datetime | None) -> str:
    """Only the local hour and minutes."""
    return format_datetime(moment, "HH:mm") if moment else ""


def local_date(day: date | None, fmt: str = "EEEE d MMMM") -> str:
    """A date in words."""
    return format_date(day, _first_of_month(fmt, day.day)) if day else ""


def nav_url(endpoint: str, **values) -> str | None:
    """The URL of an endpoint, or None while that page does not exist yet."""
    if endpoint not in current_app.view_functions:
        return None
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


#: The menu: (roles that see it, endpoint, label). Entries whose page does not exist are hidden.
NAVIGATION = (
    (("member",), "orders.cart", _l("Ma commande")),
    (("member",), "orders.history", _l("Mes commandes")),
    (("member",), "orders.contracts", _l("Contrats AMAP")),
    (("member",), "orders.account", _l("Mon solde")),
    (("producer",), "producers.catalogue", _l("Mon catalogue")),
    (("producer",), "producers.demand", _l("Demande en cours")),
    (("producer",), "orders.contract_producer", _l("Mes contrats AMAP")),
    (("volunteer",), "orders.assist", _l("Commande pour un foyer")),
    (("volunteer",), "pickup.prepare", _l("Préparation")),
    (("volunteer",), "pickup.desk", _l("Accueil des foyers")),
    (("volunteer",), "pickup.rota", _l("Permanences")),
    (("volunteer",), "orders.contract_admin", _l("Inscriptions AMAP")),
    (("producer", "volunteer"), "orders.documents", _l("Documents")),
    (("coordinator",), "orders.cycles", _l("Cycles")),
    (("coordinator",), "producers.admin_producers", _l("Producteurs")),
    (("coordinator",), "auth.users", _l("Comptes")),
    (("coordinator",), "orders.money", _l("Argent")),
    (("coordinator",), "orders.outbox", _l("Courriels")),
)


def _acts_as(role: str) -> bool:
    """Whether the signed-in user holds a role and what it needs: a household for a member, a producer
    for a producer (an entry shared by producers and volunteers stays for a volunteer)."""
    if not current_user.has_role(role):
        return False
    if role == "member":
        return bool(current_user.household_id)
    if role == "producer":
        return bool(current_user.producer_id)
    return True


def navigation() -> list[tuple[str, str]]:
    """Menu entries (url, label) for the signed-in user's roles."""
    if not current_user.is_authenticated:
        return []
    items = []
    for roles, endpoint, label in NAVIGATION:
        if not any(_acts_as(role) for role in roles):
            continue
        url = nav_url(endpoint)
        if url:
            items.append((url, str(label)))
    return items


def register(app: Flask) -> None:
    """Install filters and globals."""
    app.add_template_filter(money, "money")
    app.add_template_filter(quantity, "qty")
    app.add_template_filter(cents_to_input, "cents_input")
    app.add_template_filter(local_datetime, "local_datetime")
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(local_date, "local_date")
    app.add_template_global(nav_url)
    app.add_template_global(get_locale)
    app.add_template_global(navigation)
