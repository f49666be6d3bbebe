"""Producer services: catalogue, CSV import and export, per-cycle offers, live demand."""
from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError

from app.db import plain_decimal, utcnow
from app.extensions import db
from app.money import cents_to_input, parse_euros
from app.search import folded_sort_key
from app.spreadsheet import decimal_cell, french_csv, text_cell, text_from_cell
from orders.models import Cycle, Order, OrderLine
from pickup.models import Slot
from producers.models import DIVISIBLE_UNITS, UNITS, Offer, Producer, Product, name_key

CSV_COLUMNS = ("nom", "unite", "prix", "tva", "au_poids", "colis", "pas", "actif", "panier_saison", "description")
#: What spreadsheets say for each unit (singular, plural, abbreviations), lower case.
UNIT_WORDS = {
    **dict.fromkeys(("piece", "pièce", "pièces", "pieces", "pce", "pces", "pc", "pcs", "unité", "unités", "unite",
                     "unites", "u"), "piece"),
    **dict.fromkeys(("kg", "kgs", "kilo", "kilos", "kilogramme", "kilogrammes"), "kg"),
    **dict.fromkeys(("l", "litre", "litres", "lt"), "l"),
    **dict.fromkeys(("bunch", "botte", "bottes"), "bunch"),
    **dict.fromkeys(("basket", "panier", "paniers"), "basket"),
}
#: The unit words the export writes (French, and read back by the import).
EXPORT_UNIT_WORDS = {"piece": "pièce", "kg": "kg", "l": "l", "bunch": "botte", "basket": "panier"}
YES = {"1", "oui", "o", "yes", "y", "vrai", "true", "x"}
NO = {"", "0", "non", "n", "no", "faux", "false"}
#: Image formats a photo may have (as Pillow names them), and the suffix it is stored under. MPO is a JPEG
#: with a second picture (depth, preview) as some phones write it; Pillow's JPEG opener reads it as such,
#: and its first picture is kept, as a JPEG.
PHOTO_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}
#: Plain numbers as people type them: "2", "2,5", "0.125", ",5"; no sign, no exponent.
#: Workbooks, not CSV: .xlsx/.ods (a zip) and the old .xls (an OLE2 file).
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


class CatalogueError(ValueError):
    """A catalogue change is refused (message in French); field names the form field it is about."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def parse_decimal(text: str | None) -> Decimal | None:
    """An optional plain decimal as typed ("2,5"); ValueError for anything else ("1e3", "-2", "inf")."""
    cleaned = (text or "").strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    if not cleaned:
        return None
    value = plain_decimal(cleaned.replace(",", ".")) if len(cleaned) <= 20 and cleaned[0] not in "+-" else None
    if value is None:
        raise ValueError(text)
    return value


def control_characters(text: str | None, allow: str = "") -> bool:
    """True if text holds an invisible control character (NUL, escape...) other than those allowed."""
    return any(unicodedata.category(char) == "Cc" and char not in allow for char in text or "")


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
    #: A season basket that AMAP contracts subscribe to (orders.contracts); not sold in the weekly cart.
    is_contract_basket: bool = False


def check_product(data: ProductData) -> None:
    """Refuse inconsistent product data with a French reason."""
    if not data.name.strip():
        raise CatalogueError(_("Le nom est obligatoire."), "name")
    if len(data.name) > 120:
        raise CatalogueError(_("Le nom est trop long (120 caractères au plus)."), "name")
    # PostgreSQL refuses NUL, and other control characters are invisible on screen and on paper.
    if control_characters(data.name):
        raise CatalogueError(_("Le nom contient un caractère invisible (caractère de contrôle) : retapez-le."), "name")
    if control_characters(data.description, allow="\t\n\r"):
        raise CatalogueError(_("La description contient un caractère invisible (caractère de contrôle) : "
                               "retapez-la."), "description")
    if data.unit not in UNITS:
        raise CatalogueError(_("Unité inconnue « %(unit)s » : pièce, kg, l, botte ou panier.", unit=data.unit), "unit")
    if data.price_cents < 0 or data.price_cents > 10_000_00:
        raise CatalogueError(_("Le prix doit être entre 0 et 10 000 €."), "price")
    if not 0 <= data.vat_rate_bp <= 10000:
        raise CatalogueError(_("Le taux de TVA doit être entre 0 et 100 %."), "vat")
    for value, label, where in ((data.case_size, _("La taille du colis"), "case_size"),
                                (data.portion_step, _("Le pas de portion"), "portion_step")):
        if value is not None and (value <= 0 or value > 10000 or value.as_tuple().exponent < -3):
            raise CatalogueError(_("%(label)s doit être un nombre positif (trois décimales au plus).", label=label),
                                 where)
    # Only kilos and litres split: a case of pieces, bunches or baskets holds a whole number of them.
    if data.portion_step is not None and data.unit not in DIVISIBLE_UNITS and data.portion_step % 1 != 0:
        raise CatalogueError(_("Le pas de portion d'un produit à l'unité est un nombre entier."), "portion_step")
    if data.case_size is not None and data.unit not in DIVISIBLE_UNITS and data.case_size % 1 != 0:
        raise CatalogueError(_("La taille du colis d'un produit à l'unité est un nombre entier."), "case_size")
    if data.case_size is not None and data.portion_step is not None and data.case_size % data.portion_step != 0:
        raise CatalogueError(_("La taille du colis doit être un multiple du pas de portion."), "case_size")


def save_product(producer_id: int, data: ProductData, product_id: int | None = None,
                 withdraw_ordered: bool = False, by_name: dict[str, Product] | None = None) -> Product:
    """Create or update a product of this producer (a product of another producer is not found).

    Names are unique per producer whatever their case and spaces; by_name (the producer's products by
    name_key) spares an import a query per row. Deactivating a product that households ordered withdraws
    it from their orders at close: refused unless withdraw_ordered (the coordinator's decision).
    """
    check_product(data)
    name = " ".join(data.name.split())
    if by_name is None:
        by_name = {name_key(other.name): other for other in db.session.scalars(
            sa.select(Product).where(Product.producer_id == producer_id))}
    clash = by_name.get(name_key(name))
    if clash is not None and clash.id != product_id:
        raise CatalogueError(_("Un produit s'appelle déjà « %(name)s ».", name=name), "name")
    try:
        with db.session.begin_nested():
            return _write_product(producer_id, data, name, product_id, withdraw_ordered)
    except IntegrityError:
        # Another save wrote the same name (whatever its case) since it was looked up above.
        raise CatalogueError(_("Un produit s'appelle déjà « %(name)s ».", name=name), "name") from None


def _write_product(producer_id: int, data: ProductData, name: str, product_id: int | None,
                   withdraw_ordered: bool) -> Product:
    """save_product's writes, once the name is known to be free."""
    if product_id is None:
        product = Product(producer_id=producer_id)
        db.session.add(product)
    else:
        product = db.session.scalar(sa.select(Product).where(Product.id == product_id,
                                                             Product.producer_id == producer_id))
        if product is None:
            raise LookupError("product not found")
        if product.active and not data.active and not withdraw_ordered:
            households = households_ordering(product_id=product_id)
            if households:
                raise CatalogueError(_withdraw_refused(product.name, households), "active")
    product.name = name
    product.unit = data.unit
    product.price_cents = data.price_cents
    product.vat_rate_bp = data.vat_rate_bp
    product.sold_by_weight = data.sold_by_weight
    product.case_size = data.case_size
    product.portion_step = data.portion_step
    product.active = data.active
    product.description = data.description or None
    product.is_contract_basket = data.is_contract_basket
    db.session.flush()
    return product


@dataclass(frozen=True)
class PhotoLimits:
    """What a photo may weigh and open to, and the size and quality it is stored at (config PHOTO_*)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 60_000_000
    max_side: int = 1600
    jpeg_quality: int = 85

    @classmethod
    def from_config(cls, config) -> PhotoLimits:
        """The limits an application's configuration sets."""
        return cls(config["PHOTO_MAX_BYTES"], config["PHOTO_MAX_PIXELS"], config["PHOTO_MAX_SIDE"],
                   config["PHOTO_JPEG_QUALITY"])


#: ISO media brands of HEIC/HEIF files (iPhones' own format), which Pillow cannot read.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def shrink_photo(content: bytes, limits: PhotoLimits = PhotoLimits()) -> tuple[bytes, str]:
    """A photo made fit to keep: upright, at most limits.max_side pixels long, re-encoded without metadata.

    Phone photos carry EXIF (the GPS position, the phone) and weigh megabytes; only pixels are kept.
    Returns the bytes and the suffix to store them under (from what the bytes are, not the name);
    CatalogueError (French, on the photo field) for a file too heavy, too many pixels, or not an image.
    """
    from PIL import Image, ImageOps

    if len(content) > limits.max_bytes:
        raise CatalogueError(_("La photo est trop lourde (%(mb)d Mo au plus) : choisissez-en une plus légère, ou "
                               "réduisez-la sur le téléphone.", mb=limits.max_bytes // (1024 * 1024)), "photo")
    if content[4:8] == b"ftyp" and content[8:12] in _HEIF_BRANDS:
        raise CatalogueError(_("Cette photo est au format HEIC (iPhone), que le site ne lit pas : envoyez-la en JPEG "
                               "(sur l'iPhone : Réglages, Appareil photo, Formats, « Le plus compatible ») ou faites "
                               "une capture d'écran de la photo."), "photo")
    def too_many_pixels(allowed: int) -> CatalogueError:
        return CatalogueError(_("La photo a trop de pixels (%(mpx)d millions au plus) : choisissez une "
                                "résolution plus basse sur l'appareil, ou réduisez-la.",
                                mpx=allowed // 1_000_000), "photo")

    try:
        # Image.open reads only the header: the size is known before anything is decoded.
        with Image.open(io.BytesIO(content), formats=["JPEG", "PNG", "WEBP"]) as image:
            # Only a JPEG decodes at a reduced scale (draft below): a PNG or WebP is decoded whole, so it
            # gets a quarter of the pixels (a 7700 × 7700 one-colour PNG of 249 KB took 750 MB).
            allowed = limits.max_pixels if image.format in ("JPEG", "MPO") else limits.max_pixels // 4
            if image.width * image.height > allowed:
                raise too_many_pixels(allowed)
            kind = image.format
            ratio = limits.max_side / max(image.size)
            if ratio < 1:
                # JPEG only: decode straight at 1/2, 1/4 or 1/8 scale, so memory follows the stored size.
                image.draft(None, (math.ceil(image.width * ratio), math.ceil(image.height * ratio)))
            kept = ImageOps.exif_transpose(image)
            kept.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    except CatalogueError:
        raise
    except Image.DecompressionBombError:
        raise too_many_pixels(limits.max_pixels) from None
    except Exception:  # noqa: BLE001 - a damaged file makes Pillow raise OSError, SyntaxError, struct.error...
        kind = None
    if kind not in PHOTO_FORMATS:
        raise CatalogueError(_("La photo doit être une image JPEG, PNG ou WebP."), "photo")
    return _encode_photo(kept, kind, limits.jpeg_quality), PHOTO_FORMATS[kind]


def _encode_photo(image, kind: str, quality: int) -> bytes:
    """The image's pixels (and colour profile) in its format, nothing else: no EXIF, XMP nor comment."""
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    icc_profile = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA", "L") else None
    if kind in ("JPEG", "MPO"):
        image = image if image.mode in ("RGB", "L") else image.convert("RGB")
    else:
        image = image.convert("RGBA" if transparent else "RGB") if image.mode not in ("RGB", "RGBA") else image
    image.info = {}  # Pillow writes a JPEG's comment back from info
    out = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    if kind in ("JPEG", "MPO"):
        image.save(out, format="JPEG", quality=quality, optimize=True, **options)
    elif kind == "WEBP":
        image.save(out, format="WEBP", quality=quality, **options)
    else:
        image.save(out, format="PNG", optimize=True, **options)
    return out.getvalue()


@dataclass
class PhotosCleaned:
    """What clean_stored_photos did: photos stored again without metadata, photos already clean, files lost."""

    cleaned: list[str] = field(default_factory=list)
    already_clean: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _needs_cleaning(content: bytes, limits: PhotoLimits) -> bool:
    """Whether a stored photo still carries metadata (EXIF with a GPS position, XMP, a comment) or is larger
    than photos are stored now: one uploaded before shrink_photo existed."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        return (bool(image.getexif()) or any(key in image.info for key in ("exif", "xmp", "XML:com.adobe.xmp",
                                                                             "comment"))
                or max(image.size) > limits.max_side)


def clean_stored_photos(instance_dir: str, limits: PhotoLimits = PhotoLimits()) -> PhotosCleaned:
    """Store again, through shrink_photo, the product photos kept before it existed: upright, shrunk, without
    EXIF (the farm's GPS position). Each gets a new name and the old file is removed once the product points
    to the new one. Photos already clean are left as they are (a JPEG re-encoded loses a little each time).
    Commits per photo."""
    report = PhotosCleaned()
    folder = Path(instance_dir) / "photos"
    products = db.session.execute(
        sa.select(Product.id, Product.photo_filename).where(Product.photo_filename.is_not(None)).order_by(Product.id)
    ).all()
    for product_id, name in products:
        path = folder / name
        if not path.is_file():
            report.missing.append(name)
            continue
        content = path.read_bytes()
        try:
            if not _needs_cleaning(content, limits):
                report.already_clean += 1
                continue
            photo, suffix = shrink_photo(content, limits)
        except Exception:  # noqa: BLE001 - a damaged or refused file: reported, left for a person to look at
            report.unreadable.append(name)
            continue
        new_name = f"{product_id}-{uuid.uuid4().hex[:12]}{suffix}"
        (folder / new_name).write_bytes(photo)
        # Only if the product still shows this photo: a producer may have uploaded another meanwhile.
        moved = db.session.execute(sa.update(Product).where(Product.id == product_id, Product.photo_filename == name)
                                   .values(photo_filename=new_name)).rowcount
        db.session.commit()
        if moved:
            path.unlink()
            report.cleaned.append(name)
        else:
            (folder / new_name).unlink()
    return report


def store_photo(product_id: int, photo: bytes, suffix: str, instance_dir: str) -> str:
    """Keep a product photo (as shrink_photo made it) under instance/photos with a random name; returns that name."""
    folder = Path(instance_dir) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{product_id}-{uuid.uuid4().hex[:12]}{suffix}"
    (folder / name).write_bytes(photo)
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
    try:
        return parse_decimal(text)
    except ValueError:
        raise CatalogueError(_("%(label)s : « %(text)s » n'est pas un nombre.", label=label, text=text)) from None


def header_key(cell: str) -> str:
    """A header cell as a column name: « Unité », « UNITE », « Au poids », « Prix (€) » -> unite, au_poids, prix."""
    letters = "".join(c for c in unicodedata.normalize("NFKD", cell) if not unicodedata.combining(c))
    return "_".join(re.findall(r"[a-z0-9]+", letters.lower()))


def product_data(product: Product) -> ProductData:
    """What a product says now, as ProductData (the base a partial CSV row changes)."""
    return ProductData(**{f.name: getattr(product, f.name) for f in fields(ProductData)})


def row_to_product(row: dict, base: ProductData | None = None) -> ProductData:
    """ProductData from a CSV row (French column names and words); columns absent from the file keep base's values."""
    data = ProductData(**vars(base)) if base is not None else ProductData(name="", unit="", price_cents=0)
    if "nom" in row:
        data.name = text_from_cell(row["nom"])
    if "unite" in row:
        unit_word = " ".join((row["unite"] or "").lower().replace(".", " ").split())
        if unit_word not in UNIT_WORDS:
            raise CatalogueError(_("Unité inconnue « %(unit)s » : pièce, kg, l, botte ou panier.",
                                   unit=row["unite"] or ""))
        data.unit = UNIT_WORDS[unit_word]
    if "prix" in row:
        try:
            data.price_cents = parse_euros(row["prix"], signed=False)
        except ValueError:
            raise CatalogueError(_("Prix illisible « %(price)s » (exemple : 2,50).", price=row["prix"] or "")) from None
    if "tva" in row and ((row["tva"] or "").strip() or base is None):
        vat = _decimal((row["tva"] or "5,5").replace("%", ""), "TVA")  # « 5,5 % » as typed under « TVA (%) »
        if vat is None or vat > 100 or (vat * 100) % 1 != 0:
            raise CatalogueError(_("TVA illisible « %(vat)s » (exemple : 5,5).", vat=row["tva"]))
        data.vat_rate_bp = int(vat * 100)
    if "au_poids" in row:
        data.sold_by_weight = _yes_no(row["au_poids"] or "", _("Au poids"))
    if "panier_saison" in row:
        data.is_contract_basket = _yes_no(row["panier_saison"] or "", _("Panier de saison"))
    if "colis" in row:
        data.case_size = _decimal(row["colis"] or "", _("Colis"))
    if "pas" in row:
        data.portion_step = _decimal(row["pas"] or "", _("Pas"))
    if "actif" in row and (row["actif"] or "").strip():
        data.active = _yes_no(row["actif"], _("Actif"))
    if "description" in row:
        data.description = text_from_cell(row["description"]) or None
    return data


def import_catalogue_file(producer_id: int, raw: bytes) -> ImportReport:
    """Import an uploaded file: UTF-8 (with or without BOM) or Windows-1252 CSV; a workbook is sent back."""
    if raw.startswith(_WORKBOOK_MAGIC):
        report = ImportReport()
        report.rejected.append((1, _("Ce fichier est un classeur (Excel, LibreOffice), pas un CSV : ouvrez-le dans "
                                     "le tableur, enregistrez le fichier au format CSV (séparateur point-virgule), "
                                     "puis importez ce fichier CSV.")))
        return report
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    return import_catalogue(producer_id, text)


def _delimiter(header_line: str) -> str:
    """The separator the header uses (descriptions further down may hold commas): ; , or tab."""
    counts = {delimiter: header_line.count(delimiter) for delimiter in ";,\t"}
    best = max(counts, key=counts.get)  # ties go to ";", the first: the import format's own
    return best if counts[best] else ";"


def import_catalogue(producer_id: int, text: str) -> ImportReport:
    """Create or update products from CSV text (by name); bad rows are reported, good rows kept."""
    report = ImportReport()
    text = text.lstrip("\ufeff")
    delimiter = _delimiter(text.splitlines()[0] if text else "")
    # strict: an unclosed or misplaced quote stops the reading instead of swallowing the next lines into a cell.
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        headers = [header_key(h) for h in (reader.fieldnames or [])]
    except csv.Error:
        headers = []
    if not {"nom", "unite", "prix"} <= set(headers):
        report.rejected.append((1, _("En-tête attendu : %(columns)s (nom, unite et prix au moins, en première ligne).",
                                     columns=";".join(CSV_COLUMNS))))
        return report
    reader.fieldnames = headers
    existing = {name_key(p.name): p for p in
                db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id))}
    seen: set[str] = set()
    rows = iter(reader)
    while True:
        start = reader.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            # A broken file (an unclosed quote, an endless field): keep what was read, say where it stopped.
            reason = _("Fichier illisible à partir de cette ligne.")
            if '"' in str(error) or "end of data" in str(error):
                reason += " " + _("Un guillemet (\") n'est pas fermé ou est mal placé.")
            report.rejected.append((start, reason))
            break
        line = reader.line_num
        extra = [cell for cell in row.pop(None, None) or [] if cell.strip()]
        if not extra and not any((cell or "").strip() for cell in row.values()):
            continue  # an empty row (";;;", spaces): spreadsheets leave them, they mean nothing
        try:
            if extra:
                raise CatalogueError(_("Cette ligne a plus de colonnes que l'en-tête : mettez entre guillemets un "
                                       "texte qui contient « %(d)s ».", d=delimiter))
            if any(control_characters(cell, allow="\t\n\r") for cell in row.values()):
                raise CatalogueError(_("Cette ligne contient un caractère invisible (caractère de contrôle) : "
                                       "retapez-la dans le tableur."))
            key = name_key(text_from_cell(row.get("nom")))
            product = existing.get(key)
            data = row_to_product(row, product_data(product) if product is not None else None)
            if key in seen:
                raise CatalogueError(_("« %(name)s » apparaît deux fois dans le fichier.", name=data.name))
            with db.session.begin_nested():
                saved = save_product(producer_id, data, product.id if product is not None else None,
                                     by_name=existing)
        except CatalogueError as error:
            report.rejected.append((line, str(error)))
            continue
        seen.add(key)
        if product is not None:
            report.updated += 1
        else:
            existing[key] = saved
            report.created += 1
    return report


def export_catalogue(producer_id: int) -> str:
    """The producer's catalogue as CSV text in the import format."""
    out, writer = french_csv(bom=False)
    writer.writerow(CSV_COLUMNS)
    products = db.session.scalars(sa.select(Product).where(Product.producer_id == producer_id)).all()
    for p in sorted(products, key=lambda product: folded_sort_key(product.name)):
        writer.writerow([
            text_cell(p.name), EXPORT_UNIT_WORDS[p.unit], cents_to_input(p.price_cents),
            decimal_cell(Decimal(p.vat_rate_bp) / 100), "oui" if p.sold_by_weight else "non", decimal_cell(p.case_size),
            decimal_cell(p.portion_step), "oui" if p.active else "non", "oui" if p.is_contract_basket else "non",
            text_cell(p.description),
        ])
    return out.getvalue()


# --------------------------------------------------------------------------- offers per cycle


def households_ordering(offer_id: int | None = None, product_id: int | None = None) -> int:
    """How many households confirmed an order holding this offer, or this product in a cycle not yet finalized."""
    query = (sa.select(sa.func.count(sa.distinct(Order.household_id)))
             .join(OrderLine, OrderLine.order_id == Order.id)
             .where(Order.status == "confirmed", OrderLine.quantity > Decimal(0)))
    if offer_id is not None:
        query = query.where(OrderLine.offer_id == offer_id)
    else:
        # Allocation at finalize gives nothing for a withdrawn product: a closed cycle still counts.
        query = (query.join(Offer, Offer.id == OrderLine.offer_id).join(Cycle, Cycle.id == Offer.cycle_id)
                 .where(Offer.product_id == product_id, Offer.active.is_(True),
                        Cycle.status.in_(("draft", "open", "closed"))))
    return db.session.scalar(query) or 0


def _withdraw_refused(name: str, households: int) -> str:
    """Why an ordered product cannot be withdrawn by its producer."""
    return ngettext("%(name)s : %(num)d foyer l'a déjà commandé ; le retirer changerait sa commande. "
                    "Si vous ne pouvez pas le livrer, contactez la coordination.",
                    "%(name)s : %(num)d foyers l'ont déjà commandé ; le retirer changerait leurs commandes. "
                    "Si vous ne pouvez pas le livrer, contactez la coordination.", households, name=name)


def parse_offer_values(name: str, price_text: str | None, cap_text: str | None,
                       offered: bool) -> tuple[int | None, Decimal | None]:
    """Price in cents (when offered) and stock cap as typed in the offer table; CatalogueError naming which
    one is wrong and why (a stock of « -3 » is negative, not unreadable)."""
    price = None
    if offered:
        try:
            price = parse_euros(price_text or "", signed=False)
        except ValueError:
            if _is_negative(price_text):
                raise CatalogueError(_("%(name)s : indiquez un prix entre 0 et 10 000 €.", name=name)) from None
            raise CatalogueError(_("%(name)s : prix illisible « %(text)s » (exemple : 2,50).", name=name,
                                   text=price_text or "")) from None
    try:
        cap = parse_decimal(cap_text)
    except ValueError:
        if _is_negative(cap_text):
            raise CatalogueError(_("%(name)s : le stock doit être positif et un multiple du pas de portion.",
                                   name=name)) from None
        raise CatalogueError(_("%(name)s : stock illisible « %(text)s » (exemple : 12, ou vide pour sans limite).",
                               name=name, text=cap_text or "")) from None
    return price, cap


def _is_negative(text: str | None) -> bool:
    """True if text is a number typed with a minus sign (« -3 », « - 2,5 »)."""
    cleaned = (text or "").strip()
    if not cleaned.startswith(("-", "\u2212")):  # the minus sign some phone keyboards type
        return False
    try:
        return parse_decimal(cleaned[1:]) is not None
    except ValueError:
        return False


def offers_at_another_price(product_id: int) -> list[tuple[Cycle, Offer]]:
    """The product's offers in open or coming weeks priced otherwise than its catalogue price, by date.

    A catalogue price does not reach those offers (households' carts hold the price they were shown):
    the producer changes them on each week's offer page. Season baskets are priced by their contracts.
    """
    return [tuple(row) for row in db.session.execute(
        sa.select(Cycle, Offer).join(Offer, Offer.cycle_id == Cycle.id).join(Product, Product.id == Offer.product_id)
        .where(Offer.product_id == product_id, Offer.active.is_(True), Cycle.status.in_(("draft", "open")),
               Offer.price_cents != Product.price_cents, Product.is_contract_basket.is_(False))
        .order_by(Cycle.distribution_date, Cycle.id))]


def set_offer(cycle_id: int, product_id: int, producer_id: int, offered: bool,
              price_cents: int | None, stock_cap: Decimal | None, withdraw_ordered: bool = False) -> Offer | None:
    """Offer (or stop offering) a product of this producer in a cycle, at a price, with a cap.

    Withdrawing an offer households already ordered is refused unless withdraw_ordered (the coordinator's
    decision): at close their lines then get nothing and cost nothing.
    """
    product = db.session.scalar(sa.select(Product).where(Product.id == product_id, Product.producer_id == producer_id))
    if product is None:
        raise LookupError("product not found")
    cycle = db.session.get(Cycle, cycle_id)
    if cycle is None or cycle.status not in ("draft", "open"):
        raise CatalogueError(_("Cette commande de la semaine est close : l'offre ne peut plus changer."))
    offer = db.session.scalar(sa.select(Offer).where(Offer.cycle_id == cycle_id, Offer.product_id == product_id))
    if not offered:
        if offer is not None and offer.active:
            households = households_ordering(offer_id=offer.id)
            if households and not withdraw_ordered:
                raise CatalogueError(_withdraw_refused(product.name, households))
            offer.active = False
            db.session.flush()
        return offer
    if price_cents is None or price_cents < 0 or price_cents > 10_000_00:
        raise CatalogueError(_("%(name)s : indiquez un prix entre 0 et 10 000 €.", name=product.name))
    if stock_cap is not None and (stock_cap < 0 or stock_cap > 100_000 or stock_cap % product.step != 0):
        raise CatalogueError(_("%(name)s : le stock doit être positif et un multiple du pas de portion.",
                               name=product.name))
    if stock_cap is not None and product.case_size and stock_cap % product.case_size != 0:
        # Only whole cases are bought at close: households could fill a part case that is never bought.
        raise CatalogueError(_("%(name)s se vend par colis de %(size)s : le stock doit être un nombre entier de "
                               "colis (%(size)s, %(twice)s…).", name=product.name,
                               size=decimal_cell(product.case_size), twice=decimal_cell(2 * product.case_size)))
    if offer is None:
        offer = Offer(cycle_id=cycle_id, product_id=product_id, price_cents=price_cents, stock_cap=stock_cap,
                      reserved=Decimal(0), active=True)
        db.session.add(offer)
        db.session.flush()
        _offer_in_coming_weeks(cycle, offer)
        return offer
    if stock_cap is not None:
        # Guarded: a cap below what households already hold would break their orders.
        result = db.session.execute(
            sa.update(Offer).where(Offer.id == offer.id, Offer.reserved <= stock_cap)
            .values(stock_cap=stock_cap, price_cents=price_cents, active=True)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise CatalogueError(_("%(name)s : déjà %(qty)s commandé, le stock ne peut pas être plus bas.",
                                   name=product.name, qty=decimal_cell(offer.reserved)))
    else:
        db.session.execute(sa.update(Offer).where(Offer.id == offer.id)
                           .values(stock_cap=None, price_cents=price_cents, active=True)
                           .execution_options(synchronize_session=False))
    db.session.refresh(offer)
    return offer


def _offer_in_coming_weeks(cycle: Cycle, offer: Offer) -> int:
    """A product newly offered is offered too in the schedule's later weeks not yet open that have no say on it.

    Schedules create their cycles weeks ahead (orders.services.generate_cycles, which copies the offers of
    the week before): a product first offered after that would be missing from every coming week. A week
    that already has a row for the product (offered, or withdrawn on purpose) keeps it. Returns how many.
    """
    if cycle.schedule_id is None:
        return 0
    later = (sa.select(Cycle.id, sa.literal(offer.product_id), sa.literal(offer.price_cents),
                       sa.literal(offer.stock_cap, Offer.stock_cap.type), sa.literal(Decimal(0), Offer.reserved.type),
                       sa.true())
             .where(Cycle.schedule_id == cycle.schedule_id, Cycle.status == "draft",
                    Cycle.distribution_date > cycle.distribution_date,
                    ~sa.exists().where(Offer.cycle_id == Cycle.id, Offer.product_id == offer.product_id)))
    try:
        with db.session.begin_nested():
            return db.session.execute(sa.insert(Offer).from_select(
                ["cycle_id", "product_id", "price_cents", "stock_cap", "reserved", "active"], later)).rowcount
    except IntegrityError:
        return 0  # a week being generated at this moment copies the offer itself


# --------------------------------------------------------------------------- demand

#: Cycle statuses whose lines are allocated for good: the purchase order's quantities are final.
ALLOCATED_STATUSES = ("finalized", "distributed", "archived")
#: Weeks offered at most on the demand page's week chooser.
DEMAND_WEEKS = 12


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
    #: What no slot column holds (AMAP baskets of a household without a slot, say): the columns add up.
    no_slot: Decimal = Decimal(0)

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


@dataclass
class DeliveryRow:
    """What the producer delivers of one product once the week is allocated: a line of its purchase order."""

    product: str
    unit: str
    case_size: Decimal | None
    #: Allocated: what is to be delivered (whole cases only, for a bulk product).
    quantity: Decimal
    ordered: Decimal
    #: AMAP season baskets, apart from the same product bought in the week (as on the purchase order).
    contract: bool = False
    by_slot: dict = field(default_factory=dict)
    by_household: list = field(default_factory=list)
    no_slot: Decimal = Decimal(0)

    @property
    def full_cases(self) -> int | None:
        """Whole cases to deliver (bulk products)."""
        if not self.case_size:
            return None
        return int(self.quantity // self.case_size)

    @property
    def case_rest(self) -> Decimal | None:
        """Units beyond the whole cases (none for bulk: only whole cases are bought)."""
        if not self.case_size:
            return None
        return self.quantity % self.case_size

    @property
    def not_bought(self) -> bool:
        """A bulk product ordered but not bought: no case was filled."""
        return bool(self.case_size) and not self.quantity and self.ordered > 0

    @property
    def withdrawn(self) -> bool:
        """Ordered, yet nothing to deliver and not for want of a full case: the product was withdrawn."""
        return not self.case_size and not self.quantity and self.ordered > 0


@dataclass
class DemandPage:
    """The demand page of one cycle: the live demand, or once allocated, what is to be delivered."""

    #: True once the cycle is allocated: rows are DeliveryRows, the purchase order's final figures.
    final: bool
    rows: list
    slots: list[Slot]

    @property
    def has_no_slot(self) -> bool:
        """Some quantity has no slot: the page and the CSV add a « sans créneau » column."""
        return any(row.no_slot for row in self.rows)


@dataclass
class DemandWeek:
    """A week on the demand page's chooser, and where it stands for the producer."""

    cycle: Cycle
    site: str
    #: "deliver" (closed, distribution to come), "ordering" (open), "past" (distribution over).
    stage: str


def _cycle_slots(cycle_id: int) -> list[Slot]:
    """The cycle's slots, in the day's order."""
    return list(db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle_id).order_by(Slot.starts_at)))


def _set_no_slot(rows: list, slots: list[Slot]) -> None:
    """Each row's quantity the slot columns leave out, so that the columns add up to its total."""
    for row in rows:
        row.no_slot = row.quantity - sum((row.by_slot.get(slot.id, Decimal(0)) for slot in slots), Decimal(0))


def is_allocated(cycle: Cycle) -> bool:
    """Whether the cycle's lines are allocated: finalized or later, or closed with the close's first step done."""
    if cycle.status in ALLOCATED_STATUSES:
        return True
    if cycle.status != "closed":
        return False
    from app.models import FinalizeStep

    return db.session.scalar(sa.select(FinalizeStep.status).where(
        FinalizeStep.cycle_id == cycle.id, FinalizeStep.name == "prepare")) == "done"


def demand_page(cycle: Cycle, producer_id: int | None, with_names: bool = False) -> DemandPage:
    """The live demand while households order; once allocated, what is to be delivered (the purchase order's)."""
    if is_allocated(cycle):
        return DemandPage(True, *delivery(cycle.id, producer_id, with_names))
    return DemandPage(False, *demand(cycle.id, producer_id, with_names))


def demand(cycle_id: int, producer_id: int | None, with_names: bool = False) -> tuple[list[DemandRow], list[Slot]]:
    """Quantities ordered so far per product (and per slot) in a cycle, in a fixed number of queries."""
    offer_filter = [Offer.cycle_id == cycle_id]
    if producer_id is not None:
        offer_filter.append(Product.producer_id == producer_id)
    offers = db.session.execute(
        sa.select(Offer.id, Product.name, Product.unit, Product.case_size, Offer.stock_cap)
        .join(Product, Product.id == Offer.product_id).where(*offer_filter)
    ).all()
    offers.sort(key=lambda o: folded_sort_key(o.name))
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
                 .where(*offer_filter, Order.status == "confirmed"))
        for offer_id, name, qty in db.session.execute(names):
            if offer_id in rows:
                rows[offer_id].by_household.append((name, qty))
        for row in rows.values():
            row.by_household.sort(key=lambda pair: folded_sort_key(pair[0]))
    slots = _cycle_slots(cycle_id)
    _set_no_slot(list(rows.values()), slots)
    return list(rows.values()), slots


def delivery(cycle_id: int, producer_id: int | None,
             with_names: bool = False) -> tuple[list[DeliveryRow], list[Slot]]:
    """What is to be delivered per product and slot once the cycle is allocated, in a fixed number of queries.

    The figures are the purchase order's (orders.documents.aggregate: allocated quantities, AMAP baskets
    apart). Products ordered but not delivered (no case filled, product withdrawn) stay, at 0, so the
    producer reads why they are not on the order.
    """
    from orders.close import ACTIVE_ORDER_STATUSES
    from orders.documents import aggregate

    rows = {(p.product_id, p.contract): DeliveryRow(p.name, p.unit, p.case_size, p.quantity, p.ordered,
                                                    p.contract, dict(p.per_slot))
            for purchase in aggregate(cycle_id, producer_id).values() for p in purchase
            if p.quantity > 0 or p.ordered > 0}
    if with_names and rows:
        from app.models import Household

        names = (sa.select(Offer.product_id, OrderLine.contract_id.is_not(None), Household.id, Household.name,
                           OrderLine.quantity_allocated)
                 .join(Order, Order.id == OrderLine.order_id)
                 .join(Household, Household.id == Order.household_id)
                 .join(Offer, Offer.id == OrderLine.offer_id)
                 .join(Product, Product.id == Offer.product_id)
                 .where(Offer.cycle_id == cycle_id, Order.status.in_(ACTIVE_ORDER_STATUSES),
                        OrderLine.quantity_allocated > Decimal(0),
                        *([Product.producer_id == producer_id] if producer_id is not None else [])))
        # By household, not by name: two « Famille Martin » get two packs.
        given: dict[tuple, dict[int, list]] = {}
        for product_id, contract, household_id, name, quantity in db.session.execute(names):
            per_household = given.setdefault((product_id, bool(contract)), {})
            per_household.setdefault(household_id, [name, Decimal(0)])[1] += quantity
        for key, per_household in given.items():
            if key in rows:
                rows[key].by_household = sorted(((name, quantity) for name, quantity in per_household.values()),
                                                key=lambda pair: folded_sort_key(pair[0]))
    result = sorted(rows.values(), key=lambda row: (folded_sort_key(row.product), row.contract))
    slots = _cycle_slots(cycle_id)
    _set_no_slot(result, slots)
    return result, slots


def demand_weeks(now: datetime | None = None) -> list[DemandWeek]:
    """The weeks a producer follows, from the last distribution handed out to the weeks open for orders.

    Weeks to deliver come first (the earliest first), then the weeks open for orders, then the weeks whose
    distribution is over (the latest first); at most DEMAND_WEEKS, in one query.
    """
    from pickup.models import Site

    now = now or utcnow()
    last_handed_out = (sa.select(sa.func.max(Cycle.distribution_date))
                       .where(Cycle.status.in_(("distributed", "archived"))).scalar_subquery())
    found = db.session.execute(
        sa.select(Cycle, Site.name).join(Site, Site.id == Cycle.site_id)
        .where(Cycle.status.in_(("open", "closed", "finalized", "distributed", "archived")),
               sa.or_(last_handed_out.is_(None), Cycle.distribution_date >= last_handed_out))
        .order_by(Cycle.distribution_date.desc(), Cycle.id.desc()).limit(DEMAND_WEEKS)).all()
    weeks = []
    for cycle, site in found:
        if cycle.status == "open":
            stage = "ordering"
        elif cycle.status in ("closed", "finalized") and cycle.distribution_ends_at > now:
            stage = "deliver"
        else:
            stage = "past"
        weeks.append(DemandWeek(cycle, site, stage))
    order = {"deliver": 0, "ordering": 1, "past": 2}
    ahead = sorted((w for w in weeks if w.stage != "past"),
                   key=lambda w: (order[w.stage], w.cycle.distribution_date, w.cycle.id))
    return ahead + [w for w in weeks if w.stage == "past"]


def cycles_around(now: datetime | None = None) -> tuple[Cycle | None, Cycle | None]:
    """When no cycle is open: the last one that closed and the next one to open (either may be None)."""
    now = now or utcnow()
    last = db.session.scalar(sa.select(Cycle).where(Cycle.status.notin_(("draft", "cancelled")),
                                                    Cycle.closes_at <= now)
                             .order_by(Cycle.closes_at.desc()).limit(1))
    upcoming = db.session.scalar(sa.select(Cycle).where(Cycle.status.in_(("draft", "open")), Cycle.closes_at > now)
                                 .order_by(Cycle.opens_at).limit(1))
    return last, upcoming


def demand_csv(rows: list[DemandRow], slots: list[Slot], local_time) -> str:
    """Demand as CSV: one row per product, one column per slot (and « sans créneau » when some quantity has
    none, so the columns add up); units in words, as on the purchase order."""
    # Imported here: orders imports this package's models.
    from orders.routes import unit_label

    no_slot = any(row.no_slot for row in rows)
    out, writer = french_csv(bom=False)
    writer.writerow(["produit", "unite", "quantite", "tolerance", "colis_complets"]
                    + [f"creneau {local_time(s.starts_at)}" for s in slots] + (["sans creneau"] if no_slot else []))
    for row in rows:
        writer.writerow([text_cell(row.product), unit_label(row.unit), decimal_cell(row.quantity),
                         decimal_cell(row.tolerance), "" if row.full_cases is None else row.full_cases]
                        + [decimal_cell(row.by_slot.get(s.id, Decimal(0))) for s in slots]
                        + ([decimal_cell(row.no_slot)] if no_slot else []))
    return out.getvalue()


def delivery_csv(rows: list[DeliveryRow], slots: list[Slot], local_time) -> str:
    """What is to be delivered as CSV: the purchase order's quantities per product and slot, with what was
    ordered and why a product ordered is not delivered."""
    from orders.routes import unit_label

    no_slot = any(row.no_slot for row in rows)
    out, writer = french_csv(bom=False)
    writer.writerow(["produit", "unite", "a_livrer", "commande", "colis_complets", "remarque"]
                    + [f"creneau {local_time(s.starts_at)}" for s in slots] + (["sans creneau"] if no_slot else []))
    for row in rows:
        if row.not_bought:
            note = _("non acheté : aucun colis complet")
        elif row.withdrawn:
            note = _("non livré : produit retiré")
        else:
            note = _("panier AMAP") if row.contract else ""
        writer.writerow([text_cell(row.product), unit_label(row.unit), decimal_cell(row.quantity),
                         decimal_cell(row.ordered), "" if row.full_cases is None else row.full_cases, note]
                        + [decimal_cell(row.by_slot.get(s.id, Decimal(0))) for s in slots]
                        + ([decimal_cell(row.no_slot)] if no_slot else []))
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
