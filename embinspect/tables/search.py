"""What every search over one embedding table shares.

``Searcher`` prepares the table, the tokenizer, row masks, the mean row and the device
once; ``in_batches`` answers queries a batch at a time, so thousands of queries cost one
pass over the table per batch. The commands that search (``analyses.neighbors``,
``analyses.analogy``, ``analyses.compare``, ``analyses.plot``, ``analyses.suites``) build
their results on it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from embinspect.errors import Option, QueryError, UsageError, note
from embinspect.model.checkpoint import Checkpoint
from embinspect.model.tokenizer import Vocabulary, whole_word
from embinspect.tables import array_scan, scaling
from embinspect.tables.device import resolve_device
from embinspect.tables.queries import QueryResolver, ResolvedQuery, printable, query_array
from embinspect.tables.scoring import CosineScorer, CosMulScorer, Scored, make_scorer, top_k
from embinspect.tables.table import EmbeddingTable

if TYPE_CHECKING:
    import numpy as np
    import torch

T = TypeVar("T")

FILTERS = ("none", "words")
ANALOGY_METHODS = ("add", "mul")


@dataclass(frozen=True)
class Neighbor:
    """One row of a result list: its rank (1 is nearest), row id, token and score."""

    rank: int
    token_id: int
    token: str | None
    score: float


class Searcher:
    def __init__(
        self,
        checkpoint: Checkpoint,
        vocabulary: Vocabulary | None,
        *,
        table: str = "input",
        device: str = "auto",
        center: bool = False,
        word_filter: str = "none",
        keep_query: bool = False,
        leading_space: bool = True,
        pool: str = "mean",
        batch_size: int = 256,
        restrict: int | None = None,
    ) -> None:
        if word_filter not in FILTERS:
            raise UsageError(Option("word_filter", word_filter), ": choose none or words")
        if batch_size < 1:
            raise UsageError(Option("batch_size"), " must be at least 1")
        header = checkpoint.table_header(table)
        self.table = EmbeddingTable(checkpoint.files, header)
        self.provenance = checkpoint.provenance(header)  # carried by every result
        # A position table chosen with --tensor: rows named by index, queried by #id.
        vocabulary, unlabelled = checkpoint.labelled(header, vocabulary)
        self.vocabulary = vocabulary
        # The CPU (``cpu``, or ``auto`` with no GPU in sight) is named without torch:
        # compare, which reads only its queries' rows, and the numpy scan never import
        # it; a torch scan resolves it when it first needs it (``device``).
        self._device_name = device
        cpu = array_scan.cpu_without_torch(device)
        self._device = None if cpu else resolve_device(device)
        self.resolver = QueryResolver(
            vocabulary, self.table.rows, leading_space=leading_space, pool=pool,
            unlabelled=unlabelled,
        )  # fmt: skip
        self.center = self.table.mean_row() if center else None
        # The same mean row as a numpy array, for what searches without torch's arrays.
        self.center_array = self.center.numpy() if self.center is not None else None
        self.keep_query = keep_query
        self.batch_size = batch_size
        self.variants: dict[str, set[int]] = {}
        self.allowed = self._allowed_rows(word_filter, restrict)

    @property
    def device(self) -> torch.device:
        """The torch device that scores the table (resolved on first use for ``cpu``)."""
        if self._device is None:
            self._device = resolve_device(self._device_name)
        return self._device

    @property
    def _on_cpu(self) -> bool:
        """Whether this searcher scans on the CPU (known without torch for ``cpu``/``auto``
        with no GPU in sight; else from the resolved device)."""
        return self._device is None or self._device.type == "cpu"

    def _allowed_rows(self, word_filter: str, restrict: int | None) -> np.ndarray | None:
        """Rows a result may name (bool, (rows,)): rows with a token (not padding), whole
        words if asked, among the first ``restrict`` rows when given (gensim's
        restrict_vocab); None when every row may be."""
        import numpy as np

        vocabulary = self.vocabulary
        if restrict is not None and restrict < 1:
            raise UsageError(Option("restrict"), " must be at least 1")
        limit = self.table.rows if restrict is None else min(restrict, self.table.rows)
        if vocabulary is None:
            if word_filter == "words":
                raise UsageError(Option("word_filter", "words"), " needs a tokenizer")
            if limit == self.table.rows:
                return None
            return np.arange(self.table.rows) < limit
        every_row = limit == self.table.rows and vocabulary.size >= self.table.rows
        if word_filter == "none" and every_row:
            return None
        allowed = np.zeros(self.table.rows, dtype=bool)
        for token_id in range(limit):
            token = vocabulary.id_to_token(token_id)
            if token is None:
                continue
            if word_filter == "words":
                word = whole_word(token, vocabulary, token_id)
                if word is not None:
                    allowed[token_id] = True
                    self.variants.setdefault(word.casefold(), set()).add(token_id)
            else:
                allowed[token_id] = True
        return allowed

    def limit_k(self, k: int) -> int:
        """``k`` as asked, or the table's row count when it asks for more (then with a note):
        every row is a result then, and a larger buffer would only cost memory."""
        if k <= self.table.rows:
            return k
        note(
            Option("k", metavar=f"{k:,}"),
            f" is more than the {self.table.rows:,} rows of {self.table.name}; "
            "listing every row that can be a result",
        )
        return self.table.rows

    def note_left_out(self) -> None:
        """After a search: a note of how many rows were left out of results for being all
        zeros or holding NaN or infinity (padding rows and filtered rows not counted)."""
        import numpy as np

        stats = next(iter(self.table.row_stats.values()), None)
        if stats is None:
            return
        # Either scan's stats: numpy arrays, or torch tensors (perhaps on a GPU).
        zero, broken = (
            np.asarray(m if isinstance(m, np.ndarray) else m.cpu().numpy())  # type: ignore[attr-defined]
            for m in (stats.zero, stats.broken)  # type: ignore[attr-defined]
        )
        if self.allowed is not None:
            zero, broken = zero & self.allowed, broken & self.allowed
        counts = {"all zeros": int(zero.sum()), "with NaN or infinite values": int(broken.sum())}
        if not any(counts.values()):
            return
        parts = ", ".join(f"{count:,} {what}" for what, count in counts.items() if count)
        total = sum(counts.values())
        rows = "row" if total == 1 else "rows"
        note(f"{total:,} {rows} of {self.table.name} left out of results: {parts}")

    def token(self, token_id: int) -> str | None:
        return self.vocabulary.id_to_token(token_id) if self.vocabulary else None

    def _ranked(self, scored) -> list[Neighbor]:
        return [
            Neighbor(rank, s.token_id, self.token(s.token_id), s.score)
            for rank, s in enumerate(scored, start=1)
        ]

    def own_rows(self, resolved: ResolvedQuery) -> set[int]:
        """The query's tokens and, with --filter words, their case and space variants."""
        own = set(resolved.token_ids)
        if self.vocabulary is not None and self.variants:
            for token_id in resolved.token_ids:
                word = whole_word(self.token(token_id) or "", self.vocabulary, token_id)
                if word is not None:
                    own |= self.variants.get(word.casefold(), set())
        return own

    def resolve_array(self, query: str, needs_direction: bool) -> tuple[ResolvedQuery, np.ndarray]:
        """How a query resolved, and its float64 vector (dim,) as a numpy array, read and
        pooled without torch (``_vector``'s checks, step for step); QueryError when it
        cannot be scored."""
        import numpy as np

        resolved = self.resolver.resolve(query)
        vector = query_array(self.table, resolved)
        finite = bool(np.isfinite(vector).all())
        if not finite and resolved.pooled == "mean":
            # The sum of huge finite rows can overflow where their mean does not.
            vector = scaling.array_mean(self.table.gather_array(resolved.token_ids))
            finite = bool(np.isfinite(vector).all())
        if not finite:
            raise QueryError(f"{resolved.query}: its row holds NaN or infinite values")
        moved = vector - self.center_array if self.center_array is not None else vector
        # Zero only when every component is: the norm of a row of 1e-200 underflows.
        if needs_direction and not bool(moved.any()):
            raise QueryError(f"{resolved.query}: a zero vector has no direction to compare")
        return resolved, vector

    def resolve_arrays(
        self, queries: list[str], needs_direction: bool
    ) -> tuple[list[ResolvedQuery], np.ndarray]:
        """(resolved queries, their float64 vectors (n, dim) in numpy), or the QueryError
        of the first bad one."""
        import numpy as np

        answers = [self.resolve_array(query, needs_direction) for query in queries]
        return [a[0] for a in answers], np.stack([a[1] for a in answers])

    def resolve_vector(self, query: str) -> tuple[ResolvedQuery, torch.Tensor]:
        """How a query resolved, and its float64 vector (dim,); QueryError when it cannot
        be compared (no row, NaN, or a zero vector)."""
        resolved, vectors = self.resolve_many([query], needs_direction=True)
        return resolved[0], vectors[0]

    def stored_vector(self, query: str) -> np.ndarray:
        """The query's vector as the table holds it, shape (dim,): its row, or its rows
        pooled as searches pool them; float64 for a float64 table, else float32 (which
        holds bf16, f16 and dequantized rows exactly). NaN and zeros are given as they
        are: nothing is compared."""
        import numpy as np

        vector = query_array(self.table, self.resolver.resolve(query))
        dtype = np.float64 if self.table.stored_dtype == "float64" else np.float32
        return np.asarray(vector, dtype=dtype)

    def resolve_many(self, queries: list[str], needs_direction: bool):
        """``resolve_arrays`` with the vectors as a torch tensor."""
        import torch

        resolved, vectors = self.resolve_arrays(queries, needs_direction)
        return resolved, torch.from_numpy(vectors)

    def top_k(
        self, metric: str, queries: np.ndarray, k: int, exclude: list[set[int]]
    ) -> list[list[Scored] | QueryError]:
        """The k best rows for each query (float64, (B, dim)) by ``metric`` (cosine, dot,
        l2), exact (``scoring.top_k``): scanned in numpy when that is cheaper than
        importing torch (``array_scan.choose``), else by torch, on this searcher's device;
        both rescore and rank their candidates by the same code."""
        centered = self.center is not None
        if array_scan.choose(self.table, metric, queries.shape[0], centered, self._on_cpu):
            answer = array_scan.top_k_array(self.table, metric, queries, k, exclude, self.allowed)
            if answer is not None:
                return answer
        import torch

        scorer = make_scorer(metric, torch.from_numpy(queries), self.center, self.device)
        return top_k(self.table, scorer, k, exclude, self.allowed, self.device)

    def in_batches(self, items, resolve, score):
        """For each item, in input order and a batch at a time: ``(item, resolved,
        ranked)``, or ``(item, QueryError, None)`` when it could not be resolved or
        scored. A batch is at most ``batch_size`` items, and only those at hand when
        ``items`` arrive as stdin's lines do (``at_hand``).

        ``resolve(item)`` gives (resolved queries, vectors); ``score(good)`` gives one
        top-k list (or QueryError) per resolvable item of the batch, in one pass over
        the table.
        """
        for batch in at_hand(items, self.batch_size):
            with paused_collection():
                done = list(self._batch(batch, resolve, score))
            yield from done

    def _batch(self, batch, resolve, score):
        """``in_batches`` for the items of one batch."""
        answered = []
        for item in batch:
            try:
                answered.append(resolve(item))
            except QueryError as err:
                answered.append(err)
        good = [a for a in answered if not isinstance(a, QueryError)]
        scored = iter(score(good) if good else [])
        for item, answer in zip(batch, answered, strict=True):
            if isinstance(answer, QueryError):
                yield item, answer, None
                continue
            ranked = next(scored)
            if isinstance(ranked, QueryError):  # a score beyond float64
                named = item if isinstance(item, str) else " ".join(item)
                yield item, QueryError(f"{printable(named)}: {ranked.message}"), None
            else:
                yield item, answer[0], self._ranked(ranked)

    def analogies_of_rows(
        self, triples: Iterable[tuple[int, int, int]], k: int, method: str = "add"
    ) -> Iterator[list[int] | str]:
        """For each (A, B, C) given as row ids: the ids of the k rows nearest to
        A - B + C (A, B and C left out), or why it cannot be answered. The batch path of
        the evaluation suites: no query text to resolve, one gather per batch."""
        if method not in ANALOGY_METHODS:
            raise UsageError(Option("method", method), ": choose add or mul")
        if method == "add" and self.center is None:
            triples = list(triples)
            answers = self._suite_answers(triples, k)
            if answers is not None:
                yield from answers
                return
        yield from self._screened_answers(triples, k, method)

    def _suite_answers(self, triples: list[tuple[int, int, int]], k: int) -> list | None:
        """``analogies_of_rows`` for all ``triples`` at once by ``suite_scan`` (3CosAdd,
        uncentred, on the CPU, in numpy), or None where that path does not take them."""
        import numpy as np

        from embinspect.tables import suite_scan

        ids = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        words = np.unique(ids)
        if not suite_scan.choose(self.table, len(ids), len(words), self._on_cpu, centered=False):
            return None
        values = self.table.gather_array(words)
        # Nonzero by its components, not its norm, which underflows for tiny rows.
        fine = np.isfinite(values).all(axis=1) & (values != 0).any(axis=1)
        good = fine[np.searchsorted(words, ids)].all(axis=1)
        ranked = suite_scan.analogies(self.table, ids[good], k, self.allowed)
        if ranked is None:
            return None
        return _analogy_answers(good.tolist(), ranked)

    def _screened_answers(
        self, triples: Iterable[tuple[int, int, int]], k: int, method: str
    ) -> Iterator[list[int] | str]:
        """``analogies_of_rows`` by torch's screening (``tables/screening``), a group of
        questions at a time."""
        import torch

        from embinspect.tables.screening import RANK_GROUP, screened_top_k

        iterator = iter(triples)
        # A group of questions is screened a batch at a time (one pass over the table per
        # batch), then ranked together on the rows kept.
        while batch := list(islice(iterator, max(self.batch_size, RANK_GROUP))):
            vectors = self.table.gather([i for t in batch for i in t]).reshape(len(batch), 3, -1)
            moved = vectors - self.center if self.center is not None else vectors
            # Nonzero by its components, not its norm, which underflows for tiny rows.
            usable = (torch.isfinite(moved).all(dim=2) & moved.any(dim=2)).all(dim=1).tolist()
            good = [i for i, ok in enumerate(usable) if ok]
            ranked: list[list[Scored] | QueryError] = []
            if good:
                scorer = self.analogy_scorer(vectors[good], method)
                exclude = [set(batch[i]) for i in good]
                # Thousands of questions asking for a few rows each: top_k on the rows a
                # screening pass keeps, the same answers (tables/screening.py).
                ranked = screened_top_k(
                    self.table, scorer, k, exclude, self.allowed, self.device, self.batch_size
                )
            yield from _analogy_answers(usable, ranked)

    def analogy_scorer(self, triples: torch.Tensor, method: str):
        if method == "mul":
            return CosMulScorer(triples, self.center, self.device)
        import torch

        combined = torch.from_numpy(self.analogy_directions(triples.numpy()))
        return CosineScorer(combined, self.center, self.device)

    def analogy_directions(self, triples: np.ndarray) -> np.ndarray:
        """3CosAdd's query for each (A, B, C) of ``triples`` (B, 3, dim) float64, as
        gensim's most_similar makes it: unit A - unit B + unit C, shape (B, dim); centred
        first when the searcher is (and moved back: the scorer subtracts the mean again)."""
        center = self.center_array
        centered = triples - center if center is not None else triples
        # Unit vectors scaled first, so rows of 1e-200 or 1e300 have their direction.
        flat = centered.reshape(-1, centered.shape[2])
        units = scaling.array_units(flat).reshape(centered.shape)
        combined = units[:, 0] - units[:, 1] + units[:, 2]
        return combined + center if center is not None else combined


_END = object()


NO_DIRECTION = "a row is zero or holds NaN or infinite values: it has no direction"


def _analogy_answers(
    usable: list[bool], ranked: list[list[Scored] | QueryError]
) -> list[list[int] | str]:
    """Each question's ranked row ids, or why it has none: ``ranked`` holds the answers of
    the ``usable`` questions, in order."""
    answers = iter(ranked)
    out: list[list[int] | str] = []
    for ok in usable:
        if not ok:
            out.append(NO_DIRECTION)
            continue
        scored = next(answers)
        out.append(
            scored.message if isinstance(scored, QueryError) else [s.token_id for s in scored]
        )
    return out


@contextlib.contextmanager
def paused_collection() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a batch builds its answers: tens
    of thousands of candidate tuples, scores and result objects, none in a cycle, each
    allocation counting toward a collection that walks every object alive (torch's
    included). 10,000 warm queries on MiniLM took 2.0-2.1 s instead of 2.7-3.1 s. The
    collector runs again after the batch, as it was (a caller may have turned it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def at_hand(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in batches of at most ``size``, in order. When their iterator has a
    ``ready()`` method (stdin read as lines arrive), a batch also ends where the next item
    would have to be waited for: what is at hand is answered now, so a person typing, or
    ``tail -f``, gets each answer as its line arrives."""
    iterator = iter(items)
    ready = getattr(iterator, "ready", None)
    if ready is None:
        while batch := list(islice(iterator, size)):
            yield batch
        return
    for first in iterator:
        batch = [first]
        while len(batch) < size and ready():
            item = next(iterator, _END)
            if item is _END:
                break
            batch.append(item)  # type: ignore[arg-type]  # not _END
        yield batch
