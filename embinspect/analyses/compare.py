"""``compare``: pairwise cosine (or dot, or L2 distance) of two or more queries, in float64."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from embinspect.errors import Option, QueryError, UsageError
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable, Grid
from embinspect.tables import scaling
from embinspect.tables.queries import printable
from embinspect.tables.scoring import METRICS
from embinspect.tables.search import Searcher

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Comparison(Displayable):
    """Pairwise scores of the resolved queries: ``matrix[i][j]`` compares ``items[i]`` and
    ``items[j]``; queries that could not be resolved are in ``errors``."""

    metric: str
    items: list[dict[str, Any]]
    matrix: list[list[float]]
    errors: list[dict[str, str]] = field(default_factory=list)
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``compare --format json`` prints."""
        data = asdict(self)
        del data["provenance"]
        if not self.errors:
            del data["errors"]
        return stamped(data, self.provenance)

    def _grid(self) -> Grid:
        labels = [item["query"] for item in self.items]
        rows = [[label, *scores] for label, scores in zip(labels, self.matrix, strict=True)]
        errors = [f"error: {e['error']}" for e in self.errors]
        return Grid(self.metric, ["", *labels], rows, after=errors, row_labels=True)


def compare(searcher: Searcher, queries: list[str], metric: str = "cosine") -> Comparison:
    """Pairwise scores in float64 of every resolvable query, computed with numpy: a few
    rows, which never wait on torch's import."""
    import numpy as np

    if metric not in METRICS:
        raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
    items, vectors, errors = [], [], []
    for query in queries:
        try:
            resolved, vector = searcher.resolve_array(query, metric == "cosine")
        except QueryError as err:
            errors.append({"query": printable(query), "error": err.message})
            continue
        items.append(resolved)
        vectors.append(vector)
    stacked = np.stack(vectors) if vectors else np.zeros((0, searcher.table.dim), dtype=np.float64)
    if searcher.center_array is not None:
        stacked = stacked - searcher.center_array
    matrix = pairwise(stacked, metric)
    # A query whose score with itself or an earlier query is beyond float64 (the dot
    # product of two rows of 1e200) is an error of its own; the others are answered.
    kept: list[int] = []
    for i, resolved in enumerate(items):
        beyond = [j for j in [*kept, i] if not math.isfinite(float(matrix[i, j]))]
        if beyond:
            what = "dot product" if metric == "dot" else "distance"
            other = "itself" if beyond[0] == i else printable(items[beyond[0]].query)
            message = f"{printable(resolved.query)}: its {what} with {other} is beyond "
            errors.append({"query": printable(resolved.query), "error": message + _RANGE})
        else:
            kept.append(i)
    matrix = matrix[kept][:, kept]
    echoed = [items[i].echo() for i in kept]
    return Comparison(metric, echoed, matrix.tolist(), errors, searcher.provenance)


_RANGE = "float64's range (about 1.8e308)"


def pairwise(vectors: np.ndarray, metric: str) -> np.ndarray:
    """(n, n) float64 scores between rows of ``vectors`` (n, dim), computed on rows scaled
    by their own power of two (``tables.scaling``): exact for rows of any finite size,
    inf only where the score itself is beyond float64."""
    if metric == "cosine":
        units = scaling.array_units(vectors)
        return units @ units.T
    if metric == "dot":
        values, exponent = scaling.array_scaled(vectors)
        return scaling.array_ldexp(values @ values.T, exponent[:, None] + exponent[None, :])
    if metric == "l2":
        # Direct differences: cdist's matmul shortcut loses digits for close vectors.
        count = vectors.shape[0]
        differences = (vectors[:, None, :] - vectors[None, :, :]).reshape(count * count, -1)
        return scaling.array_norms(differences).reshape(count, count)
    raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
