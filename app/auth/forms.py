"""Forms of the account pages."""
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.forms import PageForm
from app.models import ROLES

#: How each role is called on the screen.
ROLE_LABELS = {
    "member": _l("Adhérent·e (foyer)"),
    "producer": _l("Producteur·rice ou forain·e"),
    "volunteer": _l("Bénévole"),
    "coordinator": _l("Coordinateur·rice"),
}
MIN_PASSWORD = 10


def _strip(value):
    """Surrounding spaces (often pasted from a mail) are not part of an address."""
    return value.strip() if isinstance(value, str) else value


def _email_validators():
    """Required, well formed, not too long."""
    return [
        DataRequired(_l("Indiquez une adresse e-mail.")),
        Length(max=254, message=_l("Cette adresse est trop longue (254 caractères au plus).")),
        Email(_l("Cette adresse e-mail n'est pas valide.")),
    ]


class MultiCheckboxField(SelectMultipleField):
    """Several choices shown as check boxes (no JavaScript needed)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _int_or_zero(value) -> int:
    """Select values as integers (0 means "none"); junk becomes -1, which no list offers."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return -1
    # Ids are 32-bit integers in the database: anything larger cannot be one.
    return number if 0 <= number < 2**31 else -1


class LoginForm(PageForm):
    """E-mail and password."""

    email = EmailField(_l("Adresse e-mail"), filters=[_strip], validators=[DataRequired(_l("Indiquez votre adresse e-mail.")), Email(_l("Cette adresse e-mail n'est pas valide.")), Length(max=254)])
    password = PasswordField(_l("Mot de passe"), validators=[DataRequired(_l("Indiquez votre mot de passe.")), Length(max=200)])
    remember = BooleanField(_l("Rester connecté·e sur cet appareil"))
    submit = SubmitField(_l("Se connecter"))


class ResetRequestForm(PageForm):
    """The address to send a reset link to."""

    email = EmailField(_l("Adresse e-mail"), filters=[_strip], validators=_email_validators())
    submit = SubmitField(_l("Recevoir un lien"))


class NewPasswordForm(PageForm):
    """A new password, typed twice."""

    password = PasswordField(
        _l("Nouveau mot de passe"),
        validators=[
            DataRequired(_l("Choisissez un mot de passe.")),
            Length(min=MIN_PASSWORD, max=200,
                   message=_l("Le mot de passe doit compter entre %(min)d et %(max)d caractères.")),
        ],
    )
    confirm = PasswordField(
        _l("Le même mot de passe, encore une fois"),
        validators=[EqualTo("password", _l("Les deux mots de passe ne sont pas identiques."))],
    )
    submit = SubmitField(_l("Enregistrer le mot de passe"))


class _AccountFields(PageForm):
    """Name, roles, household and producer of an account."""

    name = StringField(_l("Nom"), validators=[
        DataRequired(_l("Indiquez un nom.")),
        Length(max=120, message=_l("Ce nom est trop long (120 caractères au plus).")),
    ])
    roles = MultiCheckboxField(_l("Rôles"), choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    household_id = SelectField(_l("Foyer"), coerce=_int_or_zero, validate_choice=True)
    producer_id = SelectField(_l("Producteur"), coerce=_int_or_zero, validate_choice=True)

    def set_choices(self, households, producers) -> None:
        """Fill the household and producer lists (0 = none)."""
        self.household_id.choices = [(0, _l("— aucun —"))] + [(h.id, h.name) for h in households]
        self.producer_id.choices = [(0, _l("— aucun —"))] + [(p.id, p.name) for p in producers]


class InviteForm(_AccountFields):
    """A new account: the person receives a link to choose a password."""

    email = EmailField(_l("Adresse e-mail"), filters=[_strip], validators=_email_validators())
    locale = SelectField(_l("Langue des messages"), choices=[("fr", "Français"), ("en", "English")])
    submit = SubmitField(_l("Inviter"))


class UserForm(_AccountFields):
    """Change an account."""

    active = BooleanField(_l("Compte ouvert (décochez pour désactiver)"))
    submit = SubmitField(_l("Enregistrer"))


class HouseholdForm(PageForm):
    """A household's details."""

    name = StringField(_l("Nom du foyer"), validators=[
        DataRequired(_l("Indiquez un nom.")),
        Length(max=120, message=_l("Ce nom est trop long (120 caractères au plus).")),
    ])
    email = EmailField(_l("Adresse e-mail du foyer (facultative)"), filters=[_strip], validators=[
        Optional(),
        Length(max=254, message=_l("Cette adresse est trop longue (254 caractères au plus).")),
        Email(_l("Cette adresse e-mail n'est pas valide.")),
    ])
    phone = StringField(_l("Téléphone"), validators=[
        Optional(), Length(max=40, message=_l("Ce numéro est trop long."))])
    notes = TextAreaField(_l("Notes"), validators=[
        Optional(), Length(max=2000, message=_l("Ce texte est trop long (2000 caractères au plus)."))])
    price_tier_id = SelectField(_l("Tarif"), coerce=_int_or_zero, validate_choice=True)
    active = BooleanField(_l("Foyer actif"), default=True)
    #: Shown once a household of the same name was found (ask_same_name): two « Famille Martin » may well exist.
    same_name_ok = BooleanField(_l("C'est bien un autre foyer, qui porte le même nom"))
    ask_same_name = False
    submit = SubmitField(_l("Enregistrer"))

    def set_tiers(self, tiers) -> bool:
        """Fill the price tier list; False when there is no tier (the field is then hidden)."""
        from orders.pricing import no_tier_label

        self.price_tier_id.choices = [(0, no_tier_label(tiers))] + [(t.id, t.name) for t in tiers]
        return bool(tiers)


class AttachMemberForm(PageForm):
    """Add an existing account to a household."""

    user_id = SelectField(_l("Personne"), coerce=_int_or_zero, validate_choice=True)
    submit = SubmitField(_l("Ajouter au foyer"))


class ConfirmForm(PageForm):
    """A button that only carries the CSRF token."""

    submit = SubmitField(_l("Confirmer"))


class ChangePasswordForm(NewPasswordForm):
    """The account page: the current password, then the new one twice."""

    current = PasswordField(_l("Mot de passe actuel"),
                            validators=[DataRequired(_l("Tapez votre mot de passe actuel."))])
