"""``neighbors``: the k rows nearest to each query, exact, the query's own tokens left out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any, TypeVar

from embinspect.errors import Option, UsageError
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable, Grid
from embinspect.tables.queries import printable
from embinspect.tables.scoring import METRICS, make_scorer, top_k
from embinspect.tables.search import Neighbor, Searcher

T = TypeVar("T")


@dataclass(frozen=True)
class NeighborsResult(Displayable):
    """The nearest rows to one query, or why the query could not be answered (``error``);
    ``score`` is ``metric``'s (cosine, dot, or l2: a distance, nearest first)."""

    query: str
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    pooled: str | None = None  # how several tokens became one vector ("mean of 2 tokens")
    neighbors: list[Neighbor] = field(default_factory=list)
    error: str | None = None
    lowercased: bool = False  # the text was lowercased to be looked up (uncased word vectors)
    metric: str = "cosine"
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        """The element ``neighbors --format json`` prints for this query (``lowercased`` only
        when true)."""
        data: dict[str, Any] = {"query": self.query}
        if self.error is not None:
            data.update(metric=self.metric, error=self.error)
        else:
            data.update(token_ids=self.token_ids, tokens=self.tokens, pooled=self.pooled)
            if self.lowercased:
                data.update(lowercased=True)
            data.update(metric=self.metric, neighbors=[asdict(n) for n in self.neighbors])
        return stamped(data, self.provenance)

    def _grid(self) -> Grid:
        title = f"neighbors of {self.query}"
        return ranked_grid(title, self.tokens, self.pooled, self.neighbors, self.error, self.metric)


def ranked_grid(
    title: str,
    tokens: list[str],
    pooled: str | None,
    ranked: list[Neighbor],
    error: str | None,
    score_name: str = "score",
) -> Grid:
    """A ranked list as a table: rank, id, token, and the score named after its metric."""
    if error is not None:
        return Grid(title, [], [], after=[f"error: {error}"])
    before = [f"tokens: {' '.join(tokens)}" + (f" (pooled: {pooled})" if pooled else "")]
    rows = [[n.rank, n.token_id, n.token, n.score] for n in ranked]
    return Grid(title, ["rank", "id", "token", score_name], rows, before=before)


_END = object()


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


def neighbors(
    searcher: Searcher, queries: Iterable[str], k: int, metric: str = "cosine"
) -> Iterator[NeighborsResult]:
    """The k nearest rows to each query, in input order, a batch at a time; a query that
    cannot be resolved yields a result carrying its ``error``."""
    import torch

    if metric not in METRICS:
        raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")

    def score(good):
        vectors = torch.cat([vector for _, vector in good])
        scorer = make_scorer(metric, vectors, searcher.center, searcher.device)
        exclude = [set() if searcher.keep_query else searcher.own_rows(r[0]) for r, _ in good]
        return top_k(searcher.table, scorer, k, exclude, searcher.allowed, searcher.device)

    def resolve(query):
        return searcher.resolve_many([query], needs_direction=metric == "cosine")

    stamp = {"metric": metric, "provenance": searcher.provenance}
    answered = (
        answer
        for batch in at_hand(queries, searcher.batch_size)
        for answer in searcher.in_batches(batch, resolve, score)
    )
    for query, answer, ranked in answered:
        if ranked is None:
            yield NeighborsResult(query=printable(query), error=answer.message, **stamp)
        else:
            r = answer[0]
            yield NeighborsResult(
                r.query, r.token_ids, r.tokens, r.pooled, ranked, lowercased=r.lowercased, **stamp
            )
