"""`plot --out view.html`: the interactive view, loaded from file:// in a real headless
Chromium (tests/browser.py): it makes no request and logs no error, draws every point,
shows a point's token, id and nearest drawn points on hover, finds a token, zooms and pans;
hostile tokens stay text. Skipped, with the reason, only where no browser can be found."""

from __future__ import annotations

import json
import re
from pathlib import Path

import browser
import numpy as np
import pytest
from reference import table

import embinspect
from embinspect.analyses.plot_html import embedded_json

WHY_NOT = browser.missing()
needs_browser = pytest.mark.skipif(WHY_NOT is not None, reason=f"no browser: {WHY_NOT}")

# Tokens that would break a page that pasted them into its HTML or a script.
HOSTILE = {
    "close-script": "</script><script>window.pwned=1</script>",
    "comment": "<!--",
    "img-onerror": '<img src=x onerror="window.pwned=1">',
    "line-separator": "a\u2028b",
    "paragraph-separator": "c\u2029d",
    "quotes": "\"quote'",
    "backslash": "back\\slash",
    "template": "`${window.pwned=1}`",
    "placeholder": "@SCRIPT@",
    "escaped-close": "\\u003c/script\\u003e",
    "entity": "&amp;",
    "cdata-end": "]]>",
}
# How the picture shows them (model/tokenizer.readable_token): a character no font draws
# as its code point, everything else as it is (a word-vector file's words are whole).
READABLE = {**{k: v for k, v in HOSTILE.items()}, "line-separator": "a<U+2028>b",
            "paragraph-separator": "c<U+2029>d"}  # fmt: skip
# img-onerror's word holds spaces (word2vec phrases may): shown as ␣.
READABLE["img-onerror"] = HOSTILE["img-onerror"].replace(" ", "\u2423")


def write_words(path, words: list[str], rows: np.ndarray) -> None:
    """A GloVe-style text file: a word and its numbers on each line."""
    lines = [
        w + " " + " ".join(f"{v:.6f}" for v in row) for w, row in zip(words, rows, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module's tests (each opens its own page)."""
    if WHY_NOT is not None:
        pytest.skip(f"no browser: {WHY_NOT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = browser.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def hostile_view(tmp_path_factory):
    """A view of "anchor" and its neighbors: the hostile words, each at its own place."""
    folder = tmp_path_factory.mktemp("hostile-view")
    words = ["anchor", *HOSTILE.values()] + [f"far{i}" for i in range(8)]
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(len(words), 6))
    rows[1 : 1 + len(HOSTILE)] = rows[0] + 0.4 * rng.normal(size=(len(HOSTILE), 6))
    vectors = folder / "hostile.txt"
    write_words(vectors, words, rows)
    page = folder / "view.html"
    from conftest import run_cli

    run = run_cli("plot", vectors, "anchor", "--neighbors", len(words), "--out", page, "-f", "json")
    assert run.returncode == 0, run.stderr
    return page, run.json()


@pytest.fixture(scope="module")
def minilm_view(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("minilm-view")
    page = folder / "view.html"
    from conftest import run_cli

    run = run_cli(
        "plot", minilm, "king", "queen", "paris", "--neighbors", "6", "--out", page, "-f", "json"
    )
    assert run.returncode == 0, run.stderr
    assert f"wrote {page}" in run.stderr
    return page, run.json()


def test_near_is_exact_among_the_drawn_points(minilm_view, minilm):
    _, result = minilm_view
    points = result["points"]
    rows = table(minilm, "embeddings.word_embeddings.weight")[[p["token_ids"][0] for p in points]]
    unit = rows / np.linalg.norm(rows, axis=1)[:, None]
    scores = unit @ unit.T
    for i, point in enumerate(points):
        order = sorted((j for j in range(len(points)) if j != i), key=lambda j: -scores[i, j])
        assert [j for j, _ in point["near"]] == order[:5]
        assert [s for _, s in point["near"]] == pytest.approx(scores[i, order[:5]], abs=1e-12)


def test_embedded_json_cannot_close_a_script():
    data = {"t": list(HOSTILE.values()), "u": "\u2028\u2029<>&\ud800"}
    text = embedded_json(data)
    assert text.isascii()
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == data


def test_the_page_is_one_file_that_fetches_nothing(minilm_view):
    page, _ = minilm_view
    html = page.read_text(encoding="utf-8")
    (data,) = re.findall(r'<script type="application/json" id="data">(.*?)</script>', html)
    assert data.isascii()  # every token escaped, so no token can end the element
    assert json.loads(data)["points"][0]["s"] == "king"
    assert "<script src" not in html and "<link" not in html
    assert not re.search(r"https?://", html)  # nothing from a network, not even a font
    assert "default-src 'none'" in html  # its policy forbids every request


@needs_browser
def test_loads_with_no_error_no_request_and_draws_every_point(chromium, minilm_view):
    page, result = minilm_view
    view = browser.open_view(chromium, page)
    assert view.problems() == []
    assert view.requests == [page.resolve().as_uri()]
    count = len(result["points"])
    assert view.page.evaluate("window.embinspectView.count") == count
    assert view.page.evaluate("window.embinspectView.drawn()") == count
    assert view.page.get_attribute("#plot", "data-drawn") == str(count)
    # Pixels: the canvas is not blank, and each point's own pixel holds its query's colour.
    coloured = view.page.evaluate(
        """() => {
            const c = document.getElementById("plot");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
            return n;
        }"""
    )
    assert coloured > 50 * count
    legend = view.page.eval_on_selector_all(
        "#legend .entry span", "els => els.map(e => e.textContent)"
    )
    assert legend == ["king", "queen", "paris"]
    assert view.page.title() == "embeddings.word_embeddings.weight of model (embinspect plot)"
    view.page.context.close()


@needs_browser
def test_hover_shows_token_id_and_nearest_drawn_points(chromium, minilm_view):
    page, result = minilm_view
    points = result["points"]
    view = browser.open_view(chromium, page)
    index = next(i for i, p in enumerate(points) if p["kind"] == "neighbor")
    point = points[index]
    tip = view.hover(index)
    assert not tip["hidden"] and tip["point"] == str(index)
    token, ids, near_of, heading, *near = tip["lines"]
    assert token == point["readable"]
    assert ids == f"id {point['token_ids'][0]} · stored as {point['tokens'][0]}"
    assert near_of == f"neighbor of {point['of']}"
    assert heading == "nearest drawn points (cosine):"
    (listed,) = near
    expected = "".join(f"{points[j]['readable']}  {score:.4f}" for j, score in point["near"])
    assert listed == expected
    view.page.mouse.move(1, 1)
    assert view.page.evaluate("document.getElementById('tip').hidden")
    assert view.problems() == []
    view.page.context.close()


@needs_browser
def test_search_highlights_a_token(chromium, minilm_view):
    page, result = minilm_view
    points = result["points"]
    view = browser.open_view(chromium, page)
    index = next(i for i, p in enumerate(points) if p["kind"] == "neighbor")
    view.page.fill("#search", points[index]["readable"])
    assert view.page.evaluate("window.embinspectView.highlighted()") == [index]
    assert view.page.text_content("#found") == "1 match"
    assert view.page.get_attribute("#plot", "data-highlighted") == "1"
    # A red ring around it: its pixels right of the point are red.
    x, y = view.point_at(index)
    red = view.page.evaluate(
        """([x, y]) => {
            const c = document.getElementById("plot"), r = c.getBoundingClientRect();
            const d = c.getContext("2d").getImageData(x - r.left + 11, y - r.top, 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
        [x, y],
    )
    assert red[0] > 180 and red[1] < 80 and red[2] < 80, red
    view.page.fill("#search", f"#{points[0]['token_ids'][0]}")  # by id
    assert view.page.evaluate("window.embinspectView.highlighted()") == [0]
    view.page.fill("#search", "no such token at all")
    assert view.page.evaluate("window.embinspectView.highlighted()") == []
    assert view.page.text_content("#found") == "0 matches"
    assert view.problems() == []
    view.page.context.close()


@needs_browser
def test_wheel_zooms_about_the_mouse_and_drag_pans(chromium, minilm_view):
    page, _ = minilm_view
    view = browser.open_view(chromium, page)
    x0, y0 = view.point_at(0)
    x1, y1 = view.point_at(1)
    # One wheel event at point 0's pixel (mouse.wheel's may arrive later, split): the
    # page zooms by exp(400 * 0.0015) about the mouse, which stays over the same place.
    mx, my = round(x0), round(y0)
    view.page.dispatch_event(
        "#plot", "wheel", {"deltaY": -400, "clientX": mx, "clientY": my, "cancelable": True}
    )
    zoom = np.exp(0.6)
    zx0, zy0 = view.point_at(0)
    zx1, zy1 = view.point_at(1)
    assert (zx0, zy0) == pytest.approx((mx + (x0 - mx) * zoom, my + (y0 - my) * zoom), abs=1e-6)
    assert np.hypot(zx1 - zx0, zy1 - zy0) == pytest.approx(zoom * np.hypot(x1 - x0, y1 - y0))
    view.page.mouse.move(600, 400)
    view.page.mouse.down()
    view.page.mouse.move(650, 370, steps=5)
    view.page.mouse.up()
    assert view.point_at(0) == pytest.approx((zx0 + 50, zy0 - 30), abs=1e-6)
    view.page.click("#reset")
    assert view.point_at(0) == pytest.approx((x0, y0), abs=1e-6)
    assert view.problems() == []
    view.page.context.close()


@pytest.fixture(scope="module")
def hostile_page(chromium, hostile_view):
    """The hostile view, loaded once: each test hovers its own token."""
    page, _ = hostile_view
    view = browser.open_view(chromium, page)
    yield view
    view.page.context.close()


@needs_browser
@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_token_stays_text(hostile_page, hostile_view, name):
    page, result = hostile_view
    view = hostile_page
    token = HOSTILE[name]
    (index,) = [i for i, p in enumerate(result["points"]) if p["tokens"] == [token]]
    tip = view.hover(index)
    assert tip["point"] == str(index)
    assert tip["lines"][0] == READABLE[name]
    assert tip["lines"][1] == f"id {result['points'][index]['token_ids'][0]} · stored as {token}"
    assert view.page.evaluate("t => window.embinspectView.find(t)", token) == [index]
    legend = view.page.eval_on_selector_all("#legend .entry span", "e => e.map(x => x.textContent)")
    assert legend == ["anchor"]
    # No script of a token ran, no element of a token was made, nothing was fetched.
    assert view.page.evaluate("window.pwned") is None
    assert view.page.evaluate("document.querySelectorAll('img, script').length") == 2
    assert view.problems() == []
    assert view.requests == [page.resolve().as_uri()]


@needs_browser
def test_five_thousand_points_under_five_megabytes(chromium, tmp_path, cli):
    # Five far-apart clusters of 1,001 words: each query's 1,000 nearest rows are its own.
    rng = np.random.default_rng(11)
    centres = np.eye(8)[:5] * 10
    rows = np.concatenate([c + rng.normal(size=(1001, 8)) for c in centres])
    words = [f"c{c}w{i}" for c in range(5) for i in range(1001)]
    write_words(tmp_path / "clusters.txt", words, rows)
    page = tmp_path / "view.html"
    queries = [f"c{c}w0" for c in range(5)]
    run = cli(
        "plot", tmp_path / "clusters.txt", *queries, "--neighbors", "1000", "--out", page, "-q"
    )
    assert run.returncode == 0, run.stderr
    assert page.stat().st_size < 5_000_000
    view = browser.open_view(chromium, page)
    assert view.page.evaluate("window.embinspectView.count") == 5005
    assert view.page.evaluate("window.embinspectView.drawn()") == 5005
    assert view.problems() == [] and view.requests == [page.resolve().as_uri()]
    view.page.context.close()


def test_the_api_saves_the_view(minilm, tmp_path):
    model = embinspect.load(minilm)
    result = model.plot(["king", "queen"], neighbors=2, out=tmp_path / "a.html")
    assert result.picture == str(tmp_path / "a.html")
    page = (tmp_path / "a.html").read_text()
    assert page == result.to_html()
    assert result.save(tmp_path / "b.html") == tmp_path / "b.html"
    assert (tmp_path / "b.html").read_text() == page
    with pytest.raises(embinspect.UsageError, match=r"\.png, \.svg or \.html"):
        result.save(tmp_path / "c.pdf")


def test_the_readme_screenshot_is_small_and_shown():
    # Made by `make docs-screenshot` (tests/plot_view_screenshot.py).
    root = Path(__file__).resolve().parent.parent
    shot = root / "docs" / "plot-view.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size < 300_000
    assert "](docs/plot-view.png)" in (root / "README.md").read_text()
