"""Property tests: whatever bytes a checkpoint or a query holds, the readers answer validly or
raise embinspect's own error, never any other exception; and whatever a string holds, what
the printing layer makes of it holds no character a terminal would act on.

Example counts (``EXAMPLES``) are chosen to keep this file near half a minute on a 2-core
CI machine; the README's Reliability section quotes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import struct
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from embinspect.analyses.info import inspect_checkpoint
from embinspect.cli.info import describe_position_scheme
from embinspect.cli.render import (
    _FORMULA_START,
    _csv_cell,
    _json,
    console,
    drawn,
    report_error,
)
from embinspect.errors import EmbinspectError, EmbinspectWarning, ModelError, QueryError
from embinspect.model.checkpoint import open_checkpoint
from embinspect.model.tokenizer import Vocabulary
from embinspect.sources.safetensors_header import read_header
from embinspect.sources.tensor import DTYPE_BYTES
from embinspect.tables.queries import MAX_QUERY_CHARS, QueryResolver, printable, shown
from embinspect.text import terminal_cell, terminal_line

pytestmark = pytest.mark.slow  # thousands of examples in all: `make test-fast` leaves them out

EXAMPLES = {
    "header bytes": 3000,
    "header structure": 1500,
    "real header mutated": 1500,
    "index": 800,
    "config": 800,
    "tokenizer files": 400,
    "queries": 3000,
    "terminal forms": 1000,
    "table cells": 400,
}


# The same examples every run, so CI never turns red on a case no one changed;
# EMBINSPECT_FUZZ=N explores N times as many, freshly drawn (run it before a release).
FUZZ = int(os.environ.get("EMBINSPECT_FUZZ", "0") or 0)


def examples(name: str):
    return settings(
        max_examples=EXAMPLES[name] * max(FUZZ, 1),
        derandomize=not FUZZ,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


WORDS = "embeddings.word_embeddings.weight"
POSITIONS = "embeddings.position_embeddings.weight"

# Any JSON document (NaN and infinities included: Python's json reads and writes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def small_minilm(minilm, tmp_path_factory) -> Path:
    """MiniLM's first 64 token rows and 16 position rows, f32, as a small real shard."""
    folder = tmp_path_factory.mktemp("small-minilm")
    with safe_open(str(minilm / "model.safetensors"), "pt") as handle:
        tensors = {
            WORDS: handle.get_slice(WORDS)[:64].contiguous(),
            POSITIONS: handle.get_slice(POSITIONS)[:16].contiguous(),
        }
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def assert_valid_headers(headers, file_size: int) -> None:
    """What read_header promises about every header it accepts."""
    spans = []
    for name, tensor in headers.items():
        assert tensor.name == name and isinstance(tensor.dtype, str)
        assert all(isinstance(d, int) and d >= 0 for d in tensor.shape)
        assert tensor.offset >= 8 and tensor.offset + tensor.nbytes <= file_size
        if tensor.dtype in DTYPE_BYTES:
            assert tensor.nbytes == tensor.numel * DTYPE_BYTES[tensor.dtype]
        spans.append((tensor.offset, tensor.offset + tensor.nbytes))
    spans.sort()
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


def read_or_refuse(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        headers = read_header(path)
    except ModelError:
        event("refused")
        return
    event(f"accepted with {min(len(headers), 2)}+ tensors")
    assert_valid_headers(headers, len(content))


@examples("header bytes")
@given(content=st.binary(max_size=400))
def test_header_reader_on_any_bytes(tmp_path_factory, content):
    read_or_refuse(tmp_path_factory.getbasetemp() / "any.safetensors", content)


# Header-shaped documents: entries whose offsets agree with their shape (laid end to end,
# then nudged), entries with values out of range, and wrong types (cheap scalars: nested
# JSON is the bytes test's business, and slow to draw).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@st.composite
def consistent_entries(draw):
    dtype = draw(st.sampled_from(list(DTYPE_BYTES)))
    shape = draw(st.lists(st.integers(0, 6), min_size=1, max_size=2))
    size = math.prod(shape) * DTYPE_BYTES[dtype]
    start = draw(st.integers(0, 40))
    nudge = draw(st.sampled_from([0, 0, 0, 1, -1]))
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, start + size + nudge]}


loose_entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from([*DTYPE_BYTES, "F4", "F6_E2M3", "Q4"]) | scalars,
        "shape": st.lists(st.integers(-2, 12), max_size=3) | scalars,
        "data_offsets": st.lists(st.integers(-4, 600), max_size=3) | scalars,
    }
)
random_headers = st.dictionaries(
    st.sampled_from([WORDS, "wte.weight", "__metadata__", "a", "b", "c"]),
    consistent_entries() | loose_entries | scalars,
    max_size=4,
)


@st.composite
def laid_out_headers(draw):
    """``(header, data size)``: tensors laid end to end as a writer would, then perhaps one
    field of one tensor, or the data size, nudged."""
    header, end = {}, 0
    for name in draw(st.lists(st.sampled_from([WORDS, "wte.weight", "a", "b"]), unique=True)):
        entry = draw(consistent_entries())
        size = entry["data_offsets"][1] - entry["data_offsets"][0]
        entry["data_offsets"] = [end, end + max(size, 0)]
        end += max(size, 0)
        header[name] = entry
    if header and draw(st.booleans()):
        entry = header[draw(st.sampled_from(sorted(header)))]
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        entry[field] = draw(loose_entries)[field]
    return header, end + draw(st.sampled_from([0, 0, 0, 1, -1, 7]))


@examples("header structure")
@given(
    layout=laid_out_headers() | st.tuples(random_headers, st.integers(0, 200)),
    length_delta=st.sampled_from([0, 0, 0, 0, -1, 1, 2**40]),
)
def test_header_reader_on_header_shaped_json(tmp_path_factory, layout, length_delta):
    header, data_size = layout
    raw = json.dumps(header).encode()
    length = max(0, len(raw) + length_delta)
    content = struct.pack("<Q", length) + raw + b"\x00" * max(data_size, 0)
    read_or_refuse(tmp_path_factory.getbasetemp() / "shaped.safetensors", content)


@examples("real header mutated")
@given(data=st.data())
def test_header_reader_on_a_mutated_real_header(tmp_path_factory, small_minilm, data):
    original = (small_minilm / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", original[:8])
    content = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        content[data.draw(st.integers(0, 8 + length - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([len(content), len(content), 8 + length + 100, 8 + length]))
    read_or_refuse(tmp_path_factory.getbasetemp() / "mutated.safetensors", bytes(content[:cut]))


def open_and_inspect(folder: Path):
    """open_checkpoint + inspect_checkpoint, as `info` runs them, rendered every way; with
    the notes each issued (the library's one channel, ``warnings``)."""
    with warnings.catch_warnings(record=True) as opening:
        warnings.simplefilter("always", EmbinspectWarning)
        checkpoint = open_checkpoint(str(folder))
    with warnings.catch_warnings(record=True) as inspecting:
        warnings.simplefilter("always", EmbinspectWarning)
        info = inspect_checkpoint(checkpoint)
    _json(info.to_dict())
    describe_position_scheme(info.position)
    assert checkpoint.token_table.header.name == WORDS
    return checkpoint, info, opening, inspecting


SHARD = "model-00001-of-00001.safetensors"
shard_names = st.sampled_from([SHARD, "missing.safetensors", "../m.safetensors", ""]) | scalars
index_documents = st.fixed_dictionaries(
    {
        "metadata": json_values | st.fixed_dictionaries({"total_size": json_values}),
        "weight_map": st.dictionaries(
            st.sampled_from([WORDS, POSITIONS]), st.just(SHARD), min_size=1
        )  # what a writer makes
        | st.dictionaries(
            st.sampled_from([WORDS, POSITIONS, "lm_head.weight"]) | st.text(max_size=8),
            shard_names,
            max_size=4,
        )
        | json_values,
    }
)


@examples("index")
@given(index=st.binary(max_size=200) | index_documents.map(lambda d: json.dumps(d).encode()))
def test_index_reader(tmp_path_factory, small_minilm, index):
    folder = tmp_path_factory.getbasetemp() / "indexed"
    if not folder.exists():
        folder.mkdir()
        (folder / SHARD).write_bytes((small_minilm / "model.safetensors").read_bytes())
    (folder / "model.safetensors.index.json").write_bytes(index)
    try:
        checkpoint, *_ = open_and_inspect(folder)
    except ModelError:
        event("refused")
        return
    event("opened")
    assert checkpoint.files.weight_files == [SHARD]


CONFIG_KEYS = [
    "model_type", "hidden_size", "n_embd", "num_attention_heads", "head_dim", "rope_theta",
    "rope_scaling", "rope_parameters", "partial_rotary_factor", "rotary_pct",
    "rotary_emb_base", "max_position_embeddings", "pad_token_id", "tie_word_embeddings",
]  # fmt: skip
config_values = (
    st.sampled_from(["llama", "roberta", "bloom", "bert", "default"])
    | st.integers(-3, 10**6)
    | st.floats()
    | json_values
)
configs = st.recursive(
    st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=6), config_values, max_size=8),
    lambda inner: st.dictionaries(
        st.sampled_from(["text_config", "rope_scaling"]), inner, max_size=2
    ),
    max_leaves=3,
)


numbers = st.integers(-3, 10**6) | st.floats() | scalars
plausible_configs = st.fixed_dictionaries(
    {"model_type": st.sampled_from(["llama", "qwen3", "roberta", "bloom", "gpt2"]) | scalars},
    optional={
        key: numbers
        for key in ("rope_theta", "hidden_size", "num_attention_heads", "head_dim",
                    "partial_rotary_factor", "max_position_embeddings", "pad_token_id")
    }
    | {"rope_scaling": st.dictionaries(st.sampled_from(["rope_type", "factor", "rope_theta"]),
                                       numbers | st.just("default"))},
)  # fmt: skip


@examples("config")
@given(
    config=st.binary(max_size=100)
    | configs.map(lambda c: json.dumps(c).encode())
    | plausible_configs.map(lambda c: json.dumps(c).encode()),
    with_positions=st.booleans(),
)
def test_config_never_stops_a_checkpoint(tmp_path_factory, small_minilm, config, with_positions):
    """config.json is optional: whatever it holds, the checkpoint opens (a warning at most)."""
    folder = tmp_path_factory.getbasetemp() / f"configured-{with_positions}"
    if not folder.exists():
        folder.mkdir()
        tensors = {WORDS: torch.zeros(4, 8)}
        if with_positions:
            tensors[POSITIONS] = torch.zeros(3, 8)
        save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_bytes(config)
    _, info, opened, _ = open_and_inspect(folder)
    event(f"kind {info.position['kind']}, {len(opened)} warning(s)")
    assert info.hidden_size > 0
    assert len(opened) <= 1


tokenizer_documents = st.fixed_dictionaries(
    {
        "model": json_values
        | st.fixed_dictionaries(
            {"vocab": json_values | st.dictionaries(st.text(max_size=4), json_values)}
        ),
        "added_tokens": json_values | st.lists(st.fixed_dictionaries({"id": json_values})),
    }
)


@examples("tokenizer files")
@given(
    name=st.sampled_from(["tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model"]),
    content=st.binary(max_size=120) | tokenizer_documents.map(lambda d: json.dumps(d).encode()),
    added=st.binary(max_size=40) | json_values.map(lambda d: json.dumps(d).encode()),
)
def test_vocabulary_counting_never_stops_info(tmp_path_factory, small_minilm, name, content, added):
    folder = tmp_path_factory.getbasetemp() / "tokenized"
    if folder.exists():
        for child in folder.iterdir():
            child.unlink()
    else:
        folder.mkdir()
    (folder / "model.safetensors").write_bytes((small_minilm / "model.safetensors").read_bytes())
    (folder / name).write_bytes(content)
    (folder / "tokenizer_config.json").write_bytes(added)
    _, info, _, inspected = open_and_inspect(folder)
    event("counted" if info.vocab_size is not None else "no count")
    assert info.vocab_size is None or info.vocab_size >= 0
    assert len(inspected) <= 1


@pytest.fixture(scope="module")
def vocabularies(minilm, smollm2):
    from tokenizers import Tokenizer

    return [
        Vocabulary(Tokenizer.from_file(str(folder / "tokenizer.json")), folder.name)
        for folder in (minilm, smollm2)
    ]


queries = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="#=-0123456789 x\t", max_size=12),
    st.integers(-(10**30), 10**30).map(lambda i: f"#{i}"),
    st.text(max_size=12).map(lambda t: "=" + t),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.integers(MAX_QUERY_CHARS - 2, MAX_QUERY_CHARS + 2).map(lambda n: "ab " * (n // 3)),
)


@examples("queries")
@given(
    query=queries,
    which=st.sampled_from([0, 1, None]),
    rows=st.sampled_from([50, 30522, 49152]),
    pool=st.sampled_from(["mean", "first", "error"]),
    leading_space=st.booleans(),
)
def test_query_parser(vocabularies, query, which, rows, pool, leading_space):
    vocabulary = vocabularies[which] if which is not None else None
    resolver = QueryResolver(vocabulary, rows, leading_space=leading_space, pool=pool)
    try:
        resolved = resolver.resolve(query)
    except QueryError as err:
        event("refused")
        assert "\n" not in err.message
        err.message.encode("utf-8")  # printable as it is
        return
    except EmbinspectError as err:  # pragma: no cover - a different error type is a bug too
        pytest.fail(f"{type(err).__name__}: {err.message}")
    event("resolved")
    assert resolved.token_ids and all(0 <= i < rows for i in resolved.token_ids)
    assert len(resolved.tokens) == len(resolved.token_ids)
    assert resolved.pooled == (pool if len(resolved.token_ids) > 1 else None)
    assert printable(query) == query and len(query) <= MAX_QUERY_CHARS
    assert not math.isnan(len(shown(query)))


# ---------------------------------------------------------------------------------------
# The printing layer (embinspect.text, cli/render): any Unicode string, lone surrogates (from
# undecodable argv or stdin), C1 controls, bidi controls and whole escape sequences included.

SEQUENCES = [
    "\x1b[31m", "\x1b[2J", "\x1b]8;;https://evil.example\x1b\\", "\x1b]52;c;AA==\x07",
    "\x9b31m", "\x07", "\x08", "\r", "\n", "\t", "\x7f", "\x00", "\\", "\\x1b",
    "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u2028", "\x85", "\udcff",
    "\ud800", "\U000e0001", "[/x]", ":smile:", "=", "+", "-", "@", "'", '"',
]  # fmt: skip
any_text = st.lists(
    st.characters(exclude_categories=()) | st.sampled_from(SEQUENCES), max_size=12
).map("".join)

_ESCAPE = re.compile(r"\\(?:\\|t|n|r|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))")


def from_cell(cell: str) -> str:
    """The string a cell stands for: the README's escapes read back (``\\xNN`` is ASCII
    below 0x80, else the byte that was not UTF-8, kept as surrogateescape keeps it)."""

    def one(match: re.Match) -> str:
        byte, bmp, astral = match.groups()
        if byte is not None:
            code = int(byte, 16)
            return chr(code if code < 0x80 else 0xDC00 + code)
        if bmp is not None or astral is not None:
            return chr(int(bmp or astral, 16))
        return {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}[match.group()]

    assert _ESCAPE.sub("", cell).count("\\") == 0, cell  # no stray backslash
    return _ESCAPE.sub(one, cell)


@examples("terminal forms")
@given(text=any_text)
def test_terminal_forms_of_any_string(text):
    """A cell (table, TSV, CSV) holds no unprintable character at all and reads back to the
    string (so distinct strings stay distinct); a message line holds none either; CSV quotes
    exactly the text that starts like a formula; JSON holds the exact string, escaped."""
    cell = terminal_cell(text)
    assert cell.isprintable() and from_cell(cell) == text
    assert terminal_line(text).isprintable()
    quoted, raw = _csv_cell(text, raw=False), _csv_cell(text, raw=True)
    assert raw == cell and quoted == ("'" + cell if cell.startswith(_FORMULA_START) else cell)
    assert not quoted.startswith(_FORMULA_START)
    for indent in (None, 2):
        document = _json({"token": text, "tokens": [text]}, indent=indent)
        assert document.replace("\n", " ").isprintable()
        # A high and a low lone surrogate side by side read back as the pair they spell
        # in JSON's UTF-16 escapes (as with any JSON writer): the one string JSON cannot
        # keep apart, and one no checkpoint can hold (surrogateescape gives low ones only).
        paired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        assert json.loads(document) == {"token": paired, "tokens": [paired]}
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        report_error(text)
    line = stderr.getvalue()
    assert line.endswith("\n") and line[:-1].isprintable()  # one line, nothing raw


@examples("table cells")
@given(text=any_text)
def test_table_cells_of_any_string(text):
    """Through the table format's console (a title, a cell, a printed line), a string shows as
    its cell form (every character escaped where a terminal would draw that as nothing),
    never as markup, and no unprintable character reaches the terminal."""
    from rich.cells import cell_len
    from rich.table import Table

    shown = drawn(text)
    assert shown == terminal_cell(text) or cell_len(terminal_cell(text)) == 0
    assert cell_len(shown) > 0 or not text
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        screen = console()
        screen.width = 4 * len(shown) + 40  # nothing wraps
        table = Table(title=text)
        table.add_column(text)
        table.add_row(text)
        screen.print(table)
        screen.print(text)
    printed = stdout.getvalue()
    assert printed.replace("\n", " ").isprintable()
    lines = printed.splitlines()
    assert lines[-1].rstrip() == shown.rstrip()  # the line printed last, as it is
    assert sum(f"┃ {shown}" in line or f"│ {shown}" in line for line in lines) == 2
