"""`embinspect stats` on the real tables, every figure against numpy computed here from the
tensors read with safetensors (or gguf), never with embinspect."""

from __future__ import annotations

import json

import checkpoints
import numpy as np
import pytest
from reference import table
from safetensors.numpy import save_file

MINILM_WORDS = "embeddings.word_embeddings.weight"
QUANTILES = {"min": 0, "p1": 0.01, "p5": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75,
             "p95": 0.95, "p99": 0.99, "max": 1}  # fmt: skip


def expected_pairs(rows: np.ndarray, usable: np.ndarray, pairs: int, seed: int) -> np.ndarray:
    """The documented sampling: a uniform first row, and a second row shifted from it by
    1 .. n-1 places (so never the same), both among the usable rows."""
    ids = np.flatnonzero(usable)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(ids), size=pairs)
    second = (first + rng.integers(1, len(ids), size=pairs)) % len(ids)
    a, b = rows[ids[first]], rows[ids[second]]
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_figures(result: dict, rows: np.ndarray, with_token: int, pairs: int, seed: int):
    norms = np.linalg.norm(rows, axis=1)
    token = np.arange(len(rows)) < with_token
    finite = np.isfinite(rows).all(axis=1)
    counted = token & finite
    usable = counted & (norms > 0)
    assert result["norm_rows"] == int(counted.sum())
    for key, q in QUANTILES.items():
        assert result["norm_quantiles"][key] == pytest.approx(
            np.quantile(norms[counted], q), rel=1e-12
        )
    assert result["norm_mean"] == pytest.approx(norms[counted].mean(), rel=1e-12)
    assert result["norm_std"] == pytest.approx(norms[counted].std(), rel=1e-12)
    counts, edges = np.histogram(norms[counted], bins=len(result["histogram"]))
    assert [b["count"] for b in result["histogram"]] == counts.tolist()
    assert [b["low"] for b in result["histogram"]] == pytest.approx(edges[:-1].tolist())
    ids = np.flatnonzero(counted)
    order = ids[np.lexsort((ids, norms[counted]))]
    assert [t["token_id"] for t in result["smallest"]] == order[:5].tolist()
    mean_row = rows[counted].mean(axis=0)
    to_mean = rows[usable] @ mean_row / (norms[usable] * np.linalg.norm(mean_row))
    assert result["cosine_to_mean"]["mean"] == pytest.approx(to_mean.mean(), rel=1e-10)
    assert result["cosine_to_mean"]["max"] == pytest.approx(to_mean.max(), rel=1e-10)
    ratio = np.linalg.norm(mean_row) / norms[counted].mean()
    assert result["mean_row_norm"] == pytest.approx(ratio, rel=1e-10)
    sampled = expected_pairs(rows, usable, pairs, seed)
    assert result["pair_cosine"]["mean"] == pytest.approx(sampled.mean(), rel=1e-10)
    assert result["pair_cosine"]["pairs"] == pairs
    # ... and the estimate is near the exact mean over every pair of usable rows:
    # sum over i != j of cos = |sum of unit rows|^2 - n.
    units = rows[usable] / norms[usable, None]
    n = len(units)
    exact = (np.linalg.norm(units.sum(axis=0)) ** 2 - n) / (n * (n - 1))
    assert abs(result["pair_cosine"]["mean"] - exact) < 5 * result["pair_cosine"]["stderr"]


def test_minilm_stats_equal_numpy(cli, minilm):
    rows = table(minilm, MINILM_WORDS)
    result = cli("stats", minilm, "-f", "json").json()
    assert (result["rows"], result["dim"], result["dtype"]) == (30522, 384, "F32")
    assert (result["vocab_size"], result["padding_rows"]) == (30522, 0)
    assert (result["zero_rows"], result["nonfinite_rows"], result["duplicate_rows"]) == (0, 0, 0)
    check_figures(result, rows, 30522, pairs=10_000, seed=0)
    assert result["smallest"][0] == {"token_id": 103, "token": "[MASK]", "norm": pytest.approx(
        float(np.linalg.norm(rows[103])), rel=1e-12)}  # fmt: skip


def test_gpt2_padding_rows_and_another_seed(cli, gpt2):
    rows = table(gpt2, "transformer.wte.weight")
    result = cli("stats", gpt2, "--pairs", "3000", "--seed", "7", "-f", "json").json()
    assert (result["rows"], result["vocab_size"], result["padding_rows"]) == (50304, 50257, 47)
    check_figures(result, rows, 50257, pairs=3000, seed=7)


@pytest.mark.slow
def test_smollm2_gguf_duplicates_equal_numpy(cli):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = checkpoints.smollm2_gguf()
    tensor = next(t for t in GGUFReader(path).tensors if t.name == "token_embd.weight")
    rows = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float64)
    result = cli("stats", path, "-f", "json").json()
    _, first, counts = np.unique(rows, axis=0, return_index=True, return_counts=True)
    nonzero = np.linalg.norm(rows[first], axis=1) > 0
    repeated = (counts > 1) & nonzero
    assert result["duplicate_groups"] == int(repeated.sum())
    assert result["duplicate_rows"] == int((counts[repeated] - 1).sum())
    for group in result["duplicate_examples"]:
        assert all(np.array_equal(rows[group[0]], rows[i]) for i in group)
    check_figures(result, rows, 49152, pairs=10_000, seed=0)


def test_odd_rows_are_counted_and_named(cli, minilm, tmp_path):
    """A copy of MiniLM's table with zero, NaN, infinite and repeated rows planted."""
    rows = table(minilm, MINILM_WORDS).astype(np.float32)
    rows[[5, 6]] = 0
    rows[7, 3] = np.nan
    rows[8, 0] = np.inf
    rows[[10, 11, 300]] = rows[9]
    rows[[20, 21]] = rows[19]
    path = tmp_path / "odd.safetensors"
    save_file({MINILM_WORDS: rows}, str(path))
    run = cli("stats", path, "--tokenizer", minilm / "tokenizer.json", "-f", "json")
    result = run.json()
    assert (result["zero_rows"], result["zero_examples"]) == (2, [5, 6])
    assert (result["nonfinite_rows"], result["nonfinite_examples"]) == (2, [7, 8])
    assert result["duplicate_groups"] == 2 and result["duplicate_rows"] == 3 + 2
    assert result["duplicate_examples"] == [[9, 10, 11, 300], [19, 20, 21]]
    check_figures(result, rows.astype(np.float64), 30522, pairs=10_000, seed=0)
    tsv = cli("stats", path, "--tokenizer", minilm / "tokenizer.json", "-f", "tsv")
    header, *bins = tsv.stdout.splitlines()
    assert header == "low\thigh\tcount" and len(bins) == len(result["histogram"])
    assert "note: odd rows: 2 all zeros, 2 with NaN or infinity, 5 duplicates" in tsv.stderr
    table_run = cli("stats", path, "-f", "table")  # no tokenizer: rows by id
    assert table_run.returncode == 0 and "no tokenizer" in table_run.stdout
    assert json.loads(cli("stats", path, "-f", "json").stdout)["vocab_size"] is None


@pytest.mark.slow
def test_word_vectors_and_output_tables(cli, glove, smollm2):
    result = cli("stats", glove, "--pairs", "2000", "-f", "json").json()
    assert (result["rows"], result["vocab_size"], result["padding_rows"]) == (400000, 400000, 0)
    tied = cli("stats", smollm2, "--table", "output", "--pairs", "100", "-f", "json")
    assert "the output head is tied" in tied.stderr and tied.json()["rows"] == 49152
