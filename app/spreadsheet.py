"""The CSV files people open in a spreadsheet: French format (semicolons, decimal commas, a BOM so Excel reads
UTF-8), and text cells that are never run as formulas."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

#: Excel reads a CSV as UTF-8 only when it starts with this mark.
BOM = "\ufeff"
#: A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str | None) -> str:
    """A name or text typed by someone, as exported: quoted with ' so a spreadsheet shows it, never runs it.
    Only for text: numbers (a negative amount) are written as they are."""
    text = value or ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def text_from_cell(cell: str | None) -> str:
    """A text cell read back from an export: text_cell's ' taken off again."""
    text = (cell or "").strip()
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_STARTS:
        return text[1:]
    return text


def french_csv(bom: bool = True) -> tuple[io.StringIO, csv.writer]:
    """A CSV as French spreadsheets open it: semicolons between cells, and the BOM first unless the caller
    (a download route) adds it."""
    out = io.StringIO()
    if bom:
        out.write(BOM)
    return out, csv.writer(out, delimiter=";")


def decimal_cell(value) -> str:
    """A quantity or rate as French spreadsheets read it: a decimal comma, no trailing zeros ("1,5", "12");
    empty for None."""
    return "" if value is None else format(Decimal(value).normalize(), "f").replace(".", ",")


def euros_cell(cents: int) -> str:
    """Cents as a French spreadsheet reads an amount ("1234,50"), exact."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100},{abs(cents) % 100:02d}"
