"""Pages seen through a real browser: headless Chromium renders a page, returns its DOM after the
scripts ran and, if asked, a screenshot. The tests check every command's page with it (figures
drawn, no script error: `check_page`); `docs/img/` holds its screenshots for the README.

Chromium runs with no network, no GPU, no sandbox and a throwaway profile, and is given a fixed
budget of virtual time for the page's scripts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """The Chromium executable: $MPROBE_CHROMIUM, else the first of `CHROMIUM_NAMES` on PATH;
    None if absent."""
    given = os.environ.get("MPROBE_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _run(chromium: str, page: Path, extra: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="mprobe-chromium-") as profile:
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra,
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def run_chromium(page: str | os.PathLike, extra: list[str], *, timeout: float = 120.0) -> str:
    """Run headless Chromium (`find_chromium`) on `page` with the `extra` flags (e.g.
    `--dump-dom`, `--print-to-pdf=PATH`) and return what it printed."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (install chromium, or set MPROBE_CHROMIUM).")
    return _run(chromium, Path(page), extra, timeout)


def render_page(
    page: str | os.PathLike,
    *,
    screenshot: str | os.PathLike | None = None,
    size: tuple[int, int] = (1200, 900),
    chromium: str | None = None,
    timeout: float = 120.0,
) -> str:
    """The DOM of `page` after its scripts ran (Chromium's --dump-dom); with `screenshot`, also
    a PNG of the first `size` pixels (width, height) written there."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (install chromium, or set MPROBE_CHROMIUM).")
    page = Path(page)
    if screenshot is not None:
        window = f"--window-size={size[0]},{size[1]}"
        _run(chromium, page, [window, f"--screenshot={Path(screenshot).resolve()}"], timeout)
    return _run(chromium, page, ["--dump-dom"], timeout)


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw: plots drawn (a .plot-container holding an SVG with data drawn in
    it) and the script error the page recorded, if any (`profile_page` pages record it)."""

    plots: int
    drawn: int
    script_error: str | None

    @property
    def ok(self) -> bool:
        return self.plots > 0 and self.drawn == self.plots and self.script_error is None


_ERROR = re.compile(r"<html[^>]*\bdata-script-error=\"([^\"]*)\"")
_DATA_MARKS = ('class="trace', 'class="bars"', 'class="scatterlayer', 'class="table"')


def check_page(page: str | os.PathLike, **kwargs) -> PageCheck:
    """Render `page` (`render_page`) and count its plots and the ones with drawn data."""
    dom = render_page(page, **kwargs)
    error = _ERROR.search(dom)
    plots = dom.split('class="plot-container')[1:]
    drawn = sum(1 for plot in plots if "<svg" in plot and any(mark in plot for mark in _DATA_MARKS))
    return PageCheck(len(plots), drawn, error.group(1) if error else None)
