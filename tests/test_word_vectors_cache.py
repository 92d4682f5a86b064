"""A word-vector file's parse kept in embinspect's cache: the first command that reads the
rows parses the file and keeps rows and words (``sources/word_vectors.WordVectorCache``);
later runs map them instead, with the same answers. Every test points
``EMBINSPECT_CACHE`` into ``tmp_path`` (the shared test cache is never touched), and files
this small are cached only because ``CACHE_MIN_BYTES`` is lowered to 0 here.

That a run parsed or not is told by a count of ``load_word_vectors`` calls and by the
progress steps, never by timing."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import _cli_env
from test_imports import imported_heavy_modules

import embinspect
from embinspect import progress
from embinspect.cli import progress as cli_progress
from embinspect.sources import word_vectors
from embinspect.sources.word_vectors import CHECKING, KEEPING, PARSING

WORDS = [f"w{i}" for i in range(20)]
DIM = 6
EXIT_MODEL = 3


# --- files and runs ---------------------------------------------------------------------------


def table(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(WORDS), DIM)).astype(np.float32)


def text_rows(values: np.ndarray, words: list[str] = WORDS, end: str = "") -> str:
    """One ``word v1 ... vD`` line a row; every float32 written so that it reads back exactly."""
    return "".join(
        w + " " + " ".join(repr(float(x)) for x in row) + end + "\n"
        for w, row in zip(words, values, strict=True)
    )


def binary_rows(values: np.ndarray, words: list[str] = WORDS) -> bytes:
    rows = b"".join(
        w.encode() + b" " + struct.pack(f"<{DIM}f", *row) + b"\n"
        for w, row in zip(words, values, strict=True)
    )
    return f"{len(words)} {DIM}\n".encode() + rows


# name -> the file's bytes, given its rows: each format the cache keeps.
FORMATS = {
    "glove.txt": lambda v: text_rows(v).encode(),
    "fasttext.vec": lambda v: (f"{len(WORDS)} {DIM}\n" + text_rows(v, end=" ")).encode(),
    "word2vec.bin": binary_rows,
    "glove.txt.gz": lambda v: gzip.compress(text_rows(v).encode(), mtime=0),
    "word2vec.bin.gz": lambda v: gzip.compress(binary_rows(v), mtime=0),
}


def write(tmp_path: Path, name: str = "glove.txt", seed: int = 0) -> Path:
    path = tmp_path / name
    path.write_bytes(FORMATS[name](table(seed)))
    return path


def reference_neighbors(values: np.ndarray, row: int, k: int = 3) -> list[int]:
    """The ``k`` rows nearest ``row`` by cosine, in float64, the row itself left out."""
    rows = values.astype(np.float64)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    scores = unit @ unit[row]
    scores[row] = -np.inf
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """This test's own cache, which keeps the parse of any file, however small."""
    monkeypatch.setattr(word_vectors, "CACHE_MIN_BYTES", 0)
    return {"EMBINSPECT_CACHE": str(tmp_path / "cache")}


@pytest.fixture
def parses(monkeypatch) -> list[Path]:
    """The files parsed (``load_word_vectors`` called) from here on, in order."""
    calls: list[Path] = []
    real = word_vectors.load_word_vectors

    def counting(path, *args, **kwargs):
        calls.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(word_vectors, "load_word_vectors", counting)
    return calls


def entries(env) -> list[Path]:
    folder = Path(env["EMBINSPECT_CACHE"]) / "word-vectors"
    return sorted(folder.iterdir()) if folder.exists() else []


def neighbors(cli, path: Path, env, *extra: str):
    run = cli("neighbors", path, "w0", "w7", "-k", "3", "-f", "json", *extra, env=env)
    assert run.returncode == 0, run.stderr
    return run


def info(cli, path: Path, env) -> dict:
    return cli("info", path, "-f", "json", env=env).json()


def listing(cli, env) -> list[dict]:
    return cli("cache", "ls", "-f", "json", env=env).json()["entries"]


class Steps:
    """A progress reporter keeping each step as ``[label, total, done]``."""

    def __init__(self) -> None:
        self.seen: list[list] = []

    @contextlib.contextmanager
    def __call__(self, label: str, total: int | None):
        step = [label, total, 0]
        self.seen.append(step)

        def advance(n: int) -> None:
            step[2] += n

        yield advance

    def close(self) -> None:
        """What the CLI calls as a command ends (``RichBars.close``)."""

    def take(self) -> list[list]:
        seen, self.seen = self.seen, []
        return seen


@contextlib.contextmanager
def steps():
    """The progress steps run inside the block (through the API), as [label, total, done]."""
    reporter = Steps()
    with progress.reporting(reporter):
        yield reporter.seen


@pytest.fixture
def cli_steps(monkeypatch) -> Steps:
    """The CLI run as if stderr were a terminal, its progress steps recorded, not drawn."""
    reporter = Steps()
    monkeypatch.setattr(cli_progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(cli_progress, "RichBars", lambda: reporter)
    return reporter


# --- cold, then warm --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_second_run_reads_the_kept_parse_with_the_same_answers(
    cli, env, parses, tmp_path, name
):
    path = write(tmp_path, name)
    cold_info = info(cli, path, env)
    cold = neighbors(cli, path, env)
    assert parses == [path]
    [entry] = entries(env)
    warm_info = info(cli, path, env)
    warm = neighbors(cli, path, env)
    assert parses == [path]  # not parsed again
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)
    results = json.loads(warm.stdout)
    values = table()
    assert [n["token_id"] for n in results[0]["neighbors"]] == reference_neighbors(values, 0)
    assert [n["token_id"] for n in results[1]["neighbors"]] == reference_neighbors(values, 7)
    # info: the same answers, and where they came from.
    assert cold_info.pop("cached_parse") == {
        "kept": False,
        "reason": "none yet: the first command that reads its rows keeps them",
    }
    listed = listing(cli, env)
    assert warm_info.pop("cached_parse") == {
        "kept": True,
        "id": listed[0]["id"],
        "bytes": entry.stat().st_size,
        "path": str(entry),
    }
    assert warm_info == cold_info
    family = "word2vec binary" if ".bin" in name else "GloVe text (no header)"
    if name == "fasttext.vec":
        family = "word2vec text (fastText .vec)"
    if name.endswith(".gz"):
        family += ", gzip-compressed"
    assert warm_info["tensors"][0]["family"] == family
    assert warm_info["tensors"][0]["shape"] == [len(WORDS), DIM]


def test_info_on_a_kept_file_reads_only_the_entry(cli, env, tmp_path, monkeypatch):
    """A gzip file is decompressed to be measured; once its parse is kept, it is not."""
    path = write(tmp_path, "glove.txt.gz")
    neighbors(cli, path, env)
    measured: list[Path] = []
    monkeypatch.setattr(word_vectors, "word_vector_shape", lambda p: measured.append(p))
    table_view = cli("info", path, "-f", "table", env=env)
    assert table_view.returncode == 0, table_view.stderr
    assert measured == []
    [entry] = listing(cli, env)
    line = (
        f"cached parse  read from cache entry {entry['id']} ({entry['size']:,} bytes), not parsed"
    )
    assert line in [shown.rstrip() for shown in table_view.stdout.splitlines()]


def test_the_api_reads_the_kept_parse_too(env, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBINSPECT_CACHE", env["EMBINSPECT_CACHE"])
    path = write(tmp_path, "word2vec.bin")
    with steps() as cold_steps:
        cold = embinspect.load(path)
        cold_vector = cold.vector("w3")
    [entry] = entries(env)
    with steps() as warm_steps:
        warm = embinspect.load(path)
        warm_vector = warm.vector("w3")
    data_bytes = entry.stat().st_size - 8 - struct.unpack("<Q", entry.read_bytes()[:8])[0]
    assert cold_steps == [[PARSING, 20, 20], [KEEPING, None, 0]]
    assert warm_steps == [[CHECKING, data_bytes, data_bytes]]
    assert np.array_equal(warm_vector, table()[3]) and np.array_equal(cold_vector, table()[3])
    assert warm.neighbors("w5", k=4).to_dict() == cold.neighbors("w5", k=4).to_dict()


def test_a_word_holding_a_newline_reads_back(cli, env, parses, tmp_path):
    """word2vec binary words end at a space only: one may hold a newline (kept as JSON)."""
    words = [*WORDS[:-1], "odd\nword"]
    path = tmp_path / "odd.bin"
    path.write_bytes(binary_rows(table(), words))
    cold = cli("neighbors", path, "#19", "-k", "2", "-f", "json", env=env)
    warm = cli("neighbors", path, "#19", "-k", "2", "-f", "json", env=env)
    assert cold.returncode == 0, cold.stderr
    assert warm.stdout == cold.stdout
    assert warm.json()[0]["tokens"] == ["odd\nword"]
    assert parses == [path]
    [entry] = entries(env)
    assert b'\\"words\\": \\"json\\"' in entry.read_bytes()[:4096]


@pytest.mark.slow
def test_the_real_glove_cold_then_warm(cli, cli_steps, glove, tmp_path):
    """GloVe 6B 50d (400,000 rows): the first run parses and keeps it, the second maps the
    entry; neighbors and info answer the same."""
    env = {"EMBINSPECT_CACHE": str(tmp_path / "cache")}
    queries = ("king", "paris", "#1234", "-k", "10", "-f", "json")
    cold_info = info(cli, glove, env)
    cli_steps.take()
    cold = cli("neighbors", glove, *queries, env=env)
    cold_steps = cli_steps.take()
    [entry] = entries(env)
    warm_info = info(cli, glove, env)
    cli_steps.take()
    warm = cli("neighbors", glove, *queries, env=env)
    warm_steps = cli_steps.take()
    assert cold.returncode == 0, cold.stderr
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)
    assert [n["token"] for n in warm.json()[0]["neighbors"][:3]] == ["prince", "queen", "ii"]
    labels = [label for label, _, _ in cold_steps]
    assert labels[:2] == [PARSING, KEEPING] and CHECKING not in labels
    assert cold_steps[0][1:] == [400_000, 400_000]
    labels = [label for label, _, _ in warm_steps]
    assert labels[0] == CHECKING and PARSING not in labels and KEEPING not in labels
    assert warm_steps[0][1] == warm_steps[0][2] > 400_000 * 50 * 4
    assert cold_info.pop("cached_parse")["kept"] is False
    assert warm_info.pop("cached_parse")["path"] == str(entry)
    assert warm_info == cold_info
    assert imported_heavy_modules("info", str(glove), env=env) == []  # the entry read: no numpy


# --- when the file changes --------------------------------------------------------------------


def test_a_file_rewritten_with_the_same_size_and_mtime_is_parsed_again(cli, env, parses, tmp_path):
    path = write(tmp_path, "glove.txt")
    before = os.stat(path)
    cold = neighbors(cli, path, env)
    swapped = ["w1", "w0", *WORDS[2:]]  # rows 0 and 1 trade words: the same bytes but two
    other = text_rows(table(), swapped).encode()
    assert len(other) == len(path.read_bytes())
    path.write_bytes(other)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    again = neighbors(cli, path, env)
    assert parses == [path, path]
    assert again.stdout != cold.stdout
    results = json.loads(again.stdout)
    assert results[0]["token_ids"] == [1]
    assert [n["token_id"] for n in results[0]["neighbors"]] == reference_neighbors(table(), 1)
    assert len(entries(env)) == 1  # one entry a file: the new parse replaced the old
    neighbors(cli, path, env)
    assert parses == [path, path]


def test_a_touched_file_is_parsed_again(cli, env, parses, tmp_path):
    path = write(tmp_path, "fasttext.vec")
    cold = neighbors(cli, path, env)
    mtime = os.stat(path).st_mtime_ns
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    states = [e["state"] for e in listing(cli, env)]
    again = neighbors(cli, path, env)
    assert states == ["changed"]
    assert parses == [path, path]
    assert again.stdout == cold.stdout
    assert [e["state"] for e in listing(cli, env)] == ["ok"]


def test_the_same_file_through_a_link_shares_its_entry(cli, env, parses, tmp_path):
    """The key is the resolved path: a link to a kept file reads its entry."""
    path = write(tmp_path, "glove.txt")
    link = tmp_path / "link.txt"
    link.symlink_to(path)
    neighbors(cli, path, env)
    neighbors(cli, link, env)
    assert parses == [path]
    assert [e["model"] for e in listing(cli, env)] == [str(path.resolve())]


# --- hostile and broken entries ---------------------------------------------------------------


def corrupt(entry: Path, where: str) -> None:
    """Change one byte of an entry: in its rows, in its words, in the digest its record
    gives, or the first of its header's JSON."""
    data = bytearray(entry.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]
    recorded = b'\\"sha256\\": \\"'  # the record is JSON in a JSON string: quotes escaped
    at = {
        "rows": start + 5,
        "words": len(data) - 3,
        "digest": data.index(recorded) + len(recorded),
        "json": 8,
    }[where]
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    entry.write_bytes(bytes(data))


def broken_entry_is_parsed_again(cli, env, parses, tmp_path, damage) -> str:
    """Keep a parse, ``damage`` its entry, run again: the file is parsed again with the
    right answers and the entry rewritten, then read. The second run's stderr."""
    path = write(tmp_path, "glove.txt")
    cold = neighbors(cli, path, env)
    [entry] = entries(env)
    damage(entry)
    again = neighbors(cli, path, env)
    assert parses == [path, path]
    assert again.stdout == cold.stdout
    third = neighbors(cli, path, env)
    assert parses == [path, path]  # rewritten whole, then read
    assert (third.stdout, third.stderr) == (cold.stdout, cold.stderr)
    return again.stderr


def note(path: Path, env, reason: str, then: str = "parsing the file again") -> str:
    entry = entries(env)[0]
    return (
        f"embinspect: note: the cached parse of {path} ({entry}) cannot be used: {reason}; {then}\n"
    )


def test_a_truncated_entry_is_parsed_again(cli, env, parses, tmp_path):
    def truncate(entry):
        os.truncate(entry, entry.stat().st_size - 100)
        shown = cli("info", tmp_path / "glove.txt", "-f", "json", env=env)
        assert shown.json()["cached_parse"] == {
            "kept": False,
            "reason": "none usable: the next command that reads its rows parses it again and "
            "keeps that",
        }
        # info parses nothing: its note says the entry is not used, not "parsing again".
        assert shown.stderr == note(
            tmp_path / "glove.txt", env, reason(entry), "not used (info parses nothing)"
        )

    def reason(entry):
        size = entry.stat().st_size
        return f"{size:,} bytes where its record says {size + 100:,}"

    stderr = broken_entry_is_parsed_again(cli, env, parses, tmp_path, truncate)
    size = entries(env)[0].stat().st_size
    assert stderr == note(
        tmp_path / "glove.txt", env, f"{size - 100:,} bytes where its record says {size:,}"
    )


def test_a_flipped_byte_in_the_rows_is_found_by_the_digest(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: corrupt(entry, "rows")
    )
    reason = "its data does not have the SHA-256 its record gives"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


def test_a_flipped_byte_in_the_words_is_found_by_the_digest(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: corrupt(entry, "words")
    )
    reason = "its data does not have the SHA-256 its record gives"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


def test_a_tampered_digest_in_the_record_is_not_trusted(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: corrupt(entry, "digest")
    )
    reason = "its data does not have the SHA-256 its record gives"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


def test_a_header_that_does_not_parse_is_not_trusted(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: corrupt(entry, "json")
    )
    reason = "not an entry embinspect wrote (its header does not parse)"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


def test_garbage_in_place_of_an_entry_is_not_trusted(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: entry.write_bytes(b"\xff" * 64)
    )
    reason = "not an entry embinspect wrote (its header length does not fit)"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


def test_an_empty_entry_is_not_trusted(cli, env, parses, tmp_path):
    stderr = broken_entry_is_parsed_again(
        cli, env, parses, tmp_path, lambda entry: entry.write_bytes(b"")
    )
    assert stderr == note(tmp_path / "glove.txt", env, "0 bytes: cut short")


def test_a_link_in_place_of_an_entry_is_not_followed(cli, env, parses, tmp_path):
    """An entry is a file embinspect wrote: a link there (even to a good entry) is not read."""
    elsewhere = tmp_path / "elsewhere.safetensors"

    def swap_for_link(entry):
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)

    stderr = broken_entry_is_parsed_again(cli, env, parses, tmp_path, swap_for_link)
    assert stderr.startswith("embinspect: note: the cached parse of ")
    assert "cannot be used: unreadable (" in stderr


def test_an_entry_of_another_file_swapped_in_is_not_used(cli, env, parses, tmp_path):
    """The record names the file it was parsed from: another file's entry, copied over
    this one's, is another key (parsed again, silently: as for a file that changed)."""
    first = write(tmp_path, "glove.txt")
    second = write(tmp_path, "fasttext.vec", seed=1)
    neighbors(cli, first, env)
    expected = neighbors(cli, second, env)
    by_model = {e["model"]: Path(e["paths"][0]) for e in listing(cli, env)}
    by_model[str(second)].write_bytes(by_model[str(first)].read_bytes())
    again = neighbors(cli, second, env)
    assert parses == [first, second, second]
    assert (again.stdout, again.stderr) == (expected.stdout, expected.stderr)


def test_a_record_that_lies_about_the_rows_is_not_trusted(cli, env, parses, tmp_path):
    """A record whose shape is not its arrays' (rewritten with a good digest, so that only
    the shape check can see it) is parsed again."""
    from embinspect.sources.cache import keep_derived_arrays, read_arrays_entry

    def lie(entry):
        kept, _ = read_arrays_entry(entry)
        record = kept.record
        data = entry.read_bytes()
        vectors, words = kept.tensors["vectors"], kept.tensors["words"]
        arrays = {
            "vectors": ("F32", (20, DIM), data[vectors.offset : vectors.offset + vectors.nbytes]),
            "words": ("U8", (words.nbytes,), data[words.offset :]),
        }
        facts = {**record["facts"], "rows": 19}
        assert keep_derived_arrays(entry, arrays, record["source"], record["provenance"], facts)

    stderr = broken_entry_is_parsed_again(cli, env, parses, tmp_path, lie)
    reason = "its record does not describe its arrays"
    assert stderr == note(tmp_path / "glove.txt", env, reason)


# --- the cache command -----------------------------------------------------------------------


def test_cache_ls_lists_the_parse_and_rm_removes_it(cli, env, parses, tmp_path):
    path = write(tmp_path, "word2vec.bin")
    neighbors(cli, path, env)
    [entry] = entries(env)
    [listed] = listing(cli, env)
    written = listed.pop("written")
    assert listed == {
        "id": listed["id"],
        "kind": "word-vectors",
        "model": str(path.resolve()),
        "revision": None,
        "file": None,
        "tensor": None,
        "size": entry.stat().st_size,
        "state": "ok",
        "reason": None,
        "paths": [str(entry)],
    }
    assert len(listed["id"]) == 12 and written.endswith("Z")
    tsv = cli("cache", "ls", "-f", "tsv", env=env)
    assert tsv.stdout.splitlines()[1].split("\t")[1:3] == ["word-vectors", str(path.resolve())]
    removed = cli("cache", "rm", listed["id"][:6], "-f", "json", env=env).json()
    assert [e["id"] for e in removed["removed"]] == [listed["id"]]
    assert entries(env) == []
    neighbors(cli, path, env)
    assert parses == [path, path]  # parsed again, and kept again
    assert len(entries(env)) == 1


def test_prune_removes_the_parses_of_changed_and_vanished_files(cli, env, tmp_path):
    changed = write(tmp_path, "glove.txt")
    vanished = write(tmp_path, "fasttext.vec", seed=1)
    kept = write(tmp_path, "word2vec.bin", seed=2)
    broken = write(tmp_path, "glove.txt.gz", seed=3)
    for path in (changed, vanished, kept, broken):
        neighbors(cli, path, env)
    by_model = {e["model"]: e for e in listing(cli, env)}
    os.truncate(by_model[str(broken)]["paths"][0], 100)
    changed.write_bytes(changed.read_bytes() + b"w20 1 2 3 4 5 6\n")
    vanished.unlink()
    states = {e["model"]: (e["state"], e["reason"]) for e in listing(cli, env)}
    assert states[str(changed)] == ("changed", f"{changed} changed since (size, times or content)")
    assert states[str(vanished)] == ("gone", f"{vanished}: no such file any more")
    assert states[str(kept)] == ("ok", None)
    assert states[None][0] == "damaged"  # a cut entry names no model: its record is unread
    pruned = cli("cache", "prune", "-f", "json", env=env).json()
    assert sorted(e["model"] or "" for e in pruned["removed"]) == sorted(
        ["", str(changed), str(vanished)]
    )
    assert [(e["model"], e["state"]) for e in listing(cli, env)] == [(str(kept), "ok")]


def test_an_interrupted_write_is_listed_as_incomplete(cli, env, tmp_path):
    path = write(tmp_path, "glove.txt")
    neighbors(cli, path, env)
    [entry] = entries(env)
    left = entry.with_name(f".{entry.name}.0123abcd.incomplete")
    left.write_bytes(entry.read_bytes()[:100])
    listed = {e["kind"]: e for e in listing(cli, env)}
    assert sorted(listed) == ["incomplete", "word-vectors"]
    assert (listed["incomplete"]["paths"], listed["incomplete"]["state"]) == (
        [str(left)],
        "incomplete",
    )
    assert listed["word-vectors"]["state"] == "ok"
    assert cli("cache", "prune", "-f", "json", env=env).json()["removed"] == []  # not an hour old
    os.utime(left, (0, 0))
    pruned = cli("cache", "prune", "-f", "json", env=env).json()["removed"]
    assert [e["paths"] for e in pruned] == [[str(left)]]
    assert entries(env) == [entry]


def test_an_entry_of_another_cache_format_is_outdated(cli, env, parses, tmp_path, monkeypatch):
    path = write(tmp_path, "glove.txt")
    neighbors(cli, path, env)
    monkeypatch.setattr(word_vectors, "CACHE_FORMAT", 2)
    [listed] = listing(cli, env)
    assert (listed["state"], listed["reason"]) == (
        "outdated",
        "parse cache format 1; this embinspect reads 2",
    )
    neighbors(cli, path, env)
    assert parses == [path, path]
    assert [e["state"] for e in listing(cli, env)] == ["ok"]


# --- turned off, too small, unwritable ---------------------------------------------------------


def test_no_cache_neither_reads_nor_writes_a_parse(cli, env, parses, tmp_path):
    path = write(tmp_path, "glove.txt")
    off = {**env, "EMBINSPECT_NO_CACHE": "1"}
    neighbors(cli, path, off)
    assert entries(env) == []
    assert info(cli, path, off)["cached_parse"] == {
        "kept": False,
        "reason": "turned off (EMBINSPECT_NO_CACHE)",
    }
    cold = neighbors(cli, path, env)  # kept
    again = neighbors(cli, path, off)  # not read
    assert again.stdout == cold.stdout
    assert parses == [path, path, path]
    neighbors(cli, path, {**env, "EMBINSPECT_NO_CACHE": "0"})  # "0" is not off
    assert parses == [path, path, path]


def test_a_small_file_is_not_kept(cli, tmp_path, parses):
    """Under CACHE_MIN_BYTES (1 MiB) a file parses in milliseconds: no entry is written."""
    env = {"EMBINSPECT_CACHE": str(tmp_path / "cache")}
    path = write(tmp_path, "glove.txt")
    neighbors(cli, path, env)
    neighbors(cli, path, env)
    assert parses == [path, path]
    assert entries(env) == []
    assert info(cli, path, env)["cached_parse"] == {
        "kept": False,
        "reason": "none: a file under 1 MiB is parsed every time",
    }


def test_an_unwritable_cache_only_costs_time(cli, parses, tmp_path, monkeypatch):
    monkeypatch.setattr(word_vectors, "CACHE_MIN_BYTES", 0)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    env = {"EMBINSPECT_CACHE": str(blocker)}
    path = write(tmp_path, "glove.txt")
    first = neighbors(cli, path, env)
    second = neighbors(cli, path, env)
    assert (first.stderr, second.stderr) == ("", "")
    assert second.stdout == first.stdout
    assert parses == [path, path]
    assert blocker.read_text() == "a file where the cache folder would be"


# --- two processes at once ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_keeping_the_same_parse_at_once(tmp_path):
    """Both answer, one whole entry is left (no temporary file), and a third run reads it."""
    rng = np.random.default_rng(5)
    values = rng.standard_normal((6000, 20)).astype(np.float32)
    path = tmp_path / "big.txt"
    path.write_text(text_rows(values, [f"w{i}" for i in range(6000)]))
    assert path.stat().st_size > word_vectors.CACHE_MIN_BYTES  # kept at the real threshold
    env = _cli_env({"EMBINSPECT_CACHE": str(tmp_path / "cache")})
    args = [sys.executable, "-m", "embinspect", "neighbors", str(path), "w1", "-f", "json"]
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs[0] == outputs[1]
    folder = tmp_path / "cache" / "word-vectors"
    [entry] = folder.iterdir()
    assert entry.suffix == ".safetensors"
    third = subprocess.run(
        [*args[:3], "info", str(path), "-f", "json"], env=env, capture_output=True, text=True
    )
    assert json.loads(third.stdout)["cached_parse"]["path"] == str(entry)
    ids = [n["token_id"] for n in json.loads(outputs[0])[0]["neighbors"][:3]]
    assert ids == reference_neighbors(values, 1, 3)


@pytest.mark.parametrize("verb", ["ls", "prune"])
def test_an_entry_whose_file_became_a_fifo_does_not_hang_the_cache_commands(
    cli, env, tmp_path, verb
):
    # Opening a FIFO for reading waits for a writer: the key is taken without blocking.
    path = write(tmp_path, "glove.txt")
    neighbors(cli, path, env)
    path.unlink()
    os.mkfifo(path)
    done = subprocess.run(
        [sys.executable, "-m", "embinspect", "cache", verb, "-f", "json"],
        capture_output=True, text=True, env=_cli_env(env), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)["entries" if verb == "ls" else "removed"]
    assert (entry["model"], entry["state"]) == (str(path), "changed")
    assert entry["reason"] == f"{path}: cannot be read (not a regular file)"
    assert len(entries(env)) == (1 if verb == "ls" else 0)
