"""Draws rpc/ui/static/sample-brand.png, the sample brand image the README's walkthrough
uploads (the server ships it at /api/ui/static/sample-brand.png, so the walkthrough needs no
file and no network). Run from the repository root: ``.venv/bin/python docs/sample_brand.py``.
The committed PNG is the reference; this script is how it was made."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "rpc" / "ui" / "static" / "sample-brand.png"


def draw() -> Image.Image:
    """A 240x160 brand card: deep teal field, a coral sun over sage hills, a cream wordmark bar."""
    img = Image.new("RGB", (240, 160), (22, 78, 84))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((16, 16, 224, 144), radius=18, fill=(31, 104, 108))
    d.ellipse((88, 30, 152, 94), fill=(244, 128, 96))
    d.polygon([(32, 112), (80, 70), (124, 112)], fill=(143, 188, 143))
    d.polygon([(96, 112), (150, 62), (208, 112)], fill=(112, 164, 120))
    d.rectangle((32, 112, 208, 116), fill=(236, 226, 200))
    d.rounded_rectangle((64, 124, 176, 134), radius=5, fill=(236, 226, 200))
    return img


if __name__ == "__main__":
    draw().save(OUT, "PNG", optimize=True)
    print(OUT, OUT.stat().st_size, "bytes")
