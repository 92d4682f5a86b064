"""``embinspect diff``: how far the embedding rows of two checkpoints moved apart.

Two checkpoints that share a tokenizer (a base model and its fine-tune, a bf16 model and
a quantized GGUF of it) are compared row by row: per-token cosine and L2 change in
float64, the tokens that moved most, rows only one side has, and the overall drift.
Rows are paired by token id when both tokenizers agree on every shared id, or by token
string with ``align``. Both tables are read a block of rows at a time: only per-row
figures (a few float64 arrays of one value per row) are kept, never a whole table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embinspect import progress
from embinspect.errors import Option, UsageError, note
from embinspect.model.checkpoint import Checkpoint
from embinspect.model.tokenizer import Vocabulary
from embinspect.result import Displayable
from embinspect.tables import scaling
from embinspect.tables.table import EmbeddingTable

if TYPE_CHECKING:
    import numpy as np

# Rows below each cosine are counted: 0.999 separates rounding (bf16, 8-bit quantization)
# from training; 0.99, 0.9 and 0.5 grade how far fine-tuning moved a row.
THRESHOLDS = (0.999, 0.99, 0.9, 0.5)
# Low quantiles matter most: drift concentrates in few rows.
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75)
# Rows only one side has are listed up to this many (or k, when larger), and all counted:
# a fine-tune adds a handful of tokens, two unrelated vocabularies differ in thousands.
LISTED = 100


@dataclass(frozen=True)
class Side:
    """One of the two tables: whose, which tensor, its shape and its vocabulary."""

    model: str
    tensor: str
    dtype: str  # as the file names it: F32, BF16, Q8_0, ...
    rows: int
    dim: int
    vocab_size: int | None  # None without a tokenizer
    vocab_source: str | None


@dataclass(frozen=True)
class MovedRow:
    """A row of both tables, ranked by cosine (lowest first). Norms and the change are L2
    in float64 (of the centred rows with ``center``)."""

    rank: int
    token_id: int  # the row in A
    token_id_b: int  # the row in B (the same id unless aligned by token string)
    token: str | None
    cosine: float
    norm_a: float
    norm_b: float
    relative_change: float  # ||a - b|| / ||a||


@dataclass(frozen=True)
class OneSidedRow:
    """A row of one table that has no counterpart in the other."""

    token_id: int
    token: str | None


@dataclass(frozen=True)
class TableDiff(Displayable):
    """The comparison of table A (the base) with table B.

    ``compared`` rows were paired; ``scored`` of them are finite and non-zero in both
    (cosine is undefined otherwise) and carry every figure. ``added`` are rows of B with
    no counterpart in A, ``removed`` rows of A with none in B (listed up to the cap;
    ``added_count``/``removed_count`` count them all).
    """

    a: Side
    b: Side
    table: str  # input or output
    centered: bool
    paired_by: str  # "token id" or "token string"
    vocabulary: dict[str, Any]  # same, shared_ids, differing_ids, first_difference
    compared: int
    scored: int
    identical: int  # compared rows equal in every component (upcast, before centring)
    left_out: dict[str, int]  # zero_a, zero_b, non_finite_a, non_finite_b, total
    cosine: dict[str, Any] | None  # mean, median, min, max, quantiles; None if none scored
    below: list[dict[str, Any]]  # [{threshold, rows}]: scored rows with cosine < threshold
    relative_change: dict[str, float] | None  # mean, median, max of ||a - b|| / ||a||
    drift: float | None  # ||B - A||_F / ||A||_F over the scored rows
    moved: list[MovedRow]
    added: list[OneSidedRow]
    added_count: int
    removed: list[OneSidedRow]
    removed_count: int
    rows_without_token: dict[str, int] | None  # aligned only: rows no token reaches, per side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_tables(
    a: Checkpoint,
    b: Checkpoint,
    vocab_a: Vocabulary | None,
    vocab_b: Vocabulary | None,
    *,
    table: str = "input",
    align: bool = False,
    center: bool = False,
    k: int = 20,
) -> TableDiff:
    """Compare the ``table`` (input token table, or output head) of A with B's.

    Rows are paired by id when the vocabularies agree on every id both have (or a side
    has no tokenizer), by token string with ``align``. UsageError when the tables differ
    in width, or the vocabularies differ and ``align`` is off. ``k`` rows are listed as
    moved most; added and removed rows up to ``max(k, LISTED)``.
    """
    import numpy as np

    if k < 1:
        raise UsageError(Option("k"), " must be at least 1")
    notes: list[str] = []
    table_a = _table(a, table)
    table_b = _table(b, table)
    name_a, name_b = a.files.model, b.files.model
    if table_a.dim != table_b.dim:
        raise UsageError(
            f"different widths: {name_a}'s {table_a.name} is {table_a.rows} × {table_a.dim}, "
            f"{name_b}'s {table_b.name} is {table_b.rows} × {table_b.dim}; cosine between "
            "rows of different widths is meaningless"
        )

    pairs = _pairs(table_a, table_b, vocab_a, vocab_b, name_a, name_b, align, notes)
    ids_a, ids_b = pairs["ids_a"], pairs["ids_b"]

    figures = _row_figures(table_a, table_b, ids_a, ids_b, center)
    cos, relative = figures["cos"], figures["relative"]
    norm_a, norm_b = figures["norm_a"], figures["norm_b"]
    scored = figures["scored"]
    left_out = {
        "zero_a": int(figures["zero_a"].sum()),
        "zero_b": int(figures["zero_b"].sum()),
        "non_finite_a": int(figures["broken_a"].sum()),
        "non_finite_b": int(figures["broken_b"].sum()),
        "total": int((~scored).sum()),
    }
    if left_out["total"]:
        notes.append(
            f"{left_out['total']:,} of {len(ids_a):,} paired rows left out of the "
            f"figures: all zeros ({left_out['zero_a']:,} in A, {left_out['zero_b']:,} in B) or "
            f"with NaN or infinite values ({left_out['non_finite_a']:,} in A, "
            f"{left_out['non_finite_b']:,} in B)"
        )

    def token(row_a: int, row_b: int) -> str | None:
        found = vocab_a.id_to_token(row_a) if vocab_a is not None else None
        if found is None and vocab_b is not None:
            found = vocab_b.id_to_token(row_b)
        return found

    kept = np.flatnonzero(scored)
    cos_kept = cos[kept]
    moved: list[MovedRow] = []
    summary: dict[str, Any] | None = None
    change: dict[str, float] | None = None
    drift: float | None = None
    below = [{"threshold": t, "rows": int((cos_kept < t).sum())} for t in THRESHOLDS]
    if len(kept):
        quantiles = np.quantile(cos_kept, QUANTILES)
        summary = {
            "mean": float(cos_kept.mean()),
            "median": float(np.median(cos_kept)),
            "min": float(cos_kept.min()),
            "max": float(cos_kept.max()),
            "quantiles": [
                {"q": q, "cosine": float(v)} for q, v in zip(QUANTILES, quantiles, strict=True)
            ],
        }
        change = {
            "mean": _mean(relative[kept]),
            "median": float(np.median(relative[kept])),
            "max": float(relative[kept].max()),
        }
        drift = _drift(figures, kept)
        # Lowest cosine first; ties go to the lower id of A.
        order = kept[np.lexsort((ids_a[kept], cos_kept))[:k]]
        for rank, i in enumerate(order.tolist(), start=1):
            row_a, row_b = int(ids_a[i]), int(ids_b[i])
            moved.append(
                MovedRow(
                    rank=rank,
                    token_id=row_a,
                    token_id_b=row_b,
                    token=token(row_a, row_b),
                    cosine=float(cos[i]),
                    norm_a=float(norm_a[i]),
                    norm_b=float(norm_b[i]),
                    relative_change=float(relative[i]),
                )
            )

    def one_sided(ids, vocab: Vocabulary | None) -> list[OneSidedRow]:
        return [
            OneSidedRow(int(i), vocab.id_to_token(int(i)) if vocab is not None else None)
            for i in ids[: max(k, LISTED)]
        ]

    for line in notes:  # once the figures are in: a failure says one thing only
        note(line)
    return TableDiff(
        a=_side(a, table_a, vocab_a),
        b=_side(b, table_b, vocab_b),
        table=table,
        centered=center,
        paired_by=pairs["paired_by"],
        vocabulary=pairs["vocabulary"],
        compared=len(ids_a),
        scored=len(kept),
        identical=int(figures["identical"].sum()),
        left_out=left_out,
        cosine=summary,
        below=below,
        relative_change=change,
        drift=drift,
        moved=moved,
        added=one_sided(pairs["only_b"], vocab_b if vocab_b is not None else vocab_a),
        added_count=len(pairs["only_b"]),
        removed=one_sided(pairs["only_a"], vocab_a if vocab_a is not None else vocab_b),
        removed_count=len(pairs["only_a"]),
        rows_without_token=pairs["without_token"],
    )


def _pairs(
    table_a: EmbeddingTable,
    table_b: EmbeddingTable,
    vocab_a: Vocabulary | None,
    vocab_b: Vocabulary | None,
    name_a: str,
    name_b: str,
    align: bool,
    notes: list[str],
) -> dict[str, Any]:
    """Which rows of A and B are compared: ``ids_a[i]`` with ``ids_b[i]``; A's rows with no
    counterpart (``only_a``), B's (``only_b``); the vocabulary check; how rows were paired;
    with ``align``, each side's rows no token reaches. UsageError for vocabularies that
    differ without ``align``, or ``align`` without tokenizers."""
    import numpy as np

    without_token = None
    if align:
        for vocab, name in ((vocab_a, name_a), (vocab_b, name_b)):
            if vocab is None:
                raise UsageError(
                    Option("align"),
                    f" pairs rows by token string, but {name} has no tokenizer files",
                )
        vocabulary = _vocabulary_check(vocab_a, vocab_b)
        ids_a, ids_b, only_a, only_b, without_token = _align(vocab_a, vocab_b, table_a, table_b)
        paired_by = "token string"
    else:
        if vocab_a is None or vocab_b is None:
            vocabulary = dict.fromkeys(("same", "shared_ids", "differing_ids", "first_difference"))
            missing = [name for name, v in ((name_a, vocab_a), (name_b, vocab_b)) if v is None]
            notes.append(
                f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no "
                "tokenizer: rows are paired by id, and the vocabularies are not checked"
            )
        else:
            vocabulary = _vocabulary_check(vocab_a, vocab_b)
            if not vocabulary["same"]:
                first = vocabulary["first_difference"]
                raise UsageError(
                    f"different vocabularies: token id {first['token_id']} is "
                    f"{_spelled(first['token_a'])} in {name_a} but {_spelled(first['token_b'])} "
                    f"in {name_b} ({vocabulary['differing_ids']:,} of "
                    f"{vocabulary['shared_ids']:,} shared ids differ); pass ",
                    Option("align"),
                    " to pair rows by token string",
                )
        common = min(table_a.rows, table_b.rows)
        ids_a = ids_b = np.arange(common, dtype=np.int64)
        only_a = np.arange(common, table_a.rows, dtype=np.int64)
        only_b = np.arange(common, table_b.rows, dtype=np.int64)
        paired_by = "token id"

    return {
        "ids_a": ids_a,
        "ids_b": ids_b,
        "only_a": only_a,
        "only_b": only_b,
        "vocabulary": vocabulary,
        "paired_by": paired_by,
        "without_token": without_token,
    }


def _table(checkpoint: Checkpoint, table: str) -> EmbeddingTable:
    """The token table, or the output head (the token table, with a note, when tied)."""
    return EmbeddingTable(checkpoint.files, checkpoint.table_header(table, whose=True))


def _side(checkpoint: Checkpoint, table: EmbeddingTable, vocab: Vocabulary | None) -> Side:
    return Side(
        checkpoint.files.model,
        table.name,
        table.header.dtype,
        table.rows,
        table.dim,
        vocab.size if vocab is not None else None,
        vocab.source if vocab is not None else None,
    )


def _spelled(token: str | None) -> str:
    return repr(token) if token is not None else "no token"


def _vocabulary_check(vocab_a: Vocabulary, vocab_b: Vocabulary) -> dict[str, Any]:
    """Whether both tokenizers spell every id they share alike. Extra ids on one side
    (tokens added by fine-tuning) do not make the vocabularies differ."""
    shared = min(vocab_a.size, vocab_b.size)
    first = None
    differing = 0
    for token_id in range(shared):
        token_a, token_b = vocab_a.id_to_token(token_id), vocab_b.id_to_token(token_id)
        if token_a != token_b:
            differing += 1
            if first is None:
                first = {"token_id": token_id, "token_a": token_a, "token_b": token_b}
    return {
        "same": differing == 0,
        "shared_ids": shared,
        "differing_ids": differing,
        "first_difference": first,
    }


def _align(
    vocab_a: Vocabulary, vocab_b: Vocabulary, table_a: EmbeddingTable, table_b: EmbeddingTable
):
    """Rows paired by token string: (ids in A, ids in B) in A's id order, A's rows whose
    token B lacks, B's rows whose token A lacks, and each side's rows no token reaches."""
    import numpy as np

    def spelled(vocab: Vocabulary, rows: int) -> tuple[dict[str, int], int]:
        found: dict[str, int] = {}
        untokened = 0
        for token_id in range(rows):
            token = vocab.id_to_token(token_id)
            if token is None:
                untokened += 1
            else:
                found.setdefault(token, token_id)  # a string spelled twice names its first id
        return found, untokened

    tokens_a, untokened_a = spelled(vocab_a, table_a.rows)
    tokens_b, untokened_b = spelled(vocab_b, table_b.rows)
    pairs = [(i, tokens_b[t]) for t, i in tokens_a.items() if t in tokens_b]
    pairs.sort()
    ids_a = np.array([p[0] for p in pairs], dtype=np.int64)
    ids_b = np.array([p[1] for p in pairs], dtype=np.int64)
    only_a = np.array(sorted(i for t, i in tokens_a.items() if t not in tokens_b), dtype=np.int64)
    only_b = np.array(sorted(i for t, i in tokens_b.items() if t not in tokens_a), dtype=np.int64)
    return ids_a, ids_b, only_a, only_b, {"a": untokened_a, "b": untokened_b}


def _row_figures(
    table_a: EmbeddingTable,
    table_b: EmbeddingTable,
    ids_a: np.ndarray,
    ids_b: np.ndarray,
    center: bool,
) -> dict[str, np.ndarray]:
    """Per pair of rows, in float64: cosine, both norms, ||a - b|| / ||a||, the lengths
    ||a - b|| and ||a|| as ``scaling.lengths`` gives them (``dist_m``·2^``dist_e``,
    ``norm_a_m``·2^``norm_a_e``), whether the pair is scored (finite and non-zero in
    both), equal, and why it was left out. Every figure is computed on rows scaled by a
    power of two: exact for rows of 1e-300 or 1e300 as for rows of 1.

    Rows are read a block at a time (the float32 chunk budget of ``EmbeddingTable``, so
    each float64 block is near 16 MB) and dequantized, for GGUF, as read."""
    import numpy as np
    import torch

    mean_a = table_a.mean_row() if center else None
    mean_b = table_b.mean_row() if center else None
    count = len(ids_a)
    figures = ("cos", "norm_a", "norm_b", "relative", "dist_m", "norm_a_m")
    out = {name: np.empty(count, dtype=np.float64) for name in figures}
    for name in ("dist_e", "norm_a_e"):
        out[name] = np.zeros(count, dtype=np.int64)
    for name in ("scored", "identical", "zero_a", "zero_b", "broken_a", "broken_b"):
        out[name] = np.zeros(count, dtype=bool)
    step = max(256, table_a.chunk_rows() // 4)  # float64 blocks of 16 MB: a few alive at once

    def block(start: int) -> int:
        return min(step, count - start)

    for start in progress.track(range(0, count, step), "Comparing paired rows", count, block):
        stop = min(start + step, count)
        rows_a = table_a.gather(ids_a[start:stop])
        rows_b = table_b.gather(ids_b[start:stop])
        identical = (rows_a == rows_b).all(dim=1)
        if mean_a is not None:
            rows_a -= mean_a
            rows_b -= mean_b
        finite_a = torch.isfinite(rows_a).all(dim=1)
        finite_b = torch.isfinite(rows_b).all(dim=1)
        # Nonzero by the components, not the norm: rows of 1e-200 are rows, not zeros.
        nonzero_a, nonzero_b = rows_a.any(dim=1), rows_b.any(dim=1)
        scored = finite_a & finite_b & nonzero_a & nonzero_b
        # Lengths as m·2^e (tables.scaling): no overflow or underflow at any scale, and
        # |a - b| / |a| a ratio of the mantissas, even where a norm is beyond float64.
        norm_a_m, norm_a_e = scaling.lengths(rows_a)
        norm_b_m, norm_b_e = scaling.lengths(rows_b)
        dist_m, dist_e = scaling.lengths_apart(rows_a, rows_b)
        cos = scaling.paired_cosines(rows_a, rows_b).clamp(-1.0, 1.0)
        # Equal rows have cosine 1 exactly, whatever the rounding of dot / (|a| |b|).
        same = identical if mean_a is None else (rows_a == rows_b).all(dim=1)
        cos = torch.where(same & scored, 1.0, cos)
        part = slice(start, stop)
        out["cos"][part] = cos.numpy()
        out["norm_a"][part] = scaling.ldexp(norm_a_m, norm_a_e).numpy()
        out["norm_b"][part] = scaling.ldexp(norm_b_m, norm_b_e).numpy()
        out["relative"][part] = scaling.ldexp(dist_m / norm_a_m, dist_e - norm_a_e).numpy()
        out["dist_m"][part], out["dist_e"][part] = dist_m.numpy(), dist_e.numpy()
        out["norm_a_m"][part], out["norm_a_e"][part] = norm_a_m.numpy(), norm_a_e.numpy()
        out["scored"][part] = scored.numpy()
        out["identical"][part] = identical.numpy()
        out["broken_a"][part] = (~finite_a).numpy()
        out["broken_b"][part] = (~finite_b).numpy()
        out["zero_a"][part] = (finite_a & ~nonzero_a).numpy()
        out["zero_b"][part] = (finite_b & ~nonzero_b).numpy()
    return out


def _mean(values: np.ndarray) -> float:
    """The mean of non-negative ``values`` over their largest: a sum of values near 1e308
    does not overflow."""
    top = float(values.max())
    if not 0 < top < float("inf"):
        return float(values.mean())
    return float((values / top).mean()) * top


def _drift(figures: dict[str, np.ndarray], kept: np.ndarray) -> float:
    """||B - A||_F / ||A||_F over the ``kept`` rows, summed at powers of two
    (``scaling.root_sum_squares``): squares of rows of 1e300 or 1e-200 neither overflow
    nor vanish."""
    apart, apart_e = scaling.root_sum_squares(figures["dist_m"][kept], figures["dist_e"][kept])
    base, base_e = scaling.root_sum_squares(figures["norm_a_m"][kept], figures["norm_a_e"][kept])
    return scaling.value(apart / base, apart_e - base_e)
