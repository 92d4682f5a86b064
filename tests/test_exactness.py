"""Near-ties that float32 cannot tell apart still come out in exact float64 order.

The table is built here: 3,000 rows that all sit within 1e-8 of the query in cosine, far
below float32's resolution (6e-8), plus exact duplicates that must tie-break by id. The
scan's candidate buffer overflows, so this exercises the wider rescans too.
"""

from __future__ import annotations

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
