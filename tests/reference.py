"""Independent readings of a checkpoint for tests to compare the CLI against.

These use safetensors' and the tokenizers' own APIs directly, never embinspect code.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
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


# --- any scale: rows normalised by their own maximum, and exact rational arithmetic -----


def by_max_abs(rows: np.ndarray) -> np.ndarray:
    """Each row (n, dim), or one vector, over its own largest |value|: float64 squares and
    products of the result neither overflow nor underflow, whatever the row's scale (all-zero
    rows stay zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    biggest = np.abs(rows).max(axis=-1, keepdims=True)
    return rows / np.where(biggest == 0, 1.0, biggest)


def scaled_cosines(table: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosines computed on rows normalised by their own maximum (cosine is scale-invariant)."""
    return cosines(by_max_abs(table), by_max_abs(vector))


def scaled_unit(vector: np.ndarray) -> np.ndarray:
    return unit(by_max_abs(vector))


def scaled_cos_add(table, a, b, c) -> np.ndarray:
    """3CosAdd (``cos_add``) with every vector normalised by its maximum first."""
    return cos_add(by_max_abs(table), by_max_abs(a), by_max_abs(b), by_max_abs(c))


def scaled_cos_mul(table, a, b, c) -> np.ndarray:
    """3CosMul (``cos_mul``) with every vector normalised by its maximum first."""
    return cos_mul(by_max_abs(table), by_max_abs(a), by_max_abs(b), by_max_abs(c))


def exact_dots(table: np.ndarray, vector: np.ndarray) -> list[Fraction]:
    """Each row's dot product with ``vector`` as an exact rational (no rounding at all)."""
    q = [Fraction(float(v)) for v in vector]
    return [sum((Fraction(float(x)) * y for x, y in zip(row, q, strict=True)), Fraction(0))
            for row in table]  # fmt: skip


def exact_squared_distances(table: np.ndarray, vector: np.ndarray) -> list[Fraction]:
    """|row - vector|² of each row, exact."""
    q = [Fraction(float(v)) for v in vector]
    return [sum(((Fraction(float(x)) - y) ** 2 for x, y in zip(row, q, strict=True)), Fraction(0))
            for row in table]  # fmt: skip


def rounded(value: Fraction) -> float:
    """``value`` rounded to float64 (correctly; ±inf beyond its range)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def rounded_sqrt(value: Fraction) -> float:
    """sqrt(``value``) in float64, for a value of any size: an even power of two taken out."""
    if value == 0:
        return 0.0
    shift = (value.numerator.bit_length() - value.denominator.bit_length()) // 2
    inner = value / Fraction(2) ** (2 * shift)
    try:
        return math.ldexp(math.sqrt(float(inner)), shift)
    except OverflowError:
        return math.inf


def ranked_exact(values: list[Fraction], k: int, exclude=(), ascending=False, rounding=rounded):
    """Top-k ids and their float64 scores from exact values: each rounded once
    (``rounding``), then ranked best first, ties by lower id, as reported scores rank."""
    scores = [rounding(v) for v in values]
    order = sorted(range(len(values)), key=lambda i: (scores[i] if ascending else -scores[i], i))
    keep = [i for i in order if i not in exclude][:k]
    return keep, [scores[i] for i in keep]
