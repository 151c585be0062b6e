"""Decode memory is bounded (issue 13 item 5): images that are small on the wire but declare
many pixels cannot together take the server's memory, whatever arrives at once."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw, PngImagePlugin

from tests.support import backend_server, wait_for_status

CREATE = "visionPipeline.createJob"
MiB = 1 << 20


def _text_chunk(text: str) -> bytes:
    body = b"Comment\x00" + text.encode()
    return (
        struct.pack(">I", len(body))
        + b"tEXt"
        + body
        + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    )


def declared_pngs(count: int, size: tuple[int, int] = (6000, 6600)) -> list[bytes]:
    """``count`` different PNGs of ~130 KB, each declaring ``size`` (39.6 megapixels, under the
    40-megapixel cap): one mostly uniform picture, told apart by a text chunk after IHDR."""
    picture = PILImage.new("RGB", size, (240, 236, 228))
    ImageDraw.Draw(picture).rectangle((900, 1200, 2600, 3900), fill=(30, 70, 190))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    png = buffer.getvalue()
    head = 8 + 25  # the signature and the IHDR chunk
    return [png[:head] + _text_chunk(f"copy {n}") + png[head:] for n in range(count)]


def text_bomb_pngs(count: int, chunks: int = 60) -> list[bytes]:
    """``count`` different 40x30 PNGs of ~60 KB, each carrying ``chunks`` compressed text
    chunks of 1 MB (Pillow inflates up to 64 MB of text when it opens a PNG)."""
    info = PngImagePlugin.PngInfo()
    for n in range(chunks):
        info.add_text(f"note{n}", "a" * (MiB - 100), zip=True)
    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 30), (200, 30, 60)).save(buffer, "PNG", pnginfo=info)
    png = buffer.getvalue()
    head = 8 + 25
    return [png[:head] + _text_chunk(f"copy {n}") + png[head:] for n in range(count)]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) / 1024


def run_batch(tmp_path: Path, pngs: list[bytes]) -> tuple[float, float, list[dict[str, Any]]]:
    """Send ``pngs`` as one createJob batch to a new server with default settings and wait
    for every job to end; returns its peak RSS (MiB) before and after, and the statuses."""
    body = {
        str(n): {
            "imageUrl": "data:image/png;base64," + base64.b64encode(png).decode(),
            "analysisPurpose": "Brand analysis",
            "outputFormat": "bullet_points",
        }
        for n, png in enumerate(pngs)
    }
    # Default settings: WORKER_CONCURRENCY 16, IMAGE_DECODE_MEMORY_MB 256.
    with backend_server("sqlite", tmp_path) as server, server.client("decode-memory") as client:
        before = peak_rss_mb(server.process.pid)
        r = client.post("/" + ",".join([CREATE] * len(pngs)) + "?batch=1", json=body)
        assert r.status_code == 200, r.text
        job_ids = [int(item["result"]["data"]["jobId"]) for item in r.json()]
        statuses = [wait_for_status(client, job_id, timeout=300) for job_id in job_ids]
        peak = peak_rss_mb(server.process.pid)
    print(f"peak RSS {before:.0f} MiB at start, {peak:.0f} MiB after {len(pngs)} jobs")
    return before, peak, statuses


def test_a_batch_of_images_declaring_many_pixels_keeps_the_peak_rss_bounded(
    tmp_path: Path,
) -> None:
    pngs = declared_pngs(16)
    assert all(len(png) < 200_000 for png in pngs)
    before, peak, statuses = run_batch(tmp_path, pngs)
    for status in statuses:
        assert status["status"] == "complete", status
        assert status["geminOutput"]["composition"]["aspect_ratio"] == "0.91:1"
    assert peak < 800, f"the server's peak RSS reached {peak:.0f} MiB (from {before:.0f} MiB)"


def test_a_batch_of_pngs_full_of_text_keeps_the_peak_rss_bounded(tmp_path: Path) -> None:
    pngs = text_bomb_pngs(16)
    assert all(len(png) < 100_000 for png in pngs)
    before, peak, statuses = run_batch(tmp_path, pngs)
    assert [status["status"] for status in statuses] == ["complete"] * 16
    assert peak < 800, f"the server's peak RSS reached {peak:.0f} MiB (from {before:.0f} MiB)"
