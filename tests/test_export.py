"""``embinspect export``: the table (or rows of it) written for TensorBoard, gensim and numpy,
read back by those tools (exact float32 rows) and by embinspect itself as MODEL (the same
neighbours); and every refusal, with nothing left on disk."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import checkpoints
import numpy as np
import pytest
from test_environment import WITH_CTRL_C
from test_errors import EXIT_MODEL, assert_one_line_error

import embinspect
from embinspect.errors import UsageError

pytest.importorskip("gensim")
EXIT_USAGE, EXIT_QUERY, EXIT_INTERRUPTED = 2, 4, 130

# Tokens that cannot stand as they are in a word2vec line or a TSV cell, and what is
# written for each (README: export, "Tokens that hold a space ...").
HOSTILE = {
    "two words": "two\\x20words",
    "tab\there": "tab\\there",
    "new\nline": "new\\nline",
    "back\\slash": "back\\\\slash",
    "esc\x1b[31m": "esc\\x1b[31m",
    "line\u2028sep": "line\\u2028sep",
    "nbsp\u00a0": "nbsp\\u00a0",
    "plain": "plain",
    "Ġthe": "Ġthe",
}


def minilm_rows(minilm, ids) -> np.ndarray:
    """The float32 rows of MiniLM's token table, read by safetensors itself."""
    from safetensors.numpy import load_file

    table = load_file(minilm / "model.safetensors")["embeddings.word_embeddings.weight"]
    return table[list(ids)]


def minilm_tokens(minilm, ids) -> list[str]:
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [vocab[i] for i in ids]


def chunks_of(monkeypatch, rows: int) -> None:
    """Export MiniLM's rows (384 wide) ``rows`` at a time, in every format."""
    import embinspect.analyses.export as export

    monkeypatch.setattr(export, "CHUNK_BYTES", rows * 384 * 4)
    monkeypatch.setattr(export, "TEXT_CHUNK_VALUES", rows * 384)


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def hostile_npy(tmp_path):
    """A 9 × 4 float32 table whose vocabulary is HOSTILE's tokens (as export writes them)."""
    rows = np.random.default_rng(7).standard_normal((len(HOSTILE), 4)).astype("<f4")
    path = tmp_path / "hostile.npy"
    np.save(path, rows)
    (tmp_path / "hostile.vocab.json").write_text(json.dumps(list(HOSTILE)))
    return path, rows


# --- read back by other tools --------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_word2vec_round_trips_through_gensim_exactly(cli, minilm, tmp_path, binary):
    from gensim.models import KeyedVectors

    out = tmp_path / ("minilm.bin" if binary else "minilm.txt")
    to = "word2vec-binary" if binary else "word2vec"
    run = cli("export", minilm, "--to", to, "--ids", "0:120,2332,5465", "--out", out, "-f", "json")
    ids = [*range(120), 2332, 5465]
    assert run.json()["rows"] == len(ids)
    loaded = KeyedVectors.load_word2vec_format(str(out), binary=binary)
    assert loaded.vectors.dtype == np.float32
    assert np.array_equal(loaded.vectors, minilm_rows(minilm, ids))  # bit-exact
    assert loaded.index_to_key == minilm_tokens(minilm, ids)
    assert loaded.index_to_key[-2:] == ["king", "kings"]


def test_npy_and_its_vocabulary_read_back_with_numpy(cli, minilm, tmp_path):
    out = tmp_path / "minilm.npy"
    run = cli("export", minilm, "--to", "npy", "--ids", "100:200", "--out", out, "-f", "json")
    result = run.json()
    assert result["paths"] == [str(out), str(tmp_path / "minilm.vocab.json")]
    assert (result["rows"], result["dim"], result["dtype"]) == (100, 384, "float32")
    assert result["bytes"] == out.stat().st_size + (tmp_path / "minilm.vocab.json").stat().st_size
    rows = np.load(out, allow_pickle=False)
    assert rows.dtype == np.dtype("<f4") and rows.flags.c_contiguous
    assert np.array_equal(rows, minilm_rows(minilm, range(100, 200)))
    vocab = json.loads((tmp_path / "minilm.vocab.json").read_text())
    assert vocab == minilm_tokens(minilm, range(100, 200))
    assert listing(tmp_path) == ["minilm.npy", "minilm.vocab.json"]  # no temporary left


def test_safetensors_holds_its_vocabulary_in_its_metadata(cli, minilm, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "minilm.safetensors"
    assert (
        cli("export", minilm, "--to", "safetensors", "--ids", "0:50", "--out", out).returncode == 0
    )
    with safe_open(str(out), framework="np") as handle:
        assert list(handle.keys()) == ["embeddings"]
        assert np.array_equal(handle.get_tensor("embeddings"), minilm_rows(minilm, range(50)))
        metadata = handle.metadata()
    assert json.loads(metadata["embinspect.vocabulary"]) == minilm_tokens(minilm, range(50))
    assert metadata["embinspect.tensor"] == "embeddings.word_embeddings.weight"
    assert metadata["embinspect.source"] == str(minilm)


def test_tensorboard_folder_has_vectors_and_metadata_with_token_and_id(cli, minilm, tmp_path):
    out = tmp_path / "projector"
    run = cli("export", minilm, "--to", "tensorboard", "--ids", "2332,5465,3035", "--out", out)
    assert run.returncode == 0, run.stderr
    assert listing(out) == ["metadata.tsv", "vectors.tsv"]
    meta = (out / "metadata.tsv").read_text(encoding="utf-8")
    assert meta == "token\tid\nking\t2332\nkings\t5465\nqueen\t3035\n"
    lines = (out / "vectors.tsv").read_text().splitlines()
    values = np.array([[float(v) for v in line.split("\t")] for line in lines])
    # Read as JavaScript does (float64), then stored as float32: the exact rows.
    assert np.array_equal(values.astype(np.float32), minilm_rows(minilm, [2332, 5465, 3035]))


@pytest.mark.parametrize(
    "spec,ids",
    [("5,2:4,3", [5, 2, 3]), ("30519:", [30519, 30520, 30521]), (":2, 7", [0, 1, 7])],
    ids=["list-and-range", "open-end", "open-start"],
)
def test_ids_keep_the_order_given_each_once(cli, minilm, tmp_path, spec, ids):
    assert (
        cli(
            "export", minilm, "--to", "tensorboard", "--ids", spec, "--out", tmp_path / "t"
        ).returncode
        == 0
    )
    lines = (tmp_path / "t" / "metadata.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[1]) for line in lines] == ids


def test_a_gguf_table_is_exported_dequantized_as_float32(cli, tmp_path):
    gguf = checkpoints.smollm2_gguf()
    out = tmp_path / "smollm2.npy"
    run = cli("export", gguf, "--to", "npy", "--ids", "0:64,1000:1064", "--out", out, "-q")
    assert run.returncode == 0, run.stderr
    ids = [*range(64), *range(1000, 1064)]
    model = embinspect.load(gguf)
    expected = np.stack([model.vector(f"#{i}") for i in ids])  # dequantized by gguf
    assert np.array_equal(np.load(out), expected)
    vocab = json.loads((tmp_path / "smollm2.vocab.json").read_text())
    assert vocab[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(vocab) == len(ids)


def test_a_real_vocabulary_with_backslashes_round_trips_through_gensim(cli, tmp_path):
    """SmolLM2's byte-level tokens hold no raw space or control character (Ġ, Ċ stand
    for them); its tokens with a backslash are the ones written escaped (doubled)."""
    from gensim.models import KeyedVectors

    gguf = checkpoints.smollm2_gguf()
    out = tmp_path / "smollm2.txt"
    run = cli("export", gguf, "--to", "word2vec", "--ids", "70:80", "--out", out, "-f", "json")
    assert run.json()["escaped"] == 1
    loaded = KeyedVectors.load_word2vec_format(str(out))
    model = embinspect.load(gguf)
    # Ids 70..79 of its vocabulary (as gguf's GGUFReader reads it): V W X Y Z [ \ ] ^ _
    assert loaded.index_to_key == ["V", "W", "X", "Y", "Z", "[", "\\\\", "]", "^", "_"]
    assert np.array_equal(loaded.vectors, np.stack([model.vector(f"#{i}") for i in range(70, 80)]))


@pytest.mark.slow
def test_glove_words_file_exports_those_rows_for_gensim(cli, glove, tmp_path):
    from gensim.models import KeyedVectors

    words = tmp_path / "words.txt"
    words.write_text("king\nqueen\n\nparis\nKing\n")  # a blank line skipped, King lowercased
    out = tmp_path / "glove.txt"
    run = cli("export", glove, "--to", "word2vec", "--words", words, "--out", out, "-q")
    assert run.returncode == 0, run.stderr
    loaded = KeyedVectors.load_word2vec_format(str(out))
    assert loaded.index_to_key == ["king", "queen", "paris"]
    source = embinspect.load(glove)
    for word in ("king", "queen", "paris"):
        assert np.array_equal(loaded[word], source.vector(word))


# --- read back as MODEL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "to,name",
    [("npy", "all.npy"), pytest.param("safetensors", "all.safetensors", marks=pytest.mark.slow)],
)
def test_a_whole_exported_table_gives_the_same_neighbours(cli, minilm, tmp_path, to, name):
    out = tmp_path / name
    assert cli("export", minilm, "--to", to, "--out", out, "-q").returncode == 0
    source = cli("neighbors", minilm, "king", "#1000", "-k", "8", "-f", "json").json()
    again = cli("neighbors", out, "king", "#1000", "-k", "8", "-f", "json").json()
    for a, b in zip(source, again, strict=True):
        assert a["token_ids"] == b["token_ids"]
        assert a["neighbors"] == b["neighbors"]  # ids, tokens and exact scores


def test_neighbours_of_a_query_export_its_neighbourhood(cli, minilm, tmp_path):
    out = tmp_path / "near.npy"
    run = cli("export", minilm, "--to", "npy", "--neighbors-of", "king", "-k", "50", "--out", out)
    assert run.returncode == 0, run.stderr
    source = cli("neighbors", minilm, "king", "-k", "50", "-f", "json").json()[0]
    vocab = json.loads((tmp_path / "near.vocab.json").read_text())
    assert vocab == ["king", *(n["token"] for n in source["neighbors"])]
    assert np.array_equal(
        np.load(out)[1:], minilm_rows(minilm, [n["token_id"] for n in source["neighbors"]])
    )
    # Restricted to those rows, king's nearest are the same, with the same scores.
    again = cli("neighbors", out, "king", "-k", "10", "-f", "json").json()[0]
    assert [(n["token"], n["score"]) for n in again["neighbors"]] == [
        (n["token"], n["score"]) for n in source["neighbors"][:10]
    ]


def test_an_exported_table_is_described_by_info(cli, minilm, tmp_path):
    out = tmp_path / "t.safetensors"
    cli("export", minilm, "--to", "safetensors", "--ids", "0:10", "--out", out)
    info = cli("info", out, "-f", "json").json()
    assert info["format"] == "safetensors"
    assert info["vocab_source"] == "embinspect.vocabulary"
    assert (info["rows"], info["vocab_size"], info["tied"]) == (10, 10, None)
    assert info["tensors"][0]["family"] == "embinspect export (safetensors)"


def test_a_npy_without_vocabulary_is_queried_by_id(cli, tmp_path):
    np.save(tmp_path / "bare.npy", np.eye(3, dtype="<f4") + 0.5)
    run = cli("neighbors", tmp_path / "bare.npy", "#0", "-k", "1", "-f", "json")
    assert [n["token_id"] for n in run.json()[0]["neighbors"]] == [1]
    text = cli("neighbors", tmp_path / "bare.npy", "king")
    assert text.returncode == EXIT_QUERY and "no tokenizer" in text.stderr


# --- tokens that need escaping -------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_hostile_tokens_are_escaped_by_the_documented_rule(cli, hostile_npy, tmp_path, binary):
    from gensim.models import KeyedVectors

    path, rows = hostile_npy
    out = tmp_path / "hostile.w2v"
    to = "word2vec-binary" if binary else "word2vec"
    run = cli("export", path, "--to", to, "--out", out, "-f", "tsv")
    assert run.returncode == 0, run.stderr
    assert "embinspect: note: 7 tokens written escaped" in run.stderr
    loaded = KeyedVectors.load_word2vec_format(str(out), binary=binary)
    assert loaded.index_to_key == list(HOSTILE.values())
    assert np.array_equal(loaded.vectors, rows)


@pytest.mark.parametrize("to", ["word2vec", "tensorboard"])
def test_extreme_values_read_back_bit_exact_from_text(cli, tmp_path, to):
    """Subnormals, the largest float32, -0.0, infinities, values of every exponent (random
    bits): bit-exact whether parsed to float64 first or straight to float32; NaN stays NaN."""
    info = np.finfo(np.float32)
    rng = np.random.default_rng(3)
    special = [info.smallest_subnormal, -info.smallest_subnormal * 3, info.tiny, info.max,
               -info.max, -0.0, 0.0, np.nan, np.inf, -np.inf, 1 / 3, 16777217.0]  # fmt: skip
    rows = np.concatenate([np.array(special, dtype="<f4"), rng.standard_normal(4000, "<f4") * 1e3,
                           np.frombuffer(rng.bytes(4 * 4000), "<f4")])  # fmt: skip
    rows = rows[: len(rows) // 4 * 4].reshape(-1, 4)
    np.save(tmp_path / "x.npy", rows)
    out = tmp_path / "out"
    assert cli("export", tmp_path / "x.npy", "--to", to, "--out", out).returncode == 0
    text = (out / "vectors.tsv" if to == "tensorboard" else out).read_text().splitlines()
    cells = [line.replace("\t", " ").split(" ")[-4:] for line in text[(to == "word2vec") :]]
    via_float64 = np.array(cells, dtype=np.float64).astype(np.float32)
    strtof = ctypes.CDLL(None).strtof  # C's parse straight to float32, as word2vec.c reads
    strtof.restype, strtof.argtypes = ctypes.c_float, [ctypes.c_char_p, ctypes.c_void_p]
    via_float32 = np.array([[strtof(c.encode(), None) for c in row] for row in cells], "<f4")
    number = ~np.isnan(rows)  # a NaN is written nan: its sign and payload are not kept
    for parsed in (via_float64, via_float32):
        assert np.array_equal(np.isnan(parsed), ~number)
        assert np.array_equal(parsed[number].view(np.uint32), rows[number].view(np.uint32))


def test_hostile_tokens_in_tensorboard_metadata_stay_one_cell(cli, hostile_npy, tmp_path):
    path, _ = hostile_npy
    assert cli("export", path, "--to", "tensorboard", "--out", tmp_path / "tb").returncode == 0
    lines = (tmp_path / "tb" / "metadata.tsv").read_bytes().split(b"\n")
    assert lines[0] == b"token\tid" and lines[-1] == b""
    cells = [line.decode().split("\t") for line in lines[1:-1]]
    assert cells == [[token, str(i)] for i, token in enumerate(HOSTILE.values())]


def test_exact_tokens_survive_npy_and_safetensors(cli, hostile_npy, tmp_path):
    path, rows = hostile_npy
    out = tmp_path / "again.safetensors"
    assert cli("export", path, "--to", "safetensors", "--out", out).returncode == 0
    model = embinspect.load(out)
    assert model.neighbors("=two words", k=1).tokens == ["two words"]
    assert np.array_equal(model.vector("=new\nline"), rows[2])


# --- refusals: one line, nothing on disk ---------------------------------------------------


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--ids", "5:5"], "no rows to export: the ids selection is empty"),
        (["--ids", "0:99999"], "0:99999 is outside the table (rows 0..30521)"),
        (["--ids", "abc"], "give ids and ranges joined by commas"),
        (["--ids", "1", "--neighbors-of", "king"], "choose one selection of rows"),
    ],
    ids=["empty-range", "outside", "not-ids", "two-selections"],
)
def test_a_bad_selection_is_one_line_and_writes_nothing(cli, minilm, tmp_path, args, fragment):
    run = cli("export", minilm, "--to", "npy", "--out", tmp_path / "x.npy", *args)
    assert_one_line_error(run, EXIT_USAGE, fragment)
    assert listing(tmp_path) == []


def test_a_word_that_names_no_row_writes_nothing(cli, minilm, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("king\n#999999\n")
    run = cli("export", minilm, "--to", "word2vec", "--words", words, "--out", tmp_path / "o.txt")
    assert run.returncode == EXIT_QUERY
    assert f"{words}:2:" in run.stderr
    assert listing(tmp_path) == ["words.txt"]


@pytest.mark.parametrize(
    "to,name", [("npy", "t.npy"), ("tensorboard", "tb"), ("word2vec", "t.txt")]
)
def test_an_existing_target_is_kept_without_force(cli, minilm, tmp_path, to, name):
    out = tmp_path / name
    assert cli("export", minilm, "--to", to, "--ids", "0:3", "--out", out).returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    names = sorted(p.name for p in tmp_path.rglob("*"))
    run = cli("export", minilm, "--to", to, "--ids", "3:9", "--out", out)
    assert_one_line_error(run, EXIT_USAGE, "already exists; pass --force to replace it")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    forced = cli(
        "export", minilm, "--to", to, "--ids", "3:9", "--out", out, "--force", "-f", "json"
    )
    assert forced.json()["rows"] == 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == names  # no temporary, no old copy


def test_force_never_replaces_a_folder_of_other_files(cli, minilm, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    run = cli("export", minilm, "--to", "tensorboard", "--ids", "0:3", "--out", tmp_path, "--force")
    assert_one_line_error(run, EXIT_USAGE, "a folder holding other files (mine.txt...)")
    assert listing(tmp_path) == ["mine.txt"]


@pytest.mark.parametrize("ids", ["", "9:3"], ids=["empty-string", "reversed"])
def test_an_empty_ids_option_selects_nothing(cli, minilm, tmp_path, ids):
    run = cli("export", minilm, "--to", "npy", "--ids", ids, "--out", tmp_path / "x.npy")
    assert_one_line_error(run, EXIT_USAGE, "no rows to export: the ids selection is empty")
    assert listing(tmp_path) == []


def test_an_unwritable_target_is_one_line(cli, minilm, tmp_path):
    (tmp_path / "afile").write_text("")
    run = cli(
        "export", minilm, "--to", "word2vec", "--ids", "0:3", "--out", tmp_path / "afile" / "x.txt"
    )
    assert_one_line_error(
        run, EXIT_USAGE, f"{tmp_path / 'afile' / 'x.txt'}: cannot write (Not a directory)"
    )
    assert listing(tmp_path) == ["afile"]


@pytest.mark.parametrize("to,name", [(t, n) for t, n in [
    ("npy", "t.npy"), ("tensorboard", "tb"), ("word2vec", "t.txt"), ("word2vec-binary", "t.bin"),
    ("safetensors", "t.safetensors"),
]], ids=["npy", "tensorboard", "word2vec", "word2vec-binary", "safetensors"])  # fmt: skip
def test_ctrl_c_midway_leaves_nothing(cli, minilm, tmp_path, monkeypatch, to, name):
    from embinspect.tables.table import EmbeddingTable

    gather = EmbeddingTable.gather
    calls = []

    def interrupted(self, ids):
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return gather(self, ids)

    chunks_of(monkeypatch, 100)
    monkeypatch.setattr(EmbeddingTable, "gather", interrupted)
    run = cli("export", minilm, "--to", to, "--ids", "0:1000", "--out", tmp_path / name)
    assert run.returncode == EXIT_INTERRUPTED
    assert calls == [100, 100]
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "to,name", [("npy", "t.npy"), ("word2vec-binary", "t.bin"), ("tensorboard", "tb")]
)
def test_small_chunks_write_the_same_bytes(cli, minilm, tmp_path, monkeypatch, to, name):
    """Rows are streamed a chunk at a time: 7-row chunks give what one chunk gives."""
    from embinspect.tables.table import EmbeddingTable

    gather, sizes = EmbeddingTable.gather, []

    def counted(self, ids):
        sizes.append(len(ids))
        return gather(self, ids)

    monkeypatch.setattr(EmbeddingTable, "gather", counted)
    whole = tmp_path / "whole"
    whole.mkdir()
    assert (
        cli("export", minilm, "--to", to, "--ids", "0:100", "--out", whole / name).returncode == 0
    )
    assert sizes == [100]
    chunks_of(monkeypatch, 7)
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    assert (
        cli("export", minilm, "--to", to, "--ids", "0:100", "--out", pieces / name).returncode == 0
    )
    assert sizes == [100, *[7] * 14, 2]
    for path in whole.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (pieces / path.relative_to(whole)).read_bytes()


def test_a_vocabulary_too_large_for_a_safetensors_header_is_refused(
    cli, minilm, tmp_path, monkeypatch
):
    import embinspect.analyses.export as export

    monkeypatch.setattr(export, "SAFETENSORS_MAX_HEADER", 1000)
    run = cli(
        "export",
        minilm,
        "--to",
        "safetensors",
        "--ids",
        "0:500",
        "--out",
        tmp_path / "t.safetensors",
    )
    assert_one_line_error(
        run, EXIT_USAGE, "safetensors reads at most 1,000", "export --to npy instead"
    )
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "out,fragment",
    [("t.txt", "name the .npy file"), ("t.npy", "name the .safetensors file")],
    ids=["npy", "safetensors"],
)
def test_a_misnamed_out_is_refused(cli, minilm, tmp_path, out, fragment):
    to = "npy" if fragment.endswith(".npy file") else "safetensors"
    run = cli("export", minilm, "--to", to, "--out", tmp_path / out)
    assert_one_line_error(run, EXIT_USAGE, fragment)


# --- hostile files read as MODEL -----------------------------------------------------------


def _npy_with(tmp_path, vocab: bytes, rows: int = 3):
    np.save(tmp_path / "t.npy", np.ones((rows, 2), dtype="<f4"))
    (tmp_path / "t.vocab.json").write_bytes(vocab)
    return tmp_path / "t.npy"


@pytest.mark.parametrize(
    "vocab,fragment",
    [
        (b'["a", "b"]', "the vocabulary has 2 tokens for 3 rows"),
        (b'["a", 2, "c"]', "vocabulary entry 1 is int, not a string"),
        (b'{"a": 0}', "not a JSON list of tokens"),
        (b'["a", "b", "c"', "not valid JSON"),
        (b"[" + b'"x", ' * 400_000 + b'"y"]', "too large for the vocabulary of 3 rows"),
    ],
    ids=["wrong-length", "not-a-string", "not-a-list", "not-json", "huge"],
)
@pytest.mark.parametrize("verb", ["neighbors", "info"])
def test_a_hostile_npy_vocabulary_is_one_line(cli, tmp_path, vocab, fragment, verb):
    # info checks the vocabulary as a query does: one check, the same refusal.
    run = cli(verb, _npy_with(tmp_path, vocab), *(["#0"] if verb == "neighbors" else []))
    assert_one_line_error(run, EXIT_MODEL, fragment)


@pytest.mark.parametrize(
    "array,fragment",
    [
        (np.array([[1, "x"]], dtype=object), "never unpickles"),
        (np.ones((2, 2), dtype=">f4"), "dtype '>f4'"),
        (np.asfortranarray(np.ones((2, 3), dtype="<f4")), "Fortran-order"),
        (np.ones((2, 2, 2), dtype="<f4"), "is not a 2-D table"),
        (np.ones((2, 2), dtype="<i4"), "dtype '<i4'"),
    ],
    ids=["object", "big-endian", "fortran", "3-d", "integers"],
)
def test_a_hostile_npy_is_one_line(cli, tmp_path, array, fragment):
    np.save(tmp_path / "h.npy", array, allow_pickle=True)
    assert_one_line_error(cli("info", tmp_path / "h.npy"), EXIT_MODEL, fragment)


def test_a_truncated_npy_is_one_line(cli, tmp_path):
    np.save(tmp_path / "h.npy", np.ones((100, 4), dtype="<f4"))
    data = (tmp_path / "h.npy").read_bytes()
    (tmp_path / "h.npy").write_bytes(data[:-10])
    assert_one_line_error(cli("info", tmp_path / "h.npy"), EXIT_MODEL, "truncated .npy file")


@pytest.mark.parametrize(
    "vocab,fragment",
    [
        ('["a"]', "has 1 tokens for 2 rows"),
        ("[1, 2]", "entry 0 is int"),
        ("nope", "not valid JSON"),
    ],
    ids=["wrong-length", "not-strings", "not-json"],
)
@pytest.mark.parametrize("verb", ["neighbors", "info"])
def test_a_hostile_safetensors_vocabulary_is_one_line(cli, tmp_path, vocab, fragment, verb):
    from safetensors.numpy import save_file

    path = tmp_path / "h.safetensors"
    save_file(
        {"embeddings": np.ones((2, 3), dtype="<f4")}, str(path), {"embinspect.vocabulary": vocab}
    )
    run = cli(verb, path, *(["#0"] if verb == "neighbors" else []))
    assert_one_line_error(run, EXIT_MODEL, fragment)


@pytest.mark.parametrize("verb", ["neighbors", "info"])
@pytest.mark.parametrize(
    "value,kind",
    [({"a": 0, "b": 1}, "object"), (["a", "b"], "array"), (2, "number"), (None, "null")],
    ids=["object", "array", "number", "null"],
)
def test_a_safetensors_vocabulary_that_is_not_a_string_is_the_vocabulary_error(
    cli, tmp_path, value, kind, verb
):
    # Not left out (which read as "no token embedding tensor found"): named as it is.
    header = {
        "__metadata__": {"embinspect.vocabulary": value},
        "embeddings": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "h.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(24))
    run = cli(verb, path, *(["#0"] if verb == "neighbors" else []))
    assert_one_line_error(
        run, EXIT_MODEL,
        f"{path} (metadata embinspect.vocabulary): a JSON {kind}, not a string (safetensors "
        "metadata values are strings)",
    )  # fmt: skip


# --- the API -------------------------------------------------------------------------------


def test_the_api_exports_as_the_cli_does(minilm, tmp_path):
    model = embinspect.load(minilm)
    result = model.export("word2vec", tmp_path / "a.txt", ids="0:10")
    assert isinstance(result, embinspect.ExportResult)
    data = result.to_dict()
    assert (data["rows"], data["dim"], data["format"], data["selection"]) == (
        10,
        384,
        "word2vec",
        "ids",
    )
    assert data["provenance"]["tensor"] == "embeddings.word_embeddings.weight"
    near = model.export("npy", tmp_path / "b.npy", neighbors_of="king", k=3)
    assert near.rows == 4
    with pytest.raises(UsageError, match="already exists; pass force to replace it"):
        model.export("word2vec", tmp_path / "a.txt")
    with pytest.raises(UsageError, match="to='csv'"):
        model.export("csv", tmp_path / "c.csv")  # type: ignore[arg-type]


@pytest.mark.slow  # a real process and a signal
@pytest.mark.parametrize(
    "signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"]
)
def test_a_signal_midway_leaves_nothing_in_a_real_process(tmp_path, signum, code):
    """A process stopped while it writes: the temporary file is there, then gone."""
    rows = np.random.default_rng(0).standard_normal((200_000, 50)).astype("<f4")
    np.save(tmp_path / "big.npy", rows)
    out = tmp_path / "out"
    out.mkdir()
    start = ["-c", WITH_CTRL_C] if signum == signal.SIGINT else ["-m", "embinspect"]
    args = ["export", tmp_path / "big.npy", "--to", "word2vec", "--out", out / "big.txt", "-q"]
    env = {**os.environ, "EMBINSPECT_CACHE": str(tmp_path / "cache")}
    env.pop("EMBINSPECT_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, *start, *map(str, args)], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".incomplete") for p in out.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "it never started writing"
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    assert "Traceback" not in stderr
    assert listing(out) == []


# --- the one .npy reader for bytes (neighbors' --vector reads through it) -----------------


def _npy_bytes(array, **header) -> bytes:
    """``array`` as np.save writes it, its header's fields replaced by ``header``."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    if not header:
        return data
    length = int.from_bytes(data[8:10], "little")
    fields = {"descr": "<f4", "fortran_order": False, "shape": array.shape, **header}
    text = repr(fields).encode("latin1")
    text = text + b" " * (length - 1 - len(text)) + b"\n"
    assert len(text) == length
    return data[:10] + text + data[10 + length :]


@pytest.mark.parametrize(
    "array,ndim", [(np.arange(5, dtype="<f4") / 3, 1), (np.eye(3, dtype="<f8"), 2)],
    ids=["vector-f32", "table-f64"],
)  # fmt: skip
def test_read_npy_gives_the_array_exactly(array, ndim):
    from embinspect.sources.exported import read_npy

    got = read_npy(_npy_bytes(array), "v.npy")
    assert got.dtype == array.dtype and got.ndim == ndim
    assert np.array_equal(got, array)


@pytest.mark.parametrize(
    "data,fragment",
    [
        (_npy_bytes(np.ones(4, dtype="<f4"), shape=(10**13,)), "needs 40,000,000,000,000 bytes"),
        (_npy_bytes(np.ones(4, dtype="<f4"))[:-3], "truncated .npy file"),
        (_npy_bytes(np.ones(4, dtype="<f4")) + b"\0\0\0\0", "needs 16 bytes after its header"),
        (_npy_bytes(np.array([1, "x"], dtype=object)), "never unpickles"),
        (_npy_bytes(np.ones(4, dtype=">f4")), "dtype '>f4'"),
        (_npy_bytes(np.ones((2, 2, 2), dtype="<f4")), "is not a 1-D or 2-D array"),
        (_npy_bytes(np.ones(4, dtype="<i8")), "dtype '<i8'"),
        (_npy_bytes(np.ones((2, 2), dtype="<f4"), fortran_order=True), "Fortran-order"),
        (_npy_bytes(np.ones(4, dtype="<f4"), shape=(-4,)), "is not a 1-D or 2-D array"),
        (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 200, "truncated .npy file"),
        (b"\x93NUMPY\x09\x00\x10\x00", "format version 9"),
        (b"not an npy", "not a .npy file"),
    ],
    ids=[
        "huge-shape", "truncated", "trailing-bytes", "object", "big-endian", "3-d",
        "integers", "fortran", "negative", "header-cut", "version", "no-magic",
    ],
)  # fmt: skip
def test_read_npy_refuses_a_hostile_file_before_allocating(data, fragment):
    from embinspect.errors import ModelError
    from embinspect.sources.exported import read_npy

    with pytest.raises(ModelError) as caught:
        read_npy(data, "v.npy")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("v.npy: ")


# --- a target that appears while the rows are written ------------------------------------


def _appearing(monkeypatch, make) -> None:
    """``make()`` runs once the existence check is passed, as the first chunk is read: a
    target made by another process while export writes."""
    import embinspect.analyses.export as export

    real = export.float32_chunks

    def chunks(*args, **kwargs):
        make()
        yield from real(*args, **kwargs)

    monkeypatch.setattr(export, "float32_chunks", chunks)


@pytest.mark.parametrize(
    "to,name,appears",
    [
        ("word2vec", "t.txt", "t.txt"),
        ("word2vec-binary", "t.bin", "t.bin"),
        ("safetensors", "t.safetensors", "t.safetensors"),
        ("npy", "t.npy", "t.npy"),
        ("npy", "t.npy", "t.vocab.json"),
        ("tensorboard", "tb", "tb"),
        ("tensorboard", "tb", "tb/mine.txt"),
    ],
    ids=[
        "word2vec", "word2vec-binary", "safetensors", "npy", "npy-vocabulary",
        "tensorboard-file", "tensorboard-folder",
    ],
)  # fmt: skip
def test_a_target_made_during_the_run_is_kept_without_force(
    cli, minilm, tmp_path, monkeypatch, to, name, appears
):
    intruder = tmp_path / appears

    def make():
        intruder.parent.mkdir(exist_ok=True)
        intruder.write_text("theirs")

    _appearing(monkeypatch, make)
    run = cli("export", minilm, "--to", to, "--ids", "0:3", "--out", tmp_path / name)
    assert_one_line_error(
        run, EXIT_USAGE, f"{tmp_path / appears.split('/')[0]}: already exists; pass --force"
    )
    assert intruder.read_text() == "theirs"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == sorted(
        {appears, appears.split("/")[0]}
    )  # nothing of the export, no temporary


def test_an_empty_folder_made_during_the_run_is_replaced(cli, minilm, tmp_path, monkeypatch):
    # A rename onto an empty folder replaces it, and loses nothing (README: export).
    _appearing(monkeypatch, lambda: (tmp_path / "tb").mkdir())
    run = cli("export", minilm, "--to", "tensorboard", "--ids", "0:3", "--out", tmp_path / "tb")
    assert run.returncode == 0, run.stderr
    assert listing(tmp_path / "tb") == ["metadata.tsv", "vectors.tsv"]


def test_npy_publishes_the_vocabulary_first_and_the_npy_last(cli, minilm, tmp_path, monkeypatch):
    # A reader starts from NAME.npy: it must never find a new table beside an old vocabulary.
    published = []
    real_link, real_replace = os.link, os.replace

    def link(source, target, *args, **kwargs):
        published.append(os.path.basename(target))
        return real_link(source, target, *args, **kwargs)

    def replace(source, target, *args, **kwargs):
        published.append(os.path.basename(target))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "t.npy"
    assert cli("export", minilm, "--to", "npy", "--ids", "0:3", "--out", out).returncode == 0
    assert published == ["t.vocab.json", "t.npy"]
    published.clear()
    forced = cli("export", minilm, "--to", "npy", "--ids", "0:5", "--out", out, "--force")
    assert forced.returncode == 0
    assert published == ["t.vocab.json", "t.npy"]


# --- a hostile --words file --------------------------------------------------------------


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("/dev/zero", "line 1 is longer than 4,096 characters (a query's limit)"),
        (b"king\n" + b"a" * 4097 + b"\n", "line 2 is longer than 4,096 characters"),
        (b"king\n" + "é".encode() * 4097, "line 2 is longer than 4,096 characters"),
        (b"king\nqu\xffeen\n", "line 2 is not UTF-8 text"),
        (b"king\n" * 4, "more than 3 lines (a words file holds at most 3, or twice"),
        ("folder", "Is a directory"),
        ("missing", "No such file or directory"),
    ],
    ids=["dev-zero", "long-line", "long-line-unended", "not-utf8", "too-many-lines", "folder",
         "missing"],
)  # fmt: skip
def test_a_hostile_words_file_is_one_line(cli, minilm, tmp_path, monkeypatch, content, fragment):
    import embinspect.analyses.export as export

    monkeypatch.setattr(export, "WORDS_MIN_LINES", 3)
    monkeypatch.setattr(export, "max_words_lines", lambda rows: 3)
    if content == "/dev/zero":
        words = content
    else:
        words = tmp_path / content if isinstance(content, str) else tmp_path / "words.txt"
        if content == "folder":
            words.mkdir()
        elif isinstance(content, bytes):
            words.write_bytes(content)
    out = tmp_path / "o.txt"
    run = cli("export", minilm, "--to", "word2vec", "--words", words, "--out", out)
    assert_one_line_error(run, EXIT_USAGE, f"--words {words}: {fragment}")
    assert not out.exists()


def test_a_words_file_of_exactly_the_limit_is_read(cli, minilm, tmp_path, monkeypatch):
    import embinspect.analyses.export as export

    monkeypatch.setattr(export, "max_words_lines", lambda rows: 3)
    words = tmp_path / "words.txt"
    words.write_bytes(b"king\r\n\n#" + b"9" * 4095)  # CRLF, a blank line, an unended last
    run = cli("export", minilm, "--to", "word2vec", "--words", words, "--out", tmp_path / "o")
    assert run.returncode == EXIT_QUERY, run.stderr  # all three read: #999... names no row
    assert f"{words}:3: " in run.stderr


# --- tokens that repeat: word2vec keys rows by token -------------------------------------


def _word_level_tokenizer(folder, vocab: list[str]):
    """A tokenizer.json of a WordLevel model with ``vocab``: fewer tokens than rows leave
    rows with no token, exported as ``#ID``."""
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(vocab)},
                  "unk_token": vocab[-1]},
    }))  # fmt: skip
    return folder


@pytest.mark.parametrize("to", ["word2vec", "word2vec-binary"])
@pytest.mark.parametrize(
    "vocab,tokenizer,message",
    [
        (["a", "b", "a", "b"], None, "2 rows repeat the token of an earlier row (the first: a)"),
        (["a b", "c", "a b", "d\x1b"], None,  # named as written: escaped
         "1 row repeats the token of an earlier row (the first: a\\x20b)"),
        (None, ["#3", "x", "y"],
         "1 row repeats the token of an earlier row (the first: #3)"),
    ],
    ids=["same-token", "escaped", "id-placeholder"],
)  # fmt: skip
def test_repeated_tokens_are_refused_for_word2vec(cli, tmp_path, to, vocab, tokenizer, message):
    np.save(tmp_path / "t.npy", np.arange(8, dtype="<f4").reshape(4, 2) + 1)
    extra = []
    if vocab is not None:
        (tmp_path / "t.vocab.json").write_text(json.dumps(vocab))
    if tokenizer is not None:
        extra = ["--tokenizer", _word_level_tokenizer(tmp_path / "tok", tokenizer)]
    before = listing(tmp_path)
    run = cli("export", tmp_path / "t.npy", "--to", to, "--out", tmp_path / "o", *extra)
    assert_one_line_error(
        run, EXIT_USAGE,
        f"{message}; {to} keys rows by token: export --to npy or --to safetensors (rows kept "
        "by position), or choose other rows",
    )  # fmt: skip
    assert listing(tmp_path) == before
    tensorboard = cli("export", tmp_path / "t.npy", "--to", "tensorboard", "--out",
                      tmp_path / "tb", *extra)  # fmt: skip
    assert tensorboard.returncode == 0, tensorboard.stderr  # one row a line: repeats are fine


@pytest.mark.parametrize("to,name", [("npy", "t.npy"), ("tensorboard", "tb")])
def test_a_tilde_in_out_is_the_home_folder(cli, minilm, tmp_path, monkeypatch, to, name):
    # --out=~/t.npy reaches embinspect unexpanded (no shell expands ~ after "="), as plot's.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # where an unexpanded ~ would be made
    run = cli("export", minilm, "--to", to, "--ids", "0:3", f"--out=~/{name}", "-f", "json")
    assert run.returncode == 0, run.stderr
    assert run.json()["out"] == str(tmp_path / name)
    assert name in listing(tmp_path)
    assert not (tmp_path / "~").exists()
