"""Real image bytes for upload tests (the photo check reads the content, not the name)."""
from __future__ import annotations

import io

from PIL import Image


def png_bytes() -> bytes:
    """A real, tiny PNG image."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "green").save(out, format="PNG")
    return out.getvalue()
