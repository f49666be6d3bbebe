"""Text cells of the CSV files people open in a spreadsheet."""
from __future__ import annotations

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
