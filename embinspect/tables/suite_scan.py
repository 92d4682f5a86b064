"""Exact 3CosAdd answers for a whole analogy suite on the CPU, in numpy alone: products
of the suite's few distinct words with each row, summed per question.

A suite asks ten thousand questions about a few hundred words (the Google set: 19,544
questions, under a thousand words). The score gensim ranks by is cos(b̂ - â + ĉ, x) for
unit vectors â, b̂, ĉ, and for a row x of unit direction x̂ it is ``(b̂·x̂) - (â·x̂) + (ĉ·x̂)``
over a length that does not depend on x: so one matrix product of the W distinct words'
unit vectors with the rows (W × rows, instead of questions × rows) gives every question's
scores as a sum of three of its lines. That is over ten times fewer products than
multiplying each question's direction with the table, few enough that numpy's float32
BLAS, without torch's import, beats torch's bf16 products. Most of the sums need not be
made at all: over a stretch of rows a question's sum is at most the sum of the stretch's
maxima, and the suite's own words (most answers are one) give each question a good
score to beat from the first row on (``_Questions``).

Each sum is a screening score, off from the true one by at most ``_slack`` (three
float32 cosines of ``array_scan``'s bound, plus the float32 division and additions here):
a row more than twice that below a question's k-th best sum cannot be among its k best,
and the rest (about one row a question) are rescored in float64 by ``exact``'s formulas,
on rows scaled by their own power of two as ``scoring``'s rescoring scales them, and
ranked by ``scoring.ranked``: the same scores and order as the torch screening
(``tables/screening``), id for id. Zero rows and rows with NaN or infinity never answer;
extreme rows (a finite nonzero row whose norm is outside ``SAFE_NORMS``) are not bounded
here and are rescored for every question instead.

``choose`` takes this path over torch's when its products cost less than torch's import
and products together; it returns None (torch's screening then answers) for what it does
not do: 3CosMul, centred searches, other devices, float8 tables, and more extreme rows
than it can rescore for every question.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from embinspect.errors import QueryError
from embinspect.tables import array_scan, exact, scaling
from embinspect.tables.scaling import SAFE_NORMS
from embinspect.tables.scoring import EXACT_BLOCK_BYTES, U32, CosineScorer, Scored, ranked
from embinspect.tables.table import EmbeddingTable, readable_without_torch

if TYPE_CHECKING:
    import numpy as np

# Rough rates of a small x86 machine, only to choose between two exact paths (a wrong
# guess costs time, never an answer): float32 BLAS and torch's bf16 products in
# multiply-adds ×2 a second, and the import of torch.
FLOAT32_RATE = 150e9
BFLOAT16_RATE = 600e9
TORCH_IMPORT_S = 1.0
# Word-product block: rows whose products with every word take about this many bytes.
PRODUCT_BYTES = 8 * 1024 * 1024
# Rows bounded together: a question's sums over a stretch are computed only where the
# stretch's bound reaches its threshold.
STRETCH = 64
# (question, stretch) pairs summed at once: about 4 MB of float32 sums.
SUMS_AT_ONCE = 16384
# (question, row) pairs kept for rescoring at most (about 100 MB of them), past which the
# suite goes to torch's screening: a table of near-ties, not a real checkpoint.
MAX_KEPT = 4_000_000
# Stands for a row that can answer no question (zero, NaN, left out by --restrict, or
# extreme and rescored apart): the sum of three of them is the same number, never NaN.
NO_ROW = -1e30
# Rescoring extreme rows for every question stops paying past this many pairs.
MAX_EXTREME_PAIRS = 4_000_000


def choose(table: EmbeddingTable, questions: int, words: int, cpu: bool, centered: bool) -> bool:
    """Whether this path answers ``questions`` 3CosAdd questions over ``words`` distinct
    words (else torch's screening)."""
    wanted = array_scan.engine()
    if wanted == "torch" or centered or not cpu or not readable_without_torch(table.header):
        return False
    if wanted == "numpy":
        return True
    work = 2 * table.rows * table.dim
    ours = work * words / FLOAT32_RATE
    theirs = work * questions / BFLOAT16_RATE
    if "torch" not in sys.modules:
        theirs += TORCH_IMPORT_S
    return ours <= theirs


def analogies(
    table: EmbeddingTable,
    triples: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
) -> list[list[Scored] | QueryError] | None:
    """The k best rows of each question ``(A, B, C)`` of ``triples`` (Q, 3) row ids,
    nearest to unit A - unit B + unit C with A, B and C left out, exact, best first, ties
    to the lower id: ``scoring.top_k`` of the torch screening's 3CosAdd scorer. Every
    row of a question must be finite and nonzero (the caller sets the others aside).
    None where this path does not answer (see the module's docstring)."""
    import numpy as np

    count = triples.shape[0]
    if count == 0:
        return []
    words, where = np.unique(triples, return_inverse=True)
    where = where.reshape(count, 3)
    stored = table.gather_array(words)
    units = scaling.array_units(stored)
    limit = table.rows
    if allowed is not None:
        if not bool(allowed.any()):
            return [[] for _ in range(count)]
        limit = int(np.flatnonzero(allowed)[-1]) + 1
    known = table.row_stats.get(array_scan.STATS_KEY)
    norms = np.empty(table.rows, dtype=np.float32) if known is None else None
    try:
        found = _screen(
            table,
            units.astype(np.float32),
            (words, stored),
            where,
            triples,
            k,
            limit,
            allowed,
            norms,
        )
    except TooMany:
        return None
    stats = known if known is not None else array_scan.settled_stats(table, norms)
    table.row_stats[array_scan.STATS_KEY] = stats
    extreme = stats.extreme[:limit] if allowed is None else stats.extreme[:limit] & allowed[:limit]
    extreme_rows = np.flatnonzero(extreme)
    if extreme_rows.size * count > MAX_EXTREME_PAIRS:
        return None
    asked, rows = found
    if extreme_rows.size:
        asked = np.concatenate([asked, np.repeat(np.arange(count), extreme_rows.size)])
        rows = np.concatenate([rows, np.tile(extreme_rows, count)])
    # A question's own rows never answer it (they may be extreme rows added just above).
    own = (rows[:, None] == triples[asked]).any(axis=1)
    asked, rows = asked[~own], rows[~own]
    scores = _rescored(table, units, where, asked, rows)
    finite = np.isfinite(scores)  # NaN: no cosine, as the torch screening drops it
    asked, rows, scores = asked[finite], rows[finite], scores[finite]
    order = np.argsort(asked, kind="stable")
    asked, rows, scores = asked[order], rows[order], scores[order]
    edges = np.searchsorted(asked, np.arange(count + 1))
    ids, values = rows.tolist(), scores.tolist()
    return [
        ranked(CosineScorer, [(ids[i], values[i], 0) for i in range(edges[q], edges[q + 1])], k)
        for q in range(count)
    ]


def _slack(dim: int) -> float:
    """How far a sum of three screening cosines can be from the true sum: each is a float32
    product of a unit word with a row over the row's float32 norm (``array_scan``'s cosine
    bound, and one more rounding for the float32 division), and two float32 additions of
    values up to 3, plus the rounding of the thresholds made from them."""
    return (3 * ((2 * dim + 16) * 1.01 + 1.01) + 24) * U32


def _screen(table, words32, word_rows, where, triples, k, limit, allowed, norms):
    """``(questions, rows)``: every (question, row) pair whose screening sum is within
    twice ``_slack`` of the question's k-th best, rows below ``limit`` (and ``allowed``)
    other than the question's own; each row's float32 norm into ``norms`` when given (all
    rows, past ``limit`` too). ``word_rows``: the words' row ids and stored rows
    (float64), in ``words32``'s order."""
    import numpy as np

    slack = np.float32(2 * _slack(table.dim))
    # A start for each question's k-th best: the k-th best of the suite's own words (a
    # question's answer is most often one), so that from the first rows on, few stretches
    # of rows can come near it.
    floor = _word_sums(words32, *word_rows, where, k, limit, allowed)
    questions = _Questions(where, triples, floor, k, slack)
    step = max(STRETCH, PRODUCT_BYTES // (4 * max(words32.shape[0], 1)) // STRETCH * STRETCH)
    end = limit if norms is None else table.rows
    with np.errstate(all="ignore"):
        for start, chunk in table.array_chunks(0, end, step):
            lengths = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            if norms is not None:
                norms[start : start + chunk.shape[0]] = lengths
            if start < limit:
                questions.scan(_products(words32, chunk, lengths, start, limit, allowed), start)
    return questions.within_reach()


class _Questions:
    """The questions of a suite as a screening pass needs them: each one's (A, B) pair and
    C (word indices), its own rows, its k best screening sums so far, and the (question,
    row, sum) triples kept.

    A question's sum over a row is D[pair] + P[C] (D = P[A] - P[B], computed once per
    pair, and a suite asks each pair with many a C). Over a stretch of ``STRETCH`` rows
    it is at most max D + max P (float32 rounding is monotonic), so only the stretches
    whose bound reaches the question's threshold are summed at all: about 2% of them on
    the Google set, the rest being rows no better than the answer already known."""

    def __init__(self, where, triples, floor, k: int, slack) -> None:
        import numpy as np

        self.pairs, pair = np.unique(where[:, :2], axis=0, return_inverse=True)
        self.pair, self.third = pair.reshape(-1), where[:, 2]
        self.triples, self.floor, self.k, self.slack = triples, floor, k, slack
        self.best = np.full((where.shape[0], k), -np.inf, dtype=np.float32)
        self.kept: list[tuple[np.ndarray, ...]] = []
        self.count = 0

    def threshold(self, questions=None):
        """The sum a row must reach to be kept, per question (of ``questions``): twice the
        slack below the k-th best known, the words' or the rows' so far; a row that can
        answer nothing (NO_ROW) stays below it."""
        import numpy as np

        best = self.best if questions is None else self.best[questions]
        floor = self.floor if questions is None else self.floor[questions]
        known = np.maximum(floor, best.min(axis=1))
        return np.maximum(known - self.slack, np.float32(NO_ROW / 2))

    def scan(self, products, start: int) -> None:
        """Take in the rows of ``products`` (words × rows, from row ``start``)."""
        import numpy as np

        rows = products.shape[1]
        if rows % STRETCH:  # whole stretches: the padding is rows that answer nothing
            padding = np.full((products.shape[0], STRETCH - rows % STRETCH), NO_ROW, np.float32)
            products = np.concatenate([products, padding], axis=1)
        differences = products[self.pairs[:, 0]]
        differences -= products[self.pairs[:, 1]]
        bound = _stretch_max(differences)[self.pair]
        bound += _stretch_max(products)[self.third]
        found, stretches = np.nonzero(bound >= self.threshold()[:, None])
        # Whole stretches of the two arrays, a few MB of sums at a time.
        differences = differences.reshape(len(self.pairs), -1, STRETCH)
        products = products.reshape(products.shape[0], -1, STRETCH)
        for first in range(0, found.size, SUMS_AT_ONCE):
            asked = found[first : first + SUMS_AT_ONCE]
            stretch = stretches[first : first + SUMS_AT_ONCE]
            sums = differences[self.pair[asked], stretch]
            sums += products[self.third[asked], stretch]
            # Each question's own rows never answer it.
            local = self.triples[asked] - start - (stretch * STRETCH)[:, None]
            at, which = np.nonzero((local >= 0) & (local < STRETCH))
            sums[at, local[at, which]] = -np.inf
            self._take_best(asked, sums)
            at, column = np.nonzero(sums >= self.threshold(asked)[:, None])
            if at.size:
                rows_kept = stretch[at] * STRETCH + column + start
                self._keep(asked[at], rows_kept, sums[at, column])

    def _keep(self, asked, rows, sums) -> None:
        """Hold on to these pairs; past MAX_KEPT of them, only those the thresholds now
        allow, and ``TooMany`` if that is still too many (a crowd of near-ties)."""
        self.kept.append((asked, rows, sums))
        self.count += asked.size
        if self.count > MAX_KEPT:
            self.kept = [self._reaching()]
            self.count = self.kept[0][0].size
            if self.count > MAX_KEPT:
                raise TooMany

    def _take_best(self, asked, sums) -> None:
        """Merge each stretch's k best sums into its question's k best (each question's
        stretches are distinct rows, so no row counts twice). ``asked`` is ascending."""
        import numpy as np

        if self.k == 1:
            starts = np.flatnonzero(np.r_[True, asked[1:] != asked[:-1]])
            mine = asked[starts]
            highest = np.maximum.reduceat(_last_max(sums), starts)
            self.best[mine, 0] = np.maximum(self.best[mine, 0], highest)
            return
        k = min(self.k, sums.shape[1])
        top = np.partition(sums, sums.shape[1] - k, axis=1)[:, -k:]
        mine = np.unique(asked)
        values = np.concatenate([top.reshape(-1), self.best[mine].reshape(-1)])
        owners = np.concatenate([np.repeat(asked, k), np.repeat(mine, self.k)])
        order = np.lexsort((-values, owners))
        values, owners = values[order], owners[order]
        place = np.arange(owners.size) - np.searchsorted(owners, owners)
        first = place < self.k
        self.best[owners[first], place[first]] = values[first]

    def within_reach(self):
        """The (questions, rows) kept whose sums reach the final thresholds (a pair kept
        early, against a lower k-th best, may not)."""
        asked, rows, _ = self._reaching()
        return asked, rows

    def _reaching(self):
        import numpy as np

        if not self.kept:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0, dtype=np.float32)
        asked, rows, sums = (np.concatenate(column) for column in zip(*self.kept, strict=True))
        reach = sums >= self.threshold()[asked]
        return asked[reach], rows[reach], sums[reach]


class TooMany(Exception):
    """More (question, row) pairs within reach than this path rescores: the caller hands
    the suite to torch's screening, whose top_k takes crowds a query at a time."""


def _stretch_max(values):
    """The maximum of each ``STRETCH`` columns of ``values`` (n, whole stretches):
    (n, stretches)."""
    return _last_max(values.reshape(values.shape[0], -1, STRETCH))


def _last_max(values):
    """``values.max(axis=-1)`` for a last axis of ``STRETCH``: halves folded onto halves
    (numpy reduces a short last axis one element at a time, twenty times slower)."""
    import numpy as np

    while values.shape[-1] > 1:
        half = values.shape[-1] // 2
        values = np.maximum(values[..., :half], values[..., half:])
    return values[..., 0]


def _products(words32, chunk, lengths, start: int, limit: int, allowed):
    """(words × rows) float32 cosines of each word with each row of ``chunk`` (rows from
    ``start``), NO_ROW for a row that can answer nothing here: zero, NaN, infinite or
    extreme rows, and those past ``limit`` or not ``allowed``."""

    low, high = SAFE_NORMS
    products = words32 @ chunk.T
    products /= lengths
    gone = ~((lengths >= low) & (lengths <= high))
    if allowed is not None:
        gone |= ~allowed[start : start + chunk.shape[0]]
    gone[max(0, limit - start) :] = True
    products[:, gone] = NO_ROW
    return products


def _word_sums(words32, words, stored, where, k: int, limit: int, allowed):
    """Each question's k-th best screening sum over the suite's own word rows (those that
    may answer it: not its own, inside ``limit`` and ``allowed``, norms inside
    SAFE_NORMS), -inf where fewer than k may: k true sums of distinct rows, so a lower
    bound of the k-th best. ``words``: the words' row ids, ``stored`` their rows, read
    once by ``analogies``."""
    import numpy as np

    rows = stored.astype(np.float32)
    with np.errstate(all="ignore"):
        lengths = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        cosines = _products(words32, rows, lengths, 0, len(words), None)  # columns: words
    cosines[:, words >= limit] = NO_ROW
    if allowed is not None:
        cosines[:, ~allowed[words]] = NO_ROW
    sums = cosines[where[:, 0]] - cosines[where[:, 1]] + cosines[where[:, 2]]
    sums[np.arange(len(where))[:, None], where] = -np.inf  # its own rows: not an answer
    if sums.shape[1] < k:
        return np.full(len(where), -np.inf, dtype=np.float32)
    kth = np.partition(sums, sums.shape[1] - k, axis=1)[:, -k]
    return np.where(kth > NO_ROW / 2, kth, -np.inf).astype(np.float32)


def _rescored(table: EmbeddingTable, units, where, asked, rows) -> np.ndarray:
    """Float64 cosine of each row ``rows[i]`` with the direction of question ``asked[i]``
    (its words' ``units``, the rows ``where`` names: unit A - unit B + unit C, made a unit
    by ``exact.query_units``, as the torch screening's scorer makes it), on the stored row
    scaled by its own power of two (``scoring``'s rescoring: the same bits, scaled or not,
    for a row inside ``SAFE_NORMS``). A few MB of pairs at a time: no temporary of every
    question's direction."""
    import numpy as np

    scores = np.empty(len(rows))
    piece = max(1, EXACT_BLOCK_BYTES // (8 * table.dim))
    for begin in range(0, len(rows), piece):
        questions = where[asked[begin : begin + piece]]
        directions = units[questions[:, 0]] - units[questions[:, 1]] + units[questions[:, 2]]
        values, _ = scaling.array_scaled(table.gather_array(rows[begin : begin + piece]))
        scores[begin : begin + piece] = exact.cosines(values, exact.query_units(directions))
    return scores
