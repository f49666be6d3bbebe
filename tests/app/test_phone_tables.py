"""Wide tables stack on a phone: each row a block, its cells labelled from data-label (site.css, table.stack)."""
from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

from app.extensions import db
from pickup import services
from tests.factories import (
    CycleFactory,
    OfferFactory,
    ProducerFactory,
    ProductFactory,
    SlotFactory,
    UserFactory,
)
from tests.helpers import login
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
