"""Account pages: sign in and out, password reset, invitations, users and households."""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import bp, services
from app.auth.decorators import roles_required
from app.auth.forms import (
    ROLE_LABELS,
    AttachMemberForm,
    ChangePasswordForm,
    ConfirmForm,
    HouseholdForm,
    InviteForm,
    LoginForm,
    NewPasswordForm,
    ResetRequestForm,
    UserForm,
)
from app.auth.services import AccountError, authenticate, normalize_email
from app.extensions import db, limiter
from app.models import Household, PriceTier, User
from app.outbox import request_delivery


def _login_limit() -> str:
    """The configured limit of sign-in attempts."""
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_key() -> str:
    """Rate-limit key for the account being tried."""
    return "login-account:" + normalize_email(request.form.get("email", ""))


#: The pages that carry rate limits (the @limiter.limit below); tests/app/test_auth.py checks the list.
RATE_LIMITED_ENDPOINTS = frozenset({"auth.login", "auth.reset_request"})


@limiter.request_filter
def _not_rate_limited() -> bool:
    """Every other request skips Flask-Limiter's lookup of limits, which cost more than a tenth of a
    saved order without ever finding one."""
    return request.endpoint not in RATE_LIMITED_ENDPOINTS


def _safe_next(target: str | None) -> str | None:
    """Only local paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _link_builder(endpoint: str):
    """Links in mails use BASE_URL, never the Host header a stranger could forge."""
    base = current_app.config["BASE_URL"].rstrip("/")
    return lambda token: base + url_for(endpoint, token=token)



def _failed(response) -> bool:
    """A sign-in that did not let the person in (a success redirects): only those are counted, so
    a café's shared address is not locked out by its members signing in."""
    return response.status_code != 302


@bp.route("/connexion", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], error_message="login", deduct_when=_failed)
@limiter.limit(_login_limit, key_func=_account_key, methods=["POST"], error_message="login", deduct_when=_failed)
def login():
    """Sign in with e-mail and password."""
    if current_user.is_authenticated:
        return redirect(url_for("main.home"))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            flash(_("Adresse e-mail ou mot de passe incorrect."), "error")
        else:
            db.session.commit()
            login_user(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")) or url_for("main.home"))
    return render_template("auth/login.html", form=form)


@bp.route("/deconnexion", methods=["POST"])
@login_required
def logout():
    """Sign out (a POST, so a link elsewhere cannot sign you out)."""
    logout_user()
    flash(_("Vous êtes déconnecté·e."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/mon-compte", methods=["GET", "POST"])
@login_required
def account():
    """Who I am (e-mail, household, roles) and a new password, typed after the current one."""
    user = db.session.get(User, current_user.id)
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            user = services.change_password(user.id, form.current.data, form.password.data)
        except AccountError as error:
            form.current.errors.append(str(error))
        else:
            db.session.commit()
            # This session goes on with the new password; every other one is signed out.
            remembered = request.cookies.get(current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token"))
            login_user(user, remember=remembered is not None)
            flash(_("Votre mot de passe est changé. Vos autres appareils devront se reconnecter."), "success")
            return redirect(url_for("auth.account"))
    household = db.session.get(Household, user.household_id) if user.household_id else None
    status = 400 if form.errors else 200
    return render_template("auth/account.html", form=form, user=user, household=household,
                           role_labels=ROLE_LABELS), status


@bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], error_message="reset")
@limiter.limit(_login_limit, key_func=_account_key, methods=["POST"], error_message="reset")
def reset_request():
    """Ask for a reset link; the answer is the same whether the address is known or not."""
    form = ResetRequestForm()
    if form.validate_on_submit():
        if services.request_password_reset(form.email.data, _link_builder("auth.reset_password")):
            db.session.commit()
            request_delivery()
        flash(_("Si un compte existe avec cette adresse, un lien vient d'y être envoyé. "
                "Il marche une seule fois et pendant peu de temps."), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_request.html", form=form)


def _password_page(token: str, purpose: str):
    """Shared by reset and invitation links: check the link, then set the password once."""
    check = services.check_link_token(token, purpose)
    if check.user is None:
        return render_template("auth/link_invalid.html", problem=check.problem, purpose=purpose), 400
    form = NewPasswordForm()
    if form.validate_on_submit():
        check = services.set_password_with_token(token, form.password.data, purpose)
        if check.user is None:
            db.session.rollback()
            return render_template("auth/link_invalid.html", problem=check.problem, purpose=purpose), 400
        db.session.commit()
        flash(_("Votre mot de passe est enregistré. Vous pouvez vous connecter."), "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/new_password.html", form=form, user=check.user, purpose=purpose)


@bp.route("/mot-de-passe/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password from an e-mailed link."""
    return _password_page(token, "reset")


@bp.route("/bienvenue/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    """Choose a first password from an invitation link."""
    return _password_page(token, "invite")


def _households_and_producers():
    """Choices for the account forms."""
    from producers.models import Producer

    households = db.session.scalars(sa.select(Household).order_by(Household.name)).all()
    producers = db.session.scalars(sa.select(Producer).order_by(Producer.name)).all()
    return households, producers


@bp.route("/utilisateurs", methods=["GET", "POST"])
@roles_required("coordinator")
def users():
    """Every account, and the invitation form."""
    form = InviteForm()
    form.set_choices(*_households_and_producers())
    if form.validate_on_submit():
        try:
            user = services.invite_user(
                form.name.data, form.email.data, form.roles.data, form.household_id.data,
                form.producer_id.data, _link_builder("auth.accept_invitation"), form.locale.data,
            )
        except AccountError as error:
            db.session.rollback()
            form.email.errors.append(str(error))
        else:
            db.session.commit()
            request_delivery()
            flash(_("Invitation envoyée à %(email)s.", email=user.email), "success")
            return redirect(url_for("auth.users"))
    text, role = request.args.get("q", "")[:100], request.args.get("role", "")
    return render_template("auth/users.html", form=form, users=services.list_users(text, role),
                           role_labels=ROLE_LABELS, q=text, role=role)


@bp.route("/utilisateurs/<int:user_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def edit_user(user_id: int):
    """Change one account's roles, household, producer, or close it."""
    user = db.session.get(User, user_id) or abort(404)
    form = UserForm(obj=user, roles=sorted(user.roles)) if request.method == "GET" else UserForm()
    form.set_choices(*_households_and_producers())
    if request.method == "GET":
        form.household_id.data = user.household_id or 0
        form.producer_id.data = user.producer_id or 0
    if form.validate_on_submit():
        try:
            services.update_user(user.id, name=form.name.data, roles=form.roles.data,
                                 household_id=form.household_id.data, producer_id=form.producer_id.data,
                                 active=form.active.data, acting_user_id=current_user.id)
        except AccountError as error:
            db.session.rollback()
            form.roles.errors.append(str(error))
        else:
            db.session.commit()
            flash(_("Compte enregistré."), "success")
            return redirect(url_for("auth.users"))
    return render_template("auth/user_edit.html", form=form, user=user, confirm=ConfirmForm())


@bp.route("/utilisateurs/<int:user_id>/invitation", methods=["POST"])
@roles_required("coordinator")
def resend_invitation(user_id: int):
    """Send a new invitation link to someone who has not chosen a password yet."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        user = services.send_invitation(user_id, _link_builder("auth.accept_invitation"))
    except LookupError:
        abort(404)
    except AccountError as error:
        flash(str(error), "error")
        return redirect(url_for("auth.edit_user", user_id=user_id))
    db.session.commit()
    request_delivery()
    flash(_("Invitation envoyée à %(email)s.", email=user.email), "success")
    return redirect(url_for("auth.edit_user", user_id=user_id))


@bp.route("/foyers", methods=["GET", "POST"])
@roles_required("coordinator")
def households():
    """Every household, and a form to create one."""
    form = HouseholdForm()
    show_tiers = form.set_tiers(db.session.scalars(sa.select(PriceTier).order_by(PriceTier.name)).all())
    if form.validate_on_submit():
        household = _save_household(None, form)
        if household is not None:
            flash(_("Foyer « %(name)s » créé.", name=household.name), "success")
            return redirect(url_for("auth.edit_household", household_id=household.id))
    return render_template("auth/households.html", form=form, show_tiers=show_tiers,
                           households=services.list_households())


def _save_household(household_id: int | None, form: HouseholdForm) -> Household | None:
    """Save the form through the service; None (with the error on the form) if refused."""
    try:
        household = services.save_household(
            household_id, name=form.name.data, email=form.email.data, phone=form.phone.data,
            notes=form.notes.data, price_tier_id=form.price_tier_id.data, active=form.active.data,
            same_name_ok=form.same_name_ok.data,
        )
    except services.SameName as error:
        db.session.rollback()
        form.name.errors.append(str(error))
        form.ask_same_name = True  # shows the box
        return None
    except AccountError as error:
        db.session.rollback()
        form.price_tier_id.errors.append(str(error))
        return None
    db.session.commit()
    return household


@bp.route("/foyers/<int:household_id>", methods=["GET", "POST"])
@roles_required("coordinator")
def edit_household(household_id: int):
    """A household's details and members."""
    household = db.session.get(Household, household_id) or abort(404)
    form = HouseholdForm(obj=household) if request.method == "GET" else HouseholdForm()
    show_tiers = form.set_tiers(db.session.scalars(sa.select(PriceTier).order_by(PriceTier.name)).all())
    if request.method == "GET":
        form.price_tier_id.data = household.price_tier_id or 0
    if form.validate_on_submit() and _save_household(household.id, form) is not None:
        flash(_("Foyer enregistré."), "success")
        return redirect(url_for("auth.edit_household", household_id=household.id))
    return render_template("auth/household_edit.html", form=form, household=household,
                           show_tiers=show_tiers, attach=_attach_form(household), confirm=ConfirmForm())


def _attach_form(household: Household) -> AttachMemberForm:
    """The list of active accounts that belong to no household (someone in another one is taken out of it first)."""
    form = AttachMemberForm()
    people = db.session.scalars(
        sa.select(User).where(User.active.is_(True), User.household_id.is_(None)).order_by(User.name)
    ).all()
    form.user_id.choices = [(u.id, f"{u.name} ({u.email})") for u in people]
    return form


@bp.route("/foyers/<int:household_id>/membres", methods=["POST"])
@roles_required("coordinator")
def attach_member(household_id: int):
    """Add an account to the household."""
    household = db.session.get(Household, household_id) or abort(404)
    form = _attach_form(household)
    if not form.validate_on_submit():
        abort(400)
    try:
        user = services.attach_member(household.id, form.user_id.data)
    except services.AccountError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("auth.edit_household", household_id=household.id))
    db.session.commit()
    flash(_("%(name)s fait maintenant partie du foyer.", name=user.name), "success")
    return redirect(url_for("auth.edit_household", household_id=household.id))


@bp.route("/foyers/<int:household_id>/membres/<int:user_id>/retirer", methods=["POST"])
@roles_required("coordinator")
def detach_member(household_id: int, user_id: int):
    """Take an account out of the household."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        user = services.detach_member(household_id, user_id)
    except LookupError:
        abort(404)
    db.session.commit()
    flash(_("%(name)s ne fait plus partie du foyer.", name=user.name), "success")
    return redirect(url_for("auth.edit_household", household_id=household_id))
