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


def test_zero_and_nan_rows_are_never_neighbors(cli, zero_and_nan_rows):
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


# --- tables with NaN, infinite and all-zero rows -----------------------------------------

BAD_ROWS = {0: "zero", 1: "nan", 2: "inf", 3: "-inf", 4: "zero"}


@pytest.fixture(scope="module")
def bad_rows(tmp_path_factory):
    rng = np.random.default_rng(13)
    table = rng.standard_normal((200, 8)).astype(np.float32)
    for row, kind in BAD_ROWS.items():
        if kind == "zero":
            table[row] = 0.0
        else:
            table[row, 5] = float(kind)
    path = tmp_path_factory.mktemp("bad-rows") / "table.safetensors"
    save_file({"wte.weight": torch.from_numpy(table)}, str(path))
    return path, table.astype(np.float64)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("center", [False, True], ids=["raw", "centred"])
def test_bad_rows_are_left_out_and_counted(cli, bad_rows, metric, center):
    path, table = bad_rows
    good = [i for i in range(200) if i not in BAD_ROWS]
    finite = table[[i for i in range(200) if BAD_ROWS.get(i) not in {"nan", "inf", "-inf"}]]
    rows = table - finite.mean(axis=0) if center else table
    queries = [7, 50, 199]
    args = [f"#{i}" for i in queries] + ["-k", "200", "--metric", metric, "-f", "json"]
    run = cli("neighbors", path, *args, *(["--center"] if center else []))
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout, parse_constant=reject)
    for answer, query in zip(answers, queries, strict=True):
        usable = rows[good]
        if metric == "cosine":
            scores = cosines(usable, rows[query])
        elif metric == "dot":
            scores = usable @ rows[query]
        else:
            scores = np.sqrt(((usable - rows[query]) ** 2).sum(1))
        ids, expected = ranked(scores, 200, {good.index(query)}, ascending=metric == "l2")
        assert [n["token_id"] for n in answer["neighbors"]] == [good[i] for i in ids]
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(expected, rel=1e-12)
    assert run.stderr.splitlines() == [
        "embinspect: note: 5 rows of wte.weight left out of results: 2 all zeros, "
        "3 with NaN or infinite values"
    ]


def test_bad_rows_in_analogies(cli, bad_rows):
    path, _ = bad_rows
    run = cli("analogy", path, "#7", "#8", "#9", "-k", "195", "-f", "json")
    ids = [n["token_id"] for n in run.json()[0]["results"]]
    assert sorted(ids) == [5, 6, *range(10, 200)]
    assert "5 rows of wte.weight left out of results" in run.stderr


# --- stored dtypes other than f32/bf16: upcast, still exact ------------------------------

UPCAST_DTYPES = {
    "F16": torch.float16,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
}


@pytest.fixture(scope="module")
def minilm_rows(minilm):
    """The first 4,000 rows of MiniLM's real token table, scaled into float8's normal range."""
    from safetensors import safe_open

    with safe_open(str(minilm / "model.safetensors"), "pt") as handle:
        rows = handle.get_slice("embeddings.word_embeddings.weight")[:4000]
    return rows * 16


@pytest.mark.parametrize(
    ("dtype", "metric"),
    [(dtype, "cosine") for dtype in UPCAST_DTYPES]
    + [(dtype, metric) for dtype in ("F8_E4M3", "F64") for metric in ("dot", "l2")],
)
def test_other_float_dtypes_rank_as_float64(cli, minilm_rows, tmp_path, dtype, metric):
    stored = minilm_rows.to(UPCAST_DTYPES[dtype])
    path = tmp_path / "table.safetensors"
    save_file({"embeddings.word_embeddings.weight": stored}, str(path))
    table = stored.double().numpy()  # the stored values, exactly
    queries = [1996, 2332, 3899]
    args = [f"#{i}" for i in queries] + ["-k", "20", "--metric", metric, "-f", "json"]
    answers = cli("neighbors", path, *args).json()
    for answer, query in zip(answers, queries, strict=True):
        if metric == "cosine":
            scores = cosines(table, table[query])
        elif metric == "dot":
            scores = table @ table[query]
        else:
            scores = np.sqrt(((table - table[query]) ** 2).sum(1))
        ids, expected = ranked(scores, 20, {query}, ascending=metric == "l2")
        assert [n["token_id"] for n in answer["neighbors"]] == ids
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(expected, rel=1e-12)
    info = cli("info", path, "-f", "json").json()
    assert info["tensors"][0]["dtype"] == dtype


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
def test_float8_rows_read_exactly(cli, minilm, minilm_rows, tmp_path, dtype):
    stored = minilm_rows.to(UPCAST_DTYPES[dtype])
    path = tmp_path / "table.safetensors"
    save_file({"embeddings.word_embeddings.weight": stored}, str(path))
    run = cli(
        "tokens", path, "the king", "--vectors", "--tokenizer", minilm / "tokenizer.json",
        "-f", "json",
    )  # fmt: skip
    rows = run.json()["tokens"]
    assert [r["token_id"] for r in rows] == [1996, 2332]
    for row in rows:
        assert row["vector"] == stored[row["token_id"]].double().tolist()
