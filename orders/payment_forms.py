"""Forms of the payments area: pay, top up a balance, refund to the card, take, cancel a desk payment, hand credit back."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Length,
    Optional,
    StopValidation,
    ValidationError,
)

from app.forms import PageForm
from app.money import parse_euros

#: A top-up above this is almost certainly a typo (500,00 €).
MAX_TOPUP_CENTS = 50_000


def _parse_amount(field) -> int:
    """Cents from the field, or a French ValidationError."""
    try:
        cents = parse_euros(field.data or "")
    except (ValueError, ArithmeticError):
        raise ValidationError(_l("Indiquez un montant en euros, par exemple 12,50.")) from None
    if cents <= 0:
        raise ValidationError(_l("Le montant doit être supérieur à zéro."))
    return cents


class AmountField(StringField):
    """A euro amount typed by a person ("12,50"); ``cents`` holds the parsed value after validation."""

    cents: int | None = None

    def pre_validate(self, form):
        """Parse the amount into cents, with a French message on failure (empty: DataRequired says it)."""
        self.cents = None
        if not (self.data or "").strip():
            return
        try:
            self.cents = _parse_amount(self)
        except ValidationError as error:
            raise StopValidation(str(error)) from None


class PayForm(PageForm):
    """A single button (pay by card, pay from the balance)."""

    submit = SubmitField(_l("Payer"))


class TopupForm(PageForm):
    """Money handed to the coordinator to keep on a household's account: cash, or a cheque (number and bank)."""

    method = SelectField(
        _l("Comment le foyer a-t-il payé ?"),
        choices=[SelectChoice("cash", _l("En espèces")), SelectChoice("cheque", _l("Par chèque"))],
        invalid_choice_message=_l("Choisissez espèces ou chèque."),
    )
    amount = AmountField(_l("Montant reçu (€)"), validators=[DataRequired(_l("Indiquez un montant."))])
    # No Optional() here: it would stop the chain before the cheque checks below.
    cheque_number = StringField(_l("Numéro du chèque"), validators=[Length(max=40)])
    cheque_bank = StringField(_l("Banque"), validators=[Length(max=80)])
    note = StringField(_l("Note (facultatif)"), validators=[Optional(), Length(max=200)])
    #: A token made when the form is shown: submitting twice records one top-up.
    token = HiddenField()
    submit = SubmitField(_l("Enregistrer le versement"))

    def validate_amount(self, field):
        """Refuse absurd top-ups."""
        if field.cents is not None and field.cents > MAX_TOPUP_CENTS:
            raise ValidationError(_l("Ce montant est trop élevé pour un versement (500,00 € au plus)."))

    def validate_cheque_number(self, field):
        """A cheque needs its number."""
        if self.method.data == "cheque" and not (field.data or "").strip():
            raise ValidationError(_l("Indiquez le numéro du chèque."))

    def validate_cheque_bank(self, field):
        """A cheque needs its bank."""
        if self.method.data == "cheque" and not (field.data or "").strip():
            raise ValidationError(_l("Indiquez la banque du chèque."))


class RefundForm(PageForm):
    """Send part of a positive balance back to the card."""

    amount = AmountField(_l("Montant à rembourser (€)"), validators=[DataRequired(_l("Indiquez un montant."))])
    submit = SubmitField(_l("Rembourser sur la carte"))


class DeskPaymentForm(PageForm):
    """A payment taken at the café: cash, cheque (number and bank), or from the balance."""

    method = SelectField(
        _l("Moyen de paiement"),
        choices=[
            SelectChoice("cash", _l("Espèces")),
            SelectChoice("cheque", _l("Chèque")),
            SelectChoice("balance", _l("Solde du foyer")),
        ],
    )
    amount = AmountField(_l("Montant (€)"), validators=[DataRequired(_l("Indiquez un montant."))])
    # No Optional() here: it would stop the chain before the cheque checks below.
    cheque_number = StringField(_l("Numéro du chèque"), validators=[Length(max=40)])
    cheque_bank = StringField(_l("Banque"), validators=[Length(max=80)])
    #: On a distribution day: the money did not go through its till (a cheque sent to the coordinators).
    outside_till = BooleanField(_l("Reçu hors de la caisse du jour (par courrier, remis à la coordination)"))
    #: A token made when the form is shown: the same form sent twice records one payment.
    token = HiddenField()
    submit = SubmitField(_l("Enregistrer le paiement"))

    def validate_cheque_number(self, field):
        """A cheque needs its number."""
        if self.method.data == "cheque" and not (field.data or "").strip():
            raise ValidationError(_l("Indiquez le numéro du chèque."))

    def validate_cheque_bank(self, field):
        """A cheque needs its bank."""
        if self.method.data == "cheque" and not (field.data or "").strip():
            raise ValidationError(_l("Indiquez la banque du chèque."))


class CancelPaymentForm(PageForm):
    """Cancel a desk payment recorded by mistake (wrong household, wrong method): the reason is kept."""

    note = StringField(_l("Pourquoi annuler ce paiement ?"),
                       validators=[DataRequired(_l("Indiquez pourquoi ce paiement est annulé.")), Length(max=200)])
    #: A token made when the form is shown: the same form sent twice cancels once.
    token = HiddenField()
    submit = SubmitField(_l("Annuler ce paiement"))


class HandBackForm(PageForm):
    """Give a household's credit back in cash or by the association's cheque."""

    method = SelectField(
        _l("Comment rendre l'argent ?"),
        choices=[SelectChoice("cash", _l("En espèces")), SelectChoice("cheque", _l("Par chèque"))],
    )
    amount = AmountField(_l("Montant rendu (€)"), validators=[DataRequired(_l("Indiquez un montant."))])
    # No Optional() here: it would stop the chain before the cheque check below.
    cheque_number = StringField(_l("Numéro du chèque"), validators=[Length(max=40)])
    note = StringField(_l("Note"), validators=[DataRequired(_l("Indiquez pourquoi cet argent est rendu.")),
                                               Length(max=200)])
    #: A token made when the form is shown: the same form sent twice records one refund.
    token = HiddenField()
    submit = SubmitField(_l("Enregistrer le remboursement"))

    def validate_cheque_number(self, field):
        """A cheque needs its number."""
        if self.method.data == "cheque" and not (field.data or "").strip():
            raise ValidationError(_l("Indiquez le numéro du chèque."))
