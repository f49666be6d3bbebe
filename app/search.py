"""Finding a household from what a volunteer types: accents, case and word order aside.

« ecoffier », « Écoffier » and « ÉCOFFIER » find « Mme Hélène Écoffier »; « dupont marie » finds the
household Dupont whose member is Marie; « 04 75 » finds the household whose phone holds those digits.
SQL's
LIKE cannot do that on both databases (SQLite folds ASCII letters only, PostgreSQL keeps accents),
so the households' names, members, addresses and phones are read and compared here: two short
queries, fine for the few thousand households of an association, on pages volunteers open by hand.
"""
from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Household, User

_NOT_WORD = re.compile(r"[^\w@.]+")


def _bare(text: str | None) -> str:
    """Lower case without accents or ligatures: « Œufs ÉCOFFIER » -> « oeufs ecoffier »."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return bare.replace("œ", "oe").replace("æ", "ae")  # ligatures NFKD leaves whole


def fold(text: str | None) -> str:
    """Lower case without accents, punctuation as spaces: « Mme Hélène ÉCOFFIER-Roux » -> « mme helene ecoffier roux »."""
    return " ".join(_NOT_WORD.sub(" ", _bare(text)).split())


def folded_sort_key(text: str | None) -> tuple[str, str]:
    """French reading order: « kiwis » before « Pommes », « Élise » before « Yves » (then the exact text)."""
    return " ".join(_bare(text).split()), text or ""


class Found(NamedTuple):
    """The households found, by name, and whether more matched than were returned."""

    households: list[Household]
    more: bool


def search_households(text: str | None, limit: int = 20) -> Found:
    """Active households where every typed word is in the name, a member's name or an address (accents and
    case aside), or whose phone holds the typed digits; at most `limit`, by name."""
    words = fold(text).split()
    digits = re.sub(r"\D", "", text or "")
    by_phone = bool(digits) and len(digits) >= 2 and not re.search(r"[^\d\s.+-]", (text or "").strip())
    if not words and not by_phone:
        return Found([], False)
    known: dict[int, list[str]] = {}
    phones: dict[int, str] = {}
    for household_id, name, email, phone in db.session.execute(
            sa.select(Household.id, Household.name, Household.email, Household.phone)
            .where(Household.active.is_(True))):
        known[household_id] = [name, email or ""]
        phones[household_id] = re.sub(r"\D", "", phone or "")
    for household_id, name, email in db.session.execute(
            sa.select(User.household_id, User.name, User.email)
            .where(User.household_id.is_not(None), User.active.is_(True))):
        if household_id in known:
            known[household_id] += [name or "", email or ""]
    hits = []
    for household_id, texts in known.items():
        if by_phone and digits in phones[household_id]:
            hits.append(household_id)
            continue
        haystack = fold(" ".join(texts))
        if words and all(word in haystack for word in words):
            hits.append(household_id)
    hits.sort(key=lambda household_id: (folded_sort_key(known[household_id][0]), household_id))
    shown = hits[:limit]
    if not shown:
        return Found([], False)
    households = {h.id: h for h in db.session.scalars(
        sa.select(Household).where(Household.id.in_(shown)).options(selectinload(Household.members)))}
    return Found([households[household_id] for household_id in shown], len(hits) > limit)
