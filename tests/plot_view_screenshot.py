"""The README's screenshot of the HTML view (``make docs-screenshot``), taken by the same
headless Chromium the tests drive (tests/browser.py): MiniLM's king, queen, man, woman,
paris and france with their eight nearest rows, "queen" found in the search box, and the
mouse on one of its neighbors. Written as a 256-colour PNG, so it stays small.

    python tests/plot_view_screenshot.py [OUT.png]    (default docs/plot-view.png)
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import browser  # noqa: E402
import checkpoints  # noqa: E402

WORDS = ["king", "queen", "man", "woman", "paris", "france"]


def main(out: Path) -> None:
    why_not = browser.missing()
    if why_not is not None:
        sys.exit(f"plot_view_screenshot: no browser: {why_not}")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    import embinspect

    # Named "model", as the README names MiniLM: the page's title says so.
    with tempfile.TemporaryDirectory() as folder:
        link = Path(folder) / "model"
        link.symlink_to(checkpoints.minilm_dir())
        result = embinspect.load(link).plot(WORDS, neighbors=8)
        page = result.save(Path(folder) / "view.html")
        with sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            view = browser.open_view(chromium, page, width=1000, height=620)
            view.page.fill("#search", "queen")
            near = next(i for i, p in enumerate(result.points) if p.of == "queen")
            view.hover(near)
            shot = view.page.screenshot()
            assert view.problems() == [], view.problems()
            chromium.close()
    picture = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=256)
    picture.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "docs" / "plot-view.png")
