"""Exact top-k over a whole embedding table, scanned in chunks of rows.

Each chunk is scored in float32 (fast, on CPU or GPU). A float32 score can be off from
the true score, but never by more than a bound that follows from the length of the dot
products (|error| <= n·u·|q|·|x| for a length-n dot product, u = 2⁻²⁴). So the scan keeps,
per query, every row whose upper bound could reach the k-th best lower bound, then
rescores those candidates in float64 from the stored rows. The reported top-k and scores
therefore equal a float64 reference computed on the same rows; ties go to the lower id.
If the candidate buffer overflows (a crowd of near-ties), the query is scanned again with
a larger buffer, so the guarantee never depends on luck.

The bounds assume relative rounding, which holds while a row's norm stays inside
``SAFE_NORMS``: there no square or product overflows float32, and what underflow takes
(2^-150 a product at most) is negligible next to them. A finite nonzero row outside it
(a float32 row of 1e20 or 1e-40, a float64 row of 1e-200: "extreme") is left out of the
fast pass and scored in float64 directly, scaled by its own power of two (``scaling``),
as is a dot or L2 query outside it against every row; the exact scores of both kinds
merge with the fast pass's. Cosines are scale-invariant; a dot product or distance too
large for float64 is a per-query error, never a wrong or missing answer.

Extra memory is one float32 chunk plus a (queries × chunk rows) score block, a small
fraction of the table: the full table is never converted to float32 at once.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embinspect.errors import Option, QueryError, UsageError
from embinspect.tables import exact as exact_scores
from embinspect.tables import scaling
from embinspect.tables.scaling import SAFE_NORMS

if TYPE_CHECKING:
    import numpy as np
    import torch

    from embinspect.tables.table import EmbeddingTable

METRICS = ("cosine", "dot", "l2")
U32 = 2.0**-24  # unit roundoff of float32
COSMUL_EPSILON = 1e-6  # Levy & Goldberg (2014), as gensim's most_similar_cosmul
SCORE_BLOCK_BYTES = 8 * 1024 * 1024  # (queries × rows) float32: 16 MB ran ~10% slower
EXACT_BLOCK_BYTES = 4 * 1024 * 1024  # float64 rows rescored at once, whatever k is
# Rows a scan keeps per query beyond k (``top_k``), by the stored dtype of a table
# scanned in half precision (a float32 table: in its bf16 copy); None: in float32.
KEPT_BEYOND_K = {None: 32, "bfloat16": 256, "float16": 256, "float32": 1024}
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
_M_TRIM_THRESHOLD = -1  # the same header's number for the trim threshold
# Unit roundoff of the half-precision types a table may be stored in.
STORED_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
_STORED_MATMUL_OK: dict[tuple[str, str], bool] = {}
# A float32 table gets a bf16 copy for batches of at least this many queries (the copy
# costs about one float32 pass; a batch this size spends several times that in products).
SHADOW_MIN_BATCH = 64
# ... and only when the copy is close (bf16 rounding is 2^-9 relative; values beyond
# bf16's range would round to infinity and leave bounds too wide to help).
SHADOW_MAX_ERROR = 2.0**-8
# float16 products come back rounded to float16 (range 6e-8 .. 65504): on the stored path
# a row's norm times the query's must stay below this, and each product may be off by
# half a subnormal step besides its relative rounding.
FLOAT16_PRODUCT_MAX = 2.0**14
STORED_TINY = {"bfloat16": 2.0**-134, "float16": 2.0**-25}


@dataclass(frozen=True)
class Scored:
    token_id: int
    score: float


@dataclass(frozen=True)
class RowStats:
    """Per-row float32 facts a scorer needs: norms of the (centred) rows, the centring
    error bound (None when not centred), which stored rows are all zeros or hold NaN or
    infinity (never results, for any metric), and which are extreme: finite and nonzero
    but with a norm outside ``SAFE_NORMS`` (scored in float64 apart from the fast pass).

    Computed from float32 rows, a zero or non-finite norm may hide a row that is only
    extreme (a float32 row of 1e-24 squares to 0, one of 1e20 to infinity): ``settle``
    reads those rows in float64 and says which they are."""

    norms: torch.Tensor
    drift: torch.Tensor | None
    zero: torch.Tensor  # bool, (rows,)
    broken: torch.Tensor  # bool, (rows,)
    extreme: torch.Tensor  # bool, (rows,)

    @property
    def excluded(self) -> torch.Tensor:
        """Rows the fast pass never ranks."""
        return self.zero | self.broken | self.extreme

    def part(self, first: int, count: int) -> RowStats:
        """The stats of rows first .. first + count - 1."""
        drift = self.drift[first : first + count] if self.drift is not None else None
        rows = slice(first, first + count)
        return RowStats(
            self.norms[rows], drift, self.zero[rows], self.broken[rows], self.extreme[rows]
        )

    def settle(self, table: EmbeddingTable) -> None:
        """Read the rows whose float32 norm is 0 or not finite in float64, and move those
        that are finite and nonzero from ``zero``/``broken`` to ``extreme``."""
        import torch

        suspects = (self.zero | self.broken).nonzero().flatten().cpu()
        piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
        for begin in range(0, suspects.numel(), piece):
            ids = suspects[begin : begin + piece]
            rows = table.gather(ids.tolist())
            finite = torch.isfinite(rows).all(dim=1)
            nonzero = (rows != 0).any(dim=1)
            at = ids.to(self.zero.device)
            self.zero[at] = (finite & ~nonzero).to(self.zero.device)
            self.broken[at] = (~finite).to(self.zero.device)
            self.extreme[at] = (finite & nonzero).to(self.zero.device)


def raw_row_stats(norms: torch.Tensor, raw_norms: torch.Tensor, drift=None) -> RowStats:
    """RowStats from the float32 norms a scorer uses and those of the stored rows: a
    stored norm of 0 is an all-zero row, a non-finite one a row with NaN or infinity
    (until ``RowStats.settle``), and a norm outside ``SAFE_NORMS`` an extreme row."""
    import torch

    zero, broken = raw_norms == 0, ~torch.isfinite(raw_norms)
    low, high = SAFE_NORMS
    outside = (raw_norms < low) | (raw_norms > high)
    # Centred: a row near the mean is scored by the drift bound, one far from it is not.
    outside |= (norms > high) | ~torch.isfinite(norms)
    return RowStats(norms, drift, zero, broken, outside & ~zero & ~broken)


@dataclass(frozen=True)
class BlockScores:
    """A block of rows scored for every query of a batch.

    ``key`` (B, n) orders each query's rows exactly as their upper bounds do, so the scan
    picks its candidates on ``key`` alone and works out bounds only for those picks
    (``limits``): for the cosine the bound is a monotone function of the score, and the
    (B, n) arithmetic of a bound per row would cost more than the matrix product's
    tail. ``unusable`` (n,) marks rows that can never be results (zero or non-finite).
    """

    key: torch.Tensor
    unusable: torch.Tensor
    stats: RowStats
    limits: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    # (B,) bounds -> (B,) keys t: a row whose key is below t has an upper bound below it.
    key_below: Callable[[torch.Tensor], torch.Tensor]


def _widened(approx, slack, unusable, stats) -> BlockScores:
    """Scores ± a slack that varies by row: the key is the upper bound itself."""
    import torch

    batch, count = approx.shape
    upper = approx.add_(slack)  # in place: the (B, n) block is the big allocation

    def limits(best, index):
        if isinstance(slack, float):
            width = 2 * slack
        else:
            width = 2 * slack.expand(batch, count).gather(1, index)
        # upper - 2·slack = approx - slack, give or take a rounding: widen by a hair.
        lower = torch.where(best == -torch.inf, -torch.inf, best - width * (1 + 1e-6))
        return best, lower

    return BlockScores(upper, unusable, stats, limits, lambda bound: bound)


def _monotone(approx, relative: float, constant, unusable, stats) -> BlockScores:
    """Scores whose error is at most ``relative``·|score| + ``constant`` (a float or a
    (B,) tensor): the bounds rise with the score, so the score itself is the key."""
    import torch

    def limits(best, index):
        constant_ = constant if isinstance(constant, float) else constant.unsqueeze(1)
        reach = relative * best.abs() + constant_
        # Rounded outwards, so float32 arithmetic here never narrows the interval.
        upper = torch.nextafter(best + reach, torch.full_like(best, torch.inf))
        lower = torch.nextafter(best - reach, torch.full_like(best, -torch.inf))
        gone = best == -torch.inf
        return upper.masked_fill(gone, -torch.inf), lower.masked_fill(gone, -torch.inf)

    def key_below(bound):
        # x + relative·|x| + constant < bound, solved for x on either side of zero, then
        # pulled in by a hair for the float32 arithmetic of limits().
        room = bound - constant
        t = torch.where(room >= 0, room / (1 + relative), room / (1 - relative))
        return t - t.abs() * 1e-5 - 1e-30

    return BlockScores(approx, unusable, stats, limits, key_below)


class Scorer:
    """Scores of a batch of B queries against rows.

    ``bounds`` scores a float32 chunk (``stored_bounds`` a chunk in its stored half
    precision) with rigorous bounds on how far off the scores may be; ``exact`` gives
    float64 scores of given rows for one query, as ``mantissa·2^exponent`` so that no
    scale overflows. Higher is better for every scorer (L2 ranks by negative squared
    distance; ``report`` turns that back into a distance).
    """

    batch: int
    what = "score"  # named in the error when a score is beyond float64
    ascending = False  # how reported scores rank: higher first (L2: lower first)
    plain = False  # True where every score is a float64 (exponent 0) reported as it is

    def bounds(self, chunk: torch.Tensor, known: RowStats | None = None) -> BlockScores:
        """The block's scores; ``known`` holds the rows' norms when a scan has them."""
        raise NotImplementedError

    def exact(
        self, rows: torch.Tensor, index: torch.Tensor, scaled: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 scores of ``rows`` (P, dim), row i against query ``index[i]``: mantissas
        (P,) float64 and exponents (P,) int64, each score ``mantissa·2^exponent``.

        ``scaled``: rows are scaled by their own power of two first; the fast pass's
        candidates, inside ``SAFE_NORMS``, need not be (the scaling is exact, so the
        scores are the same bits either way)."""
        raise NotImplementedError

    def exact_pairs(
        self, rows: torch.Tensor, inverse: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``exact(rows[inverse], index, scaled=False)``, the same bits, from each row
        given once: a scorer may prepare a row once for all the queries that take it."""
        return self.exact(rows[inverse], index, scaled=False)

    def exact_many(
        self, rows: torch.Tensor, queries: list[int]
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(query, mantissas, exponents)``: ``exact`` of all ``rows`` (P, dim), scaled,
        for each of ``queries`` in turn; a scorer may prepare the rows once for all."""
        import torch

        for query in queries:
            index = torch.full((rows.shape[0],), query, dtype=torch.long)
            yield query, *self.exact(rows, index)

    def select(self, indices: list[int]) -> Scorer:
        raise NotImplementedError

    def far(self) -> list[int]:
        """Queries the fast pass cannot bound (a dot or L2 query whose norm is outside
        ``SAFE_NORMS``): scored against every row in float64."""
        return []

    def report(self, mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
        """The reported float64 scores of ``mantissa·2^exponent``, rounded once (±inf
        beyond float64); results rank on these, ties to the lower id."""
        return scaling.rounded(mantissa, exponent)

    @staticmethod
    def report_one(mantissa: float, exponent: int) -> float:
        """``report`` of one score (of the class alone: the numpy scan has no scorer)."""
        return scaling.value(mantissa, exponent)

    @property
    def centered(self) -> bool:
        return self.base.center32 is not None


class _Centered:
    """Shared set-up: queries (B, dim) in float64, optionally centred on the table's mean."""

    def __init__(self, queries: torch.Tensor, center: torch.Tensor | None, device) -> None:
        self.device = device
        self.center64 = center
        self.center32 = center.float().to(device) if center is not None else None
        self.center_norm = float(center.norm()) if center is not None else 0.0
        self.queries64 = queries - center if center is not None else queries
        self.batch = queries.shape[0]
        self.dim = queries.shape[1]

    def shift(self, chunk: torch.Tensor) -> torch.Tensor:
        """Rows minus the mean, in float32."""
        return chunk - self.center32 if self.center32 is not None else chunk

    def stats(self, chunk: torch.Tensor, rows: torch.Tensor, known: RowStats | None) -> RowStats:
        """Norms of the (shifted) rows and, when centred, a bound per row on what the
        float32 subtraction got wrong: rounding the mean and the difference errs by up to
        2u(|x| + |mean|), not small next to |x - mean| when the mean dominates the rows.
        Both depend on the rows only, so a scan reuses them from the previous one."""
        if known is not None:
            return known
        norms = rows.norm(dim=1)
        if self.center32 is None:
            return raw_row_stats(norms, norms)
        raw_norms = chunk.norm(dim=1)
        return raw_row_stats(norms, raw_norms, 4 * U32 * (raw_norms + self.center_norm))

    def shift64(self, rows: torch.Tensor) -> torch.Tensor:
        return rows - self.center64 if self.center64 is not None else rows


class CosineScorer(Scorer):
    plain = True

    def __init__(self, queries: torch.Tensor, center: torch.Tensor | None, device) -> None:
        import torch

        self.args = (queries, center, device)
        self.base = _Centered(queries, center, device)
        # Scaled first: a float64 query of 1e-200 has a direction, though its norm
        # underflows. A zero query (refused before this) would give zeros. In numpy, as
        # the numpy scan makes them (``exact``): the same bits on either engine.
        self.unit64 = torch.from_numpy(exact_scores.query_units(self.base.queries64.numpy()))
        self.unit32 = self.unit64.float().to(device)
        self.batch = self.base.batch
        # dot error <= n·u·|x| for a unit query, the norm's relative error <= n·u, and the
        # float32 query and centred row add a few u more.
        self.slack = (2 * self.base.dim + 16) * U32

    def float32_scores(self, chunk, known=None):
        """``(approx, slack, unusable, stats)``: float32 cosines (B, n), how far each may
        be off (a float, or a (1, n) tensor when centred), unusable rows, row norms."""
        import torch

        rows = self.base.shift(chunk)
        stats = self.base.stats(chunk, rows, known)
        norms = stats.norms
        scores = _product(self.unit32, rows, "scores").div_(norms)
        # A zero row (or a centred row equal to the mean) has no cosine.
        unusable = stats.excluded | ~torch.isfinite(norms) | (norms == 0)
        if stats.drift is None:
            return scores, self.slack, unusable, stats
        # Moving a vector by |e| turns its cosine by at most 2|e|/|x|; 3 leaves room.
        slack = self.slack + (3 * stats.drift / norms).unsqueeze(0)
        return scores, slack, unusable, stats

    def bounds(self, chunk, known=None):
        approx, slack, unusable, stats = self.float32_scores(chunk, known)
        if isinstance(slack, float):
            return _monotone(approx, 0.0, slack, unusable, stats)
        return _widened(approx, slack, unusable, stats)

    def stored_bounds(self, block, known, row_error=0.0):
        """Cosines from a chunk in half precision: the products of ``_stored_products``
        divided by |x|. Their bound, divided by |x| too, is a constant per query plus
        2.02u'·|cosine|: a monotone function of the cosine, so the scan ranks on the
        cosines alone.

        In bf16 the query is not its unit vector but itself scaled by a power of two
        (``scaling.scaled``: exact, so a query that is a stored row rounds to bf16 with
        no error at all), and the keys are its cosines times its length |q'|: a positive
        factor per query, which no comparison across queries sees (a scan's bounds are
        only ever compared within a query). float16 keeps the unit vector, whose
        products stay inside float16's range (``_float16_fits``)."""
        import torch

        norms = known.norms
        query, length = self._stored_direction(block.dtype)
        q_low, q_error, q_low_norm, roundoff = _stored_query(self, query, block.dtype)
        # Converted first: a division that promotes bf16 to float32 runs ~15x slower.
        products = _product(q_low, block, "stored")
        cosines = _scratch("scores", products.shape, torch.float32, products.device)
        cosines.copy_(products).div_(norms)
        error = _per_query_error(self, q_error, q_low_norm, row_error)
        # The keys' own float32 rounding (division by |x|, |x|'s error): slack·|q'|.
        per_query = error * 1.02 + self.slack * length
        unusable = known.excluded | ~torch.isfinite(norms) | (norms == 0)
        # A product that rounds to a subnormal is off by up to STORED_TINY, whatever its
        # size: over |x| that is largest for the block's smallest usable row.
        floor = norms.masked_fill(unusable, torch.inf).amin()
        per_query = per_query + STORED_TINY[_dtype_name(block.dtype)] * 1.01 / floor
        return _monotone(cosines, 2.02 * roundoff, per_query, unusable, known)

    def _stored_direction(self, dtype) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The float64 queries ``stored_bounds`` rounds to ``dtype`` (B, dim), and by
        how much at most their keys exceed their cosines: |q·2^-e| for bf16 (a (B,)
        float32 tensor on the device, rounded up), 1 for the unit queries of float16."""
        import torch

        if dtype != torch.bfloat16:
            return self.unit64, 1.0
        if "_scaled64" not in self.__dict__:
            scaled, _ = scaling.scaled(self.base.queries64)
            length = torch.linalg.vector_norm(scaled, dim=1) * (1 + 2.0**-20)
            self._scaled64 = scaled, length.float().to(self.base.device)
        return self._scaled64

    def exact(self, rows, index, scaled=True):
        import torch

        rows = self.base.shift64(rows)
        if scaled:
            rows, _ = scaling.scaled(rows)
        cosines = torch.from_numpy(exact_scores.cosines(rows.numpy(), self.unit64[index].numpy()))
        return cosines, torch.zeros(cosines.shape[0], dtype=torch.long)

    def exact_pairs(self, rows, inverse, index):
        import torch

        rows = self.base.shift64(rows).numpy()  # each row's norm taken once
        units = self.unit64[index].numpy()
        cosines = torch.from_numpy(exact_scores.cosines(rows, units, inverse.numpy()))
        return cosines, torch.zeros(cosines.shape[0], dtype=torch.long)

    def exact_many(self, rows, queries):
        import torch

        rows, _ = scaling.scaled(self.base.shift64(rows))  # once for every query
        lengths = torch.from_numpy(exact_scores.row_norms(rows.numpy()))
        zeros = torch.zeros(rows.shape[0], dtype=torch.long)
        for query in queries:
            yield query, _row_dots(rows, self.unit64[query].expand_as(rows)) / lengths, zeros

    def select(self, indices):
        queries, center, device = self.args
        return CosineScorer(queries[indices], center, device)


class DotScorer(Scorer):
    def __init__(self, queries: torch.Tensor, center: torch.Tensor | None, device) -> None:
        self.args = (queries, center, device)
        self.base = _Centered(queries, center, device)
        self.q32 = self.base.queries64.float().to(device)
        self.qnorm = self.base.queries64.norm(dim=1).float().to(device)
        self.batch = self.base.batch
        self.factor = (self.base.dim + 16) * U32
        self.scaled, self.exponent = scaling.scaled(self.base.queries64)

    what = "dot product"

    def far(self):
        return _far(self.base.queries64)

    def bounds(self, chunk, known=None):
        import torch

        rows = self.base.shift(chunk)
        stats = self.base.stats(chunk, rows, known)
        reach = stats.norms * self.factor * 1.01
        if stats.drift is not None:
            reach = reach + stats.drift
        slack = self.qnorm.unsqueeze(1) * reach.unsqueeze(0)
        unusable = stats.excluded | ~torch.isfinite(stats.norms)
        return _widened(_product(self.q32, rows, "scores"), slack, unusable, stats)

    def stored_bounds(self, block, known, row_error=0.0):
        """The half-precision products and their bound (``_stored_products``)."""
        import torch

        products, slack = _stored_products(self, self.base.queries64, block, known.norms, row_error)
        return _widened(products, slack, known.excluded | ~torch.isfinite(known.norms), known)

    def exact(self, rows, index, scaled=True):
        import torch

        rows = self.base.shift64(rows)
        if not scaled:
            dots = _row_dots(rows, self.base.queries64[index])
            return dots, torch.zeros(dots.shape[0], dtype=torch.long)
        rows, exponent = scaling.scaled(rows)
        return _row_dots(rows, self.scaled[index]), exponent + self.exponent[index]

    def exact_many(self, rows, queries):
        rows, exponent = scaling.scaled(self.base.shift64(rows))  # once for every query
        for query in queries:
            dots = _row_dots(rows, self.scaled[query].expand_as(rows))
            yield query, dots, exponent + self.exponent[query]

    def select(self, indices):
        queries, center, device = self.args
        return DotScorer(queries[indices], center, device)


class L2Scorer(Scorer):
    """Ranks by -|q - x|², computed as 2·q·x - |x|² - |q|²."""

    def __init__(self, queries: torch.Tensor, center: torch.Tensor | None, device) -> None:
        self.args = (queries, center, device)
        self.base = _Centered(queries, center, device)
        self.q32 = self.base.queries64.float().to(device)
        self.qq = (self.base.queries64**2).sum(dim=1).float().to(device)
        self.qnorm = self.base.queries64.norm(dim=1).float().to(device)
        self.batch = self.base.batch
        self.factor = (2 * self.base.dim + 16) * U32

    what = "distance"

    def far(self):
        return _far(self.base.queries64)

    def bounds(self, chunk, known=None):
        import torch

        rows = self.base.shift(chunk)
        stats = self.base.stats(chunk, rows, known)
        drift = stats.drift
        rr = stats.norms * stats.norms
        approx = 2 * (self.q32 @ rows.T) - rr.unsqueeze(0) - self.qq.unsqueeze(1)
        reach = self.qnorm.unsqueeze(1) + rr.sqrt().unsqueeze(0)
        slack = self.factor * 1.01 * reach * reach
        if drift is not None:
            # |q - x|² moves by at most 2|e|·(|q| + |x|) + |e|² when x moves by |e|.
            moved = drift.unsqueeze(0)
            slack = slack + 2 * moved * (reach + moved)
        return _widened(approx, slack, stats.excluded | ~torch.isfinite(rr), stats)

    def stored_bounds(self, block, known, row_error=0.0):
        """2·q·x from the half-precision chunk (``_stored_products``), |x|² from the
        norms."""
        import torch

        norms = known.norms
        products, dot_slack = _stored_products(self, self.base.queries64, block, norms, row_error)
        approx = 2 * products - (norms * norms).unsqueeze(0) - self.qq.unsqueeze(1)
        reach = self.qnorm.unsqueeze(1) + norms.unsqueeze(0)
        slack = 2 * dot_slack + (2 * self.base.dim + 16) * U32 * 1.01 * reach * reach
        return _widened(approx, slack, known.excluded | ~torch.isfinite(norms), known)

    def exact(self, rows, index, scaled=True):
        import torch

        difference = self.base.shift64(rows) - self.base.queries64[index]
        if not scaled:
            return -_row_dots(difference, difference), torch.zeros(rows.shape[0], dtype=torch.long)
        # -|d|² = -|d·2^-e|²·2^(2e): the difference scaled before it is squared.
        difference, exponent = scaling.scaled(difference)
        return -_row_dots(difference, difference), 2 * exponent

    def select(self, indices):
        queries, center, device = self.args
        return L2Scorer(queries[indices], center, device)

    ascending = True  # a smaller distance is nearer

    def report(self, mantissa, exponent):
        """The distances sqrt(|d|²), from -|d|² = mantissa·2^exponent (exponent even)."""
        import numpy as np

        return scaling.rounded(np.sqrt(np.maximum(-mantissa, 0.0)), exponent // 2)

    @staticmethod
    def report_one(mantissa, exponent):
        return scaling.value(math.sqrt(max(-mantissa, 0.0)), exponent // 2)


class CosMulScorer(Scorer):
    """3CosMul (Levy & Goldberg 2014) for A - B + C, as gensim's most_similar_cosmul:
    cos'(x,A)·cos'(x,C) / (cos'(x,B) + ε), with cos' = (1 + cos) / 2 in [0, 1]."""

    plain = True

    def __init__(self, triples: torch.Tensor, center: torch.Tensor | None, device) -> None:
        import torch

        self.args = (triples, center, device)
        self.batch = triples.shape[0]
        self.dim = triples.shape[2]
        flat = triples.reshape(-1, self.dim)
        self.cosine = CosineScorer(flat, center, device)
        self.base = self.cosine.base
        self.half_slack = self.cosine.slack / 2
        self.tiny = torch.finfo(torch.float32).eps * 4  # the float32 arithmetic below

    def bounds(self, chunk, known=None):
        cos, _, unusable, stats = self.cosine.float32_scores(chunk, known)
        shifted = ((1 + cos) / 2).reshape(self.batch, 3, -1)
        a, b, c = shifted[:, 0], shifted[:, 1], shifted[:, 2]
        d = self.half_slack
        upper = (a + d) * (c + d) / ((b - d).clamp_min(0) + COSMUL_EPSILON) * (1 + self.tiny)
        lower = (a - d).clamp_min(0) * (c - d).clamp_min(0) / (b + d + COSMUL_EPSILON)
        lower = lower * (1 - self.tiny)
        return _widened((upper + lower) / 2, (upper - lower) / 2, unusable, stats)

    def exact(self, rows, index, scaled=True):
        cos = [(1 + self.cosine.exact(rows, 3 * index + j, scaled)[0]) / 2 for j in range(3)]
        import torch

        scores = cos[0] * cos[2] / (cos[1] + COSMUL_EPSILON)
        return scores, torch.zeros(scores.shape[0], dtype=torch.long)

    def exact_many(self, rows, queries):
        import torch

        # The three cosines of each question, from rows scaled once.
        every = [3 * query + j for query in queries for j in range(3)]
        cosines = self.cosine.exact_many(rows, every)
        zeros = torch.zeros(rows.shape[0], dtype=torch.long)
        for query in queries:
            a, b, c = ((1 + next(cosines)[1]) / 2 for _ in range(3))
            yield query, a * c / (b + COSMUL_EPSILON), zeros

    def select(self, indices):
        triples, center, device = self.args
        return CosMulScorer(triples[indices], center, device)


# Per thread, the (queries × rows) blocks of the last scan, reused by the next block:
# a fresh block of 16 MB costs more in page faults than the product that fills it.
_SCRATCH = threading.local()
SCRATCH_MAX_BYTES = 4 * SCORE_BLOCK_BYTES  # larger blocks are allocated as they come


def _scratch(slot: str, shape, dtype, device) -> torch.Tensor:
    """A tensor of ``shape`` for ``slot`` ("stored", "scores"), valid until the next call
    for the same slot in this thread: a block's scores live only while it is merged."""
    import torch

    size = math.prod(shape)
    if size * torch.finfo(dtype).bits // 8 > SCRATCH_MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (slot, dtype, str(device))
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[key] = torch.empty(size, dtype=dtype, device=device)
    return buffer[:size].view(shape)


def _product(queries: torch.Tensor, rows: torch.Tensor, slot: str) -> torch.Tensor:
    """``queries @ rows.T`` (B, n) in their dtype, into ``slot``'s scratch block."""
    import torch

    out = _scratch(slot, (queries.shape[0], rows.shape[0]), queries.dtype, queries.device)
    return torch.matmul(queries, rows.T, out=out)


def _far(queries64: torch.Tensor) -> list[int]:
    """Indices of the queries (B, dim) whose float64 norm is outside ``SAFE_NORMS``."""
    low, high = SAFE_NORMS
    lengths = scaling.norms(queries64)
    return [i for i, n in enumerate(lengths.tolist()) if not low <= n <= high]


def _stored_products(scorer, queries64, block, norms, row_error=0.0):
    """``q' @ x'`` in the chunk's half precision (bf16/f16) as float32, shape (B, n),
    and a bound on how far each is from the exact ``q @ x``.

    The query is rounded to that dtype (off by |q - q'|, known exactly); the rows x' are
    the stored rows, or a half-precision copy of float32 rows within ``row_error``·|x|
    of them; the product accumulates in float32 (n·u·|q'||x'|) and comes back rounded
    to the half dtype (at most 2u' of its own size); ``norms`` (float32 |x|) get 1% of
    room.
    """
    q_low, q_error, q_low_norm, roundoff = _stored_query(scorer, queries64, block.dtype)
    import torch

    low = _product(q_low, block, "stored")
    products = _scratch("scores", low.shape, torch.float32, low.device).copy_(low)
    per_query = _per_query_error(scorer, q_error, q_low_norm, row_error)
    slack = per_query.unsqueeze(1) * norms.unsqueeze(0) * 1.02
    tiny = STORED_TINY[_dtype_name(block.dtype)]  # a subnormal result's rounding
    return products, slack + 2.02 * roundoff * products.abs() + tiny


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _per_query_error(scorer, q_error, q_low_norm, row_error: float):
    """What |q·x - q'·x'| can reach per unit of |x|, before the result's own rounding:
    |q - q'| + |q'|·row_error + n·u·|q'|·(1 + row_error)."""
    accumulation = (scorer.base.dim + 16) * U32 * (1 + row_error)
    return q_error + q_low_norm * (row_error + accumulation)


def _stored_query(scorer, queries64, dtype):
    """The scorer's queries rounded to ``dtype`` on its device (kept for later chunks),
    how far each moved (|q - q'|, float64 exact enough), |q'|, and the dtype's roundoff."""

    cache = scorer.__dict__.setdefault("_stored_queries", {})
    if dtype not in cache:
        low = queries64.to(dtype)
        error = (queries64 - low.double()).norm(dim=1).float()
        cache[dtype] = (
            low.to(scorer.base.device),
            error.to(scorer.base.device),
            low.double().norm(dim=1).float().to(scorer.base.device),
            STORED_ROUNDOFF[_dtype_name(dtype)],
        )
    return cache[dtype]


def stored_matmul_ok(device, dtype_name: str) -> bool:
    """Whether half-precision products on this device stay within the bounds that
    ``stored_bounds`` assumes (float32 accumulation, one rounding of the result).

    Checked once per process against float64 on random data with a wide range of
    magnitudes, so a backend that accumulates in half precision falls back to float32.
    """
    import torch

    key = (device.type, dtype_name)
    if key not in _STORED_MATMUL_OK:
        dtype = getattr(torch, dtype_name)
        generator = torch.Generator().manual_seed(0)
        dim = 4096
        q = torch.randn(8, dim, generator=generator, dtype=torch.float64).to(dtype)
        x = torch.randn(512, dim, generator=generator, dtype=torch.float64)
        x = (x * torch.logspace(-2, 2, 512, dtype=torch.float64).unsqueeze(1)).to(dtype)
        got = (q.to(device) @ x.to(device).T).double().cpu()
        truth = q.double() @ x.double().T
        scale = q.double().norm(dim=1).unsqueeze(1) * x.double().norm(dim=1).unsqueeze(0)
        roundoff = STORED_ROUNDOFF[dtype_name]
        bound = (dim + 16) * U32 * scale + 2 * roundoff * truth.abs() * 1.01
        _STORED_MATMUL_OK[key] = bool(((got - truth).abs() <= bound).all())
    return _STORED_MATMUL_OK[key]


def _row_dots(rows: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Float64 dot product of each row with its vector (rows and vectors both (P, dim)),
    by ``exact.row_dots``: the one formula both scan engines rescore with."""
    import torch

    return torch.from_numpy(exact_scores.row_dots(rows.numpy(), vectors.numpy()))


def make_scorer(metric: str, queries: torch.Tensor, center, device) -> Scorer:
    if metric == "cosine":
        return CosineScorer(queries, center, device)
    if metric == "dot":
        return DotScorer(queries, center, device)
    if metric == "l2":
        return L2Scorer(queries, center, device)
    raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")


def top_k(
    table: EmbeddingTable,
    scorer: Scorer,
    k: int,
    exclude: Sequence[set[int]],
    allowed: torch.Tensor | np.ndarray | None,
    device,
) -> list[list[Scored] | QueryError]:
    """The k best rows for each query of ``scorer``, exact, best first, ties by lower id.

    ``exclude[i]`` holds ids never returned for query i; ``allowed`` (bool, shape (rows,))
    masks rows for every query. Returns reported scores (distances for L2), or for a query
    whose k best include a score beyond float64 (the dot product of two rows of 1e200) a
    QueryError saying so, in place of its list.
    """
    allowed = torch_mask(allowed)
    _prepare(device)
    found: list[list[tuple[int, float, int]]] = [[] for _ in range(scorer.batch)]
    far = scorer.far()
    pending = [query for query in range(scorer.batch) if query not in far]
    # Rows kept per query beyond k: bf16 bounds leave ~40 to 90 rows whose intervals
    # reach the 10th best on 128k-row tables, and each overflow costs another scan;
    # float32 bounds are a thousand times narrower. A float32 table's bf16 copy adds its
    # own rounding: a cluster of near-identical rows overflows 256 (MiniLM's [unused]
    # tokens, 5% of random queries there, each scanned again), but not 1024.
    low = _low_precision(table, scorer, device)
    buffer = k + KEPT_BEYOND_K[table.stored_dtype if low else None]
    while pending:
        sub = scorer if len(pending) == scorer.batch else scorer.select(pending)
        answers = _scan(table, sub, k, buffer, [exclude[i] for i in pending], allowed, device)
        retry = []
        for query, answer in zip(pending, answers, strict=True):
            if answer is None:
                retry.append(query)
            else:
                found[query] = answer
        pending = retry
        buffer *= 4  # a buffer of every row cannot overflow, so this loop ends
    stats = _settled_stats(table, scorer, device)
    extreme = stats.extreme.cpu()
    if far or bool(extreme.any()):
        usable = ~(stats.zero | stats.broken).cpu()
        if allowed is not None:
            extreme, usable = extreme & allowed, usable & allowed
        near = [query for query in range(scorer.batch) if query not in far]
        for queries, rows in ((near, extreme), (far, usable)):
            if queries and bool(rows.any()):
                _exact_rows(table, scorer, queries, rows, k, exclude, found)
    return [ranked(scorer, pairs, k) for pairs in found]


def torch_mask(allowed: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
    """A row mask as a tensor: the Searcher keeps its mask in numpy (the numpy scan needs
    no torch), the torch scan takes it as it is."""
    import torch

    if allowed is None or isinstance(allowed, torch.Tensor):
        return allowed
    return torch.from_numpy(allowed)


def _settled_stats(table, scorer, device) -> RowStats:
    """The table's row stats for this scorer, settled (``RowStats.settle``); computed in
    one float32 pass when no scan has (every query was scored in float64)."""
    key = (scorer.centered, str(device))
    if key not in table.row_stats:
        whole = _empty_stats(table.rows, scorer.centered, device)
        for start, chunk in table.chunks(device):
            rows = scorer.base.shift(chunk)
            _store_part(whole, start, scorer.base.stats(chunk, rows, None))
        whole.settle(table)
        table.row_stats[key] = whole
    return table.row_stats[key]


def _exact_rows(table, scorer, queries, rows, k, exclude, found) -> None:
    """Score the rows of mask ``rows`` (bool, (rows,)) for each of ``queries`` in float64,
    scaled (``Scorer.exact_many``), adding each query's best k (id, mantissa, exponent)
    to ``found[query]``: the extreme rows for every query, or every row for a query the
    fast pass cannot bound. A piece of rows at a time, in numpy: a table of nothing but
    extreme rows is a float64 scan, not a Python loop over its rows."""
    import numpy as np

    ids = rows.nonzero().flatten()
    piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
    empty = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    best = {query: empty for query in queries}
    for begin in range(0, ids.numel(), piece):
        part = ids[begin : begin + piece]
        values = table.gather(part.tolist())
        numbers = part.numpy()
        for query, mantissa, exponent in scorer.exact_many(values, queries):
            m, e = mantissa.numpy(), exponent.numpy()
            keep = np.isfinite(m)  # NaN: a zero row's cosine
            if exclude[query]:
                keep &= ~np.isin(numbers, list(exclude[query]))
            joined = [
                np.concatenate([old, new[keep]])
                for old, new in zip(best[query], (numbers, m, e), strict=True)
            ]
            order = _order(scorer, *joined, k)
            best[query] = tuple(column[order] for column in joined)
    for query, (token_ids, m, e) in best.items():
        found[query].extend(zip(token_ids.tolist(), m.tolist(), e.tolist(), strict=True))


def _order(scorer, ids, mantissa, exponent, k: int):
    """Positions of the k best scores ``mantissa·2^exponent`` (numpy arrays), best first,
    ties by lower id, ranked on the scores as reported (each rounded once), as
    ``ranked`` ranks them."""
    import numpy as np

    key = _rank_key(scorer, mantissa, exponent)
    if key.size > k:  # only the k best and their ties need sorting
        inside = np.flatnonzero(key <= np.partition(key, k - 1)[k - 1])
        return inside[np.lexsort((ids[inside], key[inside]))][:k]
    return np.lexsort((ids, key))[:k]


def _rank_key(scorer, mantissa, exponent):
    """The reported scores of ``mantissa·2^exponent`` (numpy arrays) as a key that is
    lower for a better score, as ``ranked`` ranks them."""
    scores = scorer.report(mantissa, exponent)
    return scores if scorer.ascending else -scores


def ranked(scorer, pairs, k) -> list[Scored] | QueryError:
    """The k best of ``pairs`` (id, mantissa, exponent) as reported scores (distances for
    L2), or the QueryError of a score among them beyond float64. A few dozen pairs a
    query: plain Python sorts them faster than numpy would."""
    if scorer.plain:  # cosines: every exponent 0, reported as they are
        scored = sorted(((m, token_id) for token_id, m, _ in pairs), key=lambda p: (-p[0], p[1]))
    else:
        report, sign = scorer.report_one, 1 if scorer.ascending else -1
        scored = sorted(
            ((report(m, e), token_id) for token_id, m, e in pairs),
            key=lambda p: (sign * p[0], p[1]),
        )
    results = []
    for score, token_id in scored[:k]:
        if not math.isfinite(score):
            return QueryError(
                f"its {scorer.what} with #{token_id} is beyond float64's range (about 1.8e308)"
            )
        results.append(Scored(token_id, score))
    return results


def _prepare(device) -> None:
    """Process settings the scan relies on."""
    import torch

    if device.type == "cuda":
        # The error bounds assume true float32 products; TF32 keeps only 10 mantissa bits.
        if os.environ.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "") not in {"", "0"}:
            raise UsageError(
                "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE forces TF32 matmuls; unset it for exact scores"
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # Half-precision products must accumulate in float32 for the stored-dtype path.
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    _pin_malloc_threshold()


@functools.cache
def _pin_malloc_threshold() -> None:
    """Keep glibc from fragmenting the heap over a long stream of batches.

    glibc raises its mmap threshold each time a large block is freed; after that, the
    per-batch score blocks are carved from the heap instead, and a long stdin stream
    grows the process by tens of MB per 10,000 queries. A fixed threshold keeps blocks
    over 8 MiB in mmap, returned to the system when freed.

    Fixing it also fixes the trim threshold at its default, 128 KiB: every freed block
    under 8 MiB at the heap's top went back to the kernel at once, and the next one
    faulted its pages in again (a 4 MB gather of candidate rows took 1.6 ms instead of
    0.06 ms). The heap keeps up to 64 MiB free for the next block instead; resident
    memory over 80,000 MiniLM queries still settles.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 8 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc (musl): nothing to pin


def _scan(
    table, scorer, k, buffer, exclude, allowed, device
) -> list[list[tuple[int, float, int]] | None]:
    """One pass over the table keeping, per query, the ``buffer`` rows of highest upper
    bound, their lower bounds, and the highest upper bound of any row let go."""
    import torch

    batch = scorer.batch
    keep = min(buffer, table.rows)
    state = _Kept.empty(batch, k, device)
    allowed_dev = allowed.to(device) if allowed is not None else None
    pairs = [(row, token_id) for row, ids in enumerate(exclude) for token_id in ids]
    excluded_rows = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=device)
    excluded_ids = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=device)
    step = _score_rows(batch)
    # Row norms depend on the table only: the first scan keeps them for every later one.
    cache = table.row_stats.get((scorer.centered, str(device)))
    low = _low_precision(table, scorer, device)
    stored = low is not None
    if stored and cache is None:
        cache = _row_stats_pass(table, scorer, device)
    if low == "float16" and not _float16_fits(cache, scorer):
        low, stored = None, False
    filling = _empty_stats(table.rows, scorer.centered, device) if cache is None else None
    if stored:
        row_error = table.low_precision(low)[1]

        def score_block(block, known):
            return scorer.stored_bounds(block, known, row_error)

        chunks = table.low_chunks(device, low)
    else:
        score_block, chunks = scorer.bounds, table.chunks(device)
    for first, block in _blocks(chunks, step, keep):
        count = block.shape[0]
        known = cache.part(first, count) if cache is not None else None
        scored = score_block(block, known)
        key, unusable = scored.key, scored.unusable
        if cache is None:
            _store_part(filling, first, scored.stats)
        if allowed_dev is not None:
            unusable = unusable | ~allowed_dev[first : first + count]
        if bool(unusable.any()):
            key[:, unusable] = -torch.inf
        inside = (excluded_ids >= first) & (excluded_ids < first + count)
        if bool(inside.any()):
            key[excluded_rows[inside], excluded_ids[inside] - first] = -torch.inf
        state.merge(scored, key, first, k, keep)
    state.settle(keep)
    if cache is None:
        filling.settle(table)
        table.row_stats[(scorer.centered, str(device))] = filling
    return _finish(table, scorer, k, state)


@dataclass
class _Kept:
    """Per query, the rows a scan keeps (at most ``keep``, best upper bound first): their
    keys, upper and lower bounds and ids, and the highest upper bound of any row let go.

    Blocks' rows are taken in as they come (``pending``) and compacted to ``keep`` only
    when they pile up and at the end (``settle``): a compaction is a top-k of the
    (batch × width) kept set, once per a few blocks instead of once per block. Rows that
    can never be results (upper bound below the k-th best lower bound seen) are left out
    as a block is read; ``best_lower`` holds the k best lower bounds of every row seen.
    """

    key: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor
    ids: torch.Tensor
    dropped: torch.Tensor
    best_lower: torch.Tensor  # (batch, k), the k best lower bounds seen, -inf for none
    # Once ``keep`` rows are kept: the lowest kept key (a row below it cannot enter) and
    # the lowest kept upper bound (which bounds such a row); -inf otherwise.
    floor: torch.Tensor
    floor_upper: torch.Tensor
    pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]

    @classmethod
    def empty(cls, batch: int, k: int, device) -> _Kept:
        import torch

        none = torch.full((batch, 0), -torch.inf, device=device)
        ids = torch.zeros((batch, 0), dtype=torch.long, device=device)
        lowest = torch.full((batch,), -torch.inf, device=device)
        best = torch.full((batch, k), -torch.inf, device=device)
        return cls(none, none, none, ids, lowest, best, lowest, lowest, [])

    def merge(self, scored: BlockScores, key: torch.Tensor, first: int, k: int, keep: int) -> None:
        """Take a block's rows that may belong in the top k into the kept set.

        A row cannot enter when its upper bound is below the k-th best lower bound seen
        (it can never be a result), or, once ``keep`` rows are kept, when its key is
        below the lowest kept key (then the lowest kept row's upper bound, which bounds
        it, joins ``dropped``). A query without k lower bounds yet takes them from the
        block's k best keys first, so that the comparison sees a real threshold. When only
        a few rows can enter, a comparison finds them (far cheaper than a top-k of the
        whole block); otherwise the block's top-k does.
        """
        import torch

        batch, count = key.shape
        kth = self.best_lower[:, -1]
        if not bool((kth > -torch.inf).all()):
            kth = self._seeded(scored, key, k)
        threshold = scored.key_below(kth)
        crowded = self.floor > threshold
        lowest = torch.where(crowded, self.floor_upper, -torch.inf)
        self.dropped = torch.maximum(self.dropped, lowest)
        threshold = torch.maximum(threshold, self.floor)
        # -inf rows (masked, or no result possible) are never hits.
        threshold = threshold.clamp_min(-torch.finfo(key.dtype).max)
        found = _hits(key, threshold)
        if found is None:
            return  # no query can use this block
        rows, columns = found
        if rows.numel() * 4 <= batch * count:
            picked, index = _gathered(key, rows, columns, keep)
        else:  # most of the block: its top-k is cheaper than gathering it
            picked, index = key.topk(min(keep + 1, count), dim=1)
            if bool(torch.isnan(picked).any()):
                # topk ranks NaN first; NaN (overflow, a NaN component) is never a result.
                # Rare, so the whole block is checked only when one shows up.
                key.masked_fill_(torch.isnan(key), -torch.inf)
                picked, index = key.topk(min(keep + 1, count), dim=1)
        upper, lower = scored.limits(picked, index)
        if picked.shape[1] > keep:
            self.dropped = torch.maximum(self.dropped, upper[:, keep])
            picked, upper, lower, index = (t[:, :keep] for t in (picked, upper, lower, index))
        self._note_lower(lower, k)
        self.pending.append((picked, upper, lower, index + first))
        if self.key.shape[1] + sum(p[0].shape[1] for p in self.pending) > 4 * keep:
            self.settle(keep)

    def _seeded(self, scored: BlockScores, key: torch.Tensor, k: int) -> torch.Tensor:
        """The k-th best lower bound (B,) counting the block's k best keys too: a first
        threshold. Not kept: those rows are hits of this block (their upper bounds reach
        it), noted with the others, and a row must not count twice."""
        import torch

        take = min(k, key.shape[1])
        best, index = key.topk(take, dim=1)
        if bool(torch.isnan(best).any()):  # topk ranks NaN first; NaN is never a result
            key.masked_fill_(torch.isnan(key), -torch.inf)
            best, index = key.topk(take, dim=1)
        joined = torch.cat([self.best_lower, scored.limits(best, index)[1]], dim=1)
        return joined.topk(k, dim=1).values[:, -1]

    def _note_lower(self, lower: torch.Tensor, k: int) -> None:
        import torch

        joined = torch.cat([self.best_lower, lower], dim=1)
        self.best_lower = joined.topk(k, dim=1).values

    def settle(self, keep: int) -> None:
        """Compact the pending rows into the kept set: its ``keep`` best upper bounds,
        the best of the rest joining ``dropped``."""
        import torch

        if not self.pending:
            return
        parts = [(self.key, self.upper, self.lower, self.ids), *self.pending]
        self.pending = []
        key, upper, lower, ids = (
            torch.cat([part[column] for part in parts], dim=1) for column in range(4)
        )
        if upper.shape[1] > keep:
            best, order = upper.topk(keep + 1, dim=1)
            self.dropped = torch.maximum(self.dropped, best[:, keep])
            order = order[:, :keep]
            upper = best[:, :keep]
            key, lower, ids = (t.gather(1, order) for t in (key, lower, ids))
        self.key, self.upper, self.lower, self.ids = key, upper, lower, ids
        if key.shape[1] >= keep:
            self.floor, self.floor_upper = key.amin(dim=1), upper.amin(dim=1)


def _gathered(key: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, keep: int):
    """The hits ``(rows, columns)`` of ``key`` (row-major) as (B, width) keys and
    columns, -inf after each query's own; a query with more than ``keep`` keeps its best
    ``keep + 1`` (the top-k of those queries alone: a crowd of near-ties in a few
    queries leaves the others' hits as they are)."""
    import torch

    batch = key.shape[0]
    per_query = torch.bincount(rows, minlength=batch)
    width = int(per_query.max())
    starts = per_query.cumsum(0) - per_query
    slot = torch.arange(rows.numel(), device=key.device) - starts[rows]
    picked = torch.full((batch, width), -torch.inf, device=key.device)
    picked[rows, slot] = key[rows, columns]
    index = torch.zeros((batch, width), dtype=torch.long, device=key.device)
    index[rows, slot] = columns
    if width <= keep:
        return picked, index
    crowded = (per_query > keep).nonzero().flatten()
    best, order = picked[crowded].topk(keep + 1, dim=1)
    chosen = index[crowded].gather(1, order)
    picked, index = picked[:, : keep + 1].contiguous(), index[:, : keep + 1].contiguous()
    picked[crowded], index[crowded] = best, chosen
    return picked, index


# Columns of a block tested at once by their maximum before the columns themselves are.
HIT_TILE = 64


def _hits(key: torch.Tensor, threshold: torch.Tensor):
    """``(rows, columns)`` of the entries of ``key`` (B, n) at or above ``threshold``
    (B,), row-major (each query's columns in order); None when there are none. NaN is
    never a hit.

    Hits are few next to the block: each query's columns are first tested a tile at a
    time by the tile's maximum (a NaN maximum counts as a possible hit), and only the
    tiles that may hold one are compared entry by entry."""
    import torch

    batch, count = key.shape
    whole = count - count % HIT_TILE
    tiles = whole // HIT_TILE
    limit = threshold.unsqueeze(1)
    parts = []
    if tiles:
        shaped = key.unfold(1, HIT_TILE, HIT_TILE)  # (B, tiles, HIT_TILE), a view
        maybe = ~(shaped.amax(dim=2) < limit)
        query, tile = maybe.nonzero(as_tuple=True)
        if query.numel() * 4 > batch * tiles:  # many tiles: compare the block itself
            rows, columns = (key[:, :whole] >= limit).nonzero(as_tuple=True)
            parts.append((rows, columns))
        elif query.numel():
            inside = shaped[query, tile] >= limit[query]
            at, offset = inside.nonzero(as_tuple=True)
            parts.append((query[at], tile[at] * HIT_TILE + offset))
    if whole < count:
        rows, columns = (key[:, whole:] >= limit).nonzero(as_tuple=True)
        parts.append((rows, columns + whole))
    if not parts:
        return None
    if len(parts) == 1:
        rows, columns = parts[0]
    else:  # the tail's columns go after each query's others
        rows = torch.cat([p[0] for p in parts])
        columns = torch.cat([p[1] for p in parts])
        order = (rows * count + columns).argsort()
        rows, columns = rows[order], columns[order]
    return (rows, columns) if rows.numel() else None


def _blocks(chunks, step: int, keep: int):
    """``(first row, rows)`` blocks of at most ``step`` rows; the table's first block is
    only a few times ``keep``, so that the kept set fills on a small top-k and every
    later block takes the cheap comparison path."""
    for start, chunk in chunks:
        at = 0
        while at < chunk.shape[0]:
            size = min(step, 8 * keep) if start + at == 0 else step
            yield start + at, chunk[at : at + size]
            at += size


def _low_precision(table, scorer, device) -> str | None:
    """The half-precision dtype to scan in, or None for float32.

    A bf16/f16 table is scanned in its own dtype (about 3x the float32 matmul rate on
    CPUs with bf16 units, and no conversion pass) when the scorer has bounds for it. A
    float32 table on a CPU with bf16 units is scanned in a bf16 copy made once (half
    the table's size) when a batch is large enough to repay the copy; the bounds then
    cover the copy's rounding too, and the float64 rescoring reads the float32 rows.
    """
    if not hasattr(scorer, "stored_bounds") or scorer.centered:
        return None
    stored = table.stored_dtype
    if stored in STORED_ROUNDOFF:
        # float16 products on a CPU have no fast kernel: only bf16 gains there.
        fast = stored == "bfloat16" or device.type != "cpu"
        return stored if fast and stored_matmul_ok(device, stored) else None
    if (
        stored == "float32"
        and device.type == "cpu"
        and scorer.batch >= SHADOW_MIN_BATCH
        and stored_matmul_ok(device, "bfloat16")
        and table.low_precision("bfloat16")[1] <= SHADOW_MAX_ERROR
    ):
        return "bfloat16"
    return None


def _float16_fits(stats: RowStats, scorer) -> bool:
    """Whether every product of the scorer's queries with the usable rows stays inside
    float16 (|q·x| <= |q|·|x| below FLOAT16_PRODUCT_MAX): else the stored float16 path
    could overflow to infinity, and the scan takes float32."""
    import torch

    norms = stats.norms.masked_fill(stats.excluded | ~torch.isfinite(stats.norms), 0)
    longest = float(norms.amax()) if norms.numel() else 0.0
    qnorm = float(scorer.qnorm.amax()) if hasattr(scorer, "qnorm") else 1.0  # cosine: unit
    return longest * qnorm * 1.01 < FLOAT16_PRODUCT_MAX


def _empty_stats(rows: int, centered: bool, device) -> RowStats:
    """RowStats for ``rows`` rows, to be filled block by block during the first scan."""
    import torch

    drift = torch.empty(rows, device=device) if centered else None
    zero = torch.zeros(rows, dtype=torch.bool, device=device)
    return RowStats(torch.empty(rows, device=device), drift, zero, zero.clone(), zero.clone())


def _store_part(whole: RowStats, first: int, part: RowStats) -> None:
    rows = slice(first, first + part.norms.shape[0])
    whole.norms[rows] = part.norms
    whole.zero[rows] = part.zero
    whole.broken[rows] = part.broken
    whole.extreme[rows] = part.extreme
    if part.drift is not None:
        whole.drift[rows] = part.drift


def _row_stats_pass(table, scorer, device) -> RowStats:
    """One float32 pass for the row norms that the stored-dtype scans divide by."""
    import torch

    norms = torch.empty(table.rows, device=device)
    for start, chunk in table.chunks(device):
        norms[start : start + chunk.shape[0]] = chunk.norm(dim=1)
    stats = raw_row_stats(norms, norms)
    stats.settle(table)
    table.row_stats[(scorer.centered, str(device))] = stats
    return stats


def _finish(table, scorer, k, kept: _Kept) -> list[list[tuple[int, float, int]] | None]:
    """Each query's candidates from its kept rows: the rows whose upper bound reaches the
    k-th best lower bound, rescored exactly in float64 (the whole batch's candidates read
    together) as (id, mantissa, exponent); or None when a row let go might have been among
    them (scan again, wider)."""
    import numpy as np
    import torch

    upper, lower, dropped = kept.upper.cpu(), kept.lower.cpu(), kept.dropped.cpu()
    valid = upper > -torch.inf
    answered = valid.any(dim=1)
    width = min(k, upper.shape[1])
    # The k-th best lower bound; -inf when fewer than k rows are kept.
    lows = torch.where(valid, lower, -torch.inf)
    if width < k or width == 0:
        threshold = torch.full((upper.shape[0],), -torch.inf)
    else:
        threshold = lows.topk(width, dim=1).values[:, -1]
    retry = answered & (dropped > -torch.inf) & (dropped >= threshold)
    candidates = valid & (upper >= threshold.unsqueeze(1)) & (answered & ~retry).unsqueeze(1)
    queries, slots = candidates.nonzero(as_tuple=True)
    ids = kept.ids.cpu()[queries, slots]
    # In pieces: (pairs × dim) float64 rows, times three in the arithmetic, would be a GB
    # for a batch of 256 queries with 50 candidates each on a 4096-wide table.
    piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
    # By row: a row that is a candidate of many queries (a cluster of near-identical
    # rows, such as MiniLM's [unused] tokens, is one of hundreds of queries' candidates
    # in a batch) is read, and its norm taken, once a piece.
    by_row = torch.argsort(ids, stable=True)
    mantissa = torch.empty(len(ids), dtype=torch.float64)
    exponent = torch.empty(len(ids), dtype=torch.long)
    for begin in range(0, len(ids), piece):
        pairs = by_row[begin : begin + piece]
        unique, inverse = torch.unique_consecutive(ids[pairs], return_inverse=True)
        rows = table.gather(unique.tolist())
        mantissa[pairs], exponent[pairs] = scorer.exact_pairs(rows, inverse, queries[pairs])
    finite = torch.isfinite(mantissa)  # NaN: a zero row's cosine, never a result
    queries, ids, mantissa, exponent = (
        queries[finite].numpy(),
        ids[finite].numpy(),
        mantissa[finite].numpy(),
        exponent[finite].numpy(),
    )
    # Only its k best pairs can be a query's results: the others are left here, in one
    # sort, not in ``ranked``'s Python sort of each query's list (a query on a cluster of
    # near-identical rows, MiniLM's [unused] tokens, has hundreds of candidates).
    best = _best_of_each(scorer, queries, ids, mantissa, exponent, k)
    queries, ids, mantissa, exponent = queries[best], ids[best], mantissa[best], exponent[best]
    # Each query's pairs, split at once (the candidates come in query order), not
    # appended a candidate at a time: 10,000 queries keep 150,000 candidates on MiniLM.
    edges = np.searchsorted(queries, np.arange(upper.shape[0] + 1)).tolist()
    columns = ids.tolist(), mantissa.tolist(), exponent.tolist()
    # (Python lists: a torch element read costs microseconds, ten thousand times over.)
    return [
        None if again else list(zip(*(column[start:stop] for column in columns), strict=True))
        for again, (start, stop) in zip(retry.tolist(), itertools.pairwise(edges), strict=True)
    ]


def _best_of_each(scorer, queries, ids, mantissa, exponent, k: int):
    """Positions of each query's k best pairs (numpy arrays, ``queries`` ascending), in
    query order, best first: ranked as ``ranked`` ranks them, on the reported scores
    with ties to the lower id, a total order, so that its k best of these are its k best
    of all."""
    import numpy as np

    order = np.lexsort((ids, _rank_key(scorer, mantissa, exponent), queries))
    grouped = queries[order]
    first = np.searchsorted(grouped, grouped)  # where each pair's query begins
    return order[np.arange(len(order)) - first < k]


def _score_rows(batch: int) -> int:
    """Rows scored at once so that a (batch × rows) float32 block stays small."""
    return max(1024, SCORE_BLOCK_BYTES // (4 * max(batch, 1)))
