"""gensim's verbs: ``neighbors --positive/--negative`` (most_similar with lists),
``--restrict`` (restrict_vocab), ``--vector`` (similar_by_vector), ``outlier``
(doesnt_match), and ``compare`` of multi-word queries (n_similarity), through the CLI and
the API, against gensim itself on the first 20,000 rows of the real GloVe 6B 50d (gensim
reads the file itself) and against float64 references computed here; MiniLM for queries
a tokenizer splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference import cosines, ranked, table, unit
from test_errors import EXIT_USAGE, assert_one_line_error
from test_word_vector_models import glove_head

import embinspect
from embinspect import QueryError, UsageError

pytest.importorskip("gensim")
EXIT_QUERY = 4
HEAD_ROWS = 20_000
MINILM_WORDS = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def glove20k(glove, tmp_path_factory):
    """The first 20,000 lines of GloVe 6B 50d: a real word-vector file that parses fast."""
    return glove_head(glove, tmp_path_factory.mktemp("glove") / "glove-20k.txt", HEAD_ROWS)


@pytest.fixture(scope="module")
def kv(glove20k):
    """gensim's KeyedVectors, read by gensim itself from the same file."""
    from gensim.models import KeyedVectors

    return KeyedVectors.load_word2vec_format(str(glove20k), no_header=True)


@pytest.fixture(scope="module")
def rows(kv):
    """The same rows in float64 (the file's float32 values, exactly)."""
    return kv.vectors.astype(np.float64)


@pytest.fixture(scope="module")
def minilm_rows(minilm):
    return table(minilm, MINILM_WORDS)


def most_similar_reference(rows, plus: list[int], minus: list[int], k: int, limit=None):
    """gensim's most_similar in float64: unit rows against the unit sum of the terms' unit
    vectors, positives added and negatives taken away, the terms' rows left out."""
    direction = sum((unit(rows[i]) for i in plus), np.zeros(rows.shape[1]))
    direction = direction - sum((unit(rows[i]) for i in minus), np.zeros(rows.shape[1]))
    allowed = None if limit is None else np.arange(len(rows)) < limit
    return ranked(cosines(rows, direction), k, exclude=set(plus) | set(minus), allowed=allowed)


def neighbours_of(result: dict) -> tuple[list[str], list[int], list[float]]:
    listed = result["neighbors"]
    return (
        [n["token"] for n in listed],
        [n["token_id"] for n in listed],
        [n["score"] for n in listed],
    )


# --- --positive / --negative: gensim's most_similar with lists -----------------------------


@pytest.mark.parametrize(
    ("positive", "negative"),
    [
        (["king", "woman"], ["man"]),
        (["paris", "germany"], ["france"]),
        (["berlin", "france", "queen"], ["germany", "king"]),
        ([], ["king"]),
        (["breakfast", "dinner", "lunch"], []),
    ],
    ids=["king-woman-man", "paris-germany-france", "three-and-two", "negative-only", "positives"],
)
def test_positive_and_negative_equal_gensim_most_similar(
    cli, glove20k, kv, rows, positive, negative
):
    args = [f"--positive={w}" for w in positive] + [f"--negative={w}" for w in negative]
    (result,) = cli("neighbors", glove20k, *args, "-k", "10", "-f", "json").json()
    tokens, ids, scores = neighbours_of(result)
    gensim = kv.most_similar(positive=positive, negative=negative, topn=10)
    assert tokens == [word for word, _ in gensim]
    assert scores == pytest.approx([s for _, s in gensim], abs=1e-6)  # gensim: float32
    index = kv.key_to_index
    expected = most_similar_reference(
        rows, [index[w] for w in positive], [index[w] for w in negative], 10
    )
    assert (ids, scores) == (expected[0], pytest.approx(expected[1], rel=1e-12))
    assert [t["query"] for t in result["positive"]] == positive
    assert [t["query"] for t in result["negative"]] == negative
    assert result["token_ids"] == [index[w] for w in positive + negative]


def test_analogy_is_the_shorthand_of_positive_and_negative(cli, minilm):
    """analogy A B C is --positive A --positive C --negative B, to the last bit, and so is
    neighbors A --positive C --negative B (a QUERY is one more positive term)."""
    (analogy,) = cli("analogy", minilm, "king", "man", "woman", "-k", "10", "-f", "json").json()
    expected = [(r["token_id"], r["score"]) for r in analogy["results"]]
    terms = ["--positive", "king", "--positive", "woman", "--negative", "man"]
    (spelled,) = cli("neighbors", minilm, *terms, "-k", "10", "-f", "json").json()
    (queried,) = cli(
        "neighbors", minilm, "king", "--positive", "woman", "--negative", "man", "-k", "10",
        "-f", "json",
    ).json()  # fmt: skip
    for result in (spelled, queried):
        assert [(n["token_id"], n["score"]) for n in result["neighbors"]] == expected
        assert result["query"] == "king + woman - man"
    assert expected[0][0] == 3035  # queen


def test_each_query_is_one_more_positive_term(cli, minilm, minilm_rows):
    run = cli("neighbors", minilm, "king", "queen", "#999999", "--negative", "man", "-k", "5",
              "-f", "json")  # fmt: skip
    assert run.returncode == EXIT_QUERY
    king, queen, bad = json.loads(run.stdout)
    for result, word in ((king, 2332), (queen, 3035)):
        ids, scores = most_similar_reference(minilm_rows, [word], [2158], 5)
        assert [n["token_id"] for n in result["neighbors"]] == ids
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert (king["query"], queen["query"]) == ("king - man", "queen - man")
    assert bad == {
        "query": "#999999 - man",
        "metric": "cosine",
        "error": "#999999: outside the table (rows 0..30521)",
        "schema_version": 2,
        "provenance": bad["provenance"],
    }


def test_a_term_of_several_tokens_is_pooled_then_made_a_unit_vector(
    cli, minilm, minilm_rows, minilm_tokenizer
):
    pieces = minilm_tokenizer.encode("snowboarding", add_special_tokens=False).ids
    assert len(pieces) > 1
    (result,) = cli("neighbors", minilm, "--positive", "snowboarding", "--negative", "snow",
                    "-k", "6", "-f", "json").json()  # fmt: skip
    rows = minilm_rows
    pooled = rows[pieces].mean(axis=0)
    snow = minilm_tokenizer.encode("snow", add_special_tokens=False).ids[0]
    direction = unit(pooled) - unit(rows[snow])
    ids, scores = ranked(cosines(rows, direction), 6, exclude={*pieces, snow})
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert result["positive"][0]["pooled"] == "mean"


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def test_terms_show_in_the_table_and_tsv(cli, minilm):
    run = cli("neighbors", minilm, "--positive", "king", "--negative", "man", "-k", "2",
              "-f", "table")  # fmt: skip
    lines = run.stdout.splitlines()
    assert lines[0] == "Neighbors of king - man"
    assert lines[-2:] == ["'king' = king #2332", "'man' = man #2158"]
    tsv = cli("neighbors", minilm, "--positive", "king", "--negative", "man", "-k", "1",
              "-f", "tsv").stdout.splitlines()  # fmt: skip
    assert tsv[1].split("\t")[:4] == ["king - man", "2332 2158", "1", tsv[1].split("\t")[3]]


# --- --restrict: gensim's restrict_vocab ----------------------------------------------------


def test_restrict_equals_gensim_restrict_vocab(cli, glove20k, kv, rows):
    (result,) = cli("neighbors", glove20k, "king", "--restrict", "1000", "-k", "10",
                    "-f", "json").json()  # fmt: skip
    tokens, ids, scores = neighbours_of(result)
    gensim = kv.most_similar("king", topn=10, restrict_vocab=1000)
    assert tokens == [w for w, _ in gensim]
    assert max(ids) < 1000
    king = kv.key_to_index["king"]
    expected = most_similar_reference(rows, [king], [], 10, limit=1000)
    assert (ids, scores) == (expected[0], pytest.approx(expected[1], rel=1e-12))
    (terms,) = cli("neighbors", glove20k, "--positive", "king", "--positive", "woman",
                   "--negative", "man", "--restrict", "500", "-f", "json").json()  # fmt: skip
    gensim = kv.most_similar(positive=["king", "woman"], negative=["man"], restrict_vocab=500)
    assert neighbours_of(terms)[0] == [w for w, _ in gensim]


# --- --vector: gensim's similar_by_vector ---------------------------------------------------


@pytest.fixture(scope="module")
def hidden(rows, kv):
    """A vector no row equals: king's row, nudged, as float32 (a hidden state would be)."""
    nudge = np.random.default_rng(7).normal(scale=0.2, size=rows.shape[1])
    return (rows[kv.key_to_index["king"]] + nudge).astype(np.float32)


def test_vector_from_npy_equals_gensim_similar_by_vector(cli, glove20k, kv, rows, hidden, tmp_path):
    path = tmp_path / "hidden.npy"
    np.save(path, hidden)
    (result,) = cli("neighbors", glove20k, "--vector", path, "-k", "10", "-f", "json").json()
    tokens, ids, scores = neighbours_of(result)
    gensim = kv.similar_by_vector(hidden, topn=10)
    assert tokens == [w for w, _ in gensim]
    assert scores == pytest.approx([s for _, s in gensim], abs=1e-6)
    expected = ranked(cosines(rows, hidden.astype(np.float64)), 10)
    assert (ids, scores) == (expected[0], pytest.approx(expected[1], rel=1e-12))
    assert (result["query"], result["vector"], result["token_ids"]) == (str(path), True, [])


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_vector_with_other_metrics_equals_the_float64_reference(cli, glove20k, rows, hidden,
                                                                tmp_path, metric):  # fmt: skip
    path = tmp_path / "hidden.npy"
    np.save(path, hidden)
    (result,) = cli("neighbors", glove20k, "--vector", path, "--metric", metric, "-k", "8",
                    "-f", "json").json()  # fmt: skip
    query = hidden.astype(np.float64)
    if metric == "dot":
        expected = ranked(rows @ query, 8)
    else:
        expected = ranked(np.sqrt(((rows - query) ** 2).sum(axis=1)), 8, ascending=True)
    _, ids, scores = neighbours_of(result)
    assert (ids, scores) == (expected[0], pytest.approx(expected[1], rel=1e-12))


def test_vector_from_a_text_row_and_from_stdin(cli, glove20k, glove):
    """A word2vec/GloVe row as it stands in the file (the word is skipped), or the bare
    numbers on stdin: king's own row, so king comes first, as with --keep-query."""
    lines = glove20k.read_text(encoding="utf-8").splitlines()
    row = next(line for line in lines if line.startswith("king "))
    path = glove20k.parent / "king-row.txt"
    path.write_text(row + "\n")
    (from_file,) = cli("neighbors", glove20k, "--vector", path, "-k", "5", "-f", "json").json()
    numbers = row.split(" ", 1)[1]
    (from_stdin,) = cli("neighbors", glove20k, "--vector", "-", "-k", "5", "-f", "json",
                        input=numbers).json()  # fmt: skip
    (kept,) = cli("neighbors", glove20k, "king", "--keep-query", "-k", "5", "-f", "json").json()
    assert from_file["neighbors"] == from_stdin["neighbors"]
    assert from_stdin["query"] == "-"
    # The text is read in float64; the table holds the same numbers rounded to float32.
    assert neighbours_of(from_file)[1] == neighbours_of(kept)[1]
    assert neighbours_of(from_file)[2] == pytest.approx(neighbours_of(kept)[2], rel=1e-6)


@pytest.mark.parametrize("word", ["1996", "nan"])
def test_vector_from_a_glove_row_whose_word_is_a_number(cli, glove20k, rows, kv, word):
    """GloVe's words 1996 and nan look like numbers: a row of 51 fields is a word and its
    50 numbers whatever the word looks like; 50 fields are all numbers (the README's
    ``grep -m1 '^1996 ' glove.6B.50d.txt | embinspect neighbors ... --vector -``)."""
    lines = glove20k.read_text(encoding="utf-8").splitlines()
    row = next(line for line in lines if line.startswith(f"{word} "))
    (from_stdin,) = cli("neighbors", glove20k, "--vector", "-", "-k", "5", "-f", "json",
                        input=row + "\n").json()  # fmt: skip
    path = glove20k.parent / f"{word}-row.txt"
    path.write_text(row + "\n")
    (from_file,) = cli("neighbors", glove20k, "--vector", path, "-k", "5", "-f", "json").json()
    (bare,) = cli("neighbors", glove20k, "--vector", "-", "-k", "5", "-f", "json",
                  input=row.split(" ", 1)[1]).json()  # fmt: skip
    expected = ranked(cosines(rows, rows[kv.key_to_index[word]]), 5)
    assert neighbours_of(from_stdin)[1] == expected[0]
    assert neighbours_of(from_stdin)[0][0] == word
    assert from_file["neighbors"] == from_stdin["neighbors"] == bare["neighbors"]


@pytest.fixture
def tiny(tmp_path):
    """A word-vector file of width 3 whose words look like numbers."""
    path = tmp_path / "tiny.txt"
    path.write_text("2 1 0 0\ninf 0 1 0\ncat 0 0 1\ndog 1 1 0\n")
    return path


@pytest.mark.parametrize(
    ("row", "first"),
    [("2 1 0 0", "2"), ("inf 0 1 0", "inf"), ("0 0 1", "cat"), ("5 0 0 1", "cat")],
    ids=["number-word", "inf-word", "bare-values", "number-word-not-in-table"],
)
def test_vector_row_of_width_plus_one_skips_its_word(cli, tiny, row, first):
    (result,) = cli("neighbors", tiny, "--vector", "-", "-k", "1", "-f", "json",
                    input=row).json()  # fmt: skip
    assert [n["token"] for n in result["neighbors"]] == [first]
    assert result["neighbors"][0]["score"] == pytest.approx(1.0, rel=1e-12)


def test_vector_as_the_shells_json_list(cli, glove20k, tmp_path):
    """What the shell's ``vector`` prints under ``:format json`` is a --vector input."""
    listed = cli("shell", glove20k, "-f", "json", input="vector king\n").stdout
    assert listed.startswith("[") and listed.count(",") == 49
    (from_json,) = cli("neighbors", glove20k, "--vector", "-", "-k", "5", "-f", "json",
                       input=listed).json()  # fmt: skip
    (kept,) = cli("neighbors", glove20k, "king", "--keep-query", "-k", "5", "-f", "json").json()
    assert neighbours_of(from_json)[1] == neighbours_of(kept)[1]
    path = tmp_path / "king.json"
    path.write_text(listed)
    (from_file,) = cli("neighbors", glove20k, "--vector", path, "-k", "5", "-f", "json").json()
    assert from_file["neighbors"] == from_json["neighbors"]


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("1 2 3", "standard input: 3 values; the table's rows have 50"),
        ("king 0.5 x 0.25", "standard input: 'x' is not a number"),
        ("", "standard input: empty; give one row of numbers"),
        ("[1, 2", "standard input: not a JSON list of numbers"),
        ('[1, "a"]', "standard input: not a JSON list of numbers; give one flat list"),
        ("[[1, 2]]", "standard input: not a JSON list of numbers; give one flat list"),
        ("[" + ", ".join(["1"] * 49 + ["null"]) + "]", "standard input: holds NaN or infinite"),
        (" ".join(["0"] * 50), "standard input: a zero vector has no direction"),
    ],
    ids=["short", "letters", "empty", "json-broken", "json-strings", "json-nested",
         "json-null", "zero"],
)  # fmt: skip
def test_a_bad_vector_on_stdin_is_named_standard_input(cli, glove20k, given, fragment):
    run = cli("neighbors", glove20k, "--vector", "-", input=given)
    assert_one_line_error(run, EXIT_USAGE, fragment)


def _pickled_npy(path):
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _text(content: str):
    return lambda path: path.write_text(content)


def _npy(array):
    return lambda path: np.save(path, array)


@pytest.mark.parametrize(
    ("name", "write", "fragment"),
    [
        ("short.npy", _npy(np.ones(49, dtype=np.float32)), "49 values; the table's rows have 50"),
        ("nan.npy", _npy(np.full(50, np.nan)), "holds NaN or infinite values"),
        ("inf.txt", _text(" ".join(["1"] * 49 + ["inf"])), "holds NaN or infinite values"),
        ("empty.txt", _text(""), "empty; give one row of numbers"),
        ("blank.txt", _text("\n  \n"), "empty; give one row of numbers"),
        ("pickled.npy", _pickled_npy, "a .npy array of Python objects or records (a pickle)"),
        ("matrix.npy", _npy(np.ones((2, 50))), ".npy array of shape (2, 50) is not a 1-D array"),
        ("complex.npy", _npy(np.ones(50, dtype=complex)), ".npy dtype '<c16'; embinspect reads"),
        ("word.txt", _text("king"), "'king' holds no numbers"),
        ("letters.txt", _text("king 0.5 x 0.25"), "'x' is not a number"),
        ("two-rows.txt", _text("1 2\n3 4\n"), "2 lines; give one row of numbers"),
        ("zero.txt", _text(" ".join(["0"] * 50)), "a zero vector has no direction"),
        ("broken.npy", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage"), "truncated .npy"),
        ("latin1.txt", lambda p: p.write_bytes(b"k\xe9 1 2"), "neither a .npy array nor UTF-8"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else None,
)
def test_a_bad_vector_file_is_one_line_and_exit_2(cli, glove20k, tmp_path, name, write, fragment):
    path = tmp_path / name
    write(path)
    run = cli("neighbors", glove20k, "--vector", path)
    assert_one_line_error(run, EXIT_USAGE, f"{path}: {fragment}")


def _npy_header(header: dict, data: bytes = b""):
    """A .npy file of this header and these bytes, whatever they declare."""

    def write(path):
        with open(path, "wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
            file.write(data)

    return write


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        (_npy_header({"descr": "<f4", "fortran_order": False, "shape": (10**13,)}),
         "truncated .npy file: 10,000,000,000,000 F32 needs 40,000,000,000,000 bytes"),
        (_npy_header({"descr": "|O", "fortran_order": False, "shape": (50,)}, b"\0" * 400),
         "a .npy array of Python objects or records (a pickle)"),
        (_npy_header({"descr": [("a", "<f4"), ("b", "<f4")], "fortran_order": False,
                      "shape": (25,)}, b"\0" * 200),
         "a .npy array of Python objects or records (a pickle); embinspect never unpickles"),
        (_npy(np.ones(50, dtype=">f4")), ".npy dtype '>f4'; embinspect reads"),
        (_npy_header({"descr": "<f4", "fortran_order": True, "shape": (2, 25)}, b"\0" * 200),
         "a Fortran-order .npy array; save it in C order"),
        (_npy_header({"descr": "<f8", "fortran_order": False, "shape": (50,)}, b"\0" * 100),
         "truncated .npy file: 50 F64 needs 400 bytes after its header, the file has 100"),
        (_npy_header({"descr": "<f4", "fortran_order": False, "shape": (-2, -25)}, b"\0" * 200),
         ".npy array of shape (-2, -25) is not a 1-D array"),
    ],
    ids=["huge-shape", "object-dtype", "structured", "big-endian", "fortran", "truncated",
         "negative-shape"],
)  # fmt: skip
def test_a_hostile_npy_header_is_one_line_and_exit_2(cli, glove20k, tmp_path, write, fragment):
    """The header's shape is checked against the file's size before anything is read or
    allocated: a declared 10**13 values is not a MemoryError."""
    path = tmp_path / "hostile.npy"
    write(path)
    assert_one_line_error(cli("neighbors", glove20k, "--vector", path), EXIT_USAGE,
                          f"{path}: {fragment}")  # fmt: skip
    piped = cli("neighbors", glove20k, "--vector", "-", input=path.read_bytes())
    assert_one_line_error(piped, EXIT_USAGE, f"standard input: {fragment}")


def test_a_missing_vector_file_is_one_line_and_exit_2(cli, glove20k, tmp_path):
    missing = tmp_path / "nowhere.npy"
    assert_one_line_error(cli("neighbors", glove20k, "--vector", missing), EXIT_USAGE,
                          f"{missing}: cannot read (No such file or directory)")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["king", "--vector", "v.npy"], EXIT_USAGE, "--vector FILE goes alone"),
        (["--positive", "king", "--vector", "v.npy"], EXIT_USAGE, "--vector FILE goes alone"),
        ([], EXIT_USAGE, "give a QUERY, --positive/--negative terms, or --vector FILE"),
        (["--positive", "king", "--metric", "dot"], EXIT_USAGE, "--metric dot goes not with"),
        (["--positive", "king", "--negative", "king"], EXIT_QUERY, "the terms cancel out"),
        (["--positive", "qwxzv"], EXIT_QUERY, "'qwxzv': not a word of glove-20k.txt"),
        (["king", "--restrict", "0"], EXIT_USAGE, "--restrict"),
    ],
    ids=["vector-and-query", "vector-and-terms", "nothing-asked", "terms-with-dot",
         "terms-cancel", "unknown-term", "restrict-zero"],
)  # fmt: skip
def test_bad_neighbors_requests(cli, glove20k, args, code, fragment):
    run = cli("neighbors", glove20k, *args, "-f", "tsv")
    assert run.returncode == code, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("embinspect: error: ") and fragment in line, line
    assert "Traceback" not in run.stderr


# --- outlier: gensim's doesnt_match ---------------------------------------------------------


@pytest.mark.parametrize(
    "words",
    [
        ["breakfast", "cereal", "dinner", "lunch"],
        ["paris", "berlin", "london", "banana"],
        ["king", "queen", "man", "woman", "car"],
        ["red", "green", "blue", "seven"],
    ],
    ids=["meals", "capitals", "royals", "colours"],
)
def test_outlier_equals_gensim_doesnt_match(cli, glove20k, kv, rows, words):
    result = cli("outlier", glove20k, *words, "-f", "json").json()
    assert result["outlier"] == kv.doesnt_match(words)
    # rank_by_centrality: (cosine to the mean, word), most central first.
    gensim = kv.rank_by_centrality(words)
    assert [r["query"] for r in result["ranking"]] == [w for _, w in gensim]
    assert [r["cosine"] for r in result["ranking"]] == pytest.approx(
        [float(s) for s, _ in gensim], abs=1e-6
    )
    units = np.array([unit(rows[kv.key_to_index[w]]) for w in words])
    reference = units @ unit(units.mean(axis=0))
    by_word = dict(zip(words, reference, strict=True))
    assert [r["cosine"] for r in result["ranking"]] == pytest.approx(
        [by_word[r["query"]] for r in result["ranking"]], rel=1e-12
    )
    assert result["metric"] == "cosine"


def test_outlier_in_every_format(cli, minilm):
    args = ("outlier", minilm, "cat", "dog", "car", "mouse")
    document = cli(*args, "-f", "json").json()
    assert document["outlier"] == document["ranking"][-1]["query"]
    assert [r["token_ids"] for r in document["ranking"]] == [[4937], [3899], [2482], [8000]]
    records = cli(*args, "-f", "jsonl").jsonl()
    assert [r["query"] for r in records] == [r["query"] for r in document["ranking"]]
    assert [r["outlier"] for r in records] == [False, False, False, True]
    assert [r["cosine"] for r in records] == [r["cosine"] for r in document["ranking"]]
    tsv = cli(*args, "-f", "tsv").stdout.splitlines()
    assert tsv[0] == "rank\tquery\tquery_ids\ttokens\tcosine\toutlier"
    assert tsv[4].split("\t")[1:4] == ["mouse", "8000", "mouse"]
    assert tsv[4].endswith("\ttrue")
    csv = cli(*args, "-f", "csv").stdout.splitlines()
    assert csv[0] == "rank,query,query_ids,tokens,cosine,outlier"
    drawn = cli(*args, "-f", "table").stdout.splitlines()
    assert drawn[0] == f"Does not belong: '{document['outlier']}'"
    assert "mouse #8000" in drawn[-3]


def test_outlier_leaves_out_what_it_cannot_resolve(cli, glove20k, kv):
    run = cli("outlier", glove20k, "breakfast", "qwxzv", "cereal", "dinner", "lunch", "-f", "json")
    assert run.returncode == EXIT_QUERY
    result = json.loads(run.stdout)
    assert result["outlier"] == kv.doesnt_match(["breakfast", "cereal", "dinner", "lunch"])
    assert result["errors"] == [{"query": "qwxzv", "error": "'qwxzv': not a word of glove-20k.txt"}]
    assert run.stderr == "embinspect: error: 'qwxzv': not a word of glove-20k.txt\n"


def test_outlier_needs_three_queries(cli, glove20k):
    """One check, one wording: the analysis's, which the CLI asks before opening the table."""
    assert_one_line_error(
        cli("outlier", glove20k, "king", "queen"),
        EXIT_USAGE,
        "outlier needs at least 3 queries to find the one that does not belong; got 2",
    )


def test_outlier_names_none_when_fewer_than_three_queries_resolve(cli, glove20k):
    """Two resolved queries are equally far from their mean: naming one would be naming
    float noise. The ranking is still shown, the failed query reported, exit 4."""
    run = cli("outlier", glove20k, "king", "queen", "#99999", "-f", "json")
    assert run.returncode == EXIT_QUERY
    result = json.loads(run.stdout)
    assert result["outlier"] is None
    assert sorted(r["query"] for r in result["ranking"]) == ["king", "queen"]
    assert result["ranking"][0]["cosine"] == pytest.approx(result["ranking"][1]["cosine"])
    assert [e["query"] for e in result["errors"]] == ["#99999"]
    (line,) = run.stderr.splitlines()
    assert line.startswith("embinspect: error: ") and "#99999" in line
    drawn = cli("outlier", glove20k, "king", "queen", "#99999", "-f", "table")
    assert drawn.stdout.splitlines()[0] == (
        "No outlier: fewer than three queries could be resolved"
    )
    assert "king" in drawn.stdout and "queen" in drawn.stdout
    records = cli("outlier", glove20k, "king", "queen", "#99999", "-f", "jsonl").stdout
    assert [json.loads(r)["outlier"] for r in records.splitlines()] == [False, False]


def test_outlier_ties_keep_the_input_order(cli, glove20k, kv):
    """The same row three ways: cosines of exactly 1.0 (clamped, not 1.0000000000000007),
    so the tie keeps the input order and the last is named."""
    king = f"#{kv.key_to_index['king']}"
    result = cli("outlier", glove20k, "king", "=king", king, "-f", "json").json()
    assert [r["query"] for r in result["ranking"]] == ["king", "=king", king]
    assert [r["cosine"] for r in result["ranking"]] == [1.0, 1.0, 1.0]
    assert result["outlier"] == king
    same = cli("outlier", glove20k, "king", "king", "king", "-f", "json").json()
    assert [r["cosine"] for r in same["ranking"]] == [1.0, 1.0, 1.0]


# --- compare of multi-word queries: gensim's n_similarity -----------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [("new york", "los angeles"), ("breakfast lunch", "dinner"), ("king queen", "man woman")],
    ids=["cities", "meals", "royals"],
)
def test_compare_with_mean_pooling_equals_gensim_n_similarity(cli, glove20k, kv, rows, a, b):
    result = cli("compare", glove20k, a, b, "--pool", "mean", "-f", "json").json()
    ours = result["matrix"][0][1]
    assert ours == pytest.approx(float(kv.n_similarity(a.split(), b.split())), abs=1e-6)
    # n_similarity: the mean of the raw rows (not of unit vectors), then the cosine.
    index = kv.key_to_index
    mean_a = rows[[index[w] for w in a.split()]].mean(axis=0)
    mean_b = rows[[index[w] for w in b.split()]].mean(axis=0)
    assert ours == pytest.approx(float(unit(mean_a) @ unit(mean_b)), rel=1e-12)


# --- the API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glove_api(glove20k):
    return embinspect.load(glove20k)


def test_api_terms_vector_and_restrict_give_the_clis_answers(cli, glove_api, glove20k, hidden):
    terms = glove_api.neighbors(positive=["king", "woman"], negative="man", k=5)
    (expected,) = cli("neighbors", glove20k, "--positive", "king", "--positive", "woman",
                      "--negative", "man", "-k", "5", "-f", "json").json()  # fmt: skip
    assert json.loads(json.dumps(terms.to_dict())) == expected
    several = glove_api.neighbors(["king", "paris"], negative=["man"], k=3)
    assert [r.query for r in several] == ["king - man", "paris - man"]
    near = glove_api.neighbors(vector=hidden, k=4)
    assert near.vector and near.query == "vector"
    again = glove_api.neighbors(vector=hidden.astype(np.float64).tolist(), k=4)
    assert near.neighbors == again.neighbors
    limited = glove_api.neighbors("king", k=5, restrict=1000)
    assert max(n.token_id for n in limited.neighbors) < 1000


def test_api_outlier(glove_api, kv):
    result = glove_api.outlier(["breakfast", "cereal", "dinner", "lunch"])
    assert result.outlier == kv.doesnt_match(["breakfast", "cereal", "dinner", "lunch"])
    assert "outlier" in str(result)
    missing = glove_api.outlier(["king", "queen", "qwxzv", "car"])
    assert missing.errors == [{"query": "qwxzv", "error": "'qwxzv': not a word of glove-20k.txt"}]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda m: m.neighbors(vector=np.ones(3)), UsageError, "vector: 3 values"),
        (lambda m: m.neighbors(vector=np.ones((2, 50))), UsageError, "vector: shape (2, 50)"),
        (lambda m: m.neighbors(vector=["a"] * 50), UsageError, "vector: <U1 values"),
        (lambda m: m.neighbors(vector=np.full(50, np.inf)), UsageError, "NaN or infinite"),
        (lambda m: m.neighbors("king", vector=np.ones(50)), UsageError, "vector goes alone"),
        (lambda m: m.neighbors(), UsageError, "or give positive/negative terms, or a vector"),
        (lambda m: m.neighbors(positive=[1]), UsageError, "positive must be a str"),
        (lambda m: m.neighbors(positive="king", negative="king"), QueryError, "cancel out"),
        (lambda m: m.neighbors("king", restrict=0), UsageError, "restrict=0"),
        (lambda m: m.outlier(["king", "queen"]), UsageError, "at least 3 queries"),
        (lambda m: m.outlier("king queen man"), UsageError, "not one string"),
    ],
    ids=["vector-length", "vector-shape", "vector-strings", "vector-inf", "vector-and-query",
         "nothing", "term-not-str", "terms-cancel", "restrict-zero", "outlier-two",
         "outlier-string"],
)  # fmt: skip
def test_api_mistakes_raise_the_librarys_errors(glove_api, call, error, fragment):
    with pytest.raises(error, match=None) as raised:
        call(glove_api)
    assert fragment in str(raised.value)


# --- outside strings reach the terminal escaped -------------------------------------------


def test_hostile_queries_and_file_names_are_shown_escaped(cli, minilm, tmp_path):
    hostile = "cat\x1b[2J\u202e"
    drawn = cli("outlier", minilm, hostile, "dog", "car", "-f", "table")
    assert "\x1b" not in drawn.stdout and "\u202e" not in drawn.stdout
    assert "\\x1b[2J" in drawn.stdout  # shown as its escape, not obeyed
    terms = cli("neighbors", minilm, "--positive", hostile, "--negative", "man", "-k", "1",
                "-f", "table")  # fmt: skip
    assert "\x1b" not in terms.stdout and terms.stdout.startswith("Neighbors of cat\\x1b[2J")
    path = tmp_path / "v\x1b[31m.txt"
    path.write_text("1 2 3\n")
    run = cli("neighbors", minilm, "--vector", path)
    assert run.returncode == EXIT_USAGE and "\x1b" not in run.stderr
    assert "v\\x1b[31m.txt: 3 values; the table's rows have 384" in run.stderr


def test_compare_from_stdin_reads_to_the_end_for_one_matrix(cli, minilm):
    result = cli("compare", minilm, "-", "-f", "json", input="cat\ndog\ncar\n").json()
    assert [item["query"] for item in result["items"]] == ["cat", "dog", "car"]
    assert len(result["matrix"]) == 3 and result["matrix"][0][1] == result["matrix"][1][0]
