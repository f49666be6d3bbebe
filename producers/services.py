"""Producer services: catalogue, CSV import and export, per-cycle offers, live demand."""
from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sqlalchemy as sa
from flask_babel import gettext as _

from app.extensions import db
from app.money import parse_euros
from orders.models import Cycle, Order, OrderLine
from pickup.models import Slot
from producers.models import UNITS, Offer, Producer, Product

CSV_COLUMNS = ("nom", "unite", "prix", "tva", "au_poids", "colis", "pas", "actif", "description")
UNIT_WORDS = {"piece": "piece", "pièce": "piece", "kg": "kg", "l": "l", "litre": "l", "bunch": "bunch",
              "botte": "bunch", "basket": "basket", "panier": "basket"}
YES = {"1", "oui", "o", "yes", "y", "vrai", "true", "x"}
NO = {"", "0", "non", "n", "no", "faux", "false"}
PHOTO_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class CatalogueError(ValueError):
    """A catalogue change is refused (message in French)."""


@dataclass
class ProductData:
    """What a product form or a CSV row says about a product."""

    name: str
    unit: str
    price_cents: int
    vat_rate_bp: int = 550
    sold_by_weight: bool = False
    case_size: Decimal | None = None
    portion_step: Decimal | None = None
    active: bool = True
    description: str | None = None


def check_product(data: ProductData) -> None:
    """Refuse inconsistent product data with a French reason."""
    if not data.name.strip():
        raise CatalogueError(_("Le nom est obligatoire."))
    if len(data.name) > 120:
        raise CatalogueError(_("Le nom est trop long (120 caractères au plus)."))
    if data.unit not in UNITS:
        raise CatalogueError(_("Unité inconnue « %(unit)s » : pièce, kg, l, botte ou panier.", unit=data.unit))
    if data.price_cents < 0 or data.price_cents > 10_000_00:
        raise CatalogueError(_("Le prix doit être entre 0 et 10 000 €."))
    if not 0 <= data.vat_rate_bp <= 10000:
        raise CatalogueError(_("Le taux de TVA doit être entre 0 et 100 %."))
    for value, label in ((data.case_size, "La taille du colis"), (data.portion_step, "Le pas de portion")):
        if value is not None and (value <= 0 or value > 10000 or value.as_tuple().exponent < -3):
            raise CatalogueError(_("%(label)s doit être un nombre positif (trois décimales au plus).", label=label))
    if data.portion_step is not None and data.unit not in ("kg", "l") and data.portion_step % 1 != 0:
        raise CatalogueError(_("Le pas de portion d'un produit à l'unité est un nombre entier."))
    if data.case_size is not None and data.portion_step is not None and data.case_size % data.portion_step != 0:
        raise CatalogueError(_("La taille du colis doit être un multiple du pas de portion."))


def save_product(producer_id: int, data: ProductData, product_id: int | None = None) -> Product:
    """Create or update a product of this producer (a product of another producer is not found)."""
    check_product(data)
    clash = db.session.scalar(sa.select(Product.id).where(
        Product.producer_id == producer_id, Product.name == data.name.strip(),
        Product.id != (product_id or 0)))
    if clash:
        raise CatalogueError(_("Un produit s'appelle déjà « %(name)s ».", name=data.name.strip()))
    if product_id is None:
        product = Product(producer_id=producer_id)
        db.session.add(product)
    else:
        product = db.session.scalar(sa.select(Product).where(Product.id == product_id,
                                                             Product.producer_id == producer_id))
        if product is None:
            raise LookupError("product not found")
    product.name = data.name.strip()
    product.unit = data.unit
    product.price_cents = data.price_cents
    product.vat_rate_bp = data.vat_rate_bp
    product.sold_by_weight = data.sold_by_weight
    product.case_size = data.case_size
    product.portion_step = data.portion_step
    product.active = data.active
    product.description = data.description or None
    db.session.flush()
    return product


def store_photo(product_id: int, filename: str, content: bytes, instance_dir: str) -> str:
    """Keep a product photo under instance/photos with a random name; returns that name."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in PHOTO_TYPES:
        raise CatalogueError(_("La photo doit être un fichier JPEG, PNG ou WebP."))
    if len(content) > 2 * 1024 * 1024:
        raise CatalogueError(_("La photo est trop lourde (2 Mo au plus)."))
    folder = Path(instance_dir) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{product_id}-{uuid.uuid4().hex[:12]}{suffix}"
    (folder / name).write_bytes(content)
    product = db.session.get(Product, product_id)
    product.photo_filename = name
    db.session.flush()
    return name


# --------------------------------------------------------------------------- CSV


@dataclass
class ImportReport:
    """What a CSV import did: rows created or updated, rows rejected with line number and reason."""

    created: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _yes_no(text: str, label: str) -> bool:
    """oui/non from a CSV cell."""
    value = (text or "").strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise CatalogueError(_("%(label)s : « %(text)s » n'est ni oui ni non.", label=label, text=text))


def _decimal(text: str, label: str) -> Decimal | None:
    """An optional decimal from a CSV cell ("2,5")."""
    value = (text or "").strip().replace(",", ".")
    if not value:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise CatalogueError(_("%(label)s : « %(text)s » n'est pas un nombre.", label=label, text=text)) from None
    if not number.is_finite():
        raise CatalogueError(_("%(label)s : « %(text)s » n'est pas un nombre.", label=label, text=text))
    return number


def row_to_product(row: dict) -> ProductData:
    """ProductData from a CSV row (French column names and words)."""
    unit_word = (row.get("unite") or "").strip().lower()
    if unit_word not in UNIT_WORDS:
        raise CatalogueError(_("Unité inconnue « %(unit)s » : pièce, kg, l, botte ou panier.", unit=row.get("unite") or ""))
    try:
        price = parse_euros(row.get("prix") or "")
    except (ValueError, InvalidOperation):
        raise CatalogueError(_("Prix illisible « %(price)s » (exemple : 2,50).", price=row.get("prix") or "")) from None
    vat = _decimal(row.get("tva") or "5,5", "TVA")
    if vat is None or vat < 0 or vat > 100 or (vat * 100) % 1 != 0:
        raise CatalogueError(_("TVA illisible « %(vat)s » (exemple : 5,5).", vat=row.get("tva")))
    active_text = row.get("actif")
    return ProductData(
        name=(row.get("nom") or "").strip(), unit=UNIT_WORDS[unit_word], price_cents=price,
        vat_rate_bp=int(vat * 100), sold_by_weight=_yes_no(row.get("au_poids") or "", "Au poids"),
        case_size=_decimal(row.get("colis") or "", "Colis"), portion_step=_decimal(row.get("pas") or "", "Pas"),
        active=True if active_text is None or not active_text.strip() else _yes_no(active_text, "Actif"),
        description=(row.get("description") or "").strip() or None,
    )


def import_catalogue(producer_id: int, text: str) -> ImportReport:
    """Create or update products from CSV text (by name); bad rows are reported, good rows kept."""
    report = ImportReport()
    sample = text[:2048]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    try:
        headers = [h.strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error:
        headers = []
    if "nom" not in headers or "prix" not in headers or "unite" not in headers:
        report.rejected.append((1, "En-tête attendu : " + delimiter.join(CSV_COLUMNS)))
        return report
    reader.fieldnames = headers
    existing = {p.name: p.id for p in db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id))}
    seen: set[str] = set()
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error:
            # A broken file (NUL bytes, an unclosed quote): keep what was read, say where it stopped.
            report.rejected.append((reader.line_num + 1, _("Fichier illisible à partir de cette ligne.")))
            break
        line = reader.line_num
        try:
            data = row_to_product(row)
            if data.name in seen:
                raise CatalogueError(_("« %(name)s » apparaît deux fois dans le fichier.", name=data.name))
            with db.session.begin_nested():
                save_product(producer_id, data, existing.get(data.name))
        except CatalogueError as error:
            report.rejected.append((line, str(error)))
            continue
        seen.add(data.name)
        if data.name in existing:
            report.updated += 1
        else:
            report.created += 1
    return report


def _fmt_decimal(value: Decimal | None) -> str:
    """A decimal with a French comma, no trailing zeros."""
    return "" if value is None else format(value.normalize(), "f").replace(".", ",")


def export_catalogue(producer_id: int) -> str:
    """The producer's catalogue as CSV text in the import format."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(CSV_COLUMNS)
    for p in db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id).order_by(Product.name)):
        writer.writerow([
            p.name, p.unit, _fmt_decimal(Decimal(p.price_cents) / 100), _fmt_decimal(Decimal(p.vat_rate_bp) / 100),
            "oui" if p.sold_by_weight else "non", _fmt_decimal(p.case_size), _fmt_decimal(p.portion_step),
            "oui" if p.active else "non", p.description or "",
        ])
    return out.getvalue()


# --------------------------------------------------------------------------- offers per cycle


def set_offer(cycle_id: int, product_id: int, producer_id: int, offered: bool,
              price_cents: int | None, stock_cap: Decimal | None) -> Offer | None:
    """Offer (or stop offering) a product of this producer in a cycle, at a price, with a cap."""
    product = db.session.scalar(sa.select(Product).where(Product.id == product_id, Product.producer_id == producer_id))
    if product is None:
        raise LookupError("product not found")
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None or cycle.status not in ("draft", "open"):
        raise CatalogueError(_("Cette commande de la semaine est close : l'offre ne peut plus changer."))
    offer = db.session.scalar(sa.select(Offer).where(Offer.cycle_id == cycle_id, Offer.product_id == product_id))
    if not offered:
        if offer is not None:
            offer.active = False
        return offer
    if price_cents is None or price_cents < 0 or price_cents > 10_000_00:
        raise CatalogueError(_("%(name)s : indiquez un prix entre 0 et 10 000 €.", name=product.name))
    if stock_cap is not None and (stock_cap < 0 or stock_cap > 100_000 or stock_cap % product.step != 0):
        raise CatalogueError(_("%(name)s : le stock doit être positif et un multiple du pas de portion.", name=product.name))
    if offer is None:
        offer = Offer(cycle_id=cycle_id, product_id=product_id, price_cents=price_cents, stock_cap=stock_cap,
                      reserved=Decimal(0), active=True)
        db.session.add(offer)
        db.session.flush()
        return offer
    if stock_cap is not None:
        # Guarded: a cap below what households already hold would break their orders.
        result = db.session.execute(
            sa.update(Offer).where(Offer.id == offer.id, Offer.reserved <= stock_cap)
            .values(stock_cap=stock_cap, price_cents=price_cents, active=True)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise CatalogueError(_("%(name)s : déjà %(qty)s commandé, le stock ne peut pas être plus bas.",
                                   name=product.name, qty=_fmt_decimal(offer.reserved)))
    else:
        db.session.execute(sa.update(Offer).where(Offer.id == offer.id)
                           .values(stock_cap=None, price_cents=price_cents, active=True)
                           .execution_options(synchronize_session=False))
    db.session.refresh(offer)
    return offer


# --------------------------------------------------------------------------- demand


@dataclass
class DemandRow:
    """Demand for one product of a cycle so far."""

    offer_id: int
    product: str
    unit: str
    case_size: Decimal | None
    stock_cap: Decimal | None
    quantity: Decimal = Decimal(0)
    tolerance: Decimal = Decimal(0)
    by_slot: dict = field(default_factory=dict)
    by_household: list = field(default_factory=list)

    @property
    def full_cases(self) -> int | None:
        """Whole cases the quantities fill so far (bulk products)."""
        if not self.case_size:
            return None
        return int(self.quantity // self.case_size)

    @property
    def case_fill(self) -> Decimal | None:
        """How much of the next case is already ordered."""
        if not self.case_size:
            return None
        return self.quantity % self.case_size


def demand(cycle_id: int, producer_id: int | None, with_names: bool = False) -> tuple[list[DemandRow], list[Slot]]:
    """Quantities ordered so far per product (and per slot) in a cycle, in a fixed number of queries."""
    offer_filter = [Offer.cycle_id == cycle_id]
    if producer_id is not None:
        offer_filter.append(Product.producer_id == producer_id)
    offers = db.session.execute(
        sa.select(Offer.id, Product.name, Product.unit, Product.case_size, Offer.stock_cap)
        .join(Product, Product.id == Offer.product_id).where(*offer_filter)
        .order_by(Product.name)
    ).all()
    rows = {o.id: DemandRow(o.id, o.name, o.unit, o.case_size, o.stock_cap) for o in offers}
    base = (sa.select(OrderLine.offer_id, Order.slot_id, sa.func.sum(OrderLine.quantity).label("qty"),
                      sa.func.sum(OrderLine.tolerance).label("tol"))
            .join(Order, Order.id == OrderLine.order_id)
            .join(Offer, Offer.id == OrderLine.offer_id)
            .join(Product, Product.id == Offer.product_id)
            .where(*offer_filter, Order.status == "confirmed")
            .group_by(OrderLine.offer_id, Order.slot_id))
    # The sums come back as thousandths: the column type is not carried through SUM on every driver.
    for offer_id, slot_id, qty, tol in db.session.execute(base):
        row = rows.get(offer_id)
        if row is None:
            continue
        qty = Decimal(int(qty or 0)) / 1000 if not isinstance(qty, Decimal) else qty
        tol = Decimal(int(tol or 0)) / 1000 if not isinstance(tol, Decimal) else tol
        row.quantity += qty
        row.tolerance += tol
        row.by_slot[slot_id] = row.by_slot.get(slot_id, Decimal(0)) + qty
    if with_names:
        from app.models import Household

        names = (sa.select(OrderLine.offer_id, Household.name, OrderLine.quantity)
                 .join(Order, Order.id == OrderLine.order_id)
                 .join(Household, Household.id == Order.household_id)
                 .join(Offer, Offer.id == OrderLine.offer_id)
                 .join(Product, Product.id == Offer.product_id)
                 .where(*offer_filter, Order.status == "confirmed").order_by(Household.name))
        for offer_id, name, qty in db.session.execute(names):
            if offer_id in rows:
                rows[offer_id].by_household.append((name, qty))
    slots = list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id).order_by(Slot.starts_at)))
    return list(rows.values()), slots


def demand_csv(rows: list[DemandRow], slots: list[Slot], local_time) -> str:
    """Demand as CSV: one row per product, one column per slot."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(["produit", "unite", "quantite", "tolerance", "colis_complets"]
                    + [f"creneau {local_time(s.starts_at)}" for s in slots])
    for row in rows:
        writer.writerow([row.product, row.unit, _fmt_decimal(row.quantity), _fmt_decimal(row.tolerance),
                         "" if row.full_cases is None else row.full_cases]
                        + [_fmt_decimal(row.by_slot.get(s.id, Decimal(0))) for s in slots])
    return out.getvalue()


def save_producer(name: str, kind: str, email: str | None, contact_name: str | None, phone: str | None,
                  show_household_names: bool, active: bool, producer_id: int | None = None) -> Producer:
    """Create or update a producer (coordinator)."""
    from producers.models import PRODUCER_KINDS

    if kind not in PRODUCER_KINDS:
        raise CatalogueError(_("Type de producteur inconnu."))
    clash = db.session.scalar(sa.select(Producer.id).where(Producer.name == name.strip(),
                                                           Producer.id != (producer_id or 0)))
    if clash:
        raise CatalogueError(_("Un producteur s'appelle déjà « %(name)s ».", name=name.strip()))
    producer = Producer() if producer_id is None else db.session.get(Producer, producer_id)
    if producer is None:
        raise LookupError("producer not found")
    producer.name = name.strip()
    producer.kind = kind
    producer.email = email or None
    producer.contact_name = contact_name or None
    producer.phone = phone or None
    producer.show_household_names = show_household_names
    producer.active = active
    db.session.add(producer)
    db.session.flush()
    return producer
