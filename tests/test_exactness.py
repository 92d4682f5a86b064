"""Near-ties that float32 cannot tell apart still come out in exact float64 order.

The table is built here: 3,000 rows that all sit within 1e-8 of the query in cosine, far
below float32's resolution (6e-8), plus exact duplicates that must tie-break by id. The
scan's candidate buffer overflows, so this exercises the wider rescans too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from reference import cosines, ranked
from safetensors.torch import save_file


@pytest.fixture(scope="module")
def near_ties(tmp_path_factory):
    rng = np.random.default_rng(7)
    dim, rows = 64, 3000
    base = rng.standard_normal(dim)
    table = base + 1e-4 * rng.standard_normal((rows, dim))
    table[1500:1510] = table[1400]  # exact duplicates of one row
    table = table.astype(np.float32)
    path = tmp_path_factory.mktemp("near-ties") / "table.safetensors"
    save_file({"wte.weight": torch.from_numpy(table)}, str(path))
    return path, table.astype(np.float64)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_near_ties_rank_as_float64(cli, near_ties, metric):
    path, table = near_ties
    query = table[0]
    run = cli("neighbors", path, "#0", "-k", "25", "--metric", metric, "-f", "json")
    result = run.json()[0]
    if metric == "cosine":
        ids, scores = ranked(cosines(table, query), 25, exclude={0})
    elif metric == "dot":
        ids, scores = ranked(table @ query, 25, exclude={0})
    else:
        ids, scores = ranked(np.sqrt(((table - query) ** 2).sum(1)), 25, {0}, ascending=True)
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-13)


def test_duplicates_tie_break_by_id(cli, near_ties):
    path, _ = near_ties
    result = cli("neighbors", path, "#1400", "-k", "10", "-f", "json").json()[0]
    assert [n["token_id"] for n in result["neighbors"]] == list(range(1500, 1510))
    assert {n["score"] for n in result["neighbors"]} == {result["neighbors"][0]["score"]}
    assert result["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-15)


@pytest.fixture(scope="module")
def near_ties_bf16(tmp_path_factory):
    """The same crowd in bf16, scored in bf16 products: rows 1e-2 apart around one
    direction sit far inside that path's error bound (bf16 keeps 8 bits)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(64)
    table = torch.from_numpy(base + 1e-2 * rng.standard_normal((3000, 64))).bfloat16()
    table[1500:1510] = table[1400]
    path = tmp_path_factory.mktemp("near-ties-bf16") / "table.safetensors"
    save_file({"wte.weight": table}, str(path))
    return path, table.double().numpy()


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_bf16_near_ties_rank_as_float64(cli, near_ties_bf16, metric):
    path, table = near_ties_bf16
    for query in (0, 1400):
        run = cli("neighbors", path, f"#{query}", "-k", "25", "--metric", metric, "-f", "json")
        result = run.json()[0]
        vector = table[query]
        if metric == "cosine":
            ids, scores = ranked(cosines(table, vector), 25, exclude={query})
        elif metric == "dot":
            ids, scores = ranked(table @ vector, 25, exclude={query})
        else:
            distances = np.sqrt(((table - vector) ** 2).sum(1))
            ids, scores = ranked(distances, 25, {query}, ascending=True)
        assert [n["token_id"] for n in result["neighbors"]] == ids
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)


@pytest.fixture(scope="module")
def far_from_origin(tmp_path_factory):
    """Rows of ~1000 with offsets of ~0.001 (a few float32 steps at 1000): centring removes
    almost all of each row, so the float32 centring error is large next to what is left."""
    rng = np.random.default_rng(11)
    table = (1000.0 + 2.0**-10 * rng.standard_normal((4000, 16))).astype(np.float32)
    path = tmp_path_factory.mktemp("far") / "table.safetensors"
    save_file({"wte.weight": torch.from_numpy(table)}, str(path))
    return path, table.astype(np.float64)


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_centred_scores_stay_exact_when_the_mean_dominates(cli, far_from_origin, metric):
    path, table = far_from_origin
    queries = list(range(0, 4000, 200))
    args = [f"#{i}" for i in queries]
    run = cli("neighbors", path, *args, "-k", "5", "--center", "--metric", metric, "-f", "json")
    shifted = table - table.mean(axis=0)
    for answer, i in zip(run.json(), queries, strict=True):
        if metric == "cosine":
            ids, _ = ranked(cosines(shifted, shifted[i]), 5, exclude={i})
        elif metric == "dot":
            ids, _ = ranked(shifted @ shifted[i], 5, exclude={i})
        else:
            distances = np.sqrt(((shifted - shifted[i]) ** 2).sum(1))
            ids, _ = ranked(distances, 5, exclude={i}, ascending=True)
        assert [n["token_id"] for n in answer["neighbors"]] == ids, f"query #{i}"


@pytest.fixture(scope="module")
def zero_and_nan_rows(tmp_path_factory):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((100, 8)).astype(np.float32)
    table[0] = 0.0
    table[1] = np.nan
    path = tmp_path_factory.mktemp("edge") / "table.safetensors"
    save_file({"wte.weight": torch.from_numpy(table)}, str(path))
    return path, table.astype(np.float64)


def test_zero_and_nan_rows_are_never_neighbours(cli, zero_and_nan_rows):
    path, table = zero_and_nan_rows
    # k covers every row: the zero and NaN rows must neither appear nor stall the scan
    answer = cli("neighbors", path, "#3", "-k", "99", "-f", "json").json()[0]
    ids = [n["token_id"] for n in answer["neighbors"]]
    assert len(ids) == 97 and 0 not in ids and 1 not in ids
    rest = table[2:]  # rows 2..99; row 3 is the query, at index 1 here
    assert ids == [i + 2 for i in ranked(cosines(rest, table[3]), 97, exclude={1})[0]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["neighbors", "#0"], "zero vector"),
        (["neighbors", "#1"], "NaN"),
        (["analogy", "#0", "#3", "#4"], "zero vector"),
        (["compare", "#0", "#3"], "zero vector"),
    ],
)
def test_queries_that_cannot_be_scored_are_refused(cli, zero_and_nan_rows, args, fragment):
    path, _ = zero_and_nan_rows
    run = cli(args[0], path, *args[1:], "-f", "json")
    assert run.returncode == 4
    assert fragment in run.stderr
    json.loads(run.stdout, parse_constant=reject)  # strict JSON: no NaN or Infinity


def reject(constant: str):
    raise AssertionError(f"non-standard JSON constant {constant}")


def test_float32_batch_in_bf16_copy_ranks_as_float64(cli, near_ties):
    """A batch of 64 or more queries scans a float32 table in a bf16 copy (bounds widened
    by the copy's rounding, candidates rescored from the float32 rows): the crowd of
    near-ties overflows the candidate buffer twice, and every answer still equals
    float64."""
    path, table = near_ties
    queries = list(range(0, 3000, 40))  # 75 queries: one batch
    run = cli("neighbors", path, *[f"#{q}" for q in queries], "-k", "25", "-f", "jsonl")
    for query, result in zip(queries, run.jsonl(), strict=True):
        ids, scores = ranked(cosines(table, table[query]), 25, exclude={query})
        assert [n["token_id"] for n in result["neighbors"]] == ids
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-13)
