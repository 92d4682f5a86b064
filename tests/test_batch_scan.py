"""Batches of queries scanned block by block: every answer equals float64.

A batch's scan keeps each query's candidates as blocks of rows go by, compacts them only
now and then, and finds a block's hits a tile of columns at a time. These tables put a
crowd of near-ties (more than the candidate buffer holds) both in the first block and
in later ones, beside ordinary rows, so that crowded and uncrowded queries share every
batch; each answer is checked against a float64 reference computed here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import cosines, ranked
from safetensors.torch import save_file

from embinspect.tables.scoring import KEPT_BEYOND_K

ROWS, DIM, K = 6000, 48, 10
# More rows than a batch keeps per query: k + 256 for a bf16 table, k + 1024 for a
# float32 one scanned in its bf16 copy (scoring.KEPT_BEYOND_K).
CROWD = 1100
assert K + max(KEPT_BEYOND_K.values()) < CROWD


def crowded_table(seed: int) -> np.ndarray:
    """Random rows, and a crowd of rows within 1e-3 of one direction spread over the
    table (every 5th row up to 5,500: in the first block and in the later ones)."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((ROWS, DIM))
    centre = rng.standard_normal(DIM)
    crowd = np.arange(0, 5 * CROWD, 5)
    table[crowd] = centre + 1e-3 * rng.standard_normal((CROWD, DIM))
    table[5990:5996] = table[15]  # exact duplicates of a crowd member, after the others
    return table


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def crowded(request, tmp_path_factory):
    dtype = getattr(torch, request.param)
    rows = torch.from_numpy(crowded_table(31)).to(dtype)
    path = tmp_path_factory.mktemp(f"crowded-{request.param}") / "table.safetensors"
    save_file({"wte.weight": rows}, str(path))
    return path, rows.double().numpy()


# Crowd members (several near the first block's end), duplicates and ordinary rows:
# 80 queries, one batch, as many as a float32 table scans in its bf16 copy for.
QUERIES = [*range(0, 5 * 40, 5), 15, 2120, 2125, 2130, *range(1, 4000, 101)]


def expected(table: np.ndarray, query: int, metric: str):
    vector = table[query]
    if metric == "cosine":
        return ranked(cosines(table, vector), K, exclude={query})
    if metric == "dot":
        return ranked(table @ vector, K, exclude={query})
    distances = np.sqrt(((table - vector) ** 2).sum(1))
    return ranked(distances, K, {query}, ascending=True)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_crowded_batch_ranks_as_float64(cli, crowded, metric):
    path, table = crowded
    args = [f"#{q}" for q in QUERIES]
    run = cli("neighbors", path, *args, "-k", str(K), "--metric", metric, "-f", "jsonl")
    for query, result in zip(QUERIES, run.jsonl(), strict=True):
        ids, scores = expected(table, query, metric)
        assert [n["token_id"] for n in result["neighbors"]] == ids, query
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)


def test_crowded_batch_equals_one_query_at_a_time(cli, crowded):
    """The same queries in batches of 80 and of 1: the same answers to the last bit."""
    path, _ = crowded
    args = [f"#{q}" for q in QUERIES[::4]]
    together = cli("neighbors", path, *args, "-k", str(K), "-f", "jsonl").jsonl()
    alone = cli("neighbors", path, *args, "-k", str(K), "--batch-size", "1", "-f", "jsonl")
    assert together == alone.jsonl()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_crowded_batch_on_cuda_equals_cpu(cli, crowded, metric):
    """The GPU scans the same blocks with the same merge: the same answers as the CPU."""
    path, _ = crowded
    args = ["neighbors", path, *[f"#{q}" for q in QUERIES], "-k", str(K), "--metric", metric]
    cpu = cli(*args, "--device", "cpu", "-f", "jsonl")
    gpu = cli(*args, "--device", "cuda", "-f", "jsonl")
    assert (gpu.returncode, gpu.stdout) == (cpu.returncode, cpu.stdout)
