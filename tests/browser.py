"""A real headless browser for the HTML view's tests and its screenshot: Debian's Chromium
(``/usr/bin/chromium``) driven by Playwright with ``executable_path``. Playwright's own
browser download (``playwright install``) cannot work on the test machines, so it is never
used; where no Chromium or no Playwright is found, ``missing()`` says which, and the tests
skip with that reason (``.ci/run`` installs Debian's chromium where it can).

``open_view(browser, path)`` loads a page written by ``plot --out view.html`` and records
what a test checks: console messages, page errors, dialogs, and every request made.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where a Chromium may be; EMBINSPECT_CHROMIUM names another.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str | None:
    """The path of a Chromium to drive, or None."""
    named = os.environ.get("EMBINSPECT_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "no playwright (pip install playwright: the dev group has it)"
    if chromium() is None:
        return f"no Chromium found ({', '.join(CANDIDATES)}; apt-get install chromium)"
    return None


def launch(playwright: Any) -> Any:
    """A headless Chromium: Debian's, never Playwright's download."""
    return playwright.chromium.launch(
        executable_path=chromium(), headless=True, args=["--no-sandbox"]
    )


@dataclass
class View:
    """A loaded view and what happened while it loaded and was used."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Console errors and warnings, script errors and dialogs: none on a good page."""
        said = [f"{kind}: {text}" for kind, text in self.console if kind in ("error", "warning")]
        return said + [f"pageerror: {e}" for e in self.errors] + self.dialogs

    def point_at(self, index: int) -> tuple[float, float]:
        """Where point ``index`` is on the page (CSS pixels), as the page itself says."""
        x, y = self.page.evaluate("i => window.embinspectView.pagePosition(i)", index)
        return x, y

    def hover(self, index: int) -> dict[str, Any]:
        """Move the mouse onto point ``index``; the tooltip's lines and the point it names."""
        self.page.mouse.move(*self.point_at(index))
        return self.page.evaluate(
            """() => {
                const tip = document.getElementById("tip");
                return {hidden: tip.hidden, point: tip.dataset.point,
                        lines: Array.from(tip.children, c => c.textContent)};
            }"""
        )


def open_view(
    browser: Any, path: Path, width: int = 1200, height: int = 800, scale: float = 1
) -> View:
    """``path`` opened from ``file://`` in a fresh context, once its script has run."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=scale
    )
    page = context.new_page()
    view = View(page)
    page.on("console", lambda message: view.console.append((message.type, message.text)))
    page.on("pageerror", lambda error: view.errors.append(str(error)))
    page.on("request", lambda request: view.requests.append(request.url))

    def dialog(d: Any) -> None:
        view.dialogs.append(f"dialog: {d.type} {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    return view
