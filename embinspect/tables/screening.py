"""Exact top-k for large batches asking for a few rows each, by a screening pass first.

An analogy suite asks for the one (or five) best rows of each of ten thousand questions.
``scoring.top_k``'s scan is built for neighbor lists: it keeps a buffer of hundreds of
rows per query and merges every block into it, and for a suite that bookkeeping, not the
products, was most of the time. Here one pass over the table scores each block with the
scorer's own bounds (``stored_bounds`` in bf16 where the scan would use it, ``bounds`` in
float32 otherwise) and keeps, per batch, only the rows that some query could still rank
among its k best: a row whose upper bound is below the k-th best lower bound seen so far
for every query has, for each query, k rows certainly better, so it is in no top k. The
rows kept (about one per question for k = 1 in bf16) become a small table of their own
(``subset_table``: the same stored values), and ``top_k`` ranks it as it ranks any table,
float64 rescoring included, so the answers are ``top_k``'s on the whole table, id for id
(ties go to the lower id: the kept rows stay in table order). Several batches' rows are
ranked in one ``top_k``, whose fixed cost would otherwise rival the ranking itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from embinspect.errors import QueryError
from embinspect.sources.tensor import TensorHeader
from embinspect.tables.scoring import (
    Scored,
    Scorer,
    _low_precision,
    _prepare,
    _settled_stats,
    top_k,
    torch_mask,
)
from embinspect.tables.table import EmbeddingTable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from embinspect.sources.locate import CheckpointFiles

# The (queries × rows) float32 score block of one step stays near this size: small
# enough for the allocator to reuse its memory (no page faults).
SCREEN_BLOCK_BYTES = 4 * 1024 * 1024
# The float64 copy of the rows kept stays under this size, else top_k scans the table.
SUBSET_MAX_BYTES = 64 * 1024 * 1024
# Queries ranked together on the rows kept for them (one top_k call, whatever the batch
# of the screening passes): each call costs a few milliseconds however small its table.
RANK_GROUP = 1024


def screened_top_k(
    table: EmbeddingTable,
    scorer: Scorer,
    k: int,
    exclude: Sequence[set[int]],
    allowed: torch.Tensor | np.ndarray | None,
    device,
    batch: int | None = None,
) -> list[list[Scored] | QueryError]:
    """``top_k(table, scorer, k, exclude, allowed, device)``, the same answers, computed
    on the rows a screening pass keeps (``candidate_rows``): one pass over the table per
    ``batch`` queries (all at once without it), then one ``top_k`` for them all."""
    import numpy as np

    allowed = torch_mask(allowed)

    if scorer.far():  # a query the fast pass cannot bound is scored against every row
        return top_k(table, scorer, k, exclude, allowed, device)
    step = batch or scorer.batch
    parts = []
    for start in range(0, scorer.batch, step):
        stop = min(start + step, scorer.batch)
        # The same queries, row for row (``select``, as top_k's own rescans use it).
        part = scorer if stop - start == scorer.batch else scorer.select(list(range(start, stop)))
        parts.append(candidate_rows(table, part, k, exclude[start:stop], allowed, device))
    rows = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
    if rows.size == 0:  # no row can be a result (as top_k answers then)
        return [[] for _ in range(scorer.batch)]
    if rows.size * table.dim * 8 > SUBSET_MAX_BYTES:
        # A crowd the bounds cannot thin on a large table: a float64 copy of the rows
        # kept would cost more memory than the scan it saves.
        return top_k(table, scorer, k, exclude, allowed, device)
    subset = subset_table(table, rows)
    # Each query's left-out ids as rows of the subset (those that are in it), found for
    # the whole batch at once.
    queries = np.repeat(np.arange(len(exclude)), [len(ids) for ids in exclude])
    wanted = np.fromiter((i for ids in exclude for i in ids), dtype=np.int64, count=queries.size)
    at = np.searchsorted(rows, wanted)
    inside = rows[np.minimum(at, rows.size - 1)] == wanted
    local: list[set[int]] = [set() for _ in exclude]
    for query, row in zip(queries[inside].tolist(), at[inside].tolist(), strict=True):
        local[query].add(row)
    ranked = top_k(subset, scorer, k, local, None, device)
    table_ids = rows.tolist()
    return [
        answer
        if isinstance(answer, QueryError)
        else [Scored(table_ids[s.token_id], s.score) for s in answer]
        for answer in ranked
    ]


def candidate_rows(
    table: EmbeddingTable,
    scorer: Scorer,
    k: int,
    exclude: Sequence[set[int]],
    allowed: torch.Tensor | None,
    device,
) -> np.ndarray:
    """The ids, ascending, of every row that may be among the k best of some query of
    ``scorer`` (``exclude[i]`` never counts for query i; only ``allowed`` rows count):
    a superset of each query's exact top k and of the rows tied with its k-th.

    A block's k best keys per query give k lower bounds; the k best lower bounds so far
    bound the k-th best score from below (k rows score at least that much), and a row
    whose key is below ``key_below`` of it cannot reach it. The bound only rises as blocks
    go by, so a row kept early is a row that was possible then; a NaN key (or bound) keeps
    its row. Extreme rows (finite, nonzero, norm outside the fast pass's range) are never
    screened: ``top_k`` scores them in float64, so each is kept.
    """
    import numpy as np
    import torch

    _prepare(device)
    stats = _settled_stats(table, scorer, device)
    limit = table.rows
    allowed_dev = None
    if allowed is not None:
        if not bool(allowed.any()):
            return np.empty(0, dtype=np.int64)
        limit = int(allowed.nonzero().max()) + 1  # the rows beyond it are never read
        allowed_dev = allowed[:limit].to(device)
    batch = scorer.batch
    # The scan's own choice (bf16 rows as stored, or a float32 table's bf16 copy for a
    # batch that repays it), but never float16: its products could overflow where the
    # scan would first check ``_float16_fits``; float32 screens such a table.
    low = _low_precision(table, scorer, device)
    if low == "float16":
        low = None
    if low is not None:
        row_error = table.low_precision(low)[1]

        def score_block(block, known):
            return scorer.stored_bounds(block, known, row_error)  # type: ignore[attr-defined]

        chunks = table.low_chunks(device, low)
    else:
        score_block, chunks = scorer.bounds, table.chunks(device)
    pairs = [(query, token_id) for query, ids in enumerate(exclude) for token_id in ids]
    excluded_queries = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=device)
    excluded_ids = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=device)
    best = torch.full((batch, k), -torch.inf, device=device)  # the k best lower bounds
    kept = torch.zeros(limit, dtype=torch.bool, device=device)
    step = max(256, SCREEN_BLOCK_BYTES // (4 * max(batch, 1)))
    for first, block in _blocks(chunks, step, limit):
        count = block.shape[0]
        scored = score_block(block, stats.part(first, count))
        key, unusable = scored.key, scored.unusable
        if allowed_dev is not None:
            unusable = unusable | ~allowed_dev[first : first + count]
        if bool(unusable.any()):
            key.masked_fill_(unusable, -torch.inf)
        inside = (excluded_ids >= first) & (excluded_ids < first + count)
        if bool(inside.any()):
            key[excluded_queries[inside], excluded_ids[inside] - first] = -torch.inf
        best = _better_bounds(scored, key, best, k)
        # Not below the threshold: a NaN key, or a NaN threshold (no bound yet), keeps a
        # row. key - t >= 0 exactly when key >= t (a difference of floats is 0 only for
        # equal ones), so one subtraction in place and a max over the queries tell.
        threshold = scored.key_below(best[:, -1])
        reach = key.sub_(threshold.unsqueeze(1)).amax(dim=0)
        kept[first : first + count] = ~(reach < 0) & ~unusable
    extreme = stats.extreme[:limit]
    if allowed_dev is not None:
        extreme = extreme & allowed_dev
    kept |= extreme
    return kept.nonzero().flatten().cpu().numpy()


def _better_bounds(scored, key, best, k: int):
    """``best`` (B, k), the k best lower bounds so far per query, with the block's rows
    taken in. Only a query whose block maximum reaches its k-th best lower bound can gain
    (a row's lower bound is at most its key): its k best keys are looked up, the others'
    stand at -inf."""
    import torch

    batch, count = key.shape
    take = min(k, count)
    gain = ~(key.amax(dim=1) < best[:, -1])  # NaN: look
    if bool(gain.all()):
        top, index = key.topk(take, dim=1)
    else:
        top = torch.full((batch, take), -torch.inf, device=key.device)
        index = torch.zeros((batch, take), dtype=torch.long, device=key.device)
        if bool(gain.any()):
            queries = gain.nonzero().flatten()
            top[queries], index[queries] = key[queries].topk(take, dim=1)
    _, lower = scored.limits(top, index)
    # A NaN bound says nothing: it must not take one of the k places.
    lower = torch.where(torch.isnan(lower), -torch.inf, lower)
    return torch.cat([best, lower], dim=1).topk(k, dim=1).values


def _blocks(chunks, step: int, limit: int) -> Iterator[tuple[int, Any]]:
    """``(first row, rows)`` of at most ``step`` rows, up to row ``limit``."""
    for start, chunk in chunks:
        if start >= limit:
            return
        end = min(chunk.shape[0], limit - start)
        for at in range(0, end, step):
            yield start + at, chunk[at : min(at + step, end)]


class _InMemory:
    """What ``EmbeddingTable`` asks of a checkpoint's files for a table held in memory."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def loaded_rows(self, header: TensorHeader) -> np.ndarray:
        return self.values


def subset_table(table: EmbeddingTable, ids: np.ndarray) -> EmbeddingTable:
    """Rows ``ids`` of ``table`` as a table of their own, in memory, row i being row
    ``ids[i]``: the stored values exactly, held in float64 (which holds every stored or
    dequantized value), so that its scans run in float32 with float32's narrow bounds
    and no half-precision copy is made of a few hundred rows."""
    values = table.gather_array(ids)
    header = TensorHeader(table.name, "F64", (len(ids), table.dim), values.nbytes, file="")
    return EmbeddingTable(cast("CheckpointFiles", _InMemory(values)), header)
