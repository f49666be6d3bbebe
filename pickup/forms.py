"""Forms of the pickup pages: few fields, big buttons, French messages."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, IntegerField, RadioField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from app.forms import PageForm
from app.money import parse_euros
from pickup.services import PickupError, parse_quantity


class SlotForm(PageForm):
    """A household chooses its pickup slot."""

    slot = RadioField(_l("Créneau"), coerce=int, validators=[InputRequired(_l("Choisissez un créneau."))])
    submit = SubmitField(_l("Choisir ce créneau"))


def _quantity(form, field) -> None:
    """A quantity typed with a comma or a dot; stores the Decimal in field.quantity."""
    try:
        field.quantity = parse_quantity(field.data)
    except PickupError as error:
        raise ValidationError(error.message) from None


class WeightForm(PageForm):
    """The weight actually packed for a product sold by weight."""

    weight = StringField(_l("Poids pesé (kg)"), validators=[DataRequired(_l("Écrivez le poids.")), _quantity])
    confirm = BooleanField(_l("Je confirme ce poids"))
    submit = SubmitField(_l("Enregistrer le poids"))


class ShortageForm(PageForm):
    """A product missing (0) or short (what was received)."""

    received = StringField(
        _l("Quantité reçue"), default="0", validators=[DataRequired(_l("Écrivez la quantité reçue.")), _quantity]
    )
    submit = SubmitField(_l("Signaler le manque"))


class PreparedForm(PageForm):
    """The bag is ready (the ticked products are read from the page's check boxes)."""

    submit = SubmitField(_l("Sac prêt"))


class SearchForm(PageForm):
    """Find a bag at the desk (a GET form: nothing is written)."""

    class Meta:
        csrf = False

    q = StringField(_l("Nom du foyer ou numéro de sac"), validators=[Optional(), Length(max=120)])
    submit = SubmitField(_l("Chercher"))


def _euros(form, field) -> None:
    """An amount in euros; stores the cents in field.cents."""
    try:
        field.cents = parse_euros(field.data)
    except (ValueError, ArithmeticError):
        raise ValidationError(_l("Écrivez un montant en euros, par exemple 12,50.")) from None
    if field.cents <= 0:
        raise ValidationError(_l("Le montant doit être supérieur à zéro."))


class PaymentForm(PageForm):
    """Money taken at the desk."""

    method = RadioField(
        _l("Moyen de paiement"),
        choices=[SelectChoice("cash", _l("Espèces")), SelectChoice("cheque", _l("Chèque")),
                 SelectChoice("balance", _l("Sur le solde"))],
        validators=[InputRequired(_l("Choisissez le moyen de paiement."))],
    )
    #: For cash, what the household hands over: more than what is due leaves change (see ``change``).
    amount = StringField(_l("Montant reçu (€)"), validators=[DataRequired(_l("Écrivez le montant.")), _euros])
    #: Cash beyond what is due: given back now, or kept on the household's account.
    change = RadioField(
        _l("S'il y a de la monnaie (espèces)"),
        choices=[SelectChoice("give", _l("Rendre la monnaie")),
                 SelectChoice("keep", _l("Garder la monnaie sur le compte du foyer"))],
        default="give",
        invalid_choice_message=_l("Choisissez de rendre la monnaie ou de la garder sur le compte."),
    )
    cheque_number = StringField(_l("Numéro du chèque"), validators=[Optional(), Length(max=40)])
    cheque_bank = StringField(_l("Banque du chèque"), validators=[Optional(), Length(max=80)])
    #: A token made when the form is shown: the same form sent twice records one payment.
    token = HiddenField()
    submit = SubmitField(_l("Encaisser"))


class DeskTopupForm(PageForm):
    """Money a household hands in at the desk to keep on its account (not for today's bag)."""

    method = RadioField(
        _l("Comment le foyer paie-t-il ?"),
        choices=[SelectChoice("cash", _l("Espèces")), SelectChoice("cheque", _l("Chèque"))],
        # Nothing chosen is not a choice either: one message for both.
        invalid_choice_message=_l("Choisissez espèces ou chèque."),
    )
    amount = StringField(_l("Montant versé (€)"), validators=[DataRequired(_l("Écrivez le montant.")), _euros])
    cheque_number = StringField(_l("Numéro du chèque"), validators=[Optional(), Length(max=40)])
    cheque_bank = StringField(_l("Banque du chèque"), validators=[Optional(), Length(max=80)])
    #: A token made when the form is shown: the same form sent twice records one top-up.
    token = HiddenField()
    submit = SubmitField(_l("Enregistrer le versement"))


class CollectForm(PageForm):
    """The bag is handed over."""

    submit = SubmitField(_l("Sac remis au foyer"))


class EndDistributionForm(PageForm):
    """Close the afternoon: bags not collected become no-shows (sent from the confirmation page)."""

    submit = SubmitField(_l("Oui, terminer la distribution"))


NO_SHOW_OUTCOMES = {
    "kept": _l("Gardé au café, le foyer passera le chercher"),
    "delivered": _l("Apporté au foyer par un·e bénévole"),
    "donated": _l("Donné (association, voisins)"),
    "shared": _l("Partagé entre les bénévoles"),
    "thrown": _l("Jeté (produits abîmés)"),
}


class NoShowOutcomeForm(PageForm):
    """What was done with a bag nobody came for."""

    outcome = RadioField(_l("Ce qui a été fait du sac"),
                         choices=[SelectChoice(key, label) for key, label in NO_SHOW_OUTCOMES.items()],
                         validators=[InputRequired(_l("Choisissez ce qui a été fait du sac."))])
    note = StringField(_l("Précision (facultatif)"), validators=[Optional(), Length(max=200)])
    submit = SubmitField(_l("Enregistrer"))


class RotaSignupForm(PageForm):
    """Sign up for a role."""

    submit = SubmitField(_l("Je m'inscris"))


class RotaWithdrawForm(PageForm):
    """Withdraw from a role."""

    submit = SubmitField(_l("Me désinscrire"))


class RotaNeededForm(PageForm):
    """How many people a role needs (coordinator)."""

    needed = IntegerField(_l("Personnes nécessaires"),
                          validators=[InputRequired(_l("Écrivez un nombre.")),
                                      NumberRange(0, 50, _l("Entre 0 et 50 personnes."))])
    submit = SubmitField(_l("Changer"))


class RotaDefaultsForm(PageForm):
    """How many people a site usually needs per role (coordinator)."""

    setup = IntegerField(_l("Installation"), validators=[InputRequired(_l("Écrivez un nombre.")),
                                                         NumberRange(0, 50, _l("Entre 0 et 50 personnes."))])
    preparation = IntegerField(_l("Préparation des sacs"),
                               validators=[InputRequired(_l("Écrivez un nombre.")),
                                           NumberRange(0, 50, _l("Entre 0 et 50 personnes."))])
    desk = IntegerField(_l("Accueil et caisse"), validators=[InputRequired(_l("Écrivez un nombre.")),
                                                             NumberRange(0, 50, _l("Entre 0 et 50 personnes."))])
    closing = IntegerField(_l("Rangement"), validators=[InputRequired(_l("Écrivez un nombre.")),
                                                        NumberRange(0, 50, _l("Entre 0 et 50 personnes."))])
    submit = SubmitField(_l("Enregistrer"))
