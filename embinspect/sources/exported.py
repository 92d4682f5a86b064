"""Tables that ``embinspect export`` writes, read back as MODEL: a ``.npy`` file with its
vocabulary beside it (``NAME.vocab.json``), and a ``.safetensors`` file whose metadata
holds its vocabulary (``embinspect.vocabulary``).

Both are one 2-D table whose row i is token ``tokens[i]``, with no tokenizer: queries are
looked up as the words of a word-vector file are (``model.tokenizer.WordKeys``). A
``.npy`` file is never handed to ``np.load``: its header is parsed here (a Python dict
literal, read with ``ast.literal_eval``, which evaluates no code), an array of Python
objects (a pickle) is refused, and its rows, raw C-order values after the header, are
mapped like a safetensors tensor's through a ``TensorHeader`` at their offset.
"""

from __future__ import annotations

import ast
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embinspect.errors import ModelError, reading
from embinspect.sources.safetensors_header import read_header_and_metadata
from embinspect.sources.tensor import TensorHeader

if TYPE_CHECKING:
    import numpy as np

NPY_MAGIC = b"\x93NUMPY"
# The key of a safetensors file's ``__metadata__`` that holds its vocabulary: a JSON list
# of strings, one per row of its one table. Two more keys say where the rows came from.
VOCABULARY_KEY = "embinspect.vocabulary"
SOURCE_KEY = "embinspect.source"
TENSOR_KEY = "embinspect.tensor"
# The one table of an exported file, as export names it in a safetensors file.
EXPORTED_TENSOR = "embeddings"
# A .npy header is a few hundred bytes; a longer one is hostile (literal_eval of megabytes).
MAX_NPY_HEADER_BYTES = 64 * 1024
# What a vocabulary file may weigh: a megabyte, and a kilobyte per row (tokens are short).
VOCABULARY_BASE_BYTES = 1024 * 1024
VOCABULARY_ROW_BYTES = 1024

# The .npy dtypes read (little-endian floats), as safetensors names them.
_NPY_DTYPES = {"<f4": "F32", "<f8": "F64", "<f2": "F16"}
_NPY_ITEMSIZE = {"F32": 4, "F64": 8, "F16": 2}


@dataclass
class ExportedTable:
    """One exported table: its header (name, dtype, shape, where its bytes lie in
    ``path``), and its vocabulary when it has one (``tokens()``, read on first use)."""

    path: Path
    format: str  # "npy" or "safetensors"
    header: TensorHeader
    vocabulary: str | None  # where the tokens are: a file, or the safetensors metadata key
    _read_tokens: Callable[[], list[str]] | None = field(default=None, repr=False)
    _tokens: list[str] | None = field(default=None, repr=False)

    def tokens(self) -> list[str] | None:
        """Row i's token is ``tokens()[i]``; None when the table has no vocabulary."""
        if self._read_tokens is None:
            return None
        if self._tokens is None:
            self._tokens = self._read_tokens()
        return self._tokens


def vocabulary_path(npy: Path) -> Path:
    """Where a ``.npy`` file's vocabulary lies: ``NAME.npy`` -> ``NAME.vocab.json``."""
    return npy.with_name(npy.name.removesuffix(".npy") + ".vocab.json")


def is_npy(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(NPY_MAGIC)) == NPY_MAGIC


def open_npy(path: Path) -> ExportedTable:
    """A ``.npy`` file of one 2-D little-endian float table, and its ``NAME.vocab.json``
    when there is one; ModelError for anything else."""
    header = read_npy_header(path)
    vocab = vocabulary_path(path)
    if not vocab.is_file():
        return ExportedTable(path, "npy", header, None)
    rows = header.shape[0]
    return ExportedTable(path, "npy", header, vocab.name, lambda: read_vocabulary_file(vocab, rows))


def read_npy_header(path: Path) -> TensorHeader:
    """The table of a ``.npy`` file as a ``TensorHeader`` (named ``vectors``) whose
    ``offset`` is where its rows begin."""
    with reading(path, "a .npy file"):
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            start = handle.read(12 + MAX_NPY_HEADER_BYTES)
    dtype, shape, data_start = _npy_layout(start, size, str(path), (2,))
    rows, dim = shape
    nbytes = rows * dim * _NPY_ITEMSIZE[dtype]
    return TensorHeader("vectors", dtype, (rows, dim), nbytes, path.name, data_start)


def read_npy(data: bytes, label: str, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """The array of a whole ``.npy`` file's bytes ``data``, never through ``np.load``: its
    header checked as ``read_npy_header`` checks a table's (little-endian float16, 32 or
    64, C order, no objects or records, a header of at most ``MAX_NPY_HEADER_BYTES``), its
    dimensions one of ``ndims``, and its values exactly the bytes that follow the header
    (a shape that promises more, or less, than ``data`` holds is refused before anything
    is allocated: memory stays at ``len(data)``). A read-only array of the stored dtype;
    ModelError naming ``label`` for anything else (a caller reading a user's file turns it
    into its own error)."""
    import numpy as np

    dtype, shape, data_start = _npy_layout(data, len(data), label, ndims)
    itemsize = _NPY_ITEMSIZE[dtype]
    count = math.prod(shape)
    if len(data) - data_start != count * itemsize:
        raise ModelError(
            f"{label}: .npy shape {shape} needs {count * itemsize:,} bytes after its header, "
            f"the file has {len(data) - data_start:,}"
        )
    descr = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
    return np.frombuffer(data, dtype=descr, count=count, offset=data_start).reshape(shape)


def _npy_layout(
    start: bytes, size: int, label: str, ndims: tuple[int, ...]
) -> tuple[str, tuple[int, ...], int]:
    """What a ``.npy`` file's first bytes ``start`` (at least its header) say about a file
    of ``size`` bytes: its dtype (as safetensors names it), its shape (of one of ``ndims``
    dimensions) and where its values begin; ModelError for anything embinspect does not
    read, or a file too short for the values its shape promises."""
    if not start.startswith(NPY_MAGIC) or len(start) < 10:
        raise ModelError(f"{label}: not a .npy file (no \\x93NUMPY magic)")
    major = start[6]
    if major == 1:
        (length,) = struct.unpack("<H", start[8:10])
        offset = 10
    elif major in (2, 3):
        (length,) = struct.unpack("<I", start[8:12].ljust(4, b"\0"))
        offset = 12
    else:
        raise ModelError(f"{label}: .npy format version {major} is not one numpy writes")
    if length > MAX_NPY_HEADER_BYTES:
        raise ModelError(f"{label}: .npy header of {length:,} bytes (hostile or corrupt)")
    raw = start[offset : offset + length]
    if len(raw) < length:
        raise ModelError(f"{label}: truncated .npy file (its header is cut short)")
    described = _npy_dict(label, raw, "latin1" if major < 3 else "utf-8")
    descr = described.get("descr")
    what = "table" if ndims == (2,) else "array"
    if descr in ("|O", "O", "<O", ">O") or not isinstance(descr, str):
        raise ModelError(
            f"{label}: a .npy array of Python objects or records (a pickle); embinspect never "
            f"unpickles: save the {what} as float32 (np.save(path, {what}.astype('float32')))"
        )
    if descr not in _NPY_DTYPES:
        raise ModelError(
            f"{label}: .npy dtype {descr!r}; embinspect reads little-endian float32, float64 "
            "and float16 (<f4, <f8, <f2)"
        )
    if described.get("fortran_order") is not False:
        raise ModelError(f"{label}: a Fortran-order .npy array; save it in C order")
    shape = described.get("shape")
    counts = isinstance(shape, tuple) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    )
    if not counts or len(shape) not in ndims:
        kinds = " or ".join(f"{n}-D" for n in ndims)
        raise ModelError(f"{label}: .npy array of shape {shape!r} is not a {kinds} {what}")
    dtype = _NPY_DTYPES[descr]
    data_start = offset + length
    nbytes = math.prod(shape) * _NPY_ITEMSIZE[dtype]
    if data_start + nbytes > size:
        sizes = " × ".join(f"{n:,}" for n in shape)
        raise ModelError(
            f"{label}: truncated .npy file: {sizes} {dtype} needs {nbytes:,} bytes "
            f"after its header, the file has {max(0, size - data_start):,}"
        )
    return dtype, shape, data_start


def _npy_dict(label: str, raw: bytes, encoding: str) -> dict:
    try:
        described = ast.literal_eval(raw.decode(encoding))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ModelError(f"{label}: unreadable .npy header (not a dict literal)") from None
    if not isinstance(described, dict):
        raise ModelError(f"{label}: unreadable .npy header (not a dict literal)")
    return described


def read_vocabulary_file(path: Path, rows: int) -> list[str]:
    """The tokens of ``NAME.vocab.json``: a JSON list of ``rows`` strings."""
    limit = VOCABULARY_BASE_BYTES + rows * VOCABULARY_ROW_BYTES
    with reading(path, "a vocabulary file (JSON)"):
        size = path.stat().st_size
        if size > limit:
            raise ModelError(
                f"{path}: {size:,} bytes is too large for the vocabulary of {rows:,} rows "
                f"(at most {limit:,})"
            )
        raw = path.read_bytes()
    return parse_tokens(raw, rows, str(path))


def parse_tokens(raw: bytes | str, rows: int, where: str) -> list[str]:
    """A vocabulary as export writes it, a JSON list of ``rows`` strings; ModelError
    naming ``where`` for anything else."""
    try:
        tokens = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(f"{where}: the vocabulary is not valid JSON") from None
    if not isinstance(tokens, list):
        raise ModelError(f"{where}: the vocabulary is not a JSON list of tokens")
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise ModelError(
                f"{where}: vocabulary entry {index} is {type(token).__name__}, not a string"
            )
    if len(tokens) != rows:
        raise ModelError(
            f"{where}: the vocabulary has {len(tokens):,} tokens for {rows:,} rows; "
            "one token per row"
        )
    return tokens


def open_safetensors_with_vocabulary(path: Path) -> ExportedTable | None:
    """The table of a ``.safetensors`` file whose metadata holds a vocabulary
    (``VOCABULARY_KEY``), or None when it holds none (an ordinary checkpoint file)."""
    tensors, metadata = read_header_and_metadata(path, strings=(VOCABULARY_KEY,))
    if VOCABULARY_KEY not in metadata:
        return None
    tables = [h for h in tensors.values() if len(h.shape) == 2]
    if len(tables) != 1:
        raise ModelError(
            f"{path}: its metadata holds a vocabulary ({VOCABULARY_KEY}) for one 2-D table, "
            f"but it has {len(tables)}"
        )
    header = tables[0]
    rows = header.shape[0]
    raw = metadata[VOCABULARY_KEY]
    where = f"{path} (metadata {VOCABULARY_KEY})"
    return ExportedTable(
        path, "safetensors", header, VOCABULARY_KEY, lambda: parse_tokens(raw, rows, where)
    )
