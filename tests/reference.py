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


def ranked(scores: np.ndarray, k: int, exclude=(), allowed=None, ascending=False):
    """Top-k ids and scores from a float64 score vector: best first, ties by lower id."""
    order = np.lexsort((np.arange(len(scores)), scores if ascending else -scores))
    keep = []
    for i in map(int, order):  # best first: stop at the k-th kept, not at the last row
        if len(keep) == k:
            break
        if i not in exclude and (allowed is None or allowed[i]) and np.isfinite(scores[i]):
            keep.append(i)
    return keep, [float(scores[i]) for i in keep]


def cosines(table: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return (table @ vector) / (np.linalg.norm(table, axis=1) * np.linalg.norm(vector))


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def cos_add(table: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """gensim most_similar(positive=[a, c], negative=[b]): unit rows against the unit mean."""
    mean = unit((unit(a) - unit(b) + unit(c)) / 3)
    return (table / np.linalg.norm(table, axis=1, keepdims=True)) @ mean


def cos_mul(table: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """gensim most_similar_cosmul: prod((1 + cos(x, pos)) / 2) / ((1 + cos(x, neg)) / 2 + 1e-6)."""
    normed = table / np.linalg.norm(table, axis=1, keepdims=True)
    pos_a = (1 + normed @ unit(a)) / 2
    pos_c = (1 + normed @ unit(c)) / 2
    neg_b = (1 + normed @ unit(b)) / 2
    return pos_a * pos_c / (neg_b + 1e-6)
