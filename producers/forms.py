"""Forms of the producer pages: products, producers, CSV import."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    EmailField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Optional

from app.forms import PageForm
from producers.models import UNITS

UNIT_LABELS = {"piece": _l("pièce"), "kg": _l("kilo (kg)"), "l": _l("litre (l)"), "bunch": _l("botte"),
               "basket": _l("panier")}
KIND_LABELS = {"farmer": _l("Producteur·rice"), "market_trader": _l("Forain·e"),
               "bulk_supplier": _l("Fournisseur vrac")}


class ProductForm(PageForm):
    """A catalogue product (price typed in euros)."""

    name = StringField(_l("Nom"), validators=[DataRequired(_l("Indiquez un nom.")), Length(max=120)])
    unit = SelectField(_l("Unité"), choices=[(u, UNIT_LABELS[u]) for u in UNITS])
    price = StringField(_l("Prix par unité (€)"), validators=[DataRequired(_l("Indiquez un prix, ex. 2,50."))])
    vat = StringField(_l("TVA (%)"), default="5,5")
    sold_by_weight = BooleanField(_l("Vendu au poids (prix réglé sur le poids préparé)"))
    is_contract_basket = BooleanField(_l("Panier de saison (contrat AMAP) : se prend par contrat, pas à la semaine"))
    case_size = StringField(_l("Vrac : taille du colis (laisser vide sinon)"))
    portion_step = StringField(_l("Pas de portion (ex. 0,5)"))
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=2000)])
    active = BooleanField(_l("Actif (proposé dans les commandes)"), default=True)
    photo = FileField(_l("Photo (JPEG, PNG ou WebP)"))
    submit = SubmitField(_l("Enregistrer"))


class ProducerForm(PageForm):
    """A producer, as the coordinator keeps it."""

    name = StringField(_l("Nom"), validators=[DataRequired(_l("Indiquez un nom.")), Length(max=120)])
    kind = SelectField(_l("Type"), choices=list(KIND_LABELS.items()))
    contact_name = StringField(_l("Contact"), validators=[Optional(), Length(max=120)])
    email = EmailField(_l("E-mail (reçoit le bon de commande)"),
                       validators=[Optional(), Email(_l("Cette adresse e-mail n'est pas valide.")), Length(max=254)])
    phone = StringField(_l("Téléphone"), validators=[Optional(), Length(max=40)])
    show_household_names = BooleanField(_l("Peut voir le nom des foyers dans la demande"))
    active = BooleanField(_l("Actif"), default=True)
    submit = SubmitField(_l("Enregistrer"))


class ImportForm(PageForm):
    """A catalogue CSV file."""

    file = FileField(_l("Fichier CSV"))
    submit = SubmitField(_l("Importer"))


class OffersForm(PageForm):
    """The per-cycle offer table; fields o-/price-/cap-<product id> are read by the route."""

    submit = SubmitField(_l("Enregistrer mon offre"))
