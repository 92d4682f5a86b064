"""``embinspect stats``: the health of a whole embedding table.

Row norms (quantiles, a histogram, the extremes), anisotropy (the mean cosine of random
pairs of rows, and each row's cosine to the mean row: LLM input tables point mostly one
way, Ethayarajh 2019), and the rows that are not embeddings at all: all zeros, NaN or
infinite, exact duplicates of another row, and padding rows past the tokenizer's
vocabulary (GPT-2's 50,257 tokens in a 50,304-row table).

Two passes over the table in chunks (norms, sums and row hashes; then cosines to the
mean row) and one gather of the sampled pairs: memory stays at a chunk plus a few
numbers per row. Every figure is computed in float64 from the stored values, norms and
cosines on rows scaled by their own power of two (``tables.scaling``), so that a row of
1e-200 is no zero row and one of 1e300 has a finite norm.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embinspect import progress
from embinspect.errors import ModelError, Option, UsageError
from embinspect.result import Displayable
from embinspect.tables import scaling

if TYPE_CHECKING:
    import numpy as np

    from embinspect.model.tokenizer import Vocabulary
    from embinspect.tables.table import EmbeddingTable

QUANTILES = {"min": 0.0, "p1": 0.01, "p5": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75,
             "p95": 0.95, "p99": 0.99, "max": 1.0}  # fmt: skip
HISTOGRAM_BINS = 20
EXTREMES = 5  # tokens listed with the smallest and the largest norms
EXAMPLES = 10  # ids listed per kind of odd row
DEFAULT_PAIRS = 10_000
PAIR_PIECE = 2048  # pairs gathered at once: 2 × 2048 float64 rows


@dataclass(frozen=True)
class TokenNorm:
    token_id: int
    token: str | None
    norm: float


@dataclass(frozen=True)
class TableStats(Displayable):
    """Figures of one table. Norms are over the rows that have a token (padding rows past
    the vocabulary are counted apart) and hold finite values; cosines also leave out
    all-zero rows, which have no direction."""

    model: str
    tensor: str
    rows: int
    dim: int
    dtype: str
    vocab_size: int | None
    padding_rows: int  # rows past the vocabulary (0 without a tokenizer)
    zero_rows: int
    zero_examples: list[int]
    nonfinite_rows: int
    nonfinite_examples: list[int]
    duplicate_groups: int  # distinct rows (not all zeros) that occur more than once
    duplicate_rows: int  # rows equal to an earlier row
    duplicate_examples: list[list[int]]  # ids of the first groups
    norm_rows: int  # rows the norm figures describe
    norm_mean: float
    norm_std: float
    norm_quantiles: dict[str, float]
    histogram: list[dict[str, float]]  # {low, high, count}, equal widths from min to max
    smallest: list[TokenNorm]
    largest: list[TokenNorm]
    pair_cosine: dict[str, float]  # {mean, std, stderr, pairs, seed}
    mean_row_norm: float  # |mean row| over the mean norm: 0 isotropic, 1 all one vector
    cosine_to_mean: dict[str, float]  # {mean, min, median, max} of cos(row, mean row)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_stats(
    model: str,
    table: EmbeddingTable,
    vocabulary: Vocabulary | None,
    *,
    pairs: int = DEFAULT_PAIRS,
    seed: int = 0,
) -> TableStats:
    """Figures of ``table`` (rows × dim). ``vocabulary`` says which rows have a token (its
    size) and names the tokens listed; without one, every row counts as a token's."""
    import numpy as np
    import torch

    if pairs < 1:
        raise UsageError(Option("pairs"), " must be at least 1")
    rows, dim = table.rows, table.dim
    vocab_size = vocabulary.size if vocabulary is not None else None
    with_token = min(rows, vocab_size) if vocab_size else rows
    norms = np.empty(rows)
    finite = np.empty(rows, dtype=bool)
    total = scaling.RunningSum(dim)  # rows near 1e308 add up without overflow
    first_of: dict[bytes, int] = {}
    groups: dict[int, list[int]] = {}
    scan = table.chunks(torch.device("cpu"), stored=True, report="Norms and duplicates")
    for start, chunk in scan:
        values = chunk.double()
        stop = start + values.shape[0]
        norms[start:stop] = scaling.norms(values).numpy()
        ok = torch.isfinite(values).all(dim=1)
        finite[start:stop] = ok.numpy()
        token_rows = slice(0, max(0, min(stop, with_token) - start))
        total.add(values[token_rows][ok[token_rows]])
        # Exact duplicates, by a digest of each row's stored bytes.
        raw = chunk.contiguous().view(torch.uint8).numpy()
        for offset in range(raw.shape[0]):
            row = start + offset
            if row >= with_token or norms[row] == 0:
                continue
            key = hashlib.blake2b(raw[offset].tobytes(), digest_size=16).digest()
            first = first_of.setdefault(key, row)
            if first != row:
                groups.setdefault(first, [first]).append(row)
    token = np.arange(rows) < with_token
    usable = token & finite & (norms > 0)
    counted = token & finite
    if not usable.any():
        raise ModelError(f"{table.name}: no row with a token holds a finite, non-zero vector")
    zero = token & finite & (norms == 0)
    broken = token & ~finite
    mean_row = total.mean()  # of the counted rows
    to_mean = _cosines_to(table, mean_row, usable)
    token_norms = norms[counted]
    order = np.lexsort((np.arange(rows)[counted], token_norms))
    ids = np.flatnonzero(counted)

    def listed(picks) -> list[TokenNorm]:
        return [TokenNorm(int(i), _token(vocabulary, int(i)), float(norms[i])) for i in picks]

    counts, edges = np.histogram(token_norms, bins=HISTOGRAM_BINS)
    # Over the largest norm first: a sum or a square of norms of 1e300 overflows.
    top = float(token_norms.max()) or 1.0
    mean_norm = float((token_norms / top).mean()) * top
    norm_std = float((token_norms / top).std()) * top
    return TableStats(
        model=model,
        tensor=table.name,
        rows=rows,
        dim=dim,
        dtype=table.header.dtype,
        vocab_size=vocab_size,
        padding_rows=rows - with_token,
        zero_rows=int(zero.sum()),
        zero_examples=np.flatnonzero(zero)[:EXAMPLES].tolist(),
        nonfinite_rows=int(broken.sum()),
        nonfinite_examples=np.flatnonzero(broken)[:EXAMPLES].tolist(),
        duplicate_groups=len(groups),
        duplicate_rows=sum(len(g) - 1 for g in groups.values()),
        duplicate_examples=[groups[first] for first in sorted(groups)[:EXAMPLES]],
        norm_rows=int(counted.sum()),
        norm_mean=mean_norm,
        norm_std=norm_std,
        norm_quantiles={k: float(np.quantile(token_norms, q)) for k, q in QUANTILES.items()},
        histogram=[
            {"low": float(edges[i]), "high": float(edges[i + 1]), "count": int(counts[i])}
            for i in range(len(counts))
        ],
        smallest=listed(ids[order[:EXTREMES]]),
        largest=listed(ids[order[::-1][:EXTREMES]]),
        pair_cosine=_pair_cosine(table, np.flatnonzero(usable), pairs, seed),
        mean_row_norm=float(scaling.norms(mean_row[None])[0]) / mean_norm if mean_norm else 0.0,
        cosine_to_mean={
            "mean": float(to_mean.mean()),
            "min": float(to_mean.min()),
            "median": float(np.median(to_mean)),
            "max": float(to_mean.max()),
        },
    )


def _cosines_to(table: EmbeddingTable, vector, usable: np.ndarray):
    """cos(row, vector) for the usable rows, in row order (float64), a chunk at a time."""
    import numpy as np
    import torch

    if not bool(vector.any()):
        return np.zeros(int(usable.sum()))
    direction = scaling.units(vector[None])[0]
    parts = []
    scan = table.chunks(torch.device("cpu"), stored=True, report="Cosines to the mean row")
    for start, chunk in scan:
        stop = start + chunk.shape[0]
        keep = usable[start:stop]
        if keep.any():
            rows, _ = scaling.scaled(chunk.double()[torch.from_numpy(keep)])
            parts.append((rows @ direction / torch.linalg.vector_norm(rows, dim=1)).numpy())
    return np.concatenate(parts)


def _pair_cosine(table: EmbeddingTable, ids: np.ndarray, pairs: int, seed: int) -> dict:
    """The mean cosine of ``pairs`` random pairs of distinct usable rows, seeded."""
    import numpy as np

    if len(ids) < 2:
        return {"mean": float("nan"), "std": float("nan"), "stderr": float("nan"),
                "pairs": 0, "seed": seed}  # fmt: skip
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(ids), size=pairs)
    # A second index never equal to the first: shift it by 1 .. n-1, wrapping around.
    second = (first + rng.integers(1, len(ids), size=pairs)) % len(ids)
    cosines = np.empty(pairs)

    def piece(begin: int) -> int:
        return min(PAIR_PIECE, pairs - begin)

    pieces = range(0, pairs, PAIR_PIECE)
    for begin in progress.track(pieces, "Cosines of random pairs", pairs, piece):
        a, _ = scaling.scaled(table.gather(ids[first[begin : begin + PAIR_PIECE]].tolist()))
        b, _ = scaling.scaled(table.gather(ids[second[begin : begin + PAIR_PIECE]].tolist()))
        dots = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))
        cosines[begin : begin + PAIR_PIECE] = dots.numpy()
    std = float(cosines.std(ddof=1)) if pairs > 1 else 0.0
    return {"mean": float(cosines.mean()), "std": std, "stderr": std / pairs**0.5,
            "pairs": pairs, "seed": seed}  # fmt: skip


def _token(vocabulary: Vocabulary | None, token_id: int) -> str | None:
    return vocabulary.id_to_token(token_id) if vocabulary is not None else None
