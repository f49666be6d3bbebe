"""Forms of AMAP contracts (season offers, subscriptions, absences, instalments)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    MonthField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
)
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


def _euros(form, field) -> None:
    """An amount in euros, read into field.cents."""
    field.cents = None
    if not field.data or not field.data.strip():
        return
    try:
        field.cents = parse_euros(field.data)
    except (ValueError, ArithmeticError):
        raise ValidationError(_l("Indiquez un montant en euros, par exemple 12,50.")) from None
    if field.cents < 0:
        raise ValidationError(_l("Le montant ne peut pas être négatif."))


class ContractOfferForm(PageForm):
    """A coordinator opens a season offer for a basket product."""

    product_id = SelectField(_l("Panier"), coerce=int, validators=[InputRequired()])
    site_id = SelectField(_l("Lieu de distribution"), coerce=int, validators=[InputRequired()])
    name = StringField(_l("Nom du contrat"), validators=[DataRequired(), Length(max=120)])
    first_date = DateField(_l("Première distribution"), validators=[InputRequired(_l("Indiquez une date."))])
    last_date = DateField(_l("Dernière distribution"), validators=[InputRequired(_l("Indiquez une date."))])
    every_weeks = SelectField(_l("Fréquence"), coerce=int,
                              choices=[(1, _l("Chaque semaine")), (2, _l("Une semaine sur deux"))])
    price = StringField(_l("Prix par distribution (€)"), validators=[DataRequired(), _euros])
    absences_allowed = IntegerField(_l("Absences autorisées"), default=2,
                                    validators=[InputRequired(), NumberRange(min=0, max=52)])
    shareable = BooleanField(_l("Panier partageable par deux foyers (une semaine sur deux)"))
    submit = SubmitField(_l("Ouvrir le contrat"))

    def validate_last_date(self, field) -> None:
        """The season cannot end before it starts."""
        if self.first_date.data and field.data and field.data < self.first_date.data:
            raise ValidationError(_l("La dernière distribution doit être après la première."))


class SubscribeForm(PageForm):
    """A household (or a volunteer for it) subscribes to a season offer."""

    offer_id = HiddenField(validators=[DataRequired()])
    household_name = StringField(_l("Foyer"), validators=[Optional(), Length(max=120)])
    quantity = IntegerField(_l("Nombre de paniers"), default=1,
                            validators=[InputRequired(), NumberRange(min=1, max=10, message=_l("Entre 1 et 10 paniers."))])
    co_holder_name = StringField(_l("Partagé avec le foyer (facultatif)"), validators=[Optional(), Length(max=120)])
    submit = SubmitField(_l("M'inscrire"))


class AbsenceForm(PageForm):
    """A household will be away for one distribution."""

    contract_id = HiddenField(validators=[DataRequired()])
    cycle_id = HiddenField(validators=[DataRequired()])
    kind = RadioField(_l("Mon panier"), default="skip", choices=[
        ("skip", _l("Ne pas le prendre (le producteur en apporte un de moins)")),
        ("handover", _l("Le donner à un autre foyer")),
    ])
    handed_to_name = StringField(_l("Nom du foyer qui le récupère"), validators=[Optional(), Length(max=120)])
    submit = SubmitField(_l("Déclarer l'absence"))


class InstalmentRow(Form):
    """One cheque or payment of the season."""

    amount = StringField(_l("Montant (€)"), validators=[Optional(), _euros])
    method = SelectField(_l("Moyen"), default="cheque", choices=[("cheque", _l("Chèque")), ("cash", _l("Espèces")),
                                               ("transfer", _l("Virement"))])
    cheque_number = StringField(_l("N° de chèque"), validators=[Optional(), Length(max=40)])
    bank = StringField(_l("Banque"), validators=[Optional(), Length(max=80)])
    cashing_month = MonthField(_l("Mois d'encaissement"), validators=[Optional()])


class InstalmentPlanForm(PageForm):
    """The payment plan of one household for a season (up to six instalments)."""

    household_id = HiddenField(validators=[DataRequired()])
    rows = FieldList(FormField(InstalmentRow), min_entries=6, max_entries=6)
    submit = SubmitField(_l("Enregistrer les versements"))


class ConfirmForm(PageForm):
    """A button that only carries the CSRF token."""

    submit = SubmitField(_l("Valider"))


class HouseholdSearchForm(PageForm):
    """Look a household up by name (GET, so no CSRF)."""

    class Meta:
        csrf = False

    q = StringField(_l("Nom du foyer"), validators=[Optional(), Length(max=120)])
