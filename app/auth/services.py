"""Account operations: authentication, password reset and invitation links, users and households."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale, ngettext
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from app.db import utcnow
from app.extensions import db
from app.models import ROLES, Household, PriceTier, User

#: Salts keep a reset link from being usable as an invitation link and the other way round.
RESET_SALT = "panier-password-reset"
INVITE_SALT = "panier-invitation"
#: An invitation stays valid for a week: people do not always read their mail the same day.
DEFAULT_INVITATION_MAX_AGE = 7 * 24 * 3600


class AccountError(ValueError):
    """A refused account operation, with a French message for the form."""


class SameName(AccountError):
    """Another household already has this name."""


@dataclass
class LinkCheck:
    """The user a link was made for, or why it is refused ("expired" or "invalid")."""

    user: User | None
    problem: str | None = None


def normalize_email(email: str) -> str:
    """E-mail addresses compare case-insensitively and without surrounding spaces."""
    return (email or "").strip().lower()


def authenticate(email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None (same answer for both mistakes)."""
    user = db.session.scalar(sa.select(User).where(User.email == normalize_email(email)))
    if user is None:
        # Hash anyway, so an unknown address takes as long as a wrong password (no enumeration by timing).
        check_password_hash(_dummy_hash(), password)
        return None
    if not user.active or not user.check_password(password):
        return None
    user.last_login_at = utcnow()
    return user


@cache
def _dummy_hash() -> str:
    """A hash of nothing anybody types, made once per process with the default method."""
    return generate_password_hash(secrets.token_hex(16))


def _password_fingerprint(user: User) -> str:
    """A short digest of the stored hash: changing the password kills every earlier link."""
    return hashlib.sha256((user.password_hash or "no-password").encode()).hexdigest()[:16]


def _serializer(salt: str) -> URLSafeTimedSerializer:
    """Signs link payloads with the app's secret key."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def make_link_token(user: User, purpose: str = "reset") -> str:
    """A signed token naming the user and a fingerprint of their current password."""
    salt = INVITE_SALT if purpose == "invite" else RESET_SALT
    # The nonce makes every link (and so every outbox key) distinct, even within one second.
    return _serializer(salt).dumps({"id": user.id, "fp": _password_fingerprint(user), "n": secrets.token_hex(4)})


def check_link_token(token: str, purpose: str = "reset") -> LinkCheck:
    """The user of a valid, unexpired, unused link; otherwise why it is refused."""
    if purpose == "invite":
        salt = INVITE_SALT
        max_age = current_app.config.get("INVITATION_MAX_AGE", DEFAULT_INVITATION_MAX_AGE)
    else:
        salt = RESET_SALT
        max_age = current_app.config["PASSWORD_RESET_MAX_AGE"]
    try:
        data = _serializer(salt).loads(token, max_age=max_age)
    except SignatureExpired:
        return LinkCheck(None, "expired")
    except BadSignature:
        return LinkCheck(None, "invalid")
    if not isinstance(data, dict):
        return LinkCheck(None, "invalid")
    user = db.session.get(User, data.get("id"))
    if user is None or not user.active or data.get("fp") != _password_fingerprint(user):
        # A changed password means the link was already used (or superseded).
        return LinkCheck(None, "invalid")
    return LinkCheck(user)


def set_password_with_token(token: str, password: str, purpose: str = "reset") -> LinkCheck:
    """Set a new password through a link; the guarded UPDATE makes the link work only once."""
    check = check_link_token(token, purpose)
    if check.user is None:
        return check
    user = check.user
    old_hash = user.password_hash
    condition = User.password_hash.is_(None) if old_hash is None else User.password_hash == old_hash
    result = db.session.execute(
        sa.update(User)
        .where(User.id == user.id, condition)
        .values(password_hash=generate_password_hash(password))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return LinkCheck(None, "invalid")
    db.session.refresh(user)
    return LinkCheck(user)


def _mail(user: User, key: str, subject: str, body: str, kind: str) -> None:
    """Queue one mail through the outbox (the caller commits, then requests delivery)."""
    from app.outbox import queue_message

    queue_message(key, user.email, subject, body, kind=kind)


def request_password_reset(email: str, link_for: Callable[[str], str]) -> bool:
    """Mail a reset link to an active account with this address; False (silently) otherwise."""
    user = db.session.scalar(sa.select(User).where(User.email == normalize_email(email)))
    if user is None or not user.active:
        return False
    token = make_link_token(user, "reset")
    hours = max(1, current_app.config["PASSWORD_RESET_MAX_AGE"] // 3600)
    with force_locale(user.locale or "fr"):
        subject = _("%(site)s : choisir un nouveau mot de passe", site=current_app.config["SITE_NAME"])
        body = _(
            "Bonjour %(name)s,\n\n"
            "Pour choisir un nouveau mot de passe, ouvrez ce lien :\n%(link)s\n\n"
            "Le lien marche une seule fois, pendant %(duration)s.\n"
            "Si vous n'avez rien demandé, ignorez ce message : votre mot de passe ne change pas.\n",
            name=user.name, link=link_for(token), duration=ngettext("%(num)d heure", "%(num)d heures", hours),
        )
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    _mail(user, f"password-reset:user:{user.id}:{digest}", subject, body, "password_reset")
    return True


def _check_roles(roles: list[str]) -> set[str]:
    """At least one role, and only known ones."""
    wanted = set(roles or [])
    if not wanted:
        raise AccountError(_("Choisissez au moins un rôle."))
    if not wanted <= set(ROLES):
        raise AccountError(_("Rôle inconnu."))
    return wanted


def _check_links(household_id: int | None, producer_id: int | None, roles: set[str]) -> None:
    """The household and producer must exist, and the roles that work through them need them."""
    from producers.models import Producer

    if "member" in roles and not household_id:
        raise AccountError(_("Un compte « membre » commande pour un foyer : choisissez son foyer."))
    if "producer" in roles and not producer_id:
        raise AccountError(_("Un compte « producteur » tient le catalogue d'un producteur : choisissez lequel."))
    if household_id and db.session.get(Household, household_id) is None:
        raise AccountError(_("Ce foyer n'existe pas."))
    if producer_id and db.session.get(Producer, producer_id) is None:
        raise AccountError(_("Ce producteur n'existe pas."))


def invite_user(
    name: str,
    email: str,
    roles: list[str],
    household_id: int | None,
    producer_id: int | None,
    link_for: Callable[[str], str],
    locale: str = "fr",
) -> User:
    """Create an account without password and mail it a link to choose one."""
    email = normalize_email(email)
    if db.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise AccountError(_("Un compte existe déjà avec cette adresse e-mail."))
    wanted = _check_roles(roles)
    _check_links(household_id, producer_id, wanted)
    user = User(email=email, name=name.strip(), household_id=household_id or None,
                producer_id=producer_id or None, locale=locale, active=True)
    user.set_roles(wanted)
    db.session.add(user)
    db.session.flush()
    send_invitation(user.id, link_for)
    return user


def send_invitation(user_id: int, link_for: Callable[[str], str]) -> User:
    """Mail (again) a link to choose a first password; only for accounts that have none yet."""
    user = db.session.get(User, user_id)
    if user is None:
        raise LookupError(user_id)
    if user.password_hash is not None:
        raise AccountError(_("Cette personne a déjà choisi son mot de passe."))
    token = make_link_token(user, "invite")
    site, association = current_app.config["SITE_NAME"], current_app.config["ASSOCIATION_NAME"]
    with force_locale(user.locale or "fr"):
        subject = _("Bienvenue sur %(site)s", site=site)
        body = _(
            "Bonjour %(name)s,\n\n"
            "Un compte vient d'être ouvert pour vous sur %(site)s, les commandes groupées "
            "de l'association %(association)s.\n"
            "Pour choisir votre mot de passe, ouvrez ce lien :\n%(link)s\n\n"
            "Ensuite, connectez-vous avec votre adresse %(email)s.\n",
            name=user.name, site=site, association=association, link=link_for(token), email=user.email,
        )
    # One outbox key per link, so a resent invitation is a new message (the old link still works).
    digest = hashlib.sha256(token.encode()).hexdigest()[:16]
    _mail(user, f"invitation:user:{user.id}:{digest}", subject, body, "invitation")
    return user


def update_user(
    user_id: int,
    *,
    name: str,
    roles: list[str],
    household_id: int | None,
    producer_id: int | None,
    active: bool,
    acting_user_id: int,
) -> User:
    """Change a user's name, roles, household, producer and whether the account is open."""
    user = db.session.get(User, user_id)
    if user is None:
        raise LookupError(user_id)
    wanted = _check_roles(roles)
    _check_links(household_id, producer_id, wanted)
    if user.id == acting_user_id and ("coordinator" not in wanted or not active):
        # A coordinator locking themselves out could leave nobody to manage the accounts.
        raise AccountError(_("Vous ne pouvez pas retirer votre propre rôle de coordination ni fermer votre compte."))
    user.name = name.strip()
    user.set_roles(wanted)
    user.household_id = household_id or None
    user.producer_id = producer_id or None
    user.active = active
    return user


def save_household(
    household_id: int | None,
    *,
    name: str,
    email: str | None,
    phone: str | None,
    notes: str | None,
    price_tier_id: int | None,
    active: bool = True,
    same_name_ok: bool = False,
) -> Household:
    """Create a household (household_id None) or change one.

    Another active household with the same name (accents and case aside) is refused with SameName,
    unless `same_name_ok`: a form sent twice (the back button) would otherwise make a twin."""
    from app.search import fold
    from app.templating import local_date

    renamed = household_id is None or fold(db.session.scalar(
        sa.select(Household.name).where(Household.id == household_id))) != fold(name)
    others = db.session.execute(
        sa.select(Household.name, Household.created_at)
        .where(Household.active.is_(True), Household.id != (household_id or 0))
    ).all() if renamed else []  # an existing twin's other details are saved without asking again
    twin = next((row for row in others if fold(row.name) == fold(name)), None)
    if twin is not None and not same_name_ok:
        raise SameName(_("Un foyer « %(name)s » existe déjà (créé le %(day)s). Si c'est bien un autre foyer, "
                         "cochez la case ci-dessous et enregistrez à nouveau.", name=twin.name,
                         day=local_date(twin.created_at)))
    # The tier lookup may query (and so autoflush): a new household joins the session only once
    # its name is set, or the flush inserts it without one.
    if price_tier_id and db.session.get(PriceTier, price_tier_id) is None:
        raise AccountError(_("Ce tarif n'existe pas."))
    if household_id is None:
        household = Household()
    else:
        household = db.session.get(Household, household_id)
        if household is None:
            raise LookupError(household_id)
    household.name = name.strip()
    household.email = normalize_email(email) or None
    household.phone = (phone or "").strip() or None
    household.notes = (notes or "").strip() or None
    household.price_tier_id = price_tier_id or None
    household.active = active
    db.session.add(household)
    db.session.flush()
    return household


def attach_member(household_id: int, user_id: int) -> User:
    """Make a user without a household a member of this one.

    A member of another household is refused (AccountError): moving someone would leave their
    household without them, silently; the coordinator takes them out of it first."""
    household = db.session.get(Household, household_id)
    user = db.session.get(User, user_id)
    if household is None or user is None:
        raise LookupError((household_id, user_id))
    if user.household_id is not None and user.household_id != household.id:
        other = db.session.get(Household, user.household_id)
        raise AccountError(_("%(name)s fait déjà partie du foyer %(household)s : retirez-le·la d'abord de ce foyer.",
                             name=user.name, household=other.name))
    user.household_id = household.id
    if "member" not in user.roles:
        user.set_roles(user.roles | {"member"})
    return user


def detach_member(household_id: int, user_id: int) -> User:
    """Take a user out of a household."""
    user = db.session.get(User, user_id)
    if user is None or user.household_id != household_id:
        raise LookupError((household_id, user_id))
    user.household_id = None
    return user


def set_user_locale(user_id: int, locale: str) -> None:
    """Remember the interface language a user chose."""
    if locale not in current_app.config["LANGUAGES"]:
        raise AccountError(_("Langue inconnue."))
    user = db.session.get(User, user_id)
    if user is not None:
        user.locale = locale


def list_users(text: str = "", role: str = "") -> list[User]:
    """Accounts by name, optionally those whose name or e-mail contains text, or holding a role."""
    from app.models import UserRole

    query = sa.select(User).order_by(User.name, User.id)
    text = (text or "").strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(sa.or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
    if role in ROLES:
        query = query.where(User.id.in_(sa.select(UserRole.user_id).where(UserRole.role == role)))
    return list(db.session.scalars(query))


def list_households() -> list[Household]:
    """Every household, by name, with its members."""
    from sqlalchemy.orm import selectinload

    return list(db.session.scalars(
        sa.select(Household).options(selectinload(Household.members)).order_by(Household.name, Household.id)
    ))


def create_coordinator(email: str, name: str, password: str) -> User:
    """Create the first coordinator, or give an existing user the role and this password."""
    email = normalize_email(email)
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, locale="fr", active=True)
        db.session.add(user)
    user.set_password(password)
    user.set_roles(user.roles | {"coordinator"})
    user.active = True
    return user


def change_password(user_id: int, current: str, new: str) -> User:
    """Replace a signed-in person's password after checking the current one; the caller commits.
    Every other session of the account ends with it (app.models.login_id)."""
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        raise LookupError(user_id)
    if not user.check_password(current):
        raise AccountError(_("Le mot de passe actuel n'est pas le bon."))
    user.set_password(new)
    return user
