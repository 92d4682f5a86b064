"""Near-ties that float32 cannot tell apart still come out in exact float64 order.

The table is built here: 3,000 rows that all sit within 1e-8 of the query in cosine, far
below float32's resolution (6e-8), plus exact duplicates that must tie-break by id. The
scan's candidate buffer overflows, so this exercises the wider rescans too.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from reference import (
    by_max_abs,
    cosines,
    exact_dots,
    exact_squared_distances,
    ranked,
    ranked_exact,
    rounded,
    rounded_sqrt,
    scaled_cos_add,
    scaled_cos_mul,
    scaled_cosines,
)
from safetensors.torch import save_file

# Every test here runs on both scan engines (numpy for a few queries, torch for the
# rest): their answers must be the same exact ones.
pytestmark = pytest.mark.usefixtures("scan_engine")


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


# --- rows at any scale: tiny, huge and subnormal rows score as float64 -------------------
#
# Each table holds 30 rows scaled into an extreme range of their dtype (rows 0..29) and 10
# ordinary rows (30..39), every row first normalised to a largest |value| of 1. Cosines
# are compared with a float64 reference on rows normalised by their own maximum; dot
# products and distances with exact rational arithmetic (fractions), rounded once; a score
# beyond float64 must be that query's error (exit 4), the others answered.

SCALES = {
    "F32-x1e-24": (torch.float32, 1e-24),
    "F32-x1e20": (torch.float32, 1e20),
    "F32-subnormal-x1e-40": (torch.float32, 1e-40),
    "F64-x1e-200": (torch.float64, 1e-200),
    "F64-x1e25": (torch.float64, 1e25),
    "F64-x1e300": (torch.float64, 1e300),
    "F64-subnormal-x1e-310": (torch.float64, 1e-310),
    "F16-subnormal-x1e-6": (torch.float16, 1e-6),
    "F16-x65000": (torch.float16, 65000.0),
    "BF16-x1e30": (torch.bfloat16, 1e30),
    "BF16-x1e-30": (torch.bfloat16, 1e-30),
    "BF16-subnormal-x1e-39": (torch.bfloat16, 1e-39),
    "F8_E4M3-subnormal-x2e-7": (torch.float8_e4m3fn, 2.0**-7),
    "F8_E5M2-subnormal-x2e-15": (torch.float8_e5m2, 2.0**-15),
}
EXTREME, ORDINARY = 3, 35  # a query row of each kind


def scaled_rows(scale: float, seed: int = 17) -> np.ndarray:
    """40 × 8 float64 rows, each with a largest |value| of 1; rows 0..29 times ``scale``."""
    rows = np.random.default_rng(seed).standard_normal((40, 8))
    rows /= np.abs(rows).max(axis=1, keepdims=True)
    rows[:30] *= scale
    return rows


@pytest.fixture(scope="module")
def scaled_tables(tmp_path_factory):
    """{case: (path, stored rows as float64)}, each table written once."""
    folder = tmp_path_factory.mktemp("scales")
    tables = {}
    for case, (dtype, scale) in SCALES.items():
        stored = torch.from_numpy(scaled_rows(scale)).to(dtype)
        path = folder / f"{case}.safetensors"
        save_file({"wte.weight": stored}, str(path))
        tables[case] = (path, stored.double().numpy())
    return tables


def expected_neighbors(table, query: int, metric: str, k: int):
    """(ids, reported scores) of the float64 reference, or None when one of them is beyond
    float64 (the query's answer is then an error)."""
    vector = table[query]
    if metric == "cosine":
        return ranked(scaled_cosines(table, vector), k, exclude={query})
    if metric == "dot":
        ids, scores = ranked_exact(exact_dots(table, vector), k, exclude={query})
    else:
        squares = exact_squared_distances(table, vector)
        ids, scores = ranked_exact(squares, k, {query}, ascending=True, rounding=rounded_sqrt)
    return None if not all(map(math.isfinite, scores)) else (ids, scores)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("case", SCALES)
def test_neighbors_at_any_scale(cli, scaled_tables, case, metric):
    path, table = scaled_tables[case]
    run = cli("neighbors", path, f"#{EXTREME}", f"#{ORDINARY}", "-k", "10", "--metric", metric,
              "-f", "json")  # fmt: skip
    answers = json.loads(run.stdout, parse_constant=reject)
    failed = 0
    for answer, query in zip(answers, (EXTREME, ORDINARY), strict=True):
        expected = expected_neighbors(table, query, metric, 10)
        if expected is None:
            failed += 1
            what = "dot product" if metric == "dot" else "distance"
            assert answer["error"].startswith(f"#{query}: its {what} with #")
            assert answer["error"].endswith("is beyond float64's range (about 1.8e308)")
            continue
        assert [n["token_id"] for n in answer["neighbors"]] == expected[0], f"#{query}"
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(expected[1], rel=1e-12)
    assert run.returncode == (4 if failed else 0), run.stderr
    assert "left out of results" not in run.stderr  # no row is zero or NaN


def test_dot_beyond_float64_is_an_error_of_that_query_only(cli, scaled_tables):
    """Rows of 1e300: their dot products overflow float64, a normal row's do not."""
    path, _ = scaled_tables["F64-x1e300"]
    run = cli("neighbors", path, f"#{EXTREME}", f"#{ORDINARY}", "--metric", "dot", "-f", "json")
    assert run.returncode == 4
    first, second = json.loads(run.stdout, parse_constant=reject)
    assert "error" in first and "neighbors" not in first
    assert len(second["neighbors"]) == 10
    assert run.stderr.splitlines() == [f"embinspect: error: {first['error']}"]


def expected_matrix(table, ids: list[int], metric: str):
    """(kept ids, matrix) of ``compare``: a query whose score with itself or a kept
    earlier query is beyond float64 is left out (reported as its error)."""

    def score(i, j):
        if metric == "cosine":
            return float(scaled_cosines(table[[i]], table[j])[0])
        if metric == "dot":
            return rounded(exact_dots(table[[i]], table[j])[0])
        return rounded_sqrt(exact_squared_distances(table[[i]], table[j])[0])

    kept: list[int] = []
    for i in ids:
        if all(math.isfinite(score(i, j)) for j in [*kept, i]):
            kept.append(i)
    return kept, [[score(i, j) for j in kept] for i in kept]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("case", SCALES)
def test_compare_at_any_scale(cli, scaled_tables, case, metric):
    path, table = scaled_tables[case]
    ids = [EXTREME, ORDINARY, 7]
    run = cli("compare", path, *[f"#{i}" for i in ids], "--metric", metric, "-f", "json")
    result = json.loads(run.stdout, parse_constant=reject)
    kept, matrix = expected_matrix(table, ids, metric)
    assert [item["token_ids"] for item in result["items"]] == [[i] for i in kept]
    for got, want in zip(result["matrix"], matrix, strict=True):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300 if metric == "dot" else 0)
    assert [e["query"] for e in result.get("errors", [])] == [f"#{i}" for i in ids if i not in kept]
    assert run.returncode == (0 if kept == ids else 4)


@pytest.mark.parametrize("method", ["add", "mul"])
@pytest.mark.parametrize("case", SCALES)
def test_analogy_at_any_scale(cli, scaled_tables, case, method):
    """3CosAdd and 3CosMul are built from cosines, so they are scale-invariant: exact means
    equal to gensim's formulas on rows normalised by their own maximum."""
    path, table = scaled_tables[case]
    a, b, c = EXTREME, ORDINARY, 7
    run = cli("analogy", path, f"#{a}", f"#{b}", f"#{c}", "-k", "8", "--method", method,
              "-f", "json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    formula = scaled_cos_add if method == "add" else scaled_cos_mul
    ids, scores = ranked(formula(table, table[a], table[b], table[c]), 8, exclude={a, b, c})
    results = run.json()[0]["results"]
    assert [n["token_id"] for n in results] == ids
    assert [n["score"] for n in results] == pytest.approx(scores, rel=1e-12, abs=1e-15)


@pytest.fixture(scope="module")
def scaled_word_vectors(tmp_path_factory):
    """A GloVe-style text file of float32 rows: w0..w29 of 1e-40 (subnormal), w30..w39 of 1."""
    rows = scaled_rows(1e-40, seed=23).astype(np.float32)
    path = tmp_path_factory.mktemp("scaled-words") / "vectors.txt"
    lines = [f"w{i} " + " ".join(repr(float(v)) for v in row) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path, rows.astype(np.float64)


@pytest.mark.parametrize("query", ["w3", "w3 w4", "w3 w35"], ids=["tiny", "pooled-tiny", "pooled"])
def test_word_vector_queries_of_tiny_rows(cli, scaled_word_vectors, query):
    """A tiny row as a query, and the mean of tiny rows (a pooled query), work for cosine."""
    path, table = scaled_word_vectors
    words = [int(w[1:]) for w in query.split()]
    vector = table[words].mean(axis=0)
    run = cli("neighbors", path, query, "-k", "6", "-f", "json")
    assert run.returncode == 0, run.stderr
    ids, scores = ranked(scaled_cosines(table, vector), 6, exclude=set(words))
    answer = run.json()[0]
    assert [n["token_id"] for n in answer["neighbors"]] == ids
    assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)


def write_gguf_table(path, data: np.ndarray, qtype=None) -> None:
    """A GGUF file holding one token table, no tokenizer."""
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def q8_0_rows(scales: np.ndarray, seed: int = 29) -> np.ndarray:
    """Q8_0 rows of one 32-value block each: a float16 scale, then 32 int8 values."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-127, 128, size=(len(scales), 32)).astype(np.int8)
    values[:, 0] = 127  # no all-zero row
    halves = scales.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return np.concatenate([halves, values.view(np.uint8)], axis=1)


@pytest.mark.parametrize(
    "kind", ["F32-x1e20", "F32-x1e-24", "Q8_0-extreme-scales"], ids=lambda kind: kind
)
def test_gguf_tables_at_any_scale(cli, tmp_path, kind):
    """GGUF rows: a float32 table of huge or tiny rows, and Q8_0 blocks whose float16
    scales span float16's range (65504 down to the subnormal 2^-24)."""
    path = tmp_path / "table.gguf"
    if kind.startswith("F32"):
        table = scaled_rows(1e20 if kind == "F32-x1e20" else 1e-24, seed=31)
        stored = np.ascontiguousarray(np.hstack([table] * 4).astype(np.float32))
        write_gguf_table(path, stored)
        table = stored.astype(np.float64)
    else:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        scales = np.geomspace(2.0**-24, 65504.0, 40)
        blocks = q8_0_rows(scales)
        write_gguf_table(path, blocks, GGMLQuantizationType.Q8_0)
        table = np.asarray(dequantize(blocks, GGMLQuantizationType.Q8_0), dtype=np.float64)
    for metric in ("cosine", "dot", "l2"):
        run = cli("neighbors", path, "#0", "#39", "-k", "5", "--metric", metric, "-f", "json")
        assert run.returncode == 0, run.stderr
        for answer, query in zip(run.json(), (0, 39), strict=True):
            ids, scores = expected_neighbors(table, query, metric, 5)
            assert [n["token_id"] for n in answer["neighbors"]] == ids, (metric, query)
            assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_truly_bad_rows_are_still_left_out_beside_extreme_ones(cli, tmp_path, metric):
    """Rows of 1e20 and 1e-40 are answers; rows of zeros, NaN or infinity are not, and the
    note counts only those."""
    rows = scaled_rows(1e20, seed=37)
    rows[10:20] *= 1e-60  # 1e-40: float32 subnormals
    rows[20], rows[21], rows[22, 3], rows[23, 5] = 0.0, 0.0, np.nan, -np.inf
    stored = torch.from_numpy(rows).float()
    path = tmp_path / "table.safetensors"
    save_file({"wte.weight": stored}, str(path))
    table = stored.double().numpy()
    good = [i for i in range(40) if i not in {20, 21, 22, 23}]
    run = cli("neighbors", path, "#12", "#33", "-k", "40", "--metric", metric, "-f", "json")
    assert run.returncode == 0, run.stderr
    for answer, query in zip(run.json(), (12, 33), strict=True):
        ids, scores = expected_neighbors(table[good], good.index(query), metric, 40)
        assert [n["token_id"] for n in answer["neighbors"]] == [good[i] for i in ids]
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert run.stderr.splitlines() == [
        "embinspect: note: 4 rows of wte.weight left out of results: 2 all zeros, "
        "2 with NaN or infinite values"
    ]


@pytest.mark.parametrize("case", ["F32-x1e20", "F32-subnormal-x1e-40", "F64-x1e-200", "F64-x1e300"])
def test_stats_norms_at_any_scale(cli, scaled_tables, case):
    """Norms of tiny rows are not zeros and those of huge rows not infinite: each equals
    max|x|·|x / max|x|| in float64."""
    path, table = scaled_tables[case]
    run = cli("stats", path, "-f", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout, parse_constant=reject)
    biggest = np.abs(table).max(axis=1)
    norms = biggest * np.linalg.norm(by_max_abs(table), axis=1)
    assert result["zero_rows"] == 0 and result["nonfinite_rows"] == 0
    assert result["norm_quantiles"]["min"] == pytest.approx(norms.min(), rel=1e-14, abs=0)
    assert result["norm_quantiles"]["max"] == pytest.approx(norms.max(), rel=1e-14, abs=0)
    assert [t["token_id"] for t in result["largest"]] == list(np.argsort(-norms, kind="stable")[:5])
    assert result["norm_mean"] == pytest.approx(norms.mean(), rel=1e-12, abs=0)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("case", ["F32-x1e20", "F64-x1e-200", "BF16-x1e30"])
def test_centred_scores_at_any_scale(cli, scaled_tables, case, metric):
    """--center moves every row by the mean, itself of the extreme rows' size."""
    path, table = scaled_tables[case]
    shifted = table - table.mean(axis=0)
    args = ["-k", "10", "--center", "--metric", metric, "-f", "json"]
    run = cli("neighbors", path, f"#{EXTREME}", f"#{ORDINARY}", *args)
    assert run.returncode == 0, run.stderr
    for answer, query in zip(run.json(), (EXTREME, ORDINARY), strict=True):
        ids, scores = expected_neighbors(shifted, query, metric, 10)
        assert [n["token_id"] for n in answer["neighbors"]] == ids, f"#{query}"
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("case", SCALES)
def test_cuda_scores_at_any_scale_equal_cpu(cli, scaled_tables, case, metric):
    """The GPU path shares the float64 scoring of extreme rows: the same answers."""
    path, _ = scaled_tables[case]
    args = ["neighbors", path, f"#{EXTREME}", f"#{ORDINARY}", "-k", "10", "--metric", metric]
    cpu = cli(*args, "--device", "cpu", "-f", "json")
    gpu = cli(*args, "--device", "cuda", "-f", "json")
    assert (gpu.returncode, gpu.stdout) == (cpu.returncode, cpu.stdout)


@pytest.mark.parametrize("case", ["F32-x1e20", "F32-subnormal-x1e-40", "BF16-x1e-30"])
def test_batches_in_half_precision_at_any_scale(cli, scaled_tables, case):
    """A batch of 64 queries or more scans in bf16 (the stored rows, or a bf16 copy of a
    float32 table): extreme rows are scored apart, the others within bf16's bounds."""
    path, table = scaled_tables[case]
    queries = [i % 40 for i in range(80)]
    run = cli("neighbors", path, *[f"#{q}" for q in queries], "-k", "10", "-f", "jsonl")
    assert run.returncode == 0, run.stderr
    for query, answer in zip(queries, run.jsonl(), strict=True):
        ids, scores = expected_neighbors(table, query, "cosine", 10)
        assert [n["token_id"] for n in answer["neighbors"]] == ids, f"#{query}"
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)


def undertrained_reference(rows: np.ndarray, reference: list[int]) -> np.ndarray:
    """Magikarp's cos(x', u) (as tests/test_undertrained_command.py computes it), with the
    principal component of the whole table taken over one common power of ten (it is not
    scale-invariant) and each row's cosine on the row over its own maximum (it is)."""
    common = rows / np.abs(rows).max()
    centred = common - common.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    pc = vectors[:, -1]
    u = by_max_abs((common[reference] - np.outer(common[reference] @ pc, pc)).mean(axis=0))
    own = by_max_abs(rows)
    projected = own - np.outer(own @ pc, pc)
    return projected @ u / (np.linalg.norm(projected, axis=1) * np.linalg.norm(u))


@pytest.mark.parametrize("case", ["F32-x1e20", "F64-x1e-200", "F64-x1e300"])
def test_undertrained_at_any_scale(cli, scaled_tables, case):
    """Norms, the principal component and cos(x', u) of tables of huge or tiny rows: no
    row counted as zero, no overflow in the covariance (1e300 rows squared)."""
    path, table = scaled_tables[case]
    reference = [35, 36]
    run = cli("undertrained", path, "--reference", "#35", "--reference", "#36", "-k", "10",
              "-f", "json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout, parse_constant=reject)
    cosines = undertrained_reference(table, reference)
    ids = np.setdiff1d(np.arange(40), reference)
    expected = ids[np.lexsort((ids, -cosines[ids]))][:10].tolist()
    assert result["zero_rows"] == 0
    assert [t["token_id"] for t in result["tokens"]] == expected
    assert [t["cosine"] for t in result["tokens"]] == pytest.approx(cosines[expected], rel=1e-9)
    norms = np.abs(table).max(axis=1) * np.linalg.norm(by_max_abs(table), axis=1)
    assert [t["norm"] for t in result["tokens"]] == pytest.approx(norms[expected], rel=1e-14, abs=0)


# --- sums of rows near float64's largest value -----------------------------------------


def exact_norm(row: np.ndarray) -> float:
    """|row| rounded once to float64, from its exact squared length."""
    return rounded_sqrt(exact_dots(row[None], row)[0])


@pytest.fixture(scope="module")
def near_float64_max(tmp_path_factory):
    """F64 rows of positive values up to 2^1021 (4.5e307): their sum, and any sum of their
    squares, is beyond float64; their mean is not."""
    rows = np.ldexp(np.abs(scaled_rows(1.0, seed=43)), 1021)
    path = tmp_path_factory.mktemp("near-max") / "table.safetensors"
    save_file({"wte.weight": torch.from_numpy(rows)}, str(path))
    mean = np.ldexp(np.ldexp(rows, -1021).mean(axis=0), 1021)  # exact scaling
    return path, rows, mean


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_centred_rows_near_float64_max(cli, near_float64_max, metric):
    """--center's mean row, summed at a power-of-two scale, is finite: every row answers."""
    path, table, mean = near_float64_max
    shifted = table - mean
    args = ["-k", "10", "--center", "--metric", metric, "-f", "json"]
    run = cli("neighbors", path, f"#{EXTREME}", f"#{ORDINARY}", *args)
    assert run.returncode == 0, run.stderr
    for answer, query in zip(run.json(), (EXTREME, ORDINARY), strict=True):
        ids, scores = expected_neighbors(shifted, query, metric, 10)
        assert [n["token_id"] for n in answer["neighbors"]] == ids, f"#{query}"
        assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)


def test_stats_mean_row_near_float64_max(cli, near_float64_max):
    """stats' mean row (|mean row| / mean norm, cosines to the mean) of rows near 1e308."""
    path, table, mean = near_float64_max
    run = cli("stats", path, "-f", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout, parse_constant=reject)
    norms = np.array([exact_norm(row) for row in table])
    mean_norm = float(np.ldexp(np.ldexp(norms, -1021).mean(), 1021))
    assert result["mean_row_norm"] == pytest.approx(exact_norm(mean) / mean_norm, rel=1e-12, abs=0)
    to_mean = scaled_cosines(table, mean)
    assert result["cosine_to_mean"]["min"] == pytest.approx(to_mean.min(), rel=1e-12)
    assert result["cosine_to_mean"]["max"] == pytest.approx(to_mean.max(), rel=1e-12)
    assert result["cosine_to_mean"]["mean"] == pytest.approx(to_mean.mean(), rel=1e-12)


# --- tokens, compare --pairs and diff at any scale ----------------------------------------

ROW_FIGURE_SCALES = [
    "F32-x1e20", "F32-x1e-24", "F32-subnormal-x1e-40",
    "F64-x1e-200", "F64-x1e300", "F64-subnormal-x1e-310",
]  # fmt: skip


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    """A tokenizer.json that spells row i of a scaled table as the word ``w<i>``."""
    vocab = {f"w{i}": i for i in range(40)}
    split = {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": False}
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": split, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"},
    }  # fmt: skip
    path = tmp_path_factory.mktemp("words") / "tokenizer.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("case", ROW_FIGURE_SCALES)
def test_tokens_norms_at_any_scale(cli, scaled_tables, word_tokenizer, case):
    """A row of 1e-200 has its norm, not 0; a row of 1e300 its norm, not infinity."""
    path, table = scaled_tables[case]
    words = [EXTREME, ORDINARY, 7, 29]
    text = " ".join(f"w{i}" for i in words)
    run = cli("tokens", path, text, "--tokenizer", word_tokenizer, "--vectors", "-f", "json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout, parse_constant=reject)["tokens"]
    assert [r["token_id"] for r in rows] == words
    assert [r["vector"] for r in rows] == table[words].tolist()  # the stored values
    norms = [exact_norm(table[i]) for i in words]
    assert all(0 < n < math.inf for n in norms)
    assert [r["norm"] for r in rows] == pytest.approx(norms, rel=1e-14, abs=0)


@pytest.mark.parametrize("case", ROW_FIGURE_SCALES)
def test_tokens_table_shows_extreme_norms(cli, scaled_tables, word_tokenizer, case):
    """The table a person reads shows a norm of 1e-200 as such, not as 0.0000, and one
    of 1e300 in four significant digits, not as a 300-digit number."""
    path, table = scaled_tables[case]
    run = cli("tokens", path, f"w{EXTREME}", "--tokenizer", word_tokenizer, "-f", "table")
    assert run.returncode == 0, run.stderr
    shown = f"{exact_norm(table[EXTREME]):.4e}"
    assert f" {shown} " in run.stdout


@pytest.mark.parametrize("case", ROW_FIGURE_SCALES)
def test_compare_pairs_at_any_scale(cli, scaled_tables, word_tokenizer, tmp_path, case):
    """Word-pair cosines of tiny and huge rows, and of one of each with an ordinary row:
    equal to the float64 reference on rows over their own maximum, so Pearson is too."""
    path, table = scaled_tables[case]
    pairs = [(3, 4, 1.5), (3, 35, 2.0), (31, 32, 3.0), (10, 20, 0.5), (29, 0, 4.0), (7, 7, 5.0)]
    suite = tmp_path / "pairs.tsv"
    suite.write_text("".join(f"w{a}\tw{b}\t{human}\n" for a, b, human in pairs))
    run = cli("compare", path, "--tokenizer", word_tokenizer, "--pairs", suite, "-f", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout, parse_constant=reject)
    cosines = [float(scaled_cosines(table[[a]], table[b])[0]) for a, b, _ in pairs]
    assert result["scored"] == len(pairs)
    assert [p["cosine"] for p in result["pairs"]] == pytest.approx(cosines, rel=1e-12, abs=1e-15)
    humans = [human for *_, human in pairs]
    assert result["pearson"] == pytest.approx(np.corrcoef(humans, cosines)[0, 1], rel=1e-10)


def other_rows(case: str) -> np.ndarray:
    """Table B of a ``diff``: each row of the scaled table moved by up to 30%, at the same
    scale (rows 0..29 extreme), row 5 left equal; stored in the same dtype."""
    dtype, scale = SCALES[case]
    rows = scaled_rows(1.0)
    rows += 0.3 * np.random.default_rng(41).standard_normal(rows.shape)
    rows /= np.abs(rows).max(axis=1, keepdims=True)
    rows[:30] *= scale
    stored = torch.from_numpy(rows).to(dtype)
    stored[5] = torch.from_numpy(scaled_rows(scale)[5]).to(dtype)
    return stored


@pytest.mark.parametrize("case", ROW_FIGURE_SCALES)
def test_diff_at_any_scale(cli, scaled_tables, tmp_path, case):
    """Per-row cosine, norms and |a - b| / |a|, and the drift ||B - A|| / ||A||, of tables
    of tiny, huge or subnormal rows: no row left out as zero, nothing overflows."""
    path_a, a = scaled_tables[case]
    stored = other_rows(case)
    path_b = tmp_path / "b.safetensors"
    save_file({"wte.weight": stored}, str(path_b))
    b = stored.double().numpy()
    run = cli("diff", path_a, path_b, "-k", "40", "-f", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout, parse_constant=reject)
    assert (result["compared"], result["scored"], result["identical"]) == (40, 40, 1)
    assert result["left_out"]["total"] == 0
    cos = np.array([1.0 if i == 5 else scaled_cosines(a[[i]], b[i])[0] for i in range(40)])
    squares_a = [exact_dots(a[[i]], a[i])[0] for i in range(40)]
    squares_apart = [exact_squared_distances(a[[i]], b[i])[0] for i in range(40)]
    relative = [rounded_sqrt(d / n) for d, n in zip(squares_apart, squares_a, strict=True)]
    order = np.lexsort((np.arange(40), cos)).tolist()
    moved = result["moved"]
    assert [m["token_id"] for m in moved] == order
    assert [m["cosine"] for m in moved] == pytest.approx(cos[order], rel=1e-12, abs=1e-15)
    for side, rows in (("norm_a", a), ("norm_b", b)):
        norms = [exact_norm(rows[i]) for i in order]
        assert [m[side] for m in moved] == pytest.approx(norms, rel=1e-14, abs=0), side
    assert [m["relative_change"] for m in moved] == pytest.approx(
        [relative[i] for i in order], rel=1e-13, abs=0
    )
    assert result["cosine"]["min"] == pytest.approx(cos.min(), rel=1e-12)
    assert result["cosine"]["mean"] == pytest.approx(cos.mean(), rel=1e-12)
    assert result["relative_change"]["max"] == pytest.approx(max(relative), rel=1e-13)
    assert result["relative_change"]["mean"] == pytest.approx(np.mean(relative), rel=1e-13)
    drift = rounded_sqrt(sum(squares_apart) / sum(squares_a))
    assert result["drift"] == pytest.approx(drift, rel=1e-13)
