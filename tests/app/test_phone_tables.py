"""Wide tables stack on a phone: each row a block, its cells labelled from data-label (site.css, table.stack)."""
from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

from app.extensions import db
from app.outbox import queue_message
from orders.contracts import subscribe
from pickup import services
from tests.factories import (
    CycleFactory,
    HouseholdFactory,
    OfferFactory,
    OrderFactory,
    OrderLineFactory,
    PriceTierFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import csrf_token, login
from tests.orders.test_contracts import NOW, Season
from tests.pickup.conftest import make_thursday


class _StackedRows(HTMLParser):
    """The body rows of the tables marked "stack": per row, each cell as (data-label, class, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str | None, str, str]]] = []
        self._stack_depth = 0
        self._in_body = False
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._stack_depth += 1 if "stack" in (attrs.get("class") or "").split() else 0
        elif self._stack_depth and tag == "tbody":
            self._in_body = True
        elif self._stack_depth and self._in_body and tag == "tr":
            self.rows.append([])
        elif self._stack_depth and self._in_body and tag == "td":
            self._cell = {"label": attrs.get("data-label"), "class": attrs.get("class") or "", "text": ""}

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append((self._cell["label"], self._cell["class"], " ".join(self._cell["text"].split())))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table" and self._stack_depth:
            self._stack_depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def stacked_rows(response) -> list[dict[str, str]]:
    """Each row of the page's stacked tables as {label: text}, its title cell under "title"."""
    assert response.status_code == 200
    parser = _StackedRows()
    parser.feed(response.get_data(as_text=True))
    rows = []
    for cells in parser.rows:
        row = {}
        for label, classes, text in cells:
            if "title" in classes.split():
                row["title"] = text
            row[html.unescape(label) if label else ""] = text
        rows.append(row)
    assert rows, "no stacked table on the page"
    return rows


def row_titled(rows: list[dict[str, str]], start: str) -> dict[str, str]:
    """The row whose title starts with the given words."""
    return next(row for row in rows if row.get("title", "").startswith(start))


def test_the_stylesheet_stacks_labelled_cells_on_a_phone_only(client):
    """The labels come from data-label, under a phone-width media query: desktop keeps its columns."""
    css = client.get("/static/site.css").get_data(as_text=True)
    phone = css[css.index("@media (max-width: 40rem)"):]
    phone = phone[:phone.index("\n}\n")]
    assert "table.stack td[data-label]::before { content: attr(data-label);" in phone
    assert re.search(r"table\.stack thead \{ position: absolute;", phone)
    # The title cell leads its block even when it is not the first column (the offer's check box is).
    assert re.search(r"table\.stack td\.title \{[^}]*order: -1;", phone)


def test_producer_offer_catalogue_and_demand_label_their_columns(app, client):
    """Stock max and Déjà commandé stay on screen on a phone: each is a labelled line of the product."""
    cycle = CycleFactory()
    first = SlotFactory(cycle_id=cycle.id, starts_at=datetime(2030, 1, 3, 15, 30, tzinfo=UTC))
    SlotFactory(cycle_id=cycle.id, starts_at=first.starts_at + timedelta(minutes=30))
    farm = ProducerFactory(name="Ferme des Saules")
    pears = ProductFactory(producer=farm, name="Poires", unit="kg", price_cents=340)
    ProductFactory(producer=farm, name="Riz", unit="kg", price_cents=320, case_size=Decimal(25))
    OfferFactory(cycle_id=cycle.id, product=pears, stock_cap=Decimal(40), reserved=Decimal("5.5"))
    user = UserFactory(roles=["producer"], producer_id=farm.id, household=None)
    db.session.commit()
    login(client, user.email)

    offers = stacked_rows(client.get(f"/producteurs/offre/{cycle.id}"))
    pears_row = row_titled(offers, "Poires")
    assert {"Proposé", "Prix (€)", "Stock max (vide = sans limite)"} <= pears_row.keys()
    assert pears_row["Déjà commandé"] == "5,5"

    catalogue = stacked_rows(client.get("/producteurs/catalogue"))
    assert row_titled(catalogue, "Riz")["Vrac"] == "colis de 25"
    assert row_titled(catalogue, "Poires")["Prix"] == "3,40 €"  # spaces, the no-break one included, read as one

    demand = stacked_rows(client.get(f"/producteurs/demande?cycle_id={cycle.id}"))
    assert {"Commandé", "Colis", "Créneau 16:30", "Créneau 17:00"} <= row_titled(demand, "Poires").keys()


def test_coordinator_cycles_and_producers_label_their_columns(app, client):
    """« Déplacer ou annuler » stays in the cycle's block, after its labelled state and deadline."""
    CycleFactory(closes_at=datetime(2030, 12, 3, 22, 59, tzinfo=UTC),
                 opens_at=datetime(2030, 11, 28, 7, tzinfo=UTC), status="draft")
    ProducerFactory(name="Primeurs Rossi", kind="market_trader")
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)

    (cycle_row,) = stacked_rows(client.get("/commandes/cycles"))
    assert cycle_row["État"] == "à venir" and cycle_row["Date limite"] == "mardi 3 décembre 23:59"
    assert "Déplacer ou annuler" in cycle_row[""]

    trader = row_titled(stacked_rows(client.get("/producteurs/admin")), "Primeurs Rossi")
    assert trader["Type"] == "Forain·e" and trader["Noms des foyers"] == "cachés"


def test_shortfalls_and_participation_label_their_columns(app, client):
    """The coordinator's pickup tables: what producers did not deliver, how often volunteers helped."""
    day = make_thursday()
    UserFactory(name="Paul Bénévole", roles=["volunteer"])
    boss = UserFactory(roles=["coordinator"], household=None)
    line = day.line(day.martin, day.eggs)
    services.record_shortage(line.id, Decimal(1), cycle_id=day.cycle.id, user_id=None)
    db.session.commit()
    login(client, boss.email)

    eggs = row_titled(stacked_rows(client.get("/retrait/manques")), "Œufs")
    assert eggs["Producteur"] == "Poulailler Martin" and eggs["Quantité manquante"] == "1 pièce"
    assert {"Distribution", "Foyers", "Valeur au prix producteur"} <= eggs.keys()

    paul = row_titled(stacked_rows(client.get("/retrait/permanences/participation")), "Paul Bénévole")
    assert paul["Permanences faites"] == "0" and paul["À venir"] == "0"


def test_outbox_labels_each_unsent_message(app, client):
    """A failed e-mail's subject, state and SMTP error are labelled lines under its recipient, on both pages."""
    cycle = CycleFactory(status="closed")
    message = queue_message("test:bon:rossi", "primeurs.rossi@example.org", "Bon de commande de jeudi", "…",
                            kind="producer_order", cycle_id=cycle.id)
    message.status, message.attempts, message.last_error = "failed", 5, "SMTPRecipientsRefused: 550 User unknown"
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)

    for url in ("/commandes/courriels", f"/commandes/cycles/{cycle.id}/documents"):
        rossi = row_titled(stacked_rows(client.get(url)), "primeurs.rossi@example.org")
        assert rossi["Objet"] == "Bon de commande de jeudi" and rossi["État"].startswith("Échec")
        assert rossi["Problème"] == "SMTPRecipientsRefused: 550 User unknown"
        assert "Renvoyer" in rossi[""]


def test_price_tiers_and_their_takings_label_their_columns(app, client):
    """The tier's rule, its households and what it brought in, each a labelled line under the tier's name."""
    cycle = CycleFactory()
    supporters = PriceTierFactory(name="Soutien", markup_bp=1000)
    offer = OfferFactory(cycle_id=cycle.id, product=ProductFactory(price_cents=250))
    OrderLineFactory(order=OrderFactory(cycle_id=cycle.id, household_id=HouseholdFactory(price_tier=supporters).id),
                     offer_id=offer.id, quantity=Decimal(2), unit_price_cents=275, base_price_cents=250)
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)

    tier = row_titled(stacked_rows(client.get("/commandes/tarifs")), "Soutien")
    assert tier["Règle"] == "prix +10 %" and tier["Foyers"] == "1" and "Modifier" in tier[""]

    takings = row_titled(stacked_rows(client.get(f"/commandes/cycles/{cycle.id}/tarifs")), "Soutien")
    assert takings["Foyers"] == "1" and takings["Recette"] == "5,50 €"
    assert takings["Au prix de base"] == "5,00 €" and takings["Écart"] == "0,50 €"


def test_repackaging_sheet_labels_the_cases_to_order(app, client):
    """On the volunteer's phone each case to order reads product first, then supplier, cases and quantity."""
    cycle = CycleFactory()
    lentils = ProductFactory(producer=ProducerFactory(name="Vrac & Co"), name="Lentilles vertes", unit="kg",
                             case_size=Decimal(5))
    offer = OfferFactory(cycle_id=cycle.id, product=lentils)
    OrderLineFactory(order=OrderFactory(cycle_id=cycle.id), offer_id=offer.id, quantity=Decimal(5))
    volunteer = UserFactory(roles=["volunteer"])
    db.session.commit()
    login(client, volunteer.email)

    case = row_titled(stacked_rows(client.get(f"/commandes/vrac/{cycle.id}/reconditionnement")), "Lentilles")
    assert case["Fournisseur"] == "Vrac & Co" and case["Colis"] == "1 × 5" and case["Quantité"] == "5 kg"


def test_contract_pages_label_their_columns(app, client):
    """Seasons, subscribers, the instalments form and the producer's baskets: no column left off a phone."""
    season = Season(weeks=3)
    martin = HouseholdFactory(name="Famille Martin")
    contract = subscribe(season.offer.id, martin.id, quantity=2, now=NOW)
    boss = UserFactory(roles=["coordinator"], household=None)
    farmer = UserFactory(roles=["producer"], producer_id=season.farmer.id, household=None)
    db.session.commit()
    login(client, boss.email)

    offer = row_titled(stacked_rows(client.get("/commandes/contrats/gestion")), "Petit panier hiver")
    assert offer["Prix"] == "12,00 €" and offer["Inscrits"] == "1" and "Saison" in offer

    subscriber = row_titled(stacked_rows(client.get(f"/commandes/contrats/offre/{season.offer.id}")), "Famille Martin")
    assert subscriber["Paniers"] == "2" and subscriber["Distributions"] == "3" and subscriber["Total"] == "72,00 €"

    instalment = stacked_rows(client.get(f"/commandes/contrats/contrat/{contract.id}"))[0]
    assert {"Montant (€)", "Moyen", "N° de chèque", "Banque", "Mois d'encaissement"} <= instalment.keys()

    client.post("/compte/deconnexion", data={"csrf_token": csrf_token(client.get("/compte/mon-compte").data)})
    login(client, farmer.email)
    rows = stacked_rows(client.get("/commandes/contrats/producteur"))
    baskets = next(row for row in rows if "Absences" in row)  # a distribution: one labelled line per basket
    assert baskets["Petit panier"] == "2" and baskets["Grand panier"] == "0" and baskets["Absences"] == "—"
    assert row_titled(rows, "Famille Martin")["Total"] == "72,00 €"


def test_households_label_members_and_tier(app, client):
    """The coordinator's list of households: members and tier under each household's name."""
    household = HouseholdFactory(name="Famille Diallo", price_tier=PriceTierFactory(name="Prix libre"))
    UserFactory(name="Aminata Diallo", household=household)
    boss = UserFactory(roles=["coordinator"], household=None)
    db.session.commit()
    login(client, boss.email)

    diallo = row_titled(stacked_rows(client.get("/compte/foyers")), "Famille Diallo")
    assert diallo["Membres"] == "Aminata Diallo" and diallo["Tarif"] == "Prix libre"


def test_catalogue_thumbnails_are_cropped_not_squashed(client):
    """A portrait photo drawn 48 × 48 in the catalogue keeps its proportions (object-fit: cover)."""
    css = client.get("/static/site.css").get_data(as_text=True)
    assert re.search(r'table\.stack td\.title > img\[src\*="/photo/"\] \{ object-fit: cover; \}', css)


def test_month_and_phone_inputs_are_styled_as_the_other_fields(client):
    """The instalments' « Mois d'encaissement » and phone numbers get the full-width, tall field of the rest."""
    css = client.get("/static/site.css").get_data(as_text=True)
    rule = css[:css.index("{", css.index("input[type=text]"))]
    assert "input[type=month]" in rule and "input[type=tel]" in rule
