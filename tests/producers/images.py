"""Real image bytes for upload tests (the photo check reads the content, not the name)."""
from __future__ import annotations

import io

from PIL import Image

#: EXIF tags a phone writes: orientation, camera, and the GPS block (where the photo was taken).
ORIENTATION, MAKE, GPS_IFD = 0x0112, 0x010F, 0x8825


def png_bytes() -> bytes:
    """A real, tiny PNG image."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "green").save(out, format="PNG")
    return out.getvalue()


def phone_jpeg_bytes(size: tuple[int, int] = (4000, 3000), orientation: int = 6) -> bytes:
    """A photo as a phone sends it: noise (so it weighs ~11 MB at 4000×3000), held sideways
    (EXIF orientation 6: turn 90° to stand upright), with the camera, a GPS position and a comment."""
    image = Image.effect_noise(size, 64).convert("RGB")
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif.tobytes(), comment=b"chez moi, 12 rue des Lilas")
    return out.getvalue()


def huge_png_bytes(size: tuple[int, int]) -> bytes:
    """A PNG that weighs little but opens to size pixels (a decompression bomb when large)."""
    out = io.BytesIO()
    Image.new("1", size).save(out, format="PNG")
    return out.getvalue()


def mpo_bytes() -> bytes:
    """A JPEG holding a second picture (MPO), as some phones save portrait or 3D shots."""
    out = io.BytesIO()
    Image.new("RGB", (2400, 1800), "red").save(out, format="MPO", save_all=True,
                                                append_images=[Image.new("RGB", (2400, 1800), "blue")])
    return out.getvalue()
