"""`flask photos clean`: photos kept before they were cleaned lose their EXIF (the farm's GPS position)."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from app.extensions import db
from producers.models import Product
from tests.factories import ProducerFactory, ProductFactory
from tests.producers.images import GPS_IFD, phone_jpeg_bytes, png_bytes


def _keep(app, product, name: str, content: bytes) -> Path:
    """A photo file kept under instance/photos as an old version of the app left it."""
    folder = Path(app.config["INSTANCE_DIR"]) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    product.photo_filename = name
    return folder / name


def test_old_photos_are_stored_again_without_their_gps_position(app, runner):
    farm = ProducerFactory(name="Ferme des Saules")
    old, clean, lost = (ProductFactory(producer=farm, name=name) for name in ("Miel", "Noix", "Confiture"))
    old_path = _keep(app, old, f"{old.id}-aaaaaaaaaaaa.jpg", phone_jpeg_bytes((1200, 900)))
    clean_bytes = png_bytes()
    clean_path = _keep(app, clean, f"{clean.id}-bbbbbbbbbbbb.png", clean_bytes)
    lost.photo_filename = f"{lost.id}-cccccccccccc.jpg"
    db.session.commit()
    with Image.open(old_path) as before:
        assert before.getexif().get_ifd(GPS_IFD)

    result = runner.invoke(args=["photos", "clean"])
    assert result.exit_code == 0, result.output
    assert "Photos nettoyées : 1 ; déjà propres : 1." in result.output
    assert f"Fichier introuvable : {lost.id}-cccccccccccc.jpg" in result.output

    db.session.expire_all()
    new_name = db.session.get(Product, old.id).photo_filename
    assert new_name != old_path.name and not old_path.exists()
    new_bytes = (old_path.parent / new_name).read_bytes()
    with Image.open(io.BytesIO(new_bytes)) as after:
        assert not after.getexif() and "comment" not in after.info
        assert after.size == (900, 1200)  # turned upright as the phone meant it
    # Already clean: not re-encoded.
    assert db.session.get(Product, clean.id).photo_filename == clean_path.name
    assert clean_path.read_bytes() == clean_bytes

    again = runner.invoke(args=["photos", "clean"])
    assert "Photos nettoyées : 0 ; déjà propres : 2." in again.output
    assert (old_path.parent / new_name).read_bytes() == new_bytes
