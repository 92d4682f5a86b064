"""Read classic word-vector files: word2vec text and binary, GloVe, fastText ``.vec``.

Formats, one row per word, rows kept in file order:

* word2vec text (``WORD2VEC_TEXT``; fastText's ``.vec`` is the same): a header line
  ``ROWS DIM``, then ``word v1 ... vDIM`` per line, fields separated by single spaces.
* word2vec binary (``WORD2VEC_BINARY``): the header line ``ROWS DIM\\n``, then per row the
  word's bytes, one space and DIM little-endian float32 (``4 * DIM`` bytes), optionally
  followed by ``\\n``: what word2vec.c writes and gensim's
  ``KeyedVectors.load_word2vec_format(binary=True)`` reads.
* GloVe text (``GLOVE``): no header; every line is ``word v1 ... vD``, D taken from line 1
  (as gensim does: the fields after its first space).

Any of them may be gzip-compressed (``.txt.gz``, ``.vec.gz``, ``.bin.gz``: told by the
gzip magic, not the name): the file is then decompressed as it is read, a block at a time,
never whole; where a plain file is measured (its size, its trailing blank lines) a
compressed one is read through once more instead.

``sniff_word_vectors`` and ``word_vector_shape`` are pure Python (``info`` must not import
numpy); ``load_word_vectors`` parses a block of lines at a time, all its numbers in one
numpy call, into a float32 array allocated once, so memory stays at the table plus a block.
Values are what gensim loads, bit for bit: each number parsed as a double, then rounded to
float32.

A parse is kept in embinspect's cache (``WordVectorCache``, at the end): the first command
that reads a file's rows writes them there, float32 rows and words in one safetensors
file, and later runs map that file instead of parsing (``locate_word_vectors``,
``load_located``). The entry is keyed by the file's resolved path, size, mtime, ctime and
the SHA-256 of its first and last megabyte; it is used only when all of those still hold,
and its own SHA-256 is checked before any row of it is.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import hashlib
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from embinspect import progress
from embinspect.errors import ModelError, note, reading
from embinspect.sources.cache import (
    NO_CACHE,
    WORD_VECTORS,
    ArraysEntry,
    Untrusted,
    cached_file,
    derived_cache_off,
    keep_derived_arrays,
    open_arrays_verified,
    read_arrays_entry,
)
from embinspect.text import brief

if TYPE_CHECKING:
    import numpy as np

WORD2VEC_TEXT, WORD2VEC_BINARY, GLOVE = "word2vec-text", "word2vec-binary", "glove"
GZIP_MAGIC = b"\x1f\x8b"

SNIFF_BYTES = 8192  # a 300-d text row is ~3 KB: enough to see a header and a row begin
# Text is parsed this much at a time (~250k numbers): larger blocks only cost memory.
BLOCK_BYTES = 2 * 1024 * 1024
# A text line longer than this is no row of word vectors (a 300-d row is ~3 KB).
MAX_LINE_BYTES = 16 * 1024 * 1024
# word2vec.c truncates words at 100 bytes; no binary row's word comes near this.
MAX_WORD_BYTES = 1024 * 1024

# One number as numpy's loadtxt and Python's float() both read it (and gensim with them).
_NUMBER = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.I)
_INTEGER = re.compile(rb"[+-]?\d+")
_HEADER = re.compile(rb"[ \t]*(\d+)[ \t]+(\d+)[ \t]*\r?\n")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class WordVectorShape:
    """What ``info`` shows, from the header and a newline count only (no parsing)."""

    format: str
    rows: int  # word2vec: the header's; GloVe: lines counted (trailing blank lines left out)
    dim: int
    header_rows: int | None  # what the header claims (word2vec), None for GloVe
    compressed: bool = False  # gzip, decompressed as it is read


@dataclass
class WordVectors:
    """A whole file (or its first ``limit`` rows): ``vectors[i]`` is ``words[i]``'s row."""

    format: str
    words: list[str]  # row order as in the file; duplicates kept
    vectors: np.ndarray  # float32, shape (rows, dim), C-contiguous


@dataclass(frozen=True)
class _Start:
    """Where the rows of a file begin and how they are shaped."""

    format: str
    dim: int
    header_rows: int | None
    data_offset: int  # byte offset of the first row


# --------------------------------------------------------------------------------------------
# Sniffing: which format, from the first bytes
# --------------------------------------------------------------------------------------------


def sniff_word_vectors(path: Path) -> str | None:
    """Format of a word-vector file from its first ``SNIFF_BYTES``, or None when it is not one.

    A ``ROWS DIM`` header line makes it word2vec, binary when the bytes after the first
    word are not text; otherwise it is GloVe when line 1 is a word and at least two numbers
    (one number is a ``key value`` list, e.g. a tokenizer's ``merges.txt``). Only the start
    is looked at: a file sniffed as one format may still fail to load.
    """
    try:
        prefix = read_start(path, SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    full = len(prefix) == SNIFF_BYTES  # else the whole file is in prefix, nothing was cut
    header = _HEADER.match(prefix)
    if header is not None:
        rows, dim = int(header.group(1)), int(header.group(2))
        if rows == 0 or dim == 0:
            return None
        rest = prefix[header.end() :]
        if _first_row_is_text(rest, dim):
            line = rest.split(b"\n", 1)[0]
            numbers = _complete_fields(line, cut=full and b"\n" not in rest)[1:]
            return WORD2VEC_TEXT if all(map(_NUMBER.fullmatch, numbers)) else None
        return WORD2VEC_BINARY
    if _CONTROL.search(prefix.split(b"\n", 1)[0]):
        return None
    fields = _complete_fields(prefix.split(b"\n", 1)[0], cut=full and b"\n" not in prefix)
    if len(fields) < 3 or not fields[0] or not all(map(_NUMBER.fullmatch, fields[1:])):
        return None
    return GLOVE


def _complete_fields(line: bytes, cut: bool) -> list[bytes]:
    """Space-separated fields of ``line``, less the last one when the buffer cut it."""
    fields = line.rstrip().split(b" ")
    return fields[:-1] if cut and len(fields) > 1 else fields


def _first_row_is_text(rest: bytes, dim: int) -> bool:
    """Whether the bytes after the first word (up to its vector's size) are text, not float32.

    float32 data almost always holds a control byte or invalid UTF-8 within a few values;
    a text row holds neither. A row with no data yet counts as text (and fails as truncated).
    """
    space = rest.find(b" ")
    if space == -1:
        return True
    # Not cut at a newline: a text row's next lines are text too, while float32 bytes may
    # hold 0x0a anywhere.
    chunk = rest[space + 1 : space + 1 + 4 * dim]
    try:
        # final=False: the sniff buffer may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(chunk, final=False)
    except UnicodeDecodeError:
        return False
    return _CONTROL.search(chunk) is None


# --------------------------------------------------------------------------------------------
# Plain or gzip-compressed: the same bytes, read as a stream
# --------------------------------------------------------------------------------------------


def is_gzip(path: Path) -> bool:
    """Whether the file starts with gzip's magic bytes (raises OSError if unreadable)."""
    with open(path, "rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def read_start(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file, decompressed if it is gzip (raises OSError,
    EOFError or zlib.error)."""
    if is_gzip(path):
        with gzip.open(path, "rb") as handle:
            return handle.read(size)
    with open(path, "rb") as handle:
        return handle.read(size)


def _open(path: Path) -> BinaryIO:
    with reading(path, "a word-vector file"):
        if is_gzip(path):
            return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads bytes
        return open(path, "rb")  # noqa: SIM115 - the callers close it


@contextmanager
def _gzip_read(path: Path) -> Iterator[None]:
    """Broken gzip data becomes a one-line ModelError (a plain file raises none of these)."""
    try:
        yield
    except EOFError:
        raise ModelError(f"{path}: truncated gzip data (the file ends mid-stream)") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise ModelError(f"{path}: corrupt gzip data ({brief(err)})") from None


def _data_size(handle: BinaryIO) -> int:
    """Bytes in the (decompressed) file; a compressed one is read to its end to know."""
    if not isinstance(handle, gzip.GzipFile):
        return os.fstat(handle.fileno()).st_size
    while handle.read(BLOCK_BYTES):
        pass
    return handle.tell()


# --------------------------------------------------------------------------------------------
# The start of a file, checked: header (or GloVe's first line), dim
# --------------------------------------------------------------------------------------------


def _read_start(path: Path, handle: BinaryIO) -> _Start:
    """Check the header (or GloVe's first line) and say where rows begin; raise ModelError."""
    first = handle.readline(SNIFF_BYTES)
    if _CONTROL.search(first):
        # Before reading on: a binary file (safetensors, a pickle) has no line to speak of.
        raise ModelError(
            f"{path}: not a word-vector file (no 'ROWS DIM' header, and line 1 is binary data)"
        )
    if len(first) == SNIFF_BYTES and not first.endswith(b"\n"):
        first += handle.readline(MAX_LINE_BYTES - SNIFF_BYTES)
        if len(first) == MAX_LINE_BYTES and not first.endswith(b"\n"):
            raise ModelError(f"{path}:1: line longer than {MAX_LINE_BYTES} bytes")
    if not first.strip():
        if _rest_is_blank(handle):
            raise ModelError(f"{path}: empty file")
        raise ModelError(f"{path}:1: blank line")
    tokens = first.split()
    if len(tokens) == 1 or (len(tokens) == 2 and _INTEGER.fullmatch(tokens[0])):
        # A header, or meant to be one (a GloVe row has a word and at least one number).
        header = _HEADER.fullmatch(first if first.endswith(b"\n") else first + b"\n")
        if header is None or int(header.group(1)) == 0 or int(header.group(2)) == 0:
            raise ModelError(
                f"{path}:1: expected a header 'ROWS DIM' (two positive integers) or a row "
                f"'word v1 ... vD', found {_show(first.rstrip())}"
            )
        rows, dim = int(header.group(1)), int(header.group(2))
        offset = len(first)
        rest = handle.read(SNIFF_BYTES)
        fmt = WORD2VEC_TEXT if _first_row_is_text(rest, dim) else WORD2VEC_BINARY
        return _Start(fmt, dim, rows, offset)
    # gensim's rule: the word ends at the first space, so D is the count of fields after it.
    line = first.rstrip()
    dim = line.count(b" ")
    if dim == 0:
        raise ModelError(f"{path}:1: expected numbers after the word, found none")
    reason = _line_error(line, dim)
    if reason is not None:
        raise ModelError(f"{path}:1: {reason}")
    return _Start(GLOVE, dim, None, 0)


def _rest_is_blank(handle: BinaryIO) -> bool:
    while chunk := handle.read(BLOCK_BYTES):
        if chunk.strip():
            return False
    return True


def _show(raw: bytes, limit: int = 40) -> str:
    """``raw`` quoted for an error message (as bytes when not UTF-8), cut to ``limit``."""
    try:
        text = raw.decode("utf-8")
        shown = repr(text[:limit])
    except UnicodeDecodeError:
        text = raw
        shown = repr(raw[:limit])[1:]  # b'\x97' without the b
    return shown + ("..." if len(text) > limit else "")


# --------------------------------------------------------------------------------------------
# Shape, cheaply
# --------------------------------------------------------------------------------------------


def word_vector_shape(path: Path) -> WordVectorShape:
    """Format, rows and dim of a word-vector file without parsing its rows (no numpy).

    word2vec rows are the header's: a binary file too short to hold them raises ModelError
    (a row is at least a space and ``4 * DIM`` bytes: gensim writes an empty word so). GloVe
    rows are its lines, counted in big blocks, less blank lines at the end.
    """
    with _open(path) as handle, _gzip_read(path):
        start = _read_start(path, handle)
        if start.format == GLOVE:
            rows = _count_rows(handle, start.data_offset)
            return WordVectorShape(GLOVE, rows, start.dim, None, isinstance(handle, gzip.GzipFile))
        size = _data_size(handle)
        have = size - start.data_offset
        if start.format == WORD2VEC_BINARY:
            need = start.header_rows * (4 * start.dim + 1)
            if have < need:
                raise ModelError(
                    f"{path}: truncated: the header declares {start.header_rows} rows of "
                    f"{start.dim} float32, at least {need} bytes, but {have} follow it"
                )
        # A text row is at least a word and DIM numbers of one digit, each after a space:
        # a header promising more is wrong, and must not size the table's allocation.
        elif start.header_rows * (2 * start.dim + 1) > have:
            raise ModelError(
                f"{path}:1: the header declares {start.header_rows:,} rows of {start.dim} "
                f"numbers, more than the {have:,} bytes after it can hold"
            )
        rows = start.header_rows
        compressed = isinstance(handle, gzip.GzipFile)
        return WordVectorShape(start.format, rows, start.dim, rows, compressed)


def _count_rows(handle: BinaryIO, offset: int, stop_at: int | None = None) -> int:
    """Lines from ``offset`` to the last non-blank byte (at most ``stop_at``), by newlines."""
    if isinstance(handle, gzip.GzipFile):
        return _count_rows_forward(handle, offset, stop_at)
    size = os.fstat(handle.fileno()).st_size
    end = size
    while end > offset:  # walk back over trailing whitespace (blank lines at the end)
        step = min(64 * 1024, end - offset)
        handle.seek(end - step)
        tail = handle.read(step).rstrip()
        if tail:
            end = end - step + len(tail)
            break
        end -= step
    if end <= offset:
        return 0
    handle.seek(offset)
    newlines, position = 0, offset
    while position < end:
        block = handle.read(min(BLOCK_BYTES, end - position))
        if not block:
            break
        newlines += block.count(b"\n")
        position += len(block)
        if stop_at is not None and newlines >= stop_at:
            return stop_at
    return newlines + 1


def _count_rows_forward(handle: BinaryIO, offset: int, stop_at: int | None) -> int:
    """``_count_rows`` in one pass from ``offset`` to the end, for a stream that cannot
    seek back cheaply (gzip): newlines before the last non-blank byte, plus one."""
    handle.seek(offset)
    newlines = 0  # in the blocks read so far
    before_last: int | None = None  # newlines before the last non-blank byte so far
    while block := handle.read(BLOCK_BYTES):
        text = block.rstrip()
        if text:
            before_last = newlines + text.count(b"\n")
            if stop_at is not None and before_last >= stop_at:
                return stop_at
        newlines += block.count(b"\n")
    return 0 if before_last is None else before_last + 1


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_word_vectors(
    path: Path,
    limit: int | None = None,
    *,
    unicode_errors: str = "strict",
    counted: int | None = None,
) -> WordVectors:
    """Every row of a word-vector file (the first ``limit`` only, if given), as float32.

    Words are UTF-8. By default a word that is not valid UTF-8 is an error naming its line:
    replacing bytes silently would make distinct words equal and unqueryable.
    ``unicode_errors`` ("replace", "ignore", ...) is passed to ``bytes.decode`` for files
    known to hold broken words (word2vec.c cuts words at 100 bytes, mid-character), as in
    gensim. In text formats a word may contain spaces (GloVe 840B): the last D fields are
    the vector, the rest of the line is the word, unless the rest ends in a number (then
    the row has too many numbers: an error, not a word "the 0.1"). Duplicate words keep
    every row (rows are what the file holds); a query by word finds the first. NaN and
    infinities are data.

    Raises ModelError naming the file and the first malformed line (text: ``FILE:LINE:``,
    1-based; binary: row and byte offset): a bad header, a row with the wrong count of
    numbers or a field that is not a number, a blank line before the last row, fewer rows
    than the header declares, rows or data after them (gensim ignores those; here they
    mean the header is wrong). Blank lines at the end and ``\\r\\n`` line ends are fine.

    ``counted``: a GloVe file's rows as ``word_vector_shape`` counted them, so that they
    are not counted again (a gzip file would be decompressed once more); a file that no
    longer holds as many raises ModelError.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
    with _open(path) as handle, _gzip_read(path):
        start = _read_start(path, handle)
        if start.format == WORD2VEC_BINARY:
            words, vectors = _read_binary(path, handle, start, limit, unicode_errors)
        else:
            words, vectors = _read_text(path, handle, start, limit, unicode_errors, counted)
    return WordVectors(start.format, words, vectors)


def _read_text(
    path: Path,
    handle: BinaryIO,
    start: _Start,
    limit: int | None,
    errors: str,
    counted: int | None = None,
) -> tuple[list[str], np.ndarray]:
    import numpy as np

    if start.header_rows is not None:
        rows = start.header_rows if limit is None else min(start.header_rows, limit)
    elif counted is not None and limit is None:
        rows = counted
    else:
        rows = _count_rows(handle, start.data_offset, stop_at=limit)
    vectors = np.empty((rows, start.dim), dtype=np.float32)
    words: list[str] = []
    reader = _TextRows(path, start.dim, first_line=2 if start.header_rows else 1)
    handle.seek(start.data_offset)
    carry = b""
    while len(words) < rows:
        chunk = handle.read(BLOCK_BYTES)
        if not chunk:
            lines, carry = [carry] if carry else [], b""
        else:
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut == -1:
                if len(data) > MAX_LINE_BYTES:
                    raise ModelError(
                        f"{path}:{reader.line_no}: line longer than {MAX_LINE_BYTES} bytes"
                    )
                carry = data
                continue
            lines, carry = data[:cut].split(b"\n"), data[cut + 1 :]
        if not lines:
            break
        got_words, values, used = reader.parse(lines, rows - len(words), errors)
        vectors[len(words) : len(words) + len(got_words)] = values
        words.extend(got_words)
        progress.advance(len(got_words))
        if len(words) == rows and limit is None:
            # The rest must be blank: what is left of this block, then the rest of the file.
            reader.check_blank(lines[used:], carry, handle, start.header_rows)
    if len(words) < rows:
        if start.header_rows is None:
            raise ModelError(f"{path}: changed while being read ({rows} rows counted first)")
        line = reader.blank_at or reader.line_no
        raise ModelError(
            f"{path}:{line}: truncated: the header declares {start.header_rows} rows, "
            f"the file ends after {len(words)}"
        )
    return words, vectors


class _TextRows:
    """Parses blocks of text lines, tracking line numbers and blank lines across blocks."""

    def __init__(self, path: Path, dim: int, first_line: int) -> None:
        self.path, self.dim = path, dim
        self.line_no = first_line  # number of the next line to parse
        self.blank_at: int | None = None  # first blank line so far (fine only at the end)

    def parse(
        self, lines: list[bytes], most: int, errors: str
    ) -> tuple[list[str], np.ndarray, int]:
        """Up to ``most`` rows from ``lines``: (words, values (n, dim), lines used)."""
        import numpy as np

        dim = self.dim
        raw_words: list[bytes] = []
        numbers: list[bytes] = []
        used = 0
        blank_at = self.blank_at  # kept as of the block's start until the block parses
        for line in lines:
            if len(raw_words) == most:
                break
            used += 1
            line = line.rstrip()
            spaces = line.count(b" ")
            if spaces == dim and blank_at is None:
                # The usual row: a word without spaces, then dim numbers.
                space = line.find(b" ")
                raw_words.append(line[:space])
                numbers.append(line[space + 1 :])
            elif not line:
                if blank_at is None:
                    blank_at = self.line_no + used - 1
            elif spaces > dim and blank_at is None and not _numeric_end(line, dim):
                # A word with spaces: the last dim fields are its vector.
                word, *fields = line.rsplit(b" ", dim)
                raw_words.append(word)
                numbers.append(b" ".join(fields))
            else:
                self._fail(lines[:used], errors)
        values = _parse_numbers(np, numbers, dim)
        if values is None or values.shape != (len(numbers), dim):
            self._fail(lines[:used], errors)
        # One decode for the block ("\n" is in no word: words are split off lines).
        try:
            words = b"\n".join(raw_words).decode("utf-8", errors).split("\n")
        except UnicodeDecodeError:
            self._fail(lines[:used], errors)
        self.line_no += used
        self.blank_at = blank_at
        if not raw_words:
            return [], values, used
        return words, values, used

    def check_blank(
        self, lines: list[bytes], carry: bytes, handle: BinaryIO, header_rows: int | None
    ) -> None:
        """Raise unless ``lines``, ``carry`` and the rest of the file are all whitespace."""
        rest = [*lines, carry]
        line_no = self.line_no
        while True:
            for number, line in enumerate(rest, start=line_no):
                if line.strip():
                    self._extra_row(number, header_rows)
            line_no += len(rest) - 1
            chunk = handle.read(BLOCK_BYTES)
            if not chunk:
                return
            rest = (rest[-1] + chunk).split(b"\n")

    def _extra_row(self, number: int, header_rows: int | None) -> NoReturn:
        if header_rows is None:
            raise ModelError(f"{self.path}: changed while being read (more rows than counted)")
        raise ModelError(
            f"{self.path}:{number}: more rows than the {header_rows} the header declares"
        )

    def _fail(self, lines: list[bytes], errors: str) -> NoReturn:
        """Raise ModelError for the first malformed line of ``lines`` (the block so far)."""
        blank_at = self.blank_at
        for number, line in enumerate(lines, start=self.line_no):
            line = line.rstrip()
            if not line:
                blank_at = blank_at or number
                continue
            if blank_at is not None:
                raise ModelError(f"{self.path}:{blank_at}: blank line")
            reason = _line_error(line, self.dim, errors)
            if reason is not None:
                raise ModelError(f"{self.path}:{number}: {reason}")
        # Unreachable unless numpy's parser and _NUMBER disagree on some field.
        raise ModelError(f"{self.path}:{self.line_no}: unreadable numbers in lines from here")


def _parse_numbers(np, numbers: list[bytes], dim: int) -> np.ndarray | None:
    """``numbers`` (lines of space-separated numbers) as float64 rows, None if any is bad.

    float64 first, as gensim does (``float`` of each field, then float32). numpy's C
    ``loadtxt`` is strict where it matters here: an empty field (two spaces in a row) or a
    line with another count of numbers is an error, never a shifted row.
    """
    if not numbers:
        return np.empty((0, dim))
    try:
        return np.loadtxt(numbers, dtype=np.float64, delimiter=" ", comments=None, ndmin=2)
    except ValueError:
        return None


def _numeric_end(line: bytes, dim: int) -> bool:
    """Whether a line with more than ``dim + 1`` fields has a number just before its vector.

    Such a line is a row with too many numbers (or a file with the wrong DIM), not a word
    with spaces: taking the extra numbers into the word would load garbage silently.
    """
    head = line.rsplit(b" ", dim)[0]
    return b" " in head and _NUMBER.fullmatch(head.rsplit(b" ", 1)[1]) is not None


def _line_error(line: bytes, dim: int, errors: str = "strict") -> str | None:
    """Why a non-blank, right-stripped text line is no row of ``dim`` numbers (None if it is)."""
    fields = line.split(b" ")
    found = f"expected {dim} numbers after the word, found {len(fields) - 1}"
    if len(fields) - 1 < dim:
        return found
    word, numbers = b" ".join(fields[:-dim]), fields[-dim:]
    for field in numbers:
        if not field:
            return "empty field (two spaces in a row)"
        if not _NUMBER.fullmatch(field):
            return f"{_show(field)} is not a number"
    if _numeric_end(line, dim):
        return found
    try:
        word.decode("utf-8", errors)
    except UnicodeDecodeError:
        return f"word {_show(word)} is not valid UTF-8"
    return None


def _read_binary(
    path: Path, handle: BinaryIO, start: _Start, limit: int | None, errors: str
) -> tuple[list[str], np.ndarray]:
    import numpy as np

    dim, declared = start.dim, start.header_rows
    rows = declared if limit is None else min(declared, limit)
    row_bytes = 4 * dim
    # Filled in place with each row's bytes: little-endian float32 whatever the machine.
    vectors = np.empty((rows, dim), dtype="<f4")
    out = memoryview(vectors.reshape(-1).view(np.uint8))
    words: list[str] = []
    handle.seek(start.data_offset)
    buffer, view = b"", memoryview(b"")
    base = start.data_offset  # file offset of buffer[0]
    pos = 0  # where the next row starts in buffer
    row = reported = 0  # rows read, and told to a progress bar
    while row < rows:
        space = buffer.find(b" ", pos)
        if space == -1 or len(buffer) - space - 1 < row_bytes:
            if space == -1 and len(buffer) - pos > MAX_WORD_BYTES:
                raise ModelError(
                    f"{path}: row {row + 1} (byte {base + pos}): no space ends the word "
                    f"within {MAX_WORD_BYTES} bytes; not word2vec binary rows"
                )
            progress.advance(row - reported)
            reported = row
            more = handle.read(BLOCK_BYTES)
            if not more:
                _binary_eof(path, buffer[pos:], row, base + pos, declared, space - pos, row_bytes)
            base += pos
            buffer = buffer[pos:] + more
            view, pos = memoryview(buffer), 0
            continue
        # gensim strips newlines before a word: the optional "\n" ending the previous row.
        raw = buffer[pos:space].lstrip(b"\n")
        try:
            words.append(raw.decode("utf-8", errors))
        except UnicodeDecodeError:
            at = base + space - len(raw)
            raise ModelError(
                f"{path}: row {row + 1} (byte {at}): word {_show(raw)} is not valid UTF-8"
            ) from None
        out[row * row_bytes : (row + 1) * row_bytes] = view[space + 1 : space + 1 + row_bytes]
        pos = space + 1 + row_bytes
        row += 1
    progress.advance(rows - reported)
    if limit is None:
        rest, offset = buffer[pos:], base + pos
        while True:
            if rest.strip():
                skip = len(rest) - len(rest.lstrip())
                raise ModelError(
                    f"{path}: row {declared + 1} (byte {offset + skip}): data after the "
                    f"{declared} rows the header declares"
                )
            offset += len(rest)
            rest = handle.read(BLOCK_BYTES)
            if not rest:
                break
    return words, vectors.astype(np.float32, copy=False)


def _binary_eof(
    path: Path, rest: bytes, row: int, offset: int, declared: int, word_len: int, row_bytes: int
) -> NoReturn:
    """Raise ModelError for a binary file that ended at row ``row + 1`` (``rest`` unread)."""
    where = f"{path}: row {row + 1} (byte {offset})"
    if not rest.strip():
        raise ModelError(
            f"{where}: truncated: the header declares {declared} rows, the file ends after {row}"
        )
    if word_len < 0:
        raise ModelError(f"{where}: cut short: no space after the word")
    have = len(rest) - word_len - 1
    raise ModelError(f"{where}: cut short: {have} of the {row_bytes} bytes of its vector")


# --------------------------------------------------------------------------------------------
# The parse, kept in embinspect's cache
# --------------------------------------------------------------------------------------------

# The layout of an entry and the parse it holds: entries of another are never read (and
# `embinspect cache ls` calls them outdated). Raise it when either changes.
CACHE_FORMAT = 1
# A smaller file parses in milliseconds: its parse is not worth an entry.
CACHE_MIN_BYTES = 1024 * 1024
# The key hashes this much of the file's start and of its end.
EDGE_BYTES = 1024 * 1024
# The progress steps of a file's rows: parsed, or checked in the cache, and kept there.
PARSING = "Parsing word vectors"
CHECKING = "Checking the cached word vectors"
KEEPING = "Keeping the parsed word vectors in the cache"
# An entry's two arrays: the float32 rows, and the words as UTF-8 bytes.
VECTORS_ARRAY, WORDS_ARRAY = "vectors", "words"
# How the words are written: one a line ("\n" is in no word of a text file), or a JSON list
# (a binary file's word may hold "\n").
WORDS_AS_LINES, WORDS_AS_JSON = "lines", "json"
NOT_YET = "none yet: the first command that reads its rows keeps them"
UNUSABLE = "none usable: the next command that reads its rows parses it again and keeps that"


def file_key(path: Path) -> dict[str, Any]:
    """What a parse of ``path`` is kept under: its resolved path, size, mtime and ctime (ns),
    the SHA-256 of its first and last ``EDGE_BYTES``, and ``CACHE_FORMAT``. A file written
    again has a new mtime and ctime (a copy with ``cp -p`` or ``rsync -t`` keeps the mtime,
    not the ctime), and the digest is there for file systems whose clocks are coarse.
    Raises OSError when the file cannot be read, or is not a regular file (opened without
    blocking: a FIFO a record names must not hang ``cache ls`` waiting for a writer)."""
    resolved = path.resolve()
    descriptor = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with open(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(resolved))
        digest = hashlib.sha256(handle.read(EDGE_BYTES))
        if info.st_size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, info.st_size - EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return {
        "path": str(resolved),
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
        "edges_sha256": digest.hexdigest(),
        "format": CACHE_FORMAT,
    }


def cache_entry_path(resolved: str) -> Path:
    """Where the parse of the file at ``resolved`` (a resolved path) is kept: one entry a
    file, replaced when the file changes."""
    name = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cached_file(WORD_VECTORS, f"{name}.safetensors")


@dataclass
class WordVectorCache:
    """A word-vector file's place in embinspect's cache.

    ``key``: what its parse is kept under (``file_key``), None when it is not kept at all
    (``reason`` says why: a small file, the cache turned off); ``entry``: the entry's
    file; ``kept`` and ``shape``: the entry found there for the file as it is now (its
    record and sizes checked, its digest not yet) and the shape it records, or None;
    ``reason``: why there is none, in words, for ``info``.
    """

    file: Path
    key: dict[str, Any] | None = None
    entry: Path | None = None
    kept: ArraysEntry | None = None
    shape: WordVectorShape | None = None
    reason: str | None = None
    untrusted: str | None = None  # why the entry found cannot be used, when it cannot

    def note_untrusted(self, reading_rows: bool) -> None:
        """The note naming an entry found that cannot be used, once: a command that reads
        the rows parses the file again; ``info``, which reads none, uses nothing."""
        if self.untrusted is None or self.entry is None:
            return
        then = "parsing the file again" if reading_rows else "not used (info parses nothing)"
        _note_untrusted(self.file, self.entry, self.untrusted, then)
        self.untrusted = None

    @classmethod
    def find(cls, path: Path) -> WordVectorCache:
        """The cache's entry for ``path`` as it is now, looked up by its key: stat, 2 MB
        read and hashed, the entry's header read (no numpy)."""
        if derived_cache_off():
            return cls(path, reason=f"turned off ({NO_CACHE})")
        try:
            key = file_key(path)
        except OSError as err:
            return cls(path, reason=f"the file cannot be read to key it ({brief(err)})")
        if key["size"] < CACHE_MIN_BYTES:
            return cls(path, reason="none: a file under 1 MiB is parsed every time")
        entry = cache_entry_path(key["path"])
        cache = cls(path, key, entry, reason=NOT_YET)
        found, untrusted = read_arrays_entry(entry)
        if untrusted is not None:
            cache.reason, cache.untrusted = UNUSABLE, untrusted
            return cache
        if found is None:
            return cache
        if found.record["source"] != key:
            cache.reason = "none for the file as it is now (it changed since it was kept)"
            return cache
        shape = _kept_shape(found)
        if shape is None:
            cache.reason, cache.untrusted = UNUSABLE, "its record does not describe its arrays"
            return cache
        cache.kept, cache.shape, cache.reason = found, shape, None
        return cache

    def read(self) -> WordVectors | None:
        """The kept rows (mapped from the entry, copy-on-write) and words, after the
        entry's SHA-256 is checked on the file that is then mapped; None (and a note)
        when it does not check out, or no longer describes the file."""
        import numpy as np

        if self.kept is None or self.entry is None or self.shape is None:
            return None
        try:
            with open_arrays_verified(self.entry, CHECKING) as (handle, entry):
                shape = _kept_shape(entry)
                if entry.record["source"] != self.key or shape != self.shape:
                    raise Untrusted("it was replaced by an entry of another file")
                vectors_at = entry.tensors[VECTORS_ARRAY]
                words_at = entry.tensors[WORDS_ARRAY]
                handle.seek(words_at.offset)
                words = _unpack_words(
                    handle.read(words_at.nbytes), entry.record["facts"]["words"], shape.rows
                )
                vectors = np.memmap(
                    handle,
                    dtype="<f4",
                    mode="c",
                    offset=vectors_at.offset,
                    shape=(shape.rows, shape.dim),
                )
        except FileNotFoundError:
            return None  # removed since it was found (cache rm): parsed again
        except OSError as err:
            _note_untrusted(self.file, self.entry, f"unreadable ({brief(err)})")
            return None
        except Untrusted as untrusted:
            _note_untrusted(self.file, self.entry, untrusted.reason)
            return None
        if sys.byteorder != "little":
            vectors = vectors.astype(np.float32)
        return WordVectors(shape.format, words, vectors)

    def keep(self, loaded: WordVectors, shape: WordVectorShape) -> bool:
        """Keep a parse of the file, if the file is still what it was keyed as (it did not
        change while it was parsed). False when it is not kept."""
        import numpy as np

        if self.key is None or self.entry is None:
            return False
        try:
            if file_key(self.file) != self.key:
                return False
        except OSError:
            return False
        blob, encoding = _pack_words(loaded.words)
        vectors = np.ascontiguousarray(loaded.vectors, dtype="<f4")
        facts = {
            "format": shape.format,
            "rows": shape.rows,
            "dim": shape.dim,
            "header_rows": shape.header_rows,
            "compressed": shape.compressed,
            "words": encoding,
        }
        key = self.key
        provenance = {"path": key["path"], "size": key["size"], "mtime_ns": key["mtime_ns"]}
        arrays = {
            VECTORS_ARRAY: ("F32", vectors.shape, vectors),
            WORDS_ARRAY: ("U8", (len(blob),), blob),
        }
        with progress.task(KEEPING):
            return keep_derived_arrays(self.entry, arrays, key, provenance, facts)


def _note_untrusted(
    path: Path, entry: Path, reason: str, then: str = "parsing the file again"
) -> None:
    note(f"the cached parse of {path} ({entry}) cannot be used: {reason}; {then}")


def _kept_shape(entry: ArraysEntry) -> WordVectorShape | None:
    """The shape an entry's record gives, when its arrays are what that shape says."""
    facts = entry.record["facts"]
    rows, dim, header_rows = facts.get("rows"), facts.get("dim"), facts.get("header_rows")
    vectors, words = entry.tensors.get(VECTORS_ARRAY), entry.tensors.get(WORDS_ARRAY)
    if (
        facts.get("format") not in (WORD2VEC_TEXT, WORD2VEC_BINARY, GLOVE)
        or type(rows) is not int
        or type(dim) is not int
        or rows < 1
        or dim < 1
        or not (header_rows is None or type(header_rows) is int)
        or type(facts.get("compressed")) is not bool
        or facts.get("words") not in (WORDS_AS_LINES, WORDS_AS_JSON)
        or vectors is None
        or words is None
        or len(entry.tensors) != 2
        or (vectors.dtype, vectors.shape) != ("F32", (rows, dim))
        or (words.dtype, len(words.shape)) != ("U8", 1)
    ):
        return None
    return WordVectorShape(facts["format"], rows, dim, header_rows, facts["compressed"])


def _pack_words(words: list[str]) -> tuple[bytes, str]:
    """The words as bytes: one a line (the fastest to read back: 400,000 words in 40 ms)
    unless a word holds a newline, then a JSON list."""
    joined = "\n".join(words)
    if words and joined.count("\n") == len(words) - 1:
        return joined.encode("utf-8"), WORDS_AS_LINES
    return json.dumps(words, ensure_ascii=False).encode("utf-8"), WORDS_AS_JSON


def _unpack_words(blob: bytes, encoding: str, rows: int) -> list[str]:
    try:
        lines = encoding == WORDS_AS_LINES
        words = blob.decode("utf-8").split("\n") if lines else json.loads(blob)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Untrusted("its words do not read back") from None
    if not isinstance(words, list) or len(words) != rows:
        raise Untrusted(f"it holds other than {rows:,} words")
    if encoding == WORDS_AS_JSON and not all(isinstance(word, str) for word in words):
        raise Untrusted("its words do not read back")
    return words


def locate_word_vectors(path: Path) -> tuple[WordVectorShape, WordVectorCache]:
    """A word-vector file's shape (what ``info`` shows) and its place in the cache: the
    shape is the kept entry's when there is one for the file as it is now (no newline
    count, no decompression), else ``word_vector_shape``'s."""
    cache = WordVectorCache.find(path)
    if cache.shape is not None:
        return cache.shape, cache
    return word_vector_shape(path), cache


def load_located(path: Path, shape: WordVectorShape, cache: WordVectorCache) -> WordVectors:
    """The rows and words of a file ``locate_word_vectors`` found: mapped from the cache
    when it holds them (and they check out), else parsed and kept there."""
    cache.note_untrusted(reading_rows=True)
    kept = cache.read()
    if kept is not None:
        return kept
    from_entry = cache.shape is not None  # the shape came from an entry that did not check out
    with progress.task(PARSING, total=shape.rows):
        loaded = load_word_vectors(path, counted=None if from_entry else shape.rows)
    if loaded.vectors.shape != (shape.rows, shape.dim):
        if from_entry and cache.entry is not None:
            cache.entry.unlink(missing_ok=True)
            raise ModelError(
                f"{path}: holds {loaded.vectors.shape[0]:,} rows of {loaded.vectors.shape[1]}, "
                f"not the {shape.rows:,} of {shape.dim} a damaged cache entry gave (removed: "
                "run the command again)"
            )
        # The file changed between reading its header and its rows.
        raise ModelError(
            f"{path}: holds {loaded.vectors.shape[0]:,} rows of "
            f"{loaded.vectors.shape[1]}, not the {shape.rows:,} of "
            f"{shape.dim} its start promised"
        )
    cache.keep(loaded, shape)
    return loaded
