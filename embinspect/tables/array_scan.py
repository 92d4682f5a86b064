"""Exact top-k for a few queries on the CPU in numpy alone: the scan that spares a single
``neighbors`` or ``analogy`` the second and more of importing torch.

The same method as ``scoring``'s scan, on the same bounds: each row is scored in float32
(a float32 table as it is mapped, bf16 widened by a 16-bit shift, GGUF blocks
dequantized), a score off by no more than the bound ``scoring`` derives for it; the rows
whose upper bound reaches the k-th best lower bound are rescored in float64 by
``exact``'s formulas, the ones the torch scan rescores with, and ranked by
``scoring.ranked``, its result path. A few queries keep every row's score (queries ×
rows float64: 2 MB a query on a 256k-row table), so there is no candidate buffer to
overflow and no second scan.

It answers what it can bound without torch's help, and says so by returning None
otherwise: the caller then takes the torch scan, which handles every case. Not here:
centred searches, 3CosMul, a dot or L2 query whose norm is outside ``SAFE_NORMS``, a
table with extreme rows (finite, nonzero, norm outside ``SAFE_NORMS``), float8 tables.

Which engine scans is ``choose``'s decision: this one for a handful of queries on the CPU
while torch is not yet imported (importing it costs more than a scan of most tables),
torch for batches, GPUs, and big tables that one process scans again and again.
``EMBINSPECT_SCAN=numpy`` or ``torch`` forces one (tests run both).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embinspect.errors import QueryError, UsageError
from embinspect.tables import exact, scaling
from embinspect.tables.scaling import SAFE_NORMS
from embinspect.tables.scoring import (
    EXACT_BLOCK_BYTES,
    U32,
    CosineScorer,
    DotScorer,
    L2Scorer,
    Scored,
    ranked,
)
from embinspect.tables.table import EmbeddingTable, readable_without_torch

if TYPE_CHECKING:
    import numpy as np

ENGINE_VARIABLE = "EMBINSPECT_SCAN"
ENGINES = ("auto", "numpy", "torch")
# Queries one numpy scan takes: a batch beyond this pays for torch's import.
MAX_QUERIES = 8
# A table this big (values) is scanned by numpy at most REPEATS times in one process:
# torch's bf16 products scan it several times faster, once imported.
BIG_TABLE = 32 * 1024 * 1024
REPEATS = 2
# Where a table keeps the numpy scans' row stats (``EmbeddingTable.row_stats``).
STATS_KEY = (False, "numpy")
# Rows converted and multiplied at once (bytes of float32): about a core's L2 cache.
CHUNK_BYTES = 2 * 1024 * 1024
MAX_THREADS = 4
# What each metric reports, ranks and names (class attributes: no torch needed).
_REPORTS = {"cosine": CosineScorer, "dot": DotScorer, "l2": L2Scorer}


@dataclass(frozen=True)
class ArrayRowStats:
    """``scoring.RowStats`` in numpy: float32 norms of the rows, and which rows are all
    zeros, hold NaN or infinity, or are extreme (settled in float64 as ``RowStats``)."""

    norms: np.ndarray
    zero: np.ndarray
    broken: np.ndarray
    extreme: np.ndarray

    @property
    def excluded(self) -> np.ndarray:
        return self.zero | self.broken | self.extreme


def engine() -> str:
    """The engine ``EMBINSPECT_SCAN`` asks for: auto (unset), numpy or torch."""
    name = os.environ.get(ENGINE_VARIABLE, "").strip().lower() or "auto"
    if name not in ENGINES:
        raise UsageError(f"{ENGINE_VARIABLE}={name[:20]!r}: use auto, numpy or torch")
    return name


def choose(table: EmbeddingTable, metric: str, queries: int, centered: bool, cpu: bool) -> bool:
    """Whether the numpy scan takes this search (else torch's)."""
    wanted = engine()
    if wanted == "torch" or metric not in _REPORTS or centered or not cpu:
        return False
    if not readable_without_torch(table.header):
        return False
    if wanted == "numpy":
        return True
    if queries > MAX_QUERIES:
        return False
    if "torch" in sys.modules and table.rows * table.dim > BIG_TABLE // 8:
        return False  # already paid for: its bf16 products win on all but small tables
    return table.rows * table.dim <= BIG_TABLE or table.array_scans < REPEATS


def cpu_without_torch(device_name: str) -> bool:
    """Whether ``device_name`` is surely the CPU, known without importing torch: ``cpu``,
    or ``auto`` on a Linux machine with no GPU device node (NVIDIA, AMD ROCm, WSL)."""
    if device_name == "cpu":
        return True
    if device_name != "auto" or not sys.platform.startswith("linux"):
        return False
    try:
        nodes = os.listdir("/dev")
    except OSError:
        return False
    return not any(n.startswith("nvidia") or n in ("kfd", "dxg") for n in nodes)


def top_k_array(
    table: EmbeddingTable,
    metric: str,
    queries: np.ndarray,
    k: int,
    exclude: Sequence[set[int]],
    allowed: np.ndarray | None,
) -> list[list[Scored] | QueryError] | None:
    """``scoring.top_k`` for ``queries`` (B, dim) float64, uncentred, in numpy: the k
    best rows of each, exact, best first, ties by lower id; None where this scan cannot
    bound the search (see the module's docstring)."""
    import numpy as np

    batch, dim = queries.shape
    lengths = scaling.array_norms(queries)
    low, high = SAFE_NORMS
    if metric != "cosine" and not bool(((lengths >= low) & (lengths <= high)).all()):
        return None
    table.array_scans += 1
    if metric == "cosine":
        prepared = exact.query_units(queries)
    else:
        prepared = np.ascontiguousarray(queries, dtype=np.float64)
    q32 = prepared.astype(np.float32)
    known = table.row_stats.get(STATS_KEY)
    approx = np.empty((batch, table.rows), dtype=np.float32)
    norms = np.empty(table.rows, dtype=np.float32) if known is None else None
    _scan(table, q32, approx, norms)
    stats = known if known is not None else settled_stats(table, norms)
    table.row_stats[STATS_KEY] = stats
    usable = ~stats.excluded & np.isfinite(stats.norms)
    if metric == "cosine":
        usable &= stats.norms > 0
    if allowed is not None:
        usable &= allowed
    if bool((stats.extreme if allowed is None else stats.extreme & allowed).any()):
        return None  # rows to score in float64 apart: the torch scan's work
    answers: list[list[Scored] | QueryError] = []
    norms64 = stats.norms.astype(np.float64)
    for query in range(batch):
        with np.errstate(all="ignore"):  # NaN and inf rows: masked out just below
            upper, lower = _bounds(metric, approx[query], norms64, lengths[query], dim)
        mask = usable.copy()
        if exclude[query]:
            ids = np.fromiter(exclude[query], dtype=np.int64)
            mask[ids[(ids >= 0) & (ids < table.rows)]] = False
        mask &= np.isfinite(upper) & np.isfinite(lower)
        lower = np.where(mask, lower, -np.inf)
        threshold = -np.inf
        if int(mask.sum()) > k:
            threshold = np.partition(lower, table.rows - k)[table.rows - k]
        candidates = np.flatnonzero(mask & (upper >= threshold))
        pairs = _rescored(table, metric, prepared[query], candidates)
        answers.append(ranked(_REPORTS[metric], pairs, k))
    return answers


def _scan(table: EmbeddingTable, q32, approx, norms) -> None:
    """Float32 products of every row with each query into ``approx`` (B, rows) and, when
    ``norms`` is given, each row's float32 norm: a few MB of rows at a time, so that a
    converted chunk is still in the CPU's cache when it is multiplied, in one thread per
    core (numpy's loops let go of the GIL) over parts of the table. numpy's own einsum
    loops, not BLAS: the products of a few queries are a pass over memory, and BLAS's
    threads, woken for each small chunk, cost more than they bring on a busy machine."""
    import numpy as np

    step = max(16, CHUNK_BYTES // (4 * table.dim))
    parts = min(os.cpu_count() or 1, MAX_THREADS, max(1, table.rows // (4 * step)))
    bounds = [table.rows * i // parts for i in range(parts + 1)]

    def part(first: int, stop: int) -> None:
        with np.errstate(all="ignore"):
            for start, chunk in table.array_chunks(first, stop, step):
                end = start + chunk.shape[0]
                approx[:, start:end] = np.einsum("bj,ij->bi", q32, chunk)
                if norms is not None:
                    norms[start:end] = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))

    if parts == 1:
        part(0, table.rows)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(parts) as pool:
        for done in [pool.submit(part, a, b) for a, b in itertools.pairwise(bounds)]:
            done.result()


def _bounds(metric: str, approx, norms, length: float, dim: int):
    """(upper, lower) float64 bounds of each row's exact score from its float32 one:
    ``scoring``'s bounds for the metric (float32 products of n terms are off by at most
    n·u·|q|·|x|), widened by 1% for the float64 arithmetic here."""
    import numpy as np

    scores = approx.astype(np.float64)
    if metric == "cosine":
        with np.errstate(divide="ignore", invalid="ignore"):
            scores /= norms
        slack = (2 * dim + 16) * U32 * 1.01
    elif metric == "dot":
        slack = length * norms * (dim + 16) * U32 * 1.02
    else:  # l2: 2·q·x - |x|² - |q|²
        scores = 2 * scores - norms * norms - length * length
        slack = (2 * dim + 16) * U32 * 1.02 * (length + norms) ** 2
    return scores + slack, scores - slack


def _rescored(
    table: EmbeddingTable, metric: str, query, candidates
) -> list[tuple[int, float, int]]:
    """The candidates' exact float64 scores as (id, mantissa, exponent 0), by ``exact``'s
    formulas; NaN (no cosine) dropped, as the torch scan drops it."""
    import numpy as np

    piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
    pairs: list[tuple[int, float, int]] = []
    for begin in range(0, len(candidates), piece):
        ids = candidates[begin : begin + piece]
        rows = table.gather_array(ids)
        # One copy of the query per row, as the torch scan's rescoring indexes it.
        queries = np.repeat(query[None, :], len(ids), axis=0)
        if metric == "cosine":
            scores = exact.cosines(rows, queries)
        elif metric == "dot":
            scores = exact.row_dots(rows, queries)
        else:
            scores = exact.negative_squares(rows, queries)
        pairs.extend(
            (int(i), float(s), 0) for i, s in zip(ids, scores, strict=True) if np.isfinite(s)
        )
    return pairs


def settled_stats(table: EmbeddingTable, norms: np.ndarray) -> ArrayRowStats:
    """Row stats from float32 norms, as ``scoring.raw_row_stats`` and ``RowStats.settle``
    make them: a row whose float32 norm is 0 or not finite is read in float64 to tell an
    all-zero row or one with NaN or infinity from a row only too small or too large."""
    import numpy as np

    zero, broken = norms == 0, ~np.isfinite(norms)
    low, high = SAFE_NORMS
    with np.errstate(invalid="ignore"):
        outside = (norms < low) | (norms > high)
    extreme = outside & ~zero & ~broken
    suspects = np.flatnonzero(zero | broken)
    piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
    for begin in range(0, len(suspects), piece):
        ids = suspects[begin : begin + piece]
        rows = table.gather_array(ids)
        finite = np.isfinite(rows).all(axis=1)
        nonzero = (rows != 0).any(axis=1)
        zero[ids] = finite & ~nonzero
        broken[ids] = ~finite
        extreme[ids] = finite & nonzero
    return ArrayRowStats(norms, zero, broken, extreme)
