"""``compare``: pairwise cosine (or dot, or L2 distance) of two or more queries, in float64."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from embinspect.errors import Option, QueryError, UsageError
from embinspect.result import Displayable, Grid
from embinspect.tables.queries import printable
from embinspect.tables.scoring import METRICS
from embinspect.tables.search import Searcher

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Comparison(Displayable):
    """Pairwise scores of the resolved queries: ``matrix[i][j]`` compares ``items[i]`` and
    ``items[j]``; queries that could not be resolved are in ``errors``."""

    metric: str
    items: list[dict[str, Any]]
    matrix: list[list[float]]
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What ``compare --format json`` prints."""
        data = asdict(self)
        if not self.errors:
            del data["errors"]
        return data

    def _grid(self) -> Grid:
        labels = [item["query"] for item in self.items]
        rows = [[label, *scores] for label, scores in zip(labels, self.matrix, strict=True)]
        errors = [f"error: {e['error']}" for e in self.errors]
        return Grid(self.metric, ["", *labels], rows, after=errors, row_labels=True)


def compare(searcher: Searcher, queries: list[str], metric: str = "cosine") -> Comparison:
    """Pairwise scores in float64 of every resolvable query."""
    import torch

    if metric not in METRICS:
        raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
    items, vectors, errors = [], [], []
    for query in queries:
        try:
            resolved, vector = searcher.resolve_many([query], metric == "cosine")
        except QueryError as err:
            errors.append({"query": printable(query), "error": err.message})
            continue
        items.append(resolved[0])
        vectors.append(vector[0])
    stacked = (
        torch.stack(vectors)
        if vectors
        else torch.zeros((0, searcher.table.dim), dtype=torch.float64)
    )
    if searcher.center is not None:
        stacked = stacked - searcher.center
    matrix = pairwise(stacked, metric)
    return Comparison(metric, [r.echo() for r in items], matrix.tolist(), errors)


def pairwise(vectors: torch.Tensor, metric: str) -> torch.Tensor:
    """(n, n) float64 scores between rows of ``vectors`` (n, dim)."""
    if metric == "cosine":
        units = vectors / vectors.norm(dim=1, keepdim=True)
        return units @ units.T
    if metric == "dot":
        return vectors @ vectors.T
    if metric == "l2":
        # Direct differences: cdist's matmul shortcut loses digits for close vectors.
        return ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(dim=2).sqrt()
    raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
