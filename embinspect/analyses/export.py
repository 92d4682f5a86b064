"""``embinspect export``: the table, or some of its rows, in the formats other tools read.

Formats (``FORMATS``), every value float32 (the stored value, upcast from bf16/f16/f8 or
dequantized from a GGUF type exactly; an F64 table is rounded to float32, with a note):

- ``tensorboard``: a folder for the TensorBoard projector: ``vectors.tsv`` (one row a
  line, tab-separated values) and ``metadata.tsv`` (a header line, then ``token`` and
  ``id``, the row's id in the source table);
- ``word2vec``: word2vec text, a ``ROWS DIM`` line then ``TOKEN v1 v2 ...`` per row;
- ``word2vec-binary``: the same header, then ``TOKEN``, a space, DIM little-endian float32
  and a newline per row (as the word2vec C tool writes them; gensim reads both);
- ``npy``: ``NAME.npy`` (float32, C order) and ``NAME.vocab.json`` beside it (a JSON list
  of the rows' tokens);
- ``safetensors``: one F32 tensor ``embeddings`` and, in the header's metadata, the
  tokens as a JSON list under ``embinspect.vocabulary`` (``sources.exported``).

Text values are written with 9 significant digits (``%.9g``), which read back bit-exact
whether a reader parses them straight to float32 (word2vec.c's ``strtof``) or to float64
first and then rounds (numpy, gensim, JavaScript): the 9-digit decimal lies within
5e-9·|x| of the float32 value x, while the nearest point that would round elsewhere (half
a float32 step) lies at least 2^-25·|x| ≈ 3e-8·|x| away, so the further float64 rounding
(2^-53 relative) cannot carry it across.

A token cannot stand as it is in a whitespace-separated word2vec file or a TSV cell when
it holds whitespace or a control character. In those two formats every token is written
as embinspect's TSV cells write it (``text.terminal_cell``: unprintable characters as
``\\t``, ``\\n``, ``\\xNN``, ``\\uNNNN``, a backslash doubled) with a space written
``\\x20``: distinct tokens stay distinct, and a token of printable characters without a
space or backslash is written unchanged. ``npy`` and ``safetensors`` keep the exact
tokens (JSON). A row with no token (no tokenizer, or a padding row past the vocabulary)
is named ``#ID``.

Rows are read and written a chunk at a time (``CHUNK_BYTES``, ``TEXT_CHUNK_VALUES``), so
memory stays at a chunk whatever the table's size. Everything is written
under a temporary name beside the target, flushed to disk and renamed into place: a
failure, Ctrl-C or SIGTERM leaves nothing behind. Without ``force`` nothing is ever
written over: a file published by a hard link (which never replaces), a folder by a rename
(which never replaces a file or a non-empty folder), so a target made while the rows were
written is left alone (UsageError, "already exists"). ``npy``'s pair is published file by
file, the vocabulary first and the ``.npy`` last.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from embinspect import progress
from embinspect.errors import Option, QueryError, UsageError, note
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable
from embinspect.sources.exported import (
    EXPORTED_TENSOR,
    SOURCE_KEY,
    TENSOR_KEY,
    VOCABULARY_KEY,
    vocabulary_path,
)
from embinspect.sources.files import atomic_files, atomic_folder, output_path
from embinspect.tables.queries import MAX_QUERY_CHARS
from embinspect.text import terminal_cell

if TYPE_CHECKING:
    import numpy as np

    from embinspect.model.tokenizer import Vocabulary
    from embinspect.tables.search import Searcher
    from embinspect.tables.table import EmbeddingTable

FORMATS = ("tensorboard", "word2vec", "word2vec-binary", "npy", "safetensors")
# What the safetensors library reads: a header of at most 100,000,000 bytes (its
# MAX_HEADER_SIZE); embinspect's own reader allows a little more.
SAFETENSORS_MAX_HEADER = 100_000_000
VECTORS_TSV, METADATA_TSV = "vectors.tsv", "metadata.tsv"
_PROJECTOR_FILES = (VECTORS_TSV, METADATA_TSV)
# Rows go a chunk at a time: about 8 MB of float32 for the binary formats; a quarter of a
# million values for the text ones, whose Python floats and strings weigh ~60 bytes each.
CHUNK_BYTES = 8 * 1024 * 1024
TEXT_CHUNK_VALUES = 256 * 1024
_TEXT_FORMATS = ("tensorboard", "word2vec")
# A --words file: lines of at most MAX_QUERY_CHARS characters (4 bytes each in UTF-8, and
# a line end), and at most WORDS_MIN_LINES of them, or twice the table's rows.
WORDS_MIN_LINES = 1_000_000
_MAX_WORDS_LINE_BYTES = 4 * MAX_QUERY_CHARS + 2


@dataclass(frozen=True)
class ExportResult(Displayable):
    """What ``export`` wrote: ``rows`` × ``dim`` float32 values of ``tensor`` of ``model``,
    as ``format``, in ``paths`` (``bytes`` in all); ``selection`` says which rows (all,
    ids, words, neighbors); ``escaped``: tokens written in their escaped form."""

    model: str
    tensor: str
    format: str
    out: str
    paths: list[str]
    rows: int
    dim: int
    dtype: str
    bytes: int
    selection: str
    escaped: int = 0
    provenance: Provenance | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "model": self.model, "tensor": self.tensor, "format": self.format, "out": self.out,
            "paths": self.paths, "rows": self.rows, "dim": self.dim, "dtype": self.dtype,
            "bytes": self.bytes, "selection": self.selection, "escaped": self.escaped,
        }  # fmt: skip
        return stamped(data, self.provenance)


# --- which rows ------------------------------------------------------------------------


def parse_ids(spec: str, rows: int) -> Sequence[int]:
    """Row ids from ``--ids``: ids and ranges joined by commas (``0:5000``, ``7,42``,
    ``100:``, ``:10``; a range's end is excluded, as in Python), each id once, in the
    order given; UsageError for ids outside the table. One range stays a ``range`` (no
    list of a million ids)."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    try:
        spans = [_span(part, rows, spec) for part in parts]
    except ValueError:
        raise UsageError(
            Option("ids", spec), ": give ids and ranges joined by commas (0:5000,7,42)"
        ) from None
    if len(spans) == 1:
        return spans[0]
    ids: dict[int, None] = {}
    for span in spans:
        ids.update(dict.fromkeys(span))
    return list(ids)


def _span(part: str, rows: int, spec: str) -> range:
    """One part of ``--ids``: ``N`` or ``START:STOP`` as a range; ValueError if neither."""
    if ":" in part:
        low, _, high = part.partition(":")
        start = int(low) if low.strip() else 0
        stop = int(high) if high.strip() else rows
    else:
        start = int(part)
        stop = start + 1
    if start < 0 or stop > rows:
        raise UsageError(Option("ids", spec), f": {part} is outside the table (rows 0..{rows - 1})")
    return range(start, max(start, stop))


def rows_of_words(searcher: Searcher, words: Iterable[str], where: str) -> list[int]:
    """The rows of each query (one a line of ``where``), resolved as every command resolves
    a query; a query of several tokens gives each of its rows. QueryError naming the line
    of the first query that names no row: nothing is exported then."""
    ids: dict[int, None] = {}
    for line_no, word in enumerate(words, start=1):
        if not word.strip():
            continue
        try:
            resolved = searcher.resolver.resolve(word)
        except QueryError as err:
            raise QueryError(f"{where}:{line_no}: {err.message}") from None
        ids.update(dict.fromkeys(resolved.token_ids))
    return list(ids)


def rows_near(searcher: Searcher, queries: Sequence[str], k: int, metric: str) -> list[int]:
    """Each query's own rows, then its ``k`` nearest rows (the exact neighbours path);
    QueryError for the first query that cannot be answered."""
    from embinspect.analyses.neighbors import neighbors

    ids: dict[int, None] = {}
    for result in neighbors(searcher, queries, searcher.limit_k(k), metric):
        if result.error is not None:
            raise QueryError(result.error)
        ids.update(dict.fromkeys(result.token_ids))
        ids.update(dict.fromkeys(n.token_id for n in result.neighbors))
    return list(ids)


def export(
    searcher: Searcher,
    model: str,
    to: str,
    out: str | os.PathLike[str],
    *,
    ids: str | None = None,
    words: str | os.PathLike[str] | None = None,
    neighbors_of: Sequence[str] = (),
    k: int = 100,
    metric: str = "cosine",
    force: bool = False,
    chunk_rows: int | None = None,
) -> ExportResult:
    """Export the rows of ``searcher``'s table that one selection names, all by default:
    ``ids`` (``parse_ids``), ``words`` (a file of queries, one a line), or
    ``neighbors_of`` (queries, each with its ``k`` nearest rows by ``metric``)."""
    chosen = (
        ("ids", ids is not None),
        ("words", words is not None),
        ("neighbors_of", bool(neighbors_of)),
    )
    given = [name for name, present in chosen if present]
    if len(given) > 1:
        raise UsageError(
            "choose one selection of rows: ", Option(given[0]), " or ", Option(given[1])
        )
    if to not in FORMATS:
        raise UsageError(Option("to", to), f": choose one of {', '.join(FORMATS)}")
    _targets(to, output_path(out))  # a misnamed --out before any search
    table = searcher.table
    selected: Sequence[int] | None = None
    selection = "all"
    if ids is not None:
        selected, selection = parse_ids(ids, table.rows), "ids"
    elif words is not None:
        lines = read_lines(Path(os.fspath(words)), table.rows)
        selected, selection = rows_of_words(searcher, lines, str(words)), "words"
    elif neighbors_of:
        selected, selection = rows_near(searcher, list(neighbors_of), k, metric), "neighbors"
    return export_table(
        model, table, searcher.vocabulary, to, out, ids=selected, selection=selection,
        force=force, provenance=searcher.provenance, chunk_rows=chunk_rows,
    )  # fmt: skip


def read_lines(path: Path, rows: int) -> Iterator[str]:
    """The lines of a ``--words`` file (UTF-8), without their line ends, read one at a
    time: each at most ``MAX_QUERY_CHARS`` characters (a query's limit), at most
    ``max_words_lines(rows)`` of them, so that an endless stream (``/dev/zero``, a pipe
    that never ends) is one clean UsageError, not all of memory."""
    limit = max_words_lines(rows)
    option = Option("words", str(path))
    try:
        with open(path, "rb") as handle:
            for number in itertools.count(1):
                raw = handle.readline(_MAX_WORDS_LINE_BYTES + 1)
                if not raw:
                    return
                if number > limit:
                    raise UsageError(
                        option,
                        f": more than {limit:,} lines (a words file holds at most "
                        f"{WORDS_MIN_LINES:,}, or twice the table's rows)",
                    )
                ended = raw.endswith(b"\n")
                try:
                    line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
                except UnicodeDecodeError:
                    raise UsageError(option, f": line {number:,} is not UTF-8 text") from None
                if len(line) > MAX_QUERY_CHARS or (not ended and len(raw) > _MAX_WORDS_LINE_BYTES):
                    raise UsageError(
                        option,
                        f": line {number:,} is longer than {MAX_QUERY_CHARS:,} characters "
                        "(a query's limit)",
                    )
                yield line
    except OSError as err:
        raise UsageError(option, f": {err.strerror or err}") from None


def max_words_lines(rows: int) -> int:
    """How many lines a ``--words`` file may hold: ``WORDS_MIN_LINES``, or twice the
    table's rows when that is more."""
    return max(WORDS_MIN_LINES, 2 * rows)


# --- how tokens are written ------------------------------------------------------------


def written_token(token: str) -> str:
    """A token as it stands in a word2vec file or a TSV cell: ``terminal_cell``'s escapes
    (a backslash doubled), and a space as ``\\x20``; unchanged when it needs none."""
    cell = terminal_cell(token)
    return cell.replace(" ", "\\x20") if " " in cell else cell


def row_tokens(vocabulary: Vocabulary | None, ids: Sequence[int]) -> list[str]:
    """The stored token of each row, ``#ID`` for a row with none."""
    if vocabulary is None:
        return [f"#{i}" for i in ids]
    tokens = []
    for i in ids:
        token = vocabulary.id_to_token(i)
        tokens.append(token if token is not None else f"#{i}")
    return tokens


def refuse_repeated_tokens(tokens: Sequence[str], to: str) -> None:
    """UsageError when two rows would be written under one token (as written: two tokens
    that escape alike, or a token spelled like another row's ``#ID``): a word2vec reader
    keys rows by token, and gensim loads such a file into a broken table. It names the
    first repeated token (escaped, so terminal-safe) and how many rows repeat one."""
    seen: set[str] = set()
    first: str | None = None
    repeats = 0
    for token in tokens:
        written = written_token(token)
        if written in seen:
            repeats += 1
            first = written if first is None else first
        seen.add(written)
    if first is not None:
        rows = "row repeats" if repeats == 1 else "rows repeat"
        raise UsageError(
            f"{repeats:,} {rows} the token of an earlier row (the first: {first}); {to} "
            "keys rows by token: export ",
            Option("to", "npy"),
            " or ",
            Option("to", "safetensors"),
            " (rows kept by position), or choose other rows",
        )


# --- writing ---------------------------------------------------------------------------


def export_table(
    model: str,
    table: EmbeddingTable,
    vocabulary: Vocabulary | None,
    to: str,
    out: str | os.PathLike[str],
    *,
    ids: Sequence[int] | None = None,
    selection: str = "all",
    force: bool = False,
    provenance: Provenance | None = None,
    chunk_rows: int | None = None,
) -> ExportResult:
    """Write rows ``ids`` of ``table`` (every row when None), in their order, as ``to``
    (one of ``FORMATS``) at ``out``; ``force`` replaces what is there. ``chunk_rows``: rows
    read and written at once (default: ``CHUNK_BYTES`` of float32, ``TEXT_CHUNK_VALUES``
    values for the text formats). UsageError for an empty
    selection, an existing target without ``force``, or a target that cannot be written;
    nothing is left on disk then."""
    if to not in FORMATS:
        raise UsageError(Option("to", to), f": choose one of {', '.join(FORMATS)}")
    selected: Sequence[int] = range(table.rows) if ids is None else ids
    if not selected:
        raise UsageError(f"no rows to export: the {selection} selection is empty")
    targets = _targets(to, output_path(out))
    for target in targets:
        if (target.exists() or target.is_symlink()) and not force:
            raise _exists(target)
        if target.is_dir() and to != "tensorboard":
            raise UsageError(f"{target}: is a folder; give a file name")
        if not target.is_dir() and target.exists() and to == "tensorboard":
            raise UsageError(f"{target}: is a file; tensorboard writes a folder")
        if to == "tensorboard" and target.is_dir() and not target.is_symlink():
            others = sorted(p.name for p in target.iterdir() if p.name not in _PROJECTOR_FILES)
            if others:
                # --force replaces an earlier export, never a folder of other files.
                raise UsageError(
                    f"{target}: a folder holding other files ({others[0]}...); ",
                    Option("force"),
                    " replaces only a folder of vectors.tsv and metadata.tsv",
                )
    if table.header.dtype == "F64":
        note(f"{table.name} is F64: exported as float32 (rounded)")
    if chunk_rows is None:
        values = TEXT_CHUNK_VALUES if to in _TEXT_FORMATS else CHUNK_BYTES // 4
        chunk_rows = max(1, values // table.dim)
    step = chunk_rows
    tokens = row_tokens(vocabulary, selected)
    if to in ("word2vec", "word2vec-binary"):
        refuse_repeated_tokens(tokens, to)
    writer = _WRITERS[to]
    try:
        escaped = writer(table, selected, tokens, targets, step, model, not force)
    except FileExistsError as err:  # made while the rows were written: left alone
        raise _exists(Path(err.filename or targets[0])) from None
    except OSError as err:
        raise UsageError(f"{targets[0]}: cannot write ({err.strerror or err})") from None
    size = sum(_size(t) for t in targets)
    return ExportResult(
        model, table.name, to, str(targets[0]), [str(t) for t in _written(to, targets)],
        len(selected), table.dim, "float32", size, selection, escaped, provenance,
    )  # fmt: skip


def _exists(target: Path) -> UsageError:
    return UsageError(f"{target}: already exists; pass ", Option("force"), " to replace it")


def _targets(to: str, out: Path) -> list[Path]:
    """The paths a format writes: a folder (tensorboard), a file, or NAME.npy and its
    NAME.vocab.json."""
    if out.name in ("", ".", ".."):
        raise UsageError(Option("out", str(out)), ": give a file or folder name to write")
    if to == "npy":
        if out.suffix.lower() != ".npy":
            raise UsageError(Option("out", str(out)), ": name the .npy file (NAME.npy)")
        return [out, vocabulary_path(out)]
    if to == "safetensors" and out.suffix.lower() != ".safetensors":
        raise UsageError(Option("out", str(out)), ": name the .safetensors file")
    return [out]


def _written(to: str, targets: list[Path]) -> list[Path]:
    if to == "tensorboard":
        return [targets[0] / VECTORS_TSV, targets[0] / METADATA_TSV]
    return targets


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


def float32_chunks(
    table: EmbeddingTable, ids: Sequence[int], step: int, label: str = "Exporting rows"
) -> Iterator[np.ndarray]:
    """Rows ``ids`` of ``table`` as float32 (little-endian) numpy arrays of at most
    ``step`` rows each, in order: a chunk at a time."""
    import numpy as np

    with progress.task(label, total=len(ids)):
        for start in range(0, len(ids), step):
            piece = ids[start : start + step]
            if isinstance(piece, range):
                piece = list(piece)
            rows = table.gather(piece).numpy().astype("<f4")
            progress.advance(len(piece))
            yield np.ascontiguousarray(rows)


def _text_values(rows: np.ndarray, separator: str) -> list[str]:
    """Each row's float32 values as text, 9 significant digits (see the module's note)."""
    line = separator.join(["%.9g"] * rows.shape[1])
    return [line % tuple(row) for row in rows.astype("float64").tolist()]


def _escaped(tokens: list[str]) -> tuple[list[str], int]:
    written = [written_token(t) for t in tokens]
    return written, sum(a != b for a, b in zip(tokens, written, strict=True))


def _write_word2vec(table, ids, tokens, targets, step, model, new) -> int:
    written, escaped = _escaped(tokens)
    with atomic_files(targets[0], replace=not new) as (handle,):
        handle.write(f"{len(ids)} {table.dim}\n".encode())
        done = 0
        for rows in float32_chunks(table, ids, step):
            lines = _text_values(rows, " ")
            names = written[done : done + len(lines)]
            handle.write("".join(f"{n} {v}\n" for n, v in zip(names, lines, strict=True)).encode())
            done += len(lines)
    return escaped


def _write_word2vec_binary(table, ids, tokens, targets, step, model, new) -> int:
    written, escaped = _escaped(tokens)
    with atomic_files(targets[0], replace=not new) as (handle,):
        handle.write(f"{len(ids)} {table.dim}\n".encode())
        done = 0
        for rows in float32_chunks(table, ids, step):
            parts = []
            for name, row in zip(written[done : done + len(rows)], rows, strict=True):
                parts += [name.encode(), b" ", row.tobytes(), b"\n"]
            handle.write(b"".join(parts))
            done += len(rows)
    return escaped


def _write_tensorboard(table, ids, tokens, targets, step, model, new) -> int:
    written, escaped = _escaped(tokens)
    with atomic_folder(targets[0], replace=not new) as folder:
        with open(folder / METADATA_TSV, "wb") as meta:
            meta.write(b"token\tid\n")
            meta.write("".join(f"{t}\t{i}\n" for t, i in zip(written, ids, strict=True)).encode())
            _sync(meta)
        with open(folder / VECTORS_TSV, "wb") as vectors:
            for rows in float32_chunks(table, ids, step):
                vectors.write("".join(line + "\n" for line in _text_values(rows, "\t")).encode())
            _sync(vectors)
    return escaped


def _write_npy(table, ids, tokens, targets, step, model, new) -> int:
    import numpy as np

    npy, vocab = targets
    header = {"descr": "<f4", "fortran_order": False, "shape": (len(ids), table.dim)}
    # The vocabulary is renamed first, the .npy last: a reader, which starts from the .npy,
    # never finds a new table beside an old vocabulary.
    with atomic_files(vocab, npy, replace=not new) as (vocab_handle, handle):
        vocab_handle.write(_json_list(tokens))
        np.lib.format.write_array_header_1_0(handle, header)
        for rows in float32_chunks(table, ids, step):
            handle.write(rows.tobytes())
    return 0


def _write_safetensors(table, ids, tokens, targets, step, model, new) -> int:
    metadata = {
        VOCABULARY_KEY: _json_list(tokens).decode("ascii"),
        SOURCE_KEY: model,
        TENSOR_KEY: table.name,
    }
    nbytes = len(ids) * table.dim * 4
    entry = {"dtype": "F32", "shape": [len(ids), table.dim], "data_offsets": [0, nbytes]}
    raw = json.dumps({"__metadata__": metadata, EXPORTED_TENSOR: entry}).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    if len(raw) > SAFETENSORS_MAX_HEADER:
        raise UsageError(
            f"the vocabulary of {len(ids):,} rows makes a safetensors header of {len(raw):,} "
            f"bytes; safetensors reads at most {SAFETENSORS_MAX_HEADER:,}: export ",
            Option("to", "npy"),
            " instead",
        )
    with atomic_files(targets[0], replace=not new) as (handle,):
        handle.write(len(raw).to_bytes(8, "little") + raw)
        for rows in float32_chunks(table, ids, step):
            handle.write(rows.tobytes())
    return 0


def _json_list(tokens: list[str]) -> bytes:
    """Tokens as a JSON list in ASCII: every other character as its ``\\uNNNN`` escape, so
    that any token (a lone surrogate included) makes valid UTF-8 JSON."""
    return json.dumps(tokens, ensure_ascii=True).encode()


def _sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


_WRITERS = {
    "tensorboard": _write_tensorboard,
    "word2vec": _write_word2vec,
    "word2vec-binary": _write_word2vec_binary,
    "npy": _write_npy,
    "safetensors": _write_safetensors,
}
