"""`plot --out FILE.png|.svg`: labels that never overlap, a legend of the queries' styles
that do not repeat past ten queries, tokens in readable form (␣the, <0x0A>), and
`--match REGEX` keeping only the matching neighbors, exactly."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from reference import cosines, table
from test_errors import assert_one_line_error
from test_plot_view import write_words

import embinspect
from embinspect.analyses.plot import COLOURS, MARKERS, draw_figure
from embinspect.model.tokenizer import (
    BYTE_LEVEL,
    METASPACE,
    PLAIN,
    WORDPIECE,
    WORDS,
    readable_token,
)

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    "token, scheme, readable",
    [
        ("Ġthe", BYTE_LEVEL, "␣the"),
        ("Ċ", BYTE_LEVEL, "<0x0A>"),  # a newline, as a byte
        ("ĉ", BYTE_LEVEL, "<0x09>"),  # a tab
        ("âĢ", BYTE_LEVEL, "<0xE2><0x80>"),  # two bytes of a three-byte character
        ("Ġcafé".replace("é", "Ã©"), BYTE_LEVEL, "␣café"),  # UTF-8 bytes read back
        ("▁the", METASPACE, "␣the"),
        ("<0x0A>", METASPACE, "<0x0A>"),  # SentencePiece's byte token, as it is
        ("<0x0a>", METASPACE, "<0x0A>"),
        ("##ing", WORDPIECE, "##ing"),
        ("[CLS]", WORDPIECE, "[CLS]"),
        ("<|endoftext|>", PLAIN, "<|endoftext|>"),
        ("new york", WORDS, "new␣york"),
        ("a\u2028b", WORDS, "a<U+2028>b"),
        ("zero\u200bwidth", WORDS, "zero<U+200B>width"),
        ("bell\x07", WORDS, "bell<0x07>"),
        ("中", BYTE_LEVEL, "中"),  # no byte spells it: shown as stored, not as ord & 0xFF
        ("Ġ中\x1b[31m", BYTE_LEVEL, "Ġ中<0x1B>[31m"),  # as stored, still terminal-safe
    ],
    ids=["gpt2-space", "gpt2-newline", "gpt2-tab", "gpt2-half-character", "gpt2-utf8",
         "sentencepiece-space", "sentencepiece-byte", "sentencepiece-byte-lowercase",
         "wordpiece-continuation", "wordpiece-special", "added", "word-space",
         "line-separator", "zero-width", "control", "gpt2-outside-the-alphabet",
         "gpt2-outside-the-alphabet-escaped"],
)  # fmt: skip
def test_readable_token(token, scheme, readable):
    assert readable_token(token, scheme) == readable


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def labels(figure):
    """The point labels drawn ({point index: Text}), by the gid each carries."""
    axes = figure.axes[0]
    return {int(t.get_gid().split("-")[1]): t for t in axes.texts if t.get_gid()}


@pytest.fixture(scope="module")
def crowded(minilm):
    """Twelve queries and their five neighbors: crowded, and more than ten styles."""
    words = ["king", "queen", "man", "woman", "paris", "france", "berlin", "germany",
             "cat", "dog", "car", "bus"]  # fmt: skip
    return embinspect.load(minilm).plot(words, neighbors=5)


def test_no_two_labels_overlap(crowded):
    figure = draw_figure(crowded)
    renderer = figure.canvas.get_renderer()
    shown = labels(figure)
    boxes = {i: t.get_window_extent(renderer) for i, t in shown.items()}
    for (i, a), (j, b) in itertools.combinations(boxes.items(), 2):
        assert not boxes_overlap(a, b), (shown[i].get_text(), shown[j].get_text())
    frame = figure.axes[0].get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes.values())
    # Every query is labelled; a label left out is counted under the plot.
    queries = {i for i, p in enumerate(crowded.points) if p.kind == "query"}
    assert queries <= set(shown)
    left = len(crowded.points) - len(shown)
    note = f"{left} of {len(crowded.points)} labels left out to keep labels apart"
    notes = [t.get_text() for t in figure.texts]
    assert notes == ([note + " (every point is in the TSV/JSON)"] if left else [])
    assert len(shown) >= 0.6 * len(crowded.points)
    # Each label is its point's readable token, next to its point.
    for i, text in shown.items():
        assert text.get_text() == crowded.points[i].readable
        assert text.xy == (crowded.points[i].x, crowded.points[i].y)
    # Placing every label up and right of its point, as before, would overlap here.
    naive = []
    for text in shown.values():
        text.set_position((3, 3))
        text.set_horizontalalignment("left")
        text.set_verticalalignment("baseline")
        naive.append(text.get_window_extent(renderer))
    assert any(boxes_overlap(a, b) for a, b in itertools.combinations(naive, 2))


def test_legend_names_each_query_in_its_own_style(crowded):
    figure = draw_figure(crowded)
    legend = figure.axes[0].get_legend()
    queries = [p.readable for p in crowded.points if p.kind == "query"]
    assert [t.get_text() for t in legend.get_texts()] == queries
    assert legend.get_title().get_text() == "query (large) and its\nneighbors (small, joined)"
    styles = [(h.get_color(), h.get_marker()) for h in legend.legend_handles]
    assert len(set(styles)) == len(queries) == 12  # past ten, a new marker: no repeat
    assert styles[0] == (COLOURS[0], MARKERS[0]) and styles[10] == (COLOURS[0], MARKERS[1])
    # Each query's neighbors are drawn in its colour, at their points.
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.colors import to_rgba

    lines, *scatters = figure.axes[0].collections
    neighbors = [p for p in crowded.points if p.kind == "neighbor"]
    assert isinstance(lines, LineCollection) and len(lines.get_segments()) == len(neighbors)
    assert all(isinstance(c, PathCollection) for c in scatters) and len(scatters) == 24
    assert all(any(p.of == query for p in neighbors) for query in queries)
    for group, query in enumerate(queries):
        near = [[p.x, p.y] for p in crowded.points if p.of == query]
        colour = to_rgba(COLOURS[group % 10], 0.8)
        assert scatters[group].get_offsets().tolist() == near
        assert tuple(scatters[group].get_facecolor()[0]) == pytest.approx(colour)


def test_svg_holds_the_readable_tokens_as_text(cli, smollm2, tmp_path):
    out = tmp_path / "the.svg"
    run = cli("plot", smollm2, "the", "king", "--neighbors", "4", "--out", out, "-f", "json")
    assert run.returncode == 0, run.stderr
    points = run.json()["points"]
    neighbors = [p for p in points if p["kind"] == "neighbor"]
    assert [p["readable"] for p in neighbors if p["tokens"][0].startswith("Ġ")] == [
        "␣" + p["tokens"][0][1:] for p in neighbors if p["tokens"][0].startswith("Ġ")
    ]
    assert any(p["tokens"][0].startswith("Ġ") for p in neighbors)
    root = ElementTree.parse(out).getroot()
    drawn = {}
    for group in root.iter(f"{SVG}g"):
        found = re.fullmatch(r"label-(\d+)", group.get("id", ""))
        if found:
            drawn[int(found[1])] = "".join(group.itertext()).strip()
    assert drawn and all(points[i]["readable"] == text for i, text in drawn.items())
    legend = [p["readable"] for p in points if p["kind"] == "query"]
    assert legend == ["the", "king"]
    assert all(f">{q}<" in out.read_text() for q in legend)


def test_match_keeps_the_nearest_matching_rows(cli, tmp_path):
    words = [f"{'up' if i % 3 == 0 else 'down'}{i}" for i in range(300)]
    rows = np.random.default_rng(5).normal(size=(300, 6))
    write_words(tmp_path / "words.txt", words, rows)
    run = cli("plot", tmp_path / "words.txt", "down1", "--neighbors", "7", "--match", "^up",
              "-f", "json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    scores = cosines(rows, rows[1])
    expected = [int(i) for i in np.argsort(-scores, kind="stable") if i % 3 == 0][:7]
    points = run.json()["points"]
    assert [p["token_ids"][0] for p in points[1:]] == expected
    assert [p["of"] for p in points[1:]] == ["down1"] * 7


@pytest.mark.slow  # reads SmolLM2's whole table twice (the CLI and the reference)
def test_match_keeps_the_nearest_matching_neighbors_exactly(cli, smollm2):
    rows = table(smollm2, "model.embed_tokens.weight")
    vocab = json.loads((smollm2 / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = {i: t for t, i in vocab.items()}
    run = cli("plot", smollm2, "king", "--neighbors", "6", "--match", "^␣[A-Z]", "-f", "json")
    assert run.returncode == 0, run.stderr
    result = run.json()
    assert result["match"] == "^␣[A-Z]"
    (query,) = [p for p in result["points"] if p["kind"] == "query"]
    (row,) = query["token_ids"]
    # Independently: byte-level Ġ is the space, and ASCII letters are themselves.
    scores = cosines(rows, rows[row])
    matching = [i for i in np.argsort(-scores, kind="stable")
                if i != row and re.match(r"Ġ[A-Z]", tokens.get(int(i), ""))][:6]  # fmt: skip
    got = [p["token_ids"][0] for p in result["points"] if p["kind"] == "neighbor"]
    assert got == [int(i) for i in matching]
    assert all(p["readable"].startswith("␣") for p in result["points"][1:])
    # Without --match, the nearest rows are others (lowercase ones among them).
    plain = cli("plot", smollm2, "king", "--neighbors", "6", "-f", "json").json()
    assert [p["token_ids"][0] for p in plain["points"][1:]] != got
    assert "match" not in plain


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--neighbors", "3", "--match", "("], 2, "--match (: not a regular expression"),
        (["--match", "x"], 2, "--match picks neighbors: give --neighbors K too"),
        (
            ["--neighbors", "3", "--match", "^zzzz$"],
            2,
            "--match ^zzzz$: no token of this vocabulary matches",
        ),
    ],
    ids=["bad-regex", "without-neighbors", "nothing-matches"],
)
def test_match_mistakes(cli, minilm, args, code, message):
    run = cli("plot", minilm, "king", *args)
    assert_one_line_error(run, code, message)


def test_match_through_the_api(minilm):
    model = embinspect.load(minilm)
    result = model.plot(["king"], neighbors=4, match="^##")
    assert [p.readable[:2] for p in result.points[1:]] == ["##"] * 4
    with pytest.raises(embinspect.UsageError, match=r"match picks neighbors: give neighbors=K"):
        model.plot(["king", "queen"], match="x")


def test_dollar_signs_and_markup_are_drawn_as_text(tmp_path, cli):
    # matplotlib reads $...$ as mathematics: a token is drawn as it is, never parsed; and
    # markup in a token stays text in the SVG (which parses as XML).
    words = ["anchor", "$x$", "$", "a$b$c", "\\frac{1}", "^_", "</text>", "&amp;", "<!--"]
    rows = np.random.default_rng(3).normal(size=(len(words), 4))
    write_words(tmp_path / "dollars.txt", words, rows)
    out = tmp_path / "d.svg"
    run = cli("plot", tmp_path / "dollars.txt", "anchor", "--neighbors", "8", "--out", out, "-q")
    assert run.returncode == 0, run.stderr
    text = "".join(ElementTree.parse(out).getroot().itertext())
    for word in words[1:]:
        assert word in text
