"""``outlier``: which query does not belong with the others (gensim's ``doesnt_match``):
the one whose unit vector is farthest, by cosine, from the mean of the unit vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from embinspect.errors import QueryError, UsageError
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable, Grid
from embinspect.tables import scaling
from embinspect.tables.queries import printable
from embinspect.tables.search import Searcher

MIN_QUERIES = 3  # with two, both are equally far from their mean: neither is the odd one


@dataclass(frozen=True)
class OutlierResult(Displayable):
    """The queries ranked by the cosine of their unit vector to the (unit) mean of all
    their unit vectors, most central first; ``outlier`` is the last one's query (None when
    fewer than three queries could be resolved: the ranking is still given, but with two
    the odd one out is float noise). Queries that could not be resolved are in ``errors``
    and take no part, as gensim leaves out words it does not know."""

    outlier: str | None
    ranking: list[dict[str, Any]]  # {query, token_ids, tokens, pooled, cosine}
    errors: list[dict[str, str]] = field(default_factory=list)
    provenance: Provenance | None = None

    @property
    def metric(self) -> str:
        return "cosine"

    def to_dict(self) -> dict[str, Any]:
        """What ``outlier --format json`` prints."""
        data: dict[str, Any] = {
            "outlier": self.outlier,
            "metric": self.metric,
            "ranking": self.ranking,
        }
        if self.errors:
            data["errors"] = self.errors
        return stamped(data, self.provenance)

    def _grid(self) -> Grid:
        title = f"outlier: {self.outlier}" if self.outlier is not None else "no outlier"
        rows = [
            [rank, item["query"], " ".join(item["tokens"]), item["cosine"]]
            for rank, item in enumerate(self.ranking, start=1)
        ]
        after = [f"error: {e['error']}" for e in self.errors]
        return Grid(title, ["rank", "query", "tokens", "cosine to the mean"], rows, after=after)


def check_queries(queries: Sequence[str]) -> None:
    """UsageError unless there are enough queries to name one that does not belong."""
    if len(queries) < MIN_QUERIES:
        raise UsageError(
            f"outlier needs at least {MIN_QUERIES} queries to find the one that does not "
            f"belong; got {len(queries)}"
        )


def outlier(searcher: Searcher, queries: Sequence[str]) -> OutlierResult:
    """Rank ``queries`` by the cosine of each unit vector to the mean of all of them
    (normalised), in float64, most central first (ties, the cosines clamped to [-1, 1],
    keep the input order); the last is the outlier when at least three queries resolved.
    Centred on the table's mean row when the searcher is."""
    import torch

    check_queries(queries)
    resolved, vectors, errors = [], [], []
    for query in queries:
        try:
            answer, vector = searcher.resolve_many([query], needs_direction=True)
        except QueryError as err:
            errors.append({"query": printable(query), "error": err.message})
            continue
        resolved.append(answer[0])
        vectors.append(vector[0])
    if not resolved:
        return OutlierResult(None, [], errors, searcher.provenance)
    stacked = torch.stack(vectors)
    if searcher.center is not None:
        stacked = stacked - searcher.center
    units = scaling.units(stacked)
    mean = units.mean(dim=0)
    if not bool(mean.any()):
        raise QueryError("the unit vectors cancel out: their mean has no direction to compare")
    # Clamped: the same unit vector three times is 1.0000000000000007 off by rounding.
    cosines = (units @ scaling.units(mean.unsqueeze(0))[0]).clamp(-1.0, 1.0).tolist()
    order = sorted(range(len(resolved)), key=lambda i: -cosines[i])
    ranking = [{**resolved[i].echo(), "cosine": cosines[i]} for i in order]
    named = ranking[-1]["query"] if len(resolved) >= MIN_QUERIES else None
    return OutlierResult(named, ranking, errors, searcher.provenance)
