"""`embinspect plot`: PCA coordinates against numpy's SVD of the same points, the picture
checked as a real PNG (or SVG) of the documented size."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from reference import cosines, ranked, table
from test_errors import assert_one_line_error

WORDS = ("king", "queen", "man", "woman", "paris", "france")


def pca(points: np.ndarray) -> tuple[np.ndarray, list[float]]:
    centred = points - points.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes = axes * np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])[:, None]
    shares = (singular**2 / (singular**2).sum())[:2]
    return centred @ axes.T, shares.tolist()


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_coordinates_equal_numpy_pca_and_the_png_is_real(cli, minilm, tmp_path):
    rows = table(minilm, "embeddings.word_embeddings.weight")
    out = tmp_path / "words.png"
    run = cli("plot", minilm, *WORDS, "--neighbors", "3", "--out", out, "-f", "json")
    result = run.json()
    assert result["picture"] == str(out) and f"wrote {out}" in run.stderr
    assert png_size(out) == (1000, 750)
    points = result["points"]
    queries = [p for p in points if p["kind"] == "query"]
    assert [p["label"] for p in queries] == list(WORDS)
    # Each query's 3 nearest rows (cosine), every row drawn once.
    drawn = {p["token_ids"][0] for p in queries}
    expected_neighbors = []
    for p in queries:
        (row,) = p["token_ids"]
        for near in ranked(cosines(rows, rows[row]), 3, exclude={row})[0]:
            if near not in drawn:
                drawn.add(near)
                expected_neighbors.append((near, p["label"]))
    neighbors = [(p["token_ids"][0], p["of"]) for p in points if p["kind"] == "neighbor"]
    assert neighbors == expected_neighbors
    ids = [p["token_ids"][0] for p in points]
    coordinates, shares = pca(rows[ids])
    got = np.array([[p["x"], p["y"]] for p in points])
    assert got == pytest.approx(coordinates, abs=1e-10)
    assert result["explained"] == pytest.approx(shares, rel=1e-10)


def test_svg_tsv_and_mistakes(cli, minilm, tmp_path):
    svg = tmp_path / "words.svg"
    run = cli("plot", minilm, "cat", "dog", "car", "--out", svg, "-f", "tsv")
    assert run.returncode == 0 and "<svg" in svg.read_text()
    header, *lines = run.stdout.splitlines()
    assert header == "label\tkind\tof\ttoken_ids\ttokens\tx\ty" and len(lines) == 3
    assert_one_line_error(
        cli("plot", minilm, "cat", "dog", "--out", tmp_path / "x.jpg"), 2, ".png, .svg or .html"
    )
    assert_one_line_error(cli("plot", minilm, "cat"), 2, "at least two points")
    bad = cli("plot", minilm, "cat", "dog", "#999999", "-f", "json")
    assert bad.returncode == 4 and "#999999: outside the table" in bad.stderr
    assert [p["label"] for p in json.loads(bad.stdout)["points"]] == ["cat", "dog"]


@pytest.mark.slow  # a second process or a whole GGUF: `make test` runs it
def test_without_matplotlib(cli_process, minilm, tmp_path):
    # A process: PYTHONPATH is read at start-up, and this one has matplotlib imported.
    cli = cli_process
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {"PYTHONPATH": str(shadow.parent)}
    run = cli("plot", minilm, "cat", "dog", "--out", tmp_path / "x.png", env=env)
    assert_one_line_error(run, 2, "pip install 'embinspect[plot]'")
    assert cli("plot", minilm, "cat", "dog", "-f", "json", env=env).returncode == 0
    # The HTML view is written without matplotlib.
    page = tmp_path / "view.html"
    assert cli("plot", minilm, "cat", "dog", "--out", page, "-q", env=env).returncode == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
