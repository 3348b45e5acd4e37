"""Headless Chromium (Debian's `chromium`) for report tests: render a file, screenshot it, and
count the pixels of a colour. `.ci/run` installs it and sets KERNELPRO_REQUIRE_BROWSER=1, so
there a missing browser fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("KERNELPRO_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 4200) -> Path:
    with tempfile.TemporaryDirectory(prefix="kp-chromium-") as profile:
        proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                               f"--window-size={width},{height}", f"--screenshot={png}",
                               html.resolve().as_uri()], capture_output=True, text=True,
                              timeout=120)
    assert png.is_file(), proc.stderr[-2000:]
    return png


def pixels_of(png: Path, hex_color: str, tolerance: int = 6) -> int:
    """How many pixels are within `tolerance` per channel of the colour."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    want = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - want).max(axis=2) <= tolerance).sum())
