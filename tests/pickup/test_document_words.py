"""Words of the Thursday documents: French units and slots, as on the screen."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

from orders.documents import PurchaseRow, purchase_order_csv


def test_purchase_order_csv_writes_units_in_french(app):
    rows = [
        PurchaseRow(1, "Panier de légumes", "basket", None, 1500, quantity=Decimal(3)),
        PurchaseRow(2, "Radis", "bunch", None, 120, quantity=Decimal(2)),
        PurchaseRow(3, "Œufs", "piece", Decimal(6), 50, quantity=Decimal(12)),
        PurchaseRow(4, "Pommes", "kg", None, 320, quantity=Decimal("1.5")),
    ]
    with app.test_request_context():
        data = purchase_order_csv(rows, [None], {})
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert [row[1] for row in table[1:5]] == ["panier", "botte", "pièce", "kg"]
    assert table[0][-1] == "creneau_sans créneau"


def test_names_a_spreadsheet_would_run_are_quoted_in_every_csv(app):
    """Producers type product names and households are named by people: in the purchase order, the
    money and the balances CSV they are text, never formulas (as in the catalogue's export)."""
    from app.extensions import db
    from orders.payments import balances_csv
    from tests.factories import HouseholdFactory

    with app.test_request_context():
        data = purchase_order_csv([PurchaseRow(1, "=HYPERLINK(\"http://x\")", "kg", None, 100,
                                               quantity=Decimal(1))], [None], {})
    assert list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))[1][0] == "'=HYPERLINK(\"http://x\")"
    HouseholdFactory(name="@SUM(A1:A9)")
    db.session.commit()
    balances = list(csv.reader(io.StringIO(balances_csv().removeprefix("\ufeff")), delimiter=";"))
    assert ["'@SUM(A1:A9)"] == [row[1] for row in balances[1:] if "SUM" in row[1]]
