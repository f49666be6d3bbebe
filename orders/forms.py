"""Forms of the ordering pages: cart, assisted search, cycles, price tiers."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TimeField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
)

from app.forms import PageForm


class CartForm(PageForm):
    """The cart: quantities come as q-<offer id> / t-<offer id> fields, read by read_cart."""

    class Meta(PageForm.Meta):
        #: CSRFProtect checks every POST's token before the view runs; the form only needs the
        #: token field (and its signing) when the page is shown, see `for_page`.
        csrf = False

    #: An empty label: a hidden field shows none, and WTForms would translate a made-up one.
    cycle_id = HiddenField("")
    slot_id = SelectField(_l("Créneau de retrait"), coerce=int, validate_choice=False,
                          validators=[Optional()])
    share_percent = IntegerField(_l("Ma part du prix (en %)"), validators=[
        Optional(), NumberRange(min=0, max=200, message=_l("Entre 0 et 200 %%."))])
    submit = SubmitField(_l("Confirmer ma commande"))

    @classmethod
    def for_page(cls) -> CartForm:
        """The form with its CSRF token field, to show the page."""
        return cls(meta={"csrf": True})


class HouseholdSearchForm(PageForm):
    """A volunteer looks a household up by name."""

    class Meta:
        csrf = False  # a GET search changes nothing

    q = StringField(_l("Nom, e-mail ou téléphone"), validators=[
        DataRequired(_l("Tapez au moins deux lettres.")), Length(min=2, max=80, message=_l("Tapez au moins deux lettres."))])


class MoveCycleForm(PageForm):
    """A coordinator moves a distribution (local times of the installation)."""

    opens_at = DateTimeLocalField(_l("Ouverture des commandes"), format="%Y-%m-%dT%H:%M",
                                  validators=[InputRequired(_l("Indiquez une date."))])
    closes_at = DateTimeLocalField(_l("Date limite de commande"), format="%Y-%m-%dT%H:%M",
                                   validators=[InputRequired(_l("Indiquez une date."))])
    starts_at = DateTimeLocalField(_l("Début de la distribution"), format="%Y-%m-%dT%H:%M",
                                   validators=[InputRequired(_l("Indiquez une date."))])
    ends_at = DateTimeLocalField(_l("Fin de la distribution"), format="%Y-%m-%dT%H:%M",
                                 validators=[InputRequired(_l("Indiquez une date."))])
    submit = SubmitField(_l("Déplacer la distribution"))


class ConfirmForm(PageForm):
    """A button that only needs its CSRF token."""

    submit = SubmitField(_l("Confirmer"))


class TierForm(PageForm):
    """A solidarity price tier."""

    name = StringField(_l("Nom du tarif"), validators=[DataRequired(_l("Indiquez un nom.")), Length(max=80)])
    markup_percent = StringField(_l("Majoration sur le prix (en %, ex. 10 ou -5)"), default="0")
    pay_what_you_can = BooleanField(_l("Prix libre (le foyer choisit sa part)"))
    minimum_percent = IntegerField(_l("Part minimale pour le prix libre (en %)"), default=100, validators=[
        Optional(), NumberRange(min=0, max=100, message=_l("Entre 0 et 100 %%."))])
    is_default = BooleanField(_l("Tarif par défaut des foyers sans tarif"))
    submit = SubmitField(_l("Enregistrer le tarif"))


class AssignTierForm(PageForm):
    """Put a household in a tier."""

    household_id = HiddenField(validators=[DataRequired()])
    tier_id = SelectField(_l("Tarif"), coerce=int, validate_choice=False)
    submit = SubmitField(_l("Changer"))


def read_cart(formdata) -> tuple[dict, dict[int, int], dict[int, str]]:
    """Quantities, shown base prices and per-offer French errors from the cart's q-/t-/p- fields."""
    from decimal import Decimal

    from orders.services import parse_quantity

    quantities: dict[int, tuple[Decimal, Decimal]] = {}
    shown: dict[int, int] = {}
    errors: dict[int, str] = {}
    for key in formdata:
        prefix, _, raw_id = key.partition("-")
        if prefix not in ("q", "t", "p") or not raw_id:
            continue
        if not raw_id.isdigit() or len(raw_id) > 9:
            raise ValueError("offer id")
        offer_id = int(raw_id)
        if prefix == "p":
            value = formdata.get(key, "")
            if not value.isdigit() or len(value) > 9:
                raise ValueError("shown price")
            shown[offer_id] = int(value)
            continue
        if prefix == "t":
            continue
        try:
            qty = parse_quantity(formdata.get(key))
            tolerance = parse_quantity(formdata.get(f"t-{raw_id}"))
        except ValueError as error:
            errors[offer_id] = str(error)
            continue
        quantities[offer_id] = (qty, tolerance)
    for key in formdata:
        # A tolerance box filled next to an empty quantity box is still a mistake to report.
        if key.startswith("t-") and key[2:].isdigit() and f"q-{key[2:]}" not in formdata:
            offer_id = int(key[2:])
            try:
                tolerance = parse_quantity(formdata.get(key))
            except ValueError as error:
                errors[offer_id] = str(error)
                continue
            quantities[offer_id] = (Decimal(0), tolerance)
    return quantities, shown, errors


WEEKDAYS = [(0, _l("lundi")), (1, _l("mardi")), (2, _l("mercredi")), (3, _l("jeudi")), (4, _l("vendredi")),
            (5, _l("samedi")), (6, _l("dimanche"))]


class SiteForm(PageForm):
    """A pickup site: the café, a school yard, a farm shop."""

    name = StringField(_l("Nom du lieu"), validators=[DataRequired(_l("Indiquez un nom.")), Length(max=120)])
    address = StringField(_l("Adresse"), validators=[Optional(), Length(max=300)])
    submit = SubmitField(_l("Enregistrer le lieu"))


class ScheduleForm(PageForm):
    """The weekly rhythm of a site: when orders open and close, when the bags are handed out."""

    site_id = SelectField(_l("Lieu de retrait"), coerce=int, validate_choice=False)
    name = StringField(_l("Nom"), validators=[DataRequired(_l("Indiquez un nom.")), Length(max=120)])
    opens_weekday = SelectField(_l("Les commandes ouvrent le"), coerce=int, choices=WEEKDAYS)
    opens_time = TimeField(_l("à"), validators=[InputRequired(_l("Indiquez une heure."))])
    closes_weekday = SelectField(_l("Date limite le"), coerce=int, choices=WEEKDAYS)
    closes_time = TimeField(_l("à"), validators=[InputRequired(_l("Indiquez une heure."))])
    distribution_weekday = SelectField(_l("Distribution le"), coerce=int, choices=WEEKDAYS)
    distribution_start = TimeField(_l("de"), validators=[InputRequired(_l("Indiquez une heure."))])
    distribution_end = TimeField(_l("à"), validators=[InputRequired(_l("Indiquez une heure."))])
    slot_minutes = IntegerField(_l("Durée d'un créneau (minutes)"), default=30, validators=[
        InputRequired(_l("Indiquez une durée.")), NumberRange(min=5, max=240, message=_l("Entre 5 et 240 minutes."))])
    slot_capacity = IntegerField(_l("Foyers par créneau"), default=10, validators=[
        InputRequired(_l("Indiquez un nombre.")), NumberRange(min=1, max=1000, message=_l("Entre 1 et 1000."))])
    weeks_ahead = IntegerField(_l("Semaines créées à l'avance"), default=4, validators=[
        InputRequired(_l("Indiquez un nombre.")), NumberRange(min=1, max=12, message=_l("Entre 1 et 12."))])
    allocation_policy = SelectField(_l("Partage des caisses en vrac"), choices=[
        ("pro_rata", _l("au prorata des demandes")), ("first_come", _l("premier arrivé, premier servi"))])
    active = BooleanField(_l("Actif (crée les distributions à venir)"), default=True)
    submit = SubmitField(_l("Enregistrer le rythme"))
