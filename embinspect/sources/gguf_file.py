"""Read a GGUF file's header (llama.cpp, Ollama): metadata and tensor layout, no tensor data.

Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), little-endian:
``GGUF``, version (u32, 2 or 3), tensor count and metadata count (u64), then metadata
``key, type, value`` entries, then per tensor ``name, n_dims, dims (ggml order: fastest
axis first), type, offset``; the tensor data starts at the next multiple of
``general.alignment`` (32 by default), and each offset counts from there.

Pure Python over a read-only memory map, like ``safetensors_header``: ``info`` must not
import numpy, torch or gguf, and a 5 GB file is answered from its first megabytes. Big
arrays (a vocabulary of 150k tokens) are only walked past and kept as ``GgufArray``;
``GgufFile.array`` reads one in full when a command needs it.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embinspect.errors import ModelError, reading
from embinspect.sources.tensor import GGML_TYPES, GGUF_MAGIC, TensorHeader

GGUF_VERSIONS = (2, 3)  # v1 (2023) counted in 32 bits; nothing in use still writes it
DEFAULT_ALIGNMENT = 32
# Arrays longer than this are walked past and read again only when asked for.
INLINE_ARRAY_ITEMS = 256
MAX_DIMS = 4  # GGML_MAX_DIMS
# Arrays may hold arrays; real files nest one level at most (per-layer lists).
MAX_NESTING = 8


# Metadata value types: fixed-size ones by struct format; 8 is a string, 9 an array.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class GgufArray:
    """A metadata array left unread: ``count`` items of value type ``item_type`` at ``offset``."""

    item_type: int
    count: int
    offset: int


@dataclass
class GgufFile:
    """One GGUF file's header: ``metadata`` by key, ``tensors`` by name (torch-order shapes)."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorHeader]
    data_start: int
    file_size: int
    metadata_end: int  # the header's metadata is bytes [0, metadata_end) of the file

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_value(self, key: str) -> Any:
        """``{architecture}.{key}`` (``llama.context_length``), or None."""
        return self.metadata.get(f"{self.architecture}.{key}")

    def metadata_digest(self) -> str:
        """SHA-256 of the metadata bytes: names what was derived from them (a tokenizer)."""
        import hashlib

        with open(self.path, "rb") as handle:
            return hashlib.sha256(handle.read(self.metadata_end)).hexdigest()

    def string_array_length(self, key: str) -> int | None:
        """How many strings the metadata array ``key`` holds; None when it is absent or not
        an array of strings (a vocabulary stored as anything else is no vocabulary)."""
        value = self.metadata.get(key)
        if isinstance(value, GgufArray):
            return value.count if value.item_type == _STRING else None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return len(value)
        return None


# llama.cpp architecture names that differ from transformers' model_type.
_MODEL_TYPES = {
    "gptneox": "gpt_neox", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe",
    "deepseek2": "deepseek_v2", "command-r": "cohere", "gemma3": "gemma3_text",
}  # fmt: skip
# llama's file types (general.file_type): what most tensors of the file are stored as.
# llama.h's enum llama_ftype, names less LLAMA_FTYPE_MOSTLY_ (gguf's LlamaFileType agrees).
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    39: "NVFP4", 40: "Q1_0",
}  # fmt: skip


def gguf_config(gguf: GgufFile) -> dict[str, Any]:
    """The metadata under config.json's names, for what embinspect reads from a config:
    sizes, the position scheme (rope theta, rotated dims, context, scaling) and the model
    type. Values of the wrong type are left for ``embinspect.model.config`` to ignore."""
    arch = gguf.architecture or ""
    config: dict[str, Any] = {"model_type": _MODEL_TYPES.get(arch, arch)}
    renames = {
        "embedding_length": "hidden_size",
        "attention.head_count": "num_attention_heads",
        "attention.key_length": "head_dim",
        "context_length": "max_position_embeddings",
        "rope.freq_base": "rope_theta",
        "vocab_size": "vocab_size",
    }
    for key, name in renames.items():
        value = gguf.arch_value(key)
        if value is not None:
            config[name] = value
    heads = config.get("num_attention_heads")
    if isinstance(heads, list):  # per-layer head counts (some hybrids): the largest
        config["num_attention_heads"] = heads = max(heads, default=None)
    rotated = gguf.arch_value("rope.dimension_count")
    if isinstance(rotated, int) and rotated > 0:
        head_dim = config.get("head_dim")
        hidden = config.get("hidden_size")
        if not isinstance(head_dim, int) and isinstance(hidden, int) and isinstance(heads, int):
            head_dim = hidden // heads if heads else None
        if isinstance(head_dim, int) and head_dim > 0:
            # llama.cpp writes rope.dimension_count only for rotary models (and leaves
            # freq_base out when it is its default of 10000): a factor says "rotary".
            config["partial_rotary_factor"] = rotated / head_dim
    scaling = {}
    for key, name, kind in (
        ("type", "rope_type", str),
        ("factor", "factor", float),
        ("original_context_length", "original_max_position_embeddings", float),
    ):
        value = gguf.arch_value(f"rope.scaling.{key}")
        if kind is str:
            keep = isinstance(value, str)
        else:  # a number: bool is none, and NaN (value != value) says nothing
            keep = type(value) in (int, float) and value == value
        if keep:
            scaling[name] = value
    if scaling and scaling.get("rope_type") != "none":
        config["rope_scaling"] = scaling
    return config


def is_gguf(path: Path) -> bool:
    """Whether a file starts with the GGUF magic (False when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path) -> GgufFile:
    """The header of a GGUF file; ModelError naming what is wrong when it is not one.

    Every tensor must lie inside the file and span the bytes its type and shape need, so
    later readers may trust the offsets (as ``safetensors_header.read_header`` does).
    """
    with reading(path, "a .gguf file"), _Cursor.open(path) as cursor:
        return _read(cursor, path, path.name)


def _read(cursor: _Cursor, path: Path, label: str) -> GgufFile:
    if cursor.size < 4 or cursor.data[:4] != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")
    cursor.pos = 4
    version = cursor.scalar(4, "the version")
    if version not in GGUF_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in GGUF_VERSIONS:
            raise ModelError(f"{path}: a big-endian GGUF file; embinspect reads little-endian")
        raise ModelError(f"{path}: GGUF version {version}; embinspect reads versions 2 and 3")
    tensor_count = cursor.scalar(10, "the tensor count")
    kv_count = cursor.scalar(10, "the metadata count")
    # Each entry takes at least 12 bytes: a count beyond that is a corrupt field.
    if kv_count * 12 > cursor.size or tensor_count * 24 > cursor.size:
        raise ModelError(f"{path}: corrupt GGUF header (counts larger than the file)")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string("a metadata key")
        value_type = cursor.scalar(4, f"the type of {key!r}")
        metadata[key] = cursor.value(value_type, key)
    metadata_end = cursor.pos
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment % 8:
        raise ModelError(f"{path}: corrupt GGUF header (general.alignment {alignment!r})")
    layout = []
    for _ in range(tensor_count):
        name = cursor.string("a tensor name")
        n_dims = cursor.scalar(4, f"the dimensions of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise ModelError(f"{path}: corrupt GGUF tensor entry for {name!r} ({n_dims} dims)")
        dims = [cursor.scalar(10, f"the shape of {name!r}") for _ in range(n_dims)]
        type_id = cursor.scalar(4, f"the type of {name!r}")
        offset = cursor.scalar(10, f"the offset of {name!r}")
        layout.append((name, dims, type_id, offset))
    data_start = -(-cursor.pos // alignment) * alignment
    tensors = {
        name: _tensor(path, label, name, dims, type_id, offset, data_start, cursor.size)
        for name, dims, type_id, offset in layout
    }
    return GgufFile(path, version, metadata, tensors, data_start, cursor.size, metadata_end)


def _tensor(
    path: Path, label: str, name: str, dims: list[int], type_id: int, offset: int,
    data_start: int, file_size: int,
) -> TensorHeader:  # fmt: skip
    ggml = GGML_TYPES.get(type_id)
    numel = 1
    for dim in dims:
        numel *= dim
    if ggml is None:
        # Unknown to us: listed (and refused if it is the table), never read.
        dtype, nbytes = f"GGML_TYPE_{type_id}", 0
    else:
        if dims[0] % ggml.block_size:
            raise ModelError(
                f"{path}: corrupt GGUF tensor entry for {name!r}: rows of {dims[0]} values do "
                f"not split into {ggml.name} blocks of {ggml.block_size}"
            )
        dtype, nbytes = ggml.name, numel // ggml.block_size * ggml.type_size
    if data_start + offset + nbytes > file_size:
        raise ModelError(f"{path}: truncated file: tensor {name!r} ends past the end of the file")
    return TensorHeader(
        name=name,
        dtype=dtype,
        shape=tuple(reversed(dims)),  # ggml lists the fastest axis first; torch last
        nbytes=nbytes,
        file=label,
        offset=data_start + offset,
        ggml_type=type_id,
    )


class _Cursor:
    """Reads little-endian values from a memory-mapped file, refusing to run past its end."""

    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data = data
        self.size = len(data)
        self.path = path
        self.pos = 0

    @classmethod
    def open(cls, path: Path) -> _Cursor:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        return cls(data, path)

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()

    def _take(self, count: int, what: str) -> int:
        start = self.pos
        if start + count > self.size:
            raise ModelError(
                f"{self.path}: truncated GGUF file: {what} ends past the end of the file"
            )
        self.pos = start + count
        return start

    def scalar(self, value_type: int, what: str) -> Any:
        form = _SCALAR[value_type]
        start = self._take(struct.calcsize(form), what)
        return struct.unpack_from(form, self.data, start)[0]

    def string(self, what: str) -> str:
        length = self.scalar(10, what)
        start = self._take(length, what)
        # Metadata is UTF-8 by the spec; a stray byte shows as U+FFFD rather than failing.
        return bytes(self.data[start : start + length]).decode("utf-8", errors="replace")

    def value(self, value_type: int, key: str, depth: int = 0) -> Any:
        if depth > MAX_NESTING:
            raise ModelError(f"{self.path}: corrupt GGUF metadata {key!r} (arrays nested too deep)")
        if value_type in _SCALAR:
            return self.scalar(value_type, repr(key))
        if value_type == _STRING:
            return self.string(repr(key))
        if value_type == _ARRAY:
            item_type = self.scalar(4, repr(key))
            count = self.scalar(10, repr(key))
            if item_type not in _SCALAR and item_type not in (_STRING, _ARRAY):
                raise ModelError(
                    f"{self.path}: corrupt GGUF metadata {key!r} (item type {item_type})"
                )
            if count <= INLINE_ARRAY_ITEMS:
                return self.array_items(item_type, count, key, depth)
            offset = self.pos
            self.skip_items(item_type, count, key, depth)
            return GgufArray(item_type, count, offset)
        raise ModelError(f"{self.path}: corrupt GGUF metadata {key!r} (value type {value_type})")

    def array_items(self, item_type: int, count: int, key: str, depth: int) -> list[Any]:
        if item_type in _SCALAR:
            form = _SCALAR[item_type]
            start = self._take(struct.calcsize(form) * count, repr(key))
            return list(struct.unpack_from(f"<{count}{form[1]}", self.data, start))
        return [self.value(item_type, key, depth + 1) for _ in range(count)]

    def skip_items(self, item_type: int, count: int, key: str, depth: int) -> None:
        if item_type in _SCALAR:
            self._take(struct.calcsize(_SCALAR[item_type]) * count, repr(key))
            return
        if item_type == _STRING:
            # A vocabulary is 100k+ strings: walk their lengths in a tight loop.
            data, pos, size, length_at = self.data, self.pos, self.size, _U64.unpack_from
            for _ in range(count):
                if pos + 8 > size:
                    break
                pos += 8 + length_at(data, pos)[0]
            else:
                if pos <= size:
                    self.pos = pos
                    return
            raise ModelError(
                f"{self.path}: truncated GGUF file: {key!r} ends past the end of the file"
            )
        for _ in range(count):
            self.value(item_type, key, depth + 1)
