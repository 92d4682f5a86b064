"""Independent readings of a checkpoint for tests to compare the CLI against.

These use safetensors' and the tokenizers' own APIs directly, never embinspect code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open


def shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    return [folder / "model.safetensors"]


def tensor_shapes(folder: Path) -> dict[str, tuple[str, list[int], str]]:
    """{tensor name: (safetensors dtype, shape, shard file name)} over all shards."""
    shapes = {}
    for path in shard_files(folder):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is no dict)
                sliced = handle.get_slice(name)
                shapes[name] = (sliced.get_dtype(), list(sliced.get_shape()), path.name)
    return shapes


def table(folder: Path, name: str) -> np.ndarray:
    """A whole tensor as float64 numpy, read with safetensors (bf16 through torch)."""
    for path in shard_files(folder):
        with safe_open(str(path), framework="pt") as handle:
            if name in handle.keys():  # noqa: SIM118
                return handle.get_tensor(name).double().numpy()
    raise KeyError(name)
