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
                              choices=[SelectChoice(1, _l("Chaque semaine")),
                                       SelectChoice(2, _l("Une semaine sur deux"))])
    price = StringField(_l("Prix par distribution (€)"), validators=[DataRequired(), _euros])
    absences_allowed = IntegerField(_l("Absences autorisées"), default=2,
                                    validators=[InputRequired(), NumberRange(min=0, max=52)])
    shareable = BooleanField(_l("Panier partageable par deux foyers (une semaine sur deux)"))
    submit = SubmitField(_l("Ouvrir le contrat"))

    def validate_last_date(self, field) -> None:
        """The season cannot end before it starts."""
        if self.first_date.data and field.data and field.data < self.first_date.data:
            raise ValidationError(_l("La dernière distribution doit être après la première."))


#: What a member reads instead of naming another household: linking two households needs both to agree.
SHARE_BY_VOLUNTEER = _l("Pour partager ce panier avec un autre foyer, demandez-le à la coordination ou à un·e "
                        "bénévole au café : les deux foyers doivent être d'accord.")
HANDOVER_BY_VOLUNTEER = _l("Pour donner votre panier à un autre foyer, demandez-le à la coordination ou à un·e "
                           "bénévole au café : le foyer qui le récupère doit être d'accord.")


def _optional_id(value) -> int | None:
    """A household id from a select whose first choice is "none"."""
    if value in (None, "", "None"):
        return None
    return int(value)


class MemberSubscribeForm(PageForm):
    """A household subscribes itself: it names no other household (sharing is arranged by a volunteer)."""

    offer_id = HiddenField(validators=[DataRequired()])
    quantity = IntegerField(_l("Nombre de paniers"), default=1, validators=[
        InputRequired(), NumberRange(min=1, max=10, message=_l("Entre 1 et 10 paniers."))])
    submit = SubmitField(_l("M'inscrire"))


class SubscribeForm(MemberSubscribeForm):
    """A volunteer subscribes a household, and may pick the household that shares its basket."""

    #: Choices (active households, or those the search found) are set by the page.
    household_id = SelectField(_l("Foyer"), coerce=_optional_id, default=None,
                               validators=[InputRequired(message=_l("Choisissez le foyer à inscrire."))])
    #: Choices (active households) are set by the page.
    co_holder_id = SelectField(_l("Partagé avec le foyer (facultatif)"), coerce=_optional_id, default=None)
    submit = SubmitField(_l("Inscrire ce foyer"))


class AbsenceForm(PageForm):
    """A household will be away for one distribution: its basket is not brought."""

    contract_id = HiddenField(validators=[DataRequired()])
    #: The season's date missed (ISO), whether its week's distribution exists yet or not.
    day = HiddenField(validators=[DataRequired()])
    kind = RadioField(_l("Mon panier"), default="skip", validate_choice=False, choices=[
        SelectChoice("skip", _l("Ne pas le prendre (le producteur en apporte un de moins)")),
    ])
    submit = SubmitField(_l("Déclarer l'absence"))

    def validate_kind(self, field) -> None:
        """A member cannot put its basket in another household's order by itself."""
        if field.data != "skip":
            raise ValidationError(HANDOVER_BY_VOLUNTEER)


class VolunteerAbsenceForm(PageForm):
    """A volunteer declares an absence for a household: skip the basket or hand it to a chosen household."""

    contract_id = HiddenField(validators=[DataRequired()])
    #: The season's date missed (ISO), whether its week's distribution exists yet or not.
    day = HiddenField(validators=[DataRequired()])
    household_id = HiddenField(validators=[DataRequired()])
    kind = RadioField(_l("Le panier"), default="skip", choices=[
        SelectChoice("skip", _l("Ne pas prendre le panier")),
        SelectChoice("handover", _l("Le donner à un autre foyer")),
    ])
    #: Choices (active households) are set by the page.
    handed_to_id = SelectField(_l("Foyer qui le récupère"), coerce=_optional_id, default=None)
    submit = SubmitField(_l("Déclarer l'absence"))

    def validate_handed_to_id(self, field) -> None:
        """A hand-over names the household that collects the basket."""
        if self.kind.data == "handover" and field.data is None:
            raise ValidationError(_l("Choisissez le foyer qui récupère le panier."))


class InstalmentRow(Form):
    """One cheque or payment of the season."""

    amount = StringField(_l("Montant (€)"), validators=[Optional(), _euros])
    method = SelectField(_l("Moyen"), default="cheque", choices=[
        SelectChoice("cheque", _l("Chèque")), SelectChoice("cash", _l("Espèces")),
        SelectChoice("transfer", _l("Virement"))])
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
