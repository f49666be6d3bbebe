"""Cycle documents: aggregation, purchase orders (PDF, CSV), bag slips, grid, repackaging; storage and e-mails.

Every document is rendered per chunk (a producer, a slot, a bounded number of households) so a
worker's memory stays flat whatever the cycle size; a chunk rendered again replaces its files
and Document rows (unique per cycle, kind and chunk).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from flask import current_app, render_template
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.db import QUANTITY_SCALE, THOUSANDTH
from app.extensions import db
from app.models import Document, Household
from app.money import line_total_cents
from app.outbox import MessageSpec, site_link
from app.pdf import render_pdf
from app.spreadsheet import decimal_cell, euros_cell, french_csv, text_cell
from orders.models import Cycle, Order, OrderLine
from pickup.models import Site, Slot
from producers.models import Offer, Producer, Product

log = logging.getLogger("panier.documents")

#: Bag slips per printed page (a fixed number keeps the page count predictable).
SLIPS_PER_PAGE = 3
#: Portions per repackaging chunk (about a dozen pages).
REPACK_PORTIONS = 300
#: Households side by side in one table of the product by household grid (landscape A4).
GRID_COLUMNS = 10

#: Document kinds and who reads them.
KIND_LABELS = {
    "purchase_order": "Bon de commande",
    "purchase_order_csv": "Bon de commande (tableur)",
    "bag_slips": "Fiches de préparation",
    "grid": "Tableau de répartition",
    "repackaging": "Fiche de reconditionnement",
    "distribution_sheet": "Feuille d'émargement",
}


def _active(cycle_id: int):
    """Ids of the orders that count in the cycle."""
    from orders.close import active_orders_query

    return active_orders_query(cycle_id)


def chunk_size() -> int:
    """Households per chunk, from DOCUMENT_CHUNK_HOUSEHOLDS."""
    return max(1, int(current_app.config.get("DOCUMENT_CHUNK_HOUSEHOLDS", 100)))


# --------------------------------------------------------------------------- planning


def chunk_names(cycle_id: int) -> list[str]:
    """Every document chunk of a cycle: one per producer, per slot (and household batch), repackaging."""
    producers = db.session.scalars(
        sa.select(Product.producer_id).distinct()
        .join(Offer, Offer.product_id == Product.id)
        .join(OrderLine, OrderLine.offer_id == Offer.id)
        .where(OrderLine.order_id.in_(_active(cycle_id)))
        .order_by(Product.producer_id)
    ).all()
    per_slot = db.session.execute(
        sa.select(Order.slot_id, sa.func.count(Order.id))
        .where(Order.id.in_(_active(cycle_id)))
        .group_by(Order.slot_id)
    ).all()
    size = chunk_size()
    names = [f"chunk:po:{producer_id}" for producer_id in producers]
    for slot_id, count in sorted(per_slot, key=lambda row: row[0] or 0):
        slot = slot_id or 0
        for part in range(math.ceil(count / size)):
            names.append(f"chunk:slips:{slot}:{part}")
            names.append(f"chunk:grid:{slot}:{part}")
        names.append(f"chunk:sheet:{slot}")
    if _has_bulk(cycle_id):
        names += _repack_chunks(repackaging_products(cycle_id))
    return names


def _repack_chunks(products: list) -> list[str]:
    """Repackaging chunks "chunk:repack:<first>:<last>:<part>": small products grouped, big ones split.

    Products first..last (indexes in repackaging order) go in one chunk while their portions fit
    in REPACK_PORTIONS; a product with more portions is a chunk of its own, split in parts.
    """
    names, first, count = [], None, 0
    for index, product in enumerate(products):
        portions = sum(len(case.portions) for case in product.cases)
        if portions > REPACK_PORTIONS:
            if first is not None:
                names.append(f"chunk:repack:{first}:{index - 1}:0")
                first, count = None, 0
            names += [f"chunk:repack:{index}:{index}:{part}" for part in range(math.ceil(portions / REPACK_PORTIONS))]
            continue
        if first is not None and count + portions > REPACK_PORTIONS:
            names.append(f"chunk:repack:{first}:{index - 1}:0")
            first, count = None, 0
        if first is None:
            first = index
        count += portions
    if first is not None:
        names.append(f"chunk:repack:{first}:{len(products) - 1}:0")
    return names


def _has_bulk(cycle_id: int) -> bool:
    """Whether any counted line is a bulk product."""
    return db.session.scalar(
        sa.select(sa.func.count(OrderLine.id))
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .where(OrderLine.order_id.in_(_active(cycle_id)), Product.case_size.is_not(None))
    ) > 0


def render_chunk(cycle_id: int, name: str) -> list[Document]:
    """Render and store the documents of one chunk (the caller commits)."""
    parts = name.split(":")
    kind = parts[1]
    if kind == "po":
        return render_purchase_order(cycle_id, int(parts[2]))
    if kind == "slips":
        return [render_bag_slips(cycle_id, int(parts[2]) or None, int(parts[3]))]
    if kind == "grid":
        return [render_grid(cycle_id, int(parts[2]) or None, int(parts[3]))]
    if kind == "sheet":
        from pickup.documents import render_distribution_sheet

        return [render_distribution_sheet(cycle_id, int(parts[2]) or None)]
    if kind == "repack":
        return [render_repackaging(cycle_id, int(parts[2]), int(parts[3]), int(parts[4]))]
    raise ValueError(f"unknown chunk {name}")


# --------------------------------------------------------------------------- storage


def store_document(cycle_id: int, kind: str, chunk: str, audience: str, filename: str, data: bytes,
                   *, content_type: str = "application/pdf", pages: int | None = None) -> Document:
    """Write the file atomically and insert or replace its Document row (the caller commits)."""
    folder = Path(current_app.config["DOCUMENTS_DIR"]) / f"cycle-{cycle_id}"
    folder.mkdir(parents=True, exist_ok=True)
    safe_chunk = chunk.replace(":", "-")
    path = folder / f"{kind}-{safe_chunk}{Path(filename).suffix}"
    # Write then rename: a reader never sees half a file, a crash leaves the old one whole.
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temp, path)
    values = {
        "audience": audience, "filename": filename, "path": str(path), "content_type": content_type,
        "checksum": hashlib.sha256(data).hexdigest(), "pages": pages, "size_bytes": len(data),
    }
    document = _document(cycle_id, kind, chunk)
    if document is None:
        try:
            with db.session.begin_nested():
                document = Document(cycle_id=cycle_id, kind=kind, chunk=chunk, **values)
                db.session.add(document)
        except IntegrityError:
            document = _document(cycle_id, kind, chunk)
    for key, value in values.items():
        setattr(document, key, value)
    from app.db import utcnow

    document.created_at = utcnow()
    db.session.flush()
    return document


def _document(cycle_id: int, kind: str, chunk: str) -> Document | None:
    """The stored document of a chunk, if any."""
    return db.session.scalar(
        sa.select(Document).where(Document.cycle_id == cycle_id, Document.kind == kind, Document.chunk == chunk)
    )


def cycle_documents(cycle_id: int) -> list[Document]:
    """Every stored document of a cycle, in reading order: by kind, then by slot time (or producer, product).

    Not by id: ids follow whichever worker finished its chunk first.
    """
    documents = db.session.scalars(sa.select(Document).where(Document.cycle_id == cycle_id)).all()
    starts = dict(db.session.execute(sa.select(Slot.id, Slot.starts_at).where(Slot.cycle_id == cycle_id)).all())
    kinds = list(KIND_LABELS)

    def reading_order(document: Document) -> tuple:
        parts = document.chunk.split(":")
        kind = kinds.index(document.kind) if document.kind in kinds else len(kinds)
        if parts[0] == "slot":
            # Slot chunks "slot:<id>[:<part>]"; documents without a slot come after the slots.
            start = starts.get(int(parts[1]))
            numbers = [int(p) for p in parts[2:]]
            return kind, start is None, start.timestamp() if start else 0, numbers, document.filename, document.id
        if parts[0] == "products":
            return kind, False, 0, [int(p) for p in parts[1:]], document.filename, document.id
        return kind, False, 0, [], document.filename.lower(), document.id

    return sorted(documents, key=reading_order)


def may_read(user, document: Document, current_ids: set[int] | None = None) -> bool:
    """Whether a user may download a document: coordinator all, producer its own, volunteers the lists.

    current_ids: the current distributions' ids when the caller checks many documents (one query for all)."""
    if user.has_role("coordinator"):
        return True
    audience = document.audience
    if audience.startswith("producer:"):
        return "producer" in user.roles and user.producer_id == int(audience.split(":")[1])
    if audience == "volunteer":
        if "volunteer" not in user.roles:
            return False
        if current_ids is None:
            return is_current_distribution(document.cycle_id)
        return document.cycle_id in current_ids
    if audience.startswith("household:"):
        return user.household_id == int(audience.split(":")[1])
    return False


def is_current_distribution(cycle_id: int) -> bool:
    """The cycle is a distribution volunteers are handling now (one per site, as the preparation screen)."""
    from pickup.services import current_distributions

    return any(cycle.id == cycle_id for cycle in current_distributions())


# --------------------------------------------------------------------------- aggregation


@dataclass
class PurchaseRow:
    """One product of a purchase order (AMAP baskets apart: the farm brings them, the contract pays them)."""

    product_id: int
    name: str
    unit: str
    case_size: Decimal | None
    price_cents: int
    quantity: Decimal = Decimal(0)
    ordered: Decimal = Decimal(0)
    per_slot: dict = field(default_factory=dict)
    #: VAT rate in basis points (550 = 5.5 %); prices are tax included.
    vat_rate_bp: int = 550
    #: AMAP baskets: paid to the producer by the season's cheques, so no amount on the order.
    contract: bool = False
    #: Priced on the weight prepared on Thursday: the amount here is an estimate.
    sold_by_weight: bool = False

    @property
    def total_cents(self) -> int:
        """Price times allocated quantity, tax included; 0 for AMAP baskets (paid by the contract)."""
        if self.contract:
            return 0
        return line_total_cents(self.price_cents, self.quantity)

    @property
    def not_bought(self) -> bool:
        """A bulk product ordered but not bought: its case was not filled."""
        return bool(self.case_size) and not self.quantity and self.ordered > 0

    @property
    def cases(self) -> tuple[int, Decimal] | None:
        """Whole cases and the units left over, for products sold by the case."""
        if not self.case_size:
            return None
        whole = int(self.quantity // self.case_size)
        return whole, self.quantity - whole * self.case_size


def vat_of_tax_included(cents: int, rate_bp: int) -> int:
    """The VAT inside an amount tax included: cents x rate / (10000 + rate), rounded half up (integers only)."""
    numerator, denominator = cents * rate_bp, 10000 + rate_bp
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass
class VatLine:
    """What a purchase order comes to at one VAT rate: tax included, the tax, before tax."""

    rate_bp: int
    total_cents: int

    @property
    def vat_cents(self) -> int:
        """The VAT inside the total."""
        return vat_of_tax_included(self.total_cents, self.rate_bp)

    @property
    def net_cents(self) -> int:
        """The total before tax (HT)."""
        return self.total_cents - self.vat_cents


def vat_summary(rows: list[PurchaseRow]) -> list[VatLine]:
    """The order's totals per VAT rate, computed on each rate's total (AMAP baskets are not in it)."""
    totals: dict[int, int] = defaultdict(int)
    for row in rows:
        if not row.contract and row.quantity > 0:
            totals[row.vat_rate_bp] += row.total_cents
    return [VatLine(rate, cents) for rate, cents in sorted(totals.items())]


def vat_rate_label(rate_bp: int) -> str:
    """550 -> "5,5 %" (French, as the producer reads it)."""
    return f"{format((Decimal(rate_bp) / 100).normalize(), 'f').replace('.', ',')}\u00a0%"


def aggregate(cycle_id: int, producer_id: int | None = None) -> dict[int, list[PurchaseRow]]:
    """Allocated and ordered quantities per producer, product and slot: one GROUP BY over the lines.

    The GROUP BY reads only order lines and orders (as a raw query would); the few hundred
    offers are looked up once afterwards.
    """
    offers = {
        row.offer_id: row for row in db.session.execute(
            sa.select(Offer.id.label("offer_id"), Product.id, Product.name, Product.unit, Product.case_size,
                      Product.producer_id, Offer.price_cents, Product.vat_rate_bp, Product.is_contract_basket,
                      Product.sold_by_weight)
            .join(Product, Product.id == Offer.product_id)
            .where(Offer.cycle_id == cycle_id, *([Product.producer_id == producer_id] if producer_id else []))
        )
    }
    # Sums stay in thousandths (plain integers) until the end: no per-row Decimal conversion.
    # Contract lines (AMAP baskets) are summed apart: the order lists them without an amount.
    contract_line = sa.case((OrderLine.contract_id.is_(None), 0), else_=1)
    query = (
        sa.select(OrderLine.offer_id, Order.slot_id,
                  sa.type_coerce(sa.func.sum(sa.func.coalesce(OrderLine.quantity_allocated, 0)), sa.BigInteger),
                  sa.type_coerce(sa.func.sum(OrderLine.quantity), sa.BigInteger), contract_line)
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.cycle_id == cycle_id, Order.status.in_(_statuses()))
        .group_by(OrderLine.offer_id, Order.slot_id, contract_line)
    )
    if producer_id is not None:
        query = query.where(OrderLine.offer_id.in_(list(offers) or [0]))
    # Integer thousandths while summing; Decimals are made once per product and slot at the end.
    totals: dict[tuple[int, bool], list] = {}
    for offer_id, slot_id, quantity, ordered_quantity, from_contract in db.session.execute(query):
        info = offers[offer_id]
        # By the line, as the money page: a product ticked « panier de saison » after households ordered it
        # in the week keeps their paid lines on the order.
        key = (info.id, bool(from_contract))
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = [offer_id, 0, 0, defaultdict(int)]
        entry[1] += int(quantity or 0)
        entry[2] += int(ordered_quantity or 0)
        entry[3][slot_id] += int(quantity or 0)
    rows: list[PurchaseRow] = []
    for (product_id, contract), (offer_id, quantity, ordered_quantity, per_slot) in totals.items():
        info = offers[offer_id]
        rows.append(PurchaseRow(
            product_id, info.name, info.unit, info.case_size, info.price_cents,
            quantity=_from_thousandths(quantity), ordered=_from_thousandths(ordered_quantity),
            per_slot={slot: _from_thousandths(value) for slot, value in per_slot.items()},
            vat_rate_bp=info.vat_rate_bp, contract=contract, sold_by_weight=bool(info.sold_by_weight),
        ))
    producer_of = {info.id: info.producer_id for info in offers.values()}
    result: dict[int, list[PurchaseRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: (row.name, row.contract)):
        result[producer_of[row.product_id]].append(row)
    return dict(result)


def _from_thousandths(value) -> Decimal:
    """A SUM over a Quantity column (stored as integer thousandths) back to a Decimal."""
    return (Decimal(int(value or 0)) / QUANTITY_SCALE).quantize(THOUSANDTH)


def _statuses():
    """The counted order statuses."""
    from orders.close import ACTIVE_ORDER_STATUSES

    return ACTIVE_ORDER_STATUSES


def snapshot(obj) -> SimpleNamespace | None:
    """A plain copy of a row's columns: templates read it after the read transaction ended."""
    if obj is None:
        return None
    return SimpleNamespace(**{attr.key: getattr(obj, attr.key) for attr in sa.inspect(obj).mapper.column_attrs})


def _cycle_context(cycle_id: int) -> dict:
    """What every document header shows: the cycle, its site, its slots (as plain copies)."""
    cycle = db.session.get(Cycle, cycle_id)
    site = db.session.get(Site, cycle.site_id)
    slots = {s.id: snapshot(s) for s in db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id))}
    return {"cycle": snapshot(cycle), "site": snapshot(site), "slots": slots}


def end_reads() -> None:
    """End the read transaction before the slow WeasyPrint step.

    On SQLite every transaction takes the write lock (BEGIN IMMEDIATE): holding it while a
    page renders would make parallel workers wait for each other.
    """
    db.session.rollback()


def slot_label(slot: Slot | None) -> str:
    """"16:00–16:30" in local time, or a word when no slot was chosen."""
    from app.templating import local_time

    if slot is None:
        return _("sans créneau")
    return f"{local_time(slot.starts_at)}–{local_time(slot.ends_at)}"


# --------------------------------------------------------------------------- purchase orders


def render_purchase_order(cycle_id: int, producer_id: int) -> list[Document]:
    """The purchase order of one producer, as PDF and CSV: what to bring (quantity > 0) and what it comes to.

    Bulk products whose case was not filled are not bought: they are named apart, so the supplier
    knows why they are missing. AMAP baskets are listed without an amount (the contract pays them).
    """
    producer = snapshot(db.session.get(Producer, producer_id))
    aggregated = aggregate(cycle_id, producer_id).get(producer_id, [])
    rows = [row for row in aggregated if row.quantity > 0]
    not_bought = [row for row in aggregated if row.not_bought]
    context = _cycle_context(cycle_id)
    slots = context["slots"]
    slot_ids = sorted({sid for row in rows for sid, quantity in row.per_slot.items() if quantity},
                      key=lambda sid: (sid not in slots, slots[sid].starts_at.timestamp() if sid in slots else 0))
    total = sum(row.total_cents for row in rows)
    end_reads()
    pdf = render_pdf("orders/documents/purchase_order.html", producer=producer, rows=rows, total_cents=total,
                     vat_lines=vat_summary(rows), vat_rate_label=vat_rate_label, not_bought=not_bought,
                     has_contract=any(row.contract for row in rows),
                     estimated=any(row.sold_by_weight and not row.contract for row in rows),
                     slot_ids=slot_ids, slot_label=slot_label, title=_("Bon de commande"), **context)
    chunk = f"producer:{producer_id}"
    audience = f"producer:{producer_id}"
    stem = f"bon-de-commande-{context['cycle'].distribution_date.isoformat()}-{_slug(producer.name)}"
    documents = [store_document(cycle_id, "purchase_order", chunk, audience, f"{stem}.pdf", pdf.data,
                                pages=pdf.pages)]
    documents.append(store_document(cycle_id, "purchase_order_csv", chunk, audience, f"{stem}.csv",
                                    purchase_order_csv(rows, slot_ids, context["slots"]),
                                    content_type="text/csv"))
    return documents


def purchase_order_csv(rows: list[PurchaseRow], slot_ids: list, slots: dict) -> bytes:
    """The purchase order as a CSV a French spreadsheet opens (semicolons, decimal commas, BOM).

    Only what is to be delivered (quantity > 0); prices tax included (TTC) with their VAT rate;
    AMAP baskets without an amount; after the total, the totals per VAT rate (HT, TVA, TTC).
    """
    # The producer reads units in French, as on the PDF ("panier", not "basket").
    from orders.routes import unit_label

    rows = [row for row in rows if row.quantity > 0]
    out, writer = french_csv()
    writer.writerow(["produit", "unite", "taille_colis", "quantite", "colis_entiers", "reste_unites", "tva_pct",
                     "prix_unitaire_ttc_eur", "total_ttc_eur", "remarque"]
                    + [f"creneau_{slot_label(slots.get(s))}" for s in slot_ids])
    for row in rows:
        cases = row.cases
        if row.contract:
            money = ["", "", "", _("panier AMAP, réglé par contrat")]
        else:
            note = _("montant estimé (au poids)") if row.sold_by_weight else ""
            money = [decimal_cell(Decimal(row.vat_rate_bp) / 100), euros_cell(row.price_cents),
                     euros_cell(row.total_cents), note]
        writer.writerow([
            text_cell(row.name), unit_label(row.unit), decimal_cell(row.case_size), decimal_cell(row.quantity),
            cases[0] if cases else "", decimal_cell(cases[1]) if cases else "",
        ] + money + [decimal_cell(row.per_slot.get(s, Decimal(0))) for s in slot_ids])
    writer.writerow(["TOTAL TTC", "", "", "", "", "", "", "", euros_cell(sum(r.total_cents for r in rows))])
    vat_lines = vat_summary(rows)
    if vat_lines:
        writer.writerow([])
        writer.writerow(["taux_tva_pct", "total_ht_eur", "tva_eur", "total_ttc_eur"])
        for line in vat_lines:
            writer.writerow([decimal_cell(Decimal(line.rate_bp) / 100), euros_cell(line.net_cents),
                             euros_cell(line.vat_cents), euros_cell(line.total_cents)])
        if len(vat_lines) > 1:
            writer.writerow(["TOTAL"] + [euros_cell(sum(getattr(v, cents) for v in vat_lines))
                                         for cents in ("net_cents", "vat_cents", "total_cents")])
    return out.getvalue().encode("utf-8")


def _slug(text: str) -> str:
    """A file-name-safe version of a name."""
    import re
    import unicodedata

    # Letters lose their accents (é -> e, œ -> oe); any other sign (an en dash in "16h30–17h00",
    # an apostrophe) separates words instead of gluing them together.
    text = text.translate(_LIGATURES)
    ascii_text = "".join(
        char if char.isascii() else ("" if unicodedata.combining(char) else "-")
        for char in unicodedata.normalize("NFKD", text)
    )
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60] or "x"


#: Letters NFKD does not take apart.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})


# --------------------------------------------------------------------------- households


@dataclass
class BagLine:
    """One line on a bag slip."""

    name: str
    producer: str
    unit: str
    ordered: Decimal
    allocated: Decimal
    unit_price_cents: int
    total_cents: int
    bulk: bool
    #: Priced on the weight packed on Thursday (Product.sold_by_weight).
    sold_by_weight: bool = False
    #: What was packed (the real weight once weighed); None before preparation.
    prepared: Decimal | None = None
    #: Bulk: why the household gets less than it ordered (orders.bulk.BulkOutcome.reason); None otherwise.
    reason: str | None = None
    #: An AMAP season basket: paid by the contract's cheques, so its 0 is « réglé par contrat », not a price.
    contract: bool = False

    @property
    def estimated(self) -> bool:
        """The amount is an estimate: a product sold by weight, not weighed yet, and something to weigh.

        Never an AMAP basket: the contract paid it, whatever it weighs."""
        return self.sold_by_weight and self.prepared is None and self.allocated > 0 and not self.contract


@dataclass
class Bag:
    """One household's bag: what goes in it and what it costs."""

    order_id: int
    household_id: int
    household: str
    bag_number: int | None
    slot: Slot | None
    total_cents: int
    due_cents: int
    lines: list[BagLine] = field(default_factory=list)

    @property
    def has_contract(self) -> bool:
        """Whether the bag holds an AMAP season basket."""
        return any(line.contract for line in self.lines)

    @property
    def costs_nothing(self) -> bool:
        """Nothing to pay, now or after weighing (an AMAP basket alone, say): no amount worth printing."""
        return not self.total_cents and not self.due_cents and not any(line.estimated for line in self.lines)

    @property
    def paid_by_contract(self) -> bool:
        """The bag is paid by its AMAP contract alone: the desk has nothing to take."""
        return self.has_contract and self.costs_nothing


def bags(cycle_id: int, slot_id: int | None, part: int | None = None, *, with_due: bool = True) -> list[Bag]:
    """The bags of a slot (one batch of households when part is given), by bag number."""
    query = (
        sa.select(Order.id, Order.household_id, Household.name, Order.bag_number, Order.slot_id, Order.total_cents,
                  Order.status)
        .join(Household, Household.id == Order.household_id)
        .where(Order.cycle_id == cycle_id, Order.status.in_(_statuses()))
        .order_by(Order.bag_number, Household.name, Order.id)
    )
    query = query.where(Order.slot_id.is_(None) if slot_id is None else Order.slot_id == slot_id)
    if part is not None:
        size = chunk_size()
        query = query.offset(part * size).limit(size)
    rows = db.session.execute(query).all()
    slot = snapshot(db.session.get(Slot, slot_id)) if slot_id else None
    from orders.payments import amounts_due_cents

    due = amounts_due_cents(rows) if with_due and rows else {}  # one query for the whole batch
    result = {r[0]: Bag(r[0], r[1], r[2], r[3], slot, r[5], due[r[0]] if with_due else r[5]) for r in rows}
    if not result:
        return []
    lines = db.session.execute(
        sa.select(OrderLine.order_id, Product.name, Producer.name, Product.unit, OrderLine.quantity,
                  OrderLine.quantity_allocated, OrderLine.unit_price_cents, Product.case_size, OrderLine.id,
                  OrderLine.quantity_prepared, Product.sold_by_weight, OrderLine.offer_id, OrderLine.contract_id)
        .join(Offer, Offer.id == OrderLine.offer_id)
        .join(Product, Product.id == Offer.product_id)
        .join(Producer, Producer.id == Product.producer_id)
        .where(OrderLine.order_id.in_(list(result)))
        .order_by(Producer.name, Product.name, OrderLine.id)
    ).all()
    from orders.bulk import bulk_outcomes

    # One query for every short bulk line of these bags: the sharing rule each household is told.
    outcomes = bulk_outcomes(
        line.offer_id for line in lines
        if line.case_size is not None and line.quantity_allocated is not None
        and line.quantity_allocated < line.quantity
    )
    for order_id, name, producer, unit, quantity, allocated, price, case_size, _id, prepared, by_weight, offer_id, \
            contract_id in lines:
        given = allocated if allocated is not None else quantity
        charged = prepared if prepared is not None else given
        outcome = outcomes.get(offer_id)
        result[order_id].lines.append(
            BagLine(name, producer, unit, quantity, given, price, line_total_cents(price, charged),
                    case_size is not None, sold_by_weight=bool(by_weight), prepared=prepared,
                    reason=outcome.reason(quantity, allocated) if outcome else None,
                    contract=contract_id is not None)
        )
    return list(result.values())


def render_bag_slips(cycle_id: int, slot_id: int | None, part: int) -> Document:
    """Bag slips for one batch of households of a slot: one block per household with tick boxes."""
    context = _cycle_context(cycle_id)
    slot_bags = bags(cycle_id, slot_id, part)
    pages = [slot_bags[i:i + SLIPS_PER_PAGE] for i in range(0, len(slot_bags), SLIPS_PER_PAGE)]
    end_reads()
    pdf = render_pdf("orders/documents/bag_slips.html", pages=pages, slot=context["slots"].get(slot_id),
                     slot_label=slot_label, title=_("Fiches de préparation"), **context)
    label = slot_label(context["slots"].get(slot_id)).replace(":", "h")
    filename = f"fiches-preparation-{context['cycle'].distribution_date.isoformat()}-{_slug(label)}-{part + 1}.pdf"
    return store_document(cycle_id, "bag_slips", f"slot:{slot_id or 0}:{part}", "volunteer", filename,
                          pdf.data, pages=pdf.pages)


def render_grid(cycle_id: int, slot_id: int | None, part: int) -> Document:
    """Product by household grid for one batch of households: tables of GRID_COLUMNS households."""
    context = _cycle_context(cycle_id)
    slot_bags = bags(cycle_id, slot_id, part, with_due=False)
    tables = []
    for start in range(0, len(slot_bags), GRID_COLUMNS):
        group = slot_bags[start:start + GRID_COLUMNS]
        products: dict[tuple, dict[int, Decimal]] = defaultdict(dict)
        for column, bag in enumerate(group):
            for line in bag.lines:
                cell = products[(line.producer, line.name, line.unit)]
                cell[column] = cell.get(column, Decimal(0)) + line.allocated
        # Each row's total is what to take from the crate for these bags (one unit per row, so no
        # total across rows: kilograms and pieces do not add up). A product none of these bags
        # gets (a bulk case not filled) has nothing to split: the bag slips say « non livré ».
        rows = [(key, cells, total) for key, cells in sorted(products.items())
                if (total := sum(cells.values(), Decimal(0)))]
        tables.append({"bags": group, "rows": rows})
    end_reads()
    pdf = render_pdf("orders/documents/grid.html", tables=tables, slot=context["slots"].get(slot_id),
                     slot_label=slot_label, title=_("Tableau de répartition"), **context)
    label = slot_label(context["slots"].get(slot_id)).replace(":", "h")
    filename = f"tableau-repartition-{context['cycle'].distribution_date.isoformat()}-{_slug(label)}-{part + 1}.pdf"
    return store_document(cycle_id, "grid", f"slot:{slot_id or 0}:{part}", "volunteer", filename,
                          pdf.data, pages=pdf.pages)


@dataclass
class _Portion:
    """A household's portion (same shape as orders.bulk.Portion)."""

    household_name: str
    bag_number: int | None
    quantity: Decimal


@dataclass
class _Case:
    """A case and its portions (same shape as orders.bulk.RepackCase)."""

    number: int
    portions: list


@dataclass
class _RepackProduct:
    """A bulk product (same shape as orders.bulk.RepackagingProduct)."""

    product_name: str
    unit: str
    case_size: Decimal
    step: Decimal | None
    cases: list
    total_cases: int = 0


def repackaging_products(cycle_id: int, positions: slice | None = None) -> list:
    """Each bulk case split into portions (only the products at these positions of the sheet, if given)."""
    from orders.bulk import repackaging_rows

    return repackaging_rows(cycle_id, positions)


def render_repackaging(cycle_id: int, first: int, last: int, part: int) -> Document:
    """Repackaging sheet for bulk products first..last (or one part of one big product): cases into portions."""
    context = _cycle_context(cycle_id)
    products = repackaging_products(cycle_id, slice(first, last + 1))
    parts = 1
    if first == last and products:
        # One big product: keep only this part's portions, case by case.
        product = products[0]
        parts = max(1, math.ceil(sum(len(case.portions) for case in product.cases) / REPACK_PORTIONS))
        start, end, seen, cases = part * REPACK_PORTIONS, (part + 1) * REPACK_PORTIONS, 0, []
        for case in product.cases:
            kept = [p for n, p in enumerate(case.portions, start=seen) if start <= n < end]
            seen += len(case.portions)
            if kept:
                cases.append(_Case(case.number, kept))
        products = [_RepackProduct(product.product_name, product.unit, product.case_size, None, cases,
                                   total_cases=len(product.cases))]
    end_reads()
    # Products are numbered as on the whole sheet, so the file's name ("produits-1-6") finds them.
    numbered = [(first + index + 1, product) for index, product in enumerate(products)]
    pdf = render_pdf("orders/documents/repackaging.html", products=numbered, part=part + 1, parts=parts,
                     title=_("Fiche de reconditionnement"), **context)
    stem = f"reconditionnement-{context['cycle'].distribution_date.isoformat()}"
    if not products:
        filename = f"{stem}-vide.pdf"
    elif first == last:
        name = f"{stem}-produit-{first + 1}-{_slug(products[0].product_name)}"
        filename = f"{name}-partie-{part + 1}-sur-{parts}.pdf" if parts > 1 else f"{name}.pdf"
    else:
        filename = f"{stem}-produits-{first + 1}-{last + 1}.pdf"
    return store_document(cycle_id, "repackaging", f"products:{first}:{last}:{part}", "volunteer", filename,
                          pdf.data, pages=pdf.pages)


# --------------------------------------------------------------------------- e-mails


def _delivering_producers(cycle_id: int) -> set[int]:
    """Producers with something to bring this cycle (an allocated quantity above 0)."""
    return set(db.session.scalars(
        sa.select(Product.producer_id).distinct()
        .join(Offer, Offer.product_id == Product.id)
        .join(OrderLine, OrderLine.offer_id == Offer.id)
        .where(OrderLine.order_id.in_(_active(cycle_id)), OrderLine.quantity_allocated > 0)
    ))


def producers_without_email(cycle_id: int) -> list[Producer]:
    """Producers with something to deliver this cycle but no address: their purchase order goes on paper."""
    chunks = db.session.scalars(
        sa.select(Document.chunk).where(Document.cycle_id == cycle_id, Document.kind == "purchase_order")
    ).all()
    ids = [int(c.split(":")[1]) for c in chunks]
    if ids:
        delivering = _delivering_producers(cycle_id)
        ids = [i for i in ids if i in delivering]
    if not ids:
        return []
    return list(db.session.scalars(
        sa.select(Producer).where(Producer.id.in_(ids), sa.or_(Producer.email.is_(None), Producer.email == ""))
        .order_by(Producer.name)
    ))


def cycle_messages(cycle_id: int) -> Iterator[MessageSpec]:
    """The e-mails of a finalized cycle: each producer its purchase order (PDF + CSV), each household
    its confirmation. Yielded one by one so the caller can write them in batches."""
    context = _cycle_context(cycle_id)
    cycle = context["cycle"]
    documents = db.session.scalars(
        sa.select(Document).where(Document.cycle_id == cycle_id,
                                  Document.kind.in_(("purchase_order", "purchase_order_csv")))
    ).all()
    by_producer: dict[int, list[Document]] = defaultdict(list)
    for document in sorted(documents, key=lambda d: d.kind):
        by_producer[int(document.chunk.split(":")[1])].append(document)
    # A producer with nothing to bring (a bulk case not filled, every line capped to 0) gets no
    # e-mail: an order of 0,00 € would only make them wonder. The PDF stays for the coordinator.
    delivering = _delivering_producers(cycle_id)
    for producer_id, docs in sorted(by_producer.items()):
        if producer_id not in delivering:
            log.info("close: producer %s has nothing to deliver for cycle %s; no purchase order e-mail",
                     producer_id, cycle_id)
            continue
        producer = db.session.get(Producer, producer_id)
        if not producer.email:
            log.warning("close: producer %s (%s) has no e-mail; print its purchase order for cycle %s",
                        producer.id, producer.name, cycle_id)
            continue
        yield MessageSpec(
            f"cycle:{cycle_id}:producer:{producer_id}:purchase_order", producer.email,
            _("Bon de commande pour la distribution du %(day)s", day=_day(cycle)),
            render_template("orders/documents/purchase_order_email.txt", producer=producer, **context),
            kind="purchase_order", cycle_id=cycle_id, attachments=[{"document_id": d.id} for d in docs],
        )
    # Plain copies with their addresses: the caller commits between batches, which expires rows.
    households = {
        h.id: (SimpleNamespace(id=h.id, name=h.name), h.contact_emails()) for h in db.session.scalars(
            sa.select(Household).options(selectinload(Household.members)).where(Household.id.in_(
                sa.select(Order.household_id).where(Order.id.in_(_active(cycle_id)))))
        )
    }
    subject = _("Votre commande pour la distribution du %(day)s", day=_day(cycle))
    slot_ids = db.session.scalars(
        sa.select(Order.slot_id).distinct().where(Order.id.in_(_active(cycle_id)))
    ).all()
    for slot_id in slot_ids:
        for bag in bags(cycle_id, slot_id):
            household, recipients = households[bag.household_id]
            if not recipients:
                continue
            body = render_template("orders/documents/confirmation_email.txt", bag=bag, household=household,
                                   slot_label=slot_label, site_link=site_link, **context)
            for recipient in recipients:
                yield MessageSpec(
                    f"cycle:{cycle_id}:household:{household.id}:confirmation:{recipient.lower()}", recipient,
                    subject, body, kind="confirmation", cycle_id=cycle_id,
                )


def _day(cycle: Cycle) -> str:
    """The distribution day in words."""
    from app.templating import local_date

    return local_date(cycle.distribution_date)
