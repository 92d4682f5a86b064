"""Read the JSON header of a ``.safetensors`` file without torch, numpy or the tensor data.

Layout (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N,
then N bytes of JSON mapping each tensor name to ``{"dtype", "shape", "data_offsets"}``,
then the raw tensor bytes. ``info`` needs only the header, so this is all it reads.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from embinspect.errors import ModelError

# Headers are small (a few hundred bytes per tensor); anything larger is a corrupt
# length field, and reading it would allocate gigabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Bytes per element of the storage dtypes of real-valued tensors; embeddings are
# always one of these.
FLOAT_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = frozenset(FLOAT_DTYPE_BYTES)

# First bytes of the pickle-based formats we refuse to open (zip of torch.save, raw pickle).
PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class TensorHeader:
    """One tensor as the header describes it; ``nbytes`` comes from its data offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str  # file name relative to the checkpoint root, as in an index weight_map
    offset: int = 0  # where the tensor's bytes start in the file

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def read_header(
    path: Path, file_label: str | None = None, file_size: int | None = None
) -> dict[str, TensorHeader]:
    """Return ``{tensor name: TensorHeader}`` for one safetensors file.

    ``file_size`` is the size of the whole file when ``path`` holds only its first bytes
    (a header fetched from the Hub by range request).

    Raises ModelError when the file is not a readable safetensors file (and says so
    plainly when it is a pickle, which embinspect never loads).
    """
    label = file_label or path.name
    try:
        file_size = os.path.getsize(path) if file_size is None else file_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if prefix.startswith(PICKLE_MAGICS):
                raise ModelError(refuse_pickle_message(path))
            if len(prefix) < 8:
                raise ModelError(f"{path}: not a safetensors file (only {file_size} bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
                raise ModelError(
                    f"{path}: not a safetensors file (header length {header_len} does not fit "
                    f"a {file_size}-byte file)"
                )
            raw = handle.read(header_len)
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, expected a .safetensors file") from None
    except PermissionError:
        raise ModelError(f"{path}: permission denied") from None
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: unreadable safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: unreadable safetensors header (not a JSON object)")
    data_size = file_size - 8 - header_len
    tensors: dict[str, TensorHeader] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _parse_entry(path, label, name, entry, data_size, 8 + header_len)
    return tensors


def _parse_entry(
    path: Path, label: str, name: str, entry: object, data_size: int, data_start: int
) -> TensorHeader:
    try:
        dtype = entry["dtype"]  # type: ignore[index]
        shape = tuple(int(dim) for dim in entry["shape"])  # type: ignore[index]
        start, end = (int(offset) for offset in entry["data_offsets"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise ModelError(f"{path}: unreadable safetensors header entry for {name!r}") from None
    if not isinstance(dtype, str) or any(dim < 0 for dim in shape) or not 0 <= start <= end:
        raise ModelError(f"{path}: unreadable safetensors header entry for {name!r}")
    if end > data_size:
        raise ModelError(f"{path}: truncated file: tensor {name!r} ends past the end of the data")
    return TensorHeader(
        name=name,
        dtype=dtype,
        shape=shape,
        nbytes=end - start,
        file=label,
        offset=data_start + start,
    )


def refuse_pickle_message(path: Path | str) -> str:
    return (
        f"{path}: is a pickle checkpoint (PyTorch .bin/.pt); embinspect never unpickles "
        "files. Use the model's .safetensors weights instead"
    )
