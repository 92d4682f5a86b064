"""Read the JSON header of a ``.safetensors`` file without torch, numpy or the tensor data.

Layout (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N,
then N bytes of JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets"}``,
then the raw tensor bytes. ``info`` needs only the header, so this is all it reads.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from embinspect.errors import ModelError, reading
from embinspect.sources.tensor import DTYPE_BYTES, GGUF_MAGIC, PICKLE_MAGICS, TensorHeader

# Headers are small (a few hundred bytes per tensor); anything larger is a corrupt
# length field, and reading it would allocate gigabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_header(
    path: Path, file_label: str | None = None, file_size: int | None = None
) -> dict[str, TensorHeader]:
    """Return ``{tensor name: TensorHeader}`` for one safetensors file.

    ``file_size`` is the size of the whole file when ``path`` holds only its first bytes
    (a header fetched from the Hub by range request).

    Raises ModelError when the file is not a readable safetensors file (and says so
    plainly when it is a pickle, which embinspect never loads). Every tensor's bytes must
    lie inside the data section, match its shape, and overlap no other tensor's, so later
    readers may trust the offsets.
    """
    raw, file_size = _raw_header(path, file_size)
    return parse_header(raw, file_size, path, file_label or path.name)


def read_header_and_metadata(
    path: Path, strings: tuple[str, ...] = ()
) -> tuple[dict[str, TensorHeader], dict[str, str]]:
    """``read_header``'s tensors, and the header's ``__metadata__`` (its string values;
    {} when there is none), from one read. A key of ``strings`` whose value is not a
    string is a ModelError naming it (another key's is left out)."""
    raw, file_size = _raw_header(path, None)
    tensors = parse_header(raw, file_size, path, path.name)
    metadata = json.loads(raw).get("__metadata__")  # parse_header has checked the JSON
    if not isinstance(metadata, dict):
        return tensors, {}
    for key in strings:
        if key in metadata and not isinstance(metadata[key], str):
            raise ModelError(
                f"{path} (metadata {key}): a JSON {_json_kind(metadata[key])}, not a string "
                "(safetensors metadata values are strings)"
            )
    return tensors, {k: v for k, v in metadata.items() if isinstance(v, str)}


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    kinds = {dict: "object", list: "array", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _raw_header(path: Path, file_size: int | None) -> tuple[bytes, int]:
    """The header's JSON bytes, and the file's size (``file_size`` when given)."""
    with reading(path, "a .safetensors file"):
        file_size = os.path.getsize(path) if file_size is None else file_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if prefix.startswith(PICKLE_MAGICS):
                raise ModelError(refuse_pickle_message(path))
            if prefix.startswith(GGUF_MAGIC):
                raise ModelError(
                    f"{path}: is a GGUF file, not safetensors; give the .gguf file itself as MODEL"
                )
            if len(prefix) < 8:
                raise ModelError(f"{path}: not a safetensors file (only {file_size} bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
                raise ModelError(
                    f"{path}: not a safetensors file (header length {header_len} does not fit "
                    f"a {file_size}-byte file)"
                )
            raw = handle.read(header_len)
    return raw, file_size


def parse_header(
    raw: bytes, file_size: int, path: Path | str, label: str
) -> dict[str, TensorHeader]:
    """The tensors described by header bytes ``raw`` of a ``file_size``-byte file."""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise ModelError(f"{path}: unreadable safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: unreadable safetensors header (not a JSON object)")
    data_start = 8 + len(raw)
    data_size = file_size - data_start
    tensors: dict[str, TensorHeader] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensor, start, end = _parse_entry(path, label, name, entry, data_size, data_start)
        tensors[name] = tensor
        spans.append((start, end, name))
    spans.sort()
    for (_, end, name), (start, _, other) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ModelError(
                f"{path}: corrupt safetensors header: tensors {name!r} and {other!r} overlap"
            )
    return tensors


def _parse_entry(
    path: Path | str, label: str, name: str, entry: object, data_size: int, data_start: int
) -> tuple[TensorHeader, int, int]:
    bad = ModelError(f"{path}: unreadable safetensors header entry for {name!r}")
    if not isinstance(entry, dict):
        raise bad
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or not _is_count_list(shape) or not _is_count_list(offsets):
        raise bad
    if len(offsets) != 2 or offsets[0] > offsets[1]:
        raise bad
    start, end = offsets
    if end > data_size:
        raise ModelError(f"{path}: truncated file: tensor {name!r} ends past the end of the data")
    header = TensorHeader(
        name=name,
        dtype=dtype,
        shape=tuple(shape),
        nbytes=end - start,
        file=label,
        offset=data_start + start,
    )
    size = DTYPE_BYTES.get(dtype)
    if size is not None and header.numel * size != header.nbytes:
        raise ModelError(
            f"{path}: corrupt safetensors header: {name!r} is {dtype} of shape {list(shape)} "
            f"({header.numel * size} bytes) but its offsets span {header.nbytes} bytes"
        )
    return header, start, end


def _is_count_list(value: object) -> bool:
    """A JSON list of non-negative integers (``true`` is no count, though Python says int)."""
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


def refuse_pickle_message(path: Path | str) -> str:
    return (
        f"{path}: is a pickle checkpoint (PyTorch .bin/.pt); embinspect never unpickles "
        "files. Use the model's .safetensors weights instead"
    )
