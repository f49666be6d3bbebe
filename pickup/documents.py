"""The distribution sheet (feuille d'émargement): per slot, each bag with amount due and a signature column."""
from __future__ import annotations

from flask_babel import gettext as _

from app.models import Document
from app.pdf import render_pdf
from orders.documents import (
    _cycle_context,
    _slug,
    bags,
    end_reads,
    slot_label,
    store_document,
)


def render_distribution_sheet(cycle_id: int, slot_id: int | None) -> Document:
    """One slot's sheet for the desk: bag number, household, amount due, payment, signature."""
    context = _cycle_context(cycle_id)
    slot = context["slots"].get(slot_id)
    slot_bags = bags(cycle_id, slot_id)
    end_reads()
    pdf = render_pdf("pickup/documents/distribution_sheet.html", bags=slot_bags, slot=slot,
                     slot_label=slot_label, title=_("Feuille d'émargement"), **context)
    label = slot_label(slot).replace(":", "h")
    filename = f"emargement-{context['cycle'].distribution_date.isoformat()}-{_slug(label)}.pdf"
    return store_document(cycle_id, "distribution_sheet", f"slot:{slot_id or 0}", "volunteer", filename,
                          pdf.data, pages=pdf.pages)
