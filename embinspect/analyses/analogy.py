"""``analogy``: A - B + C (king - man + woman), the rows nearest to it, A, B and C left out;
by 3CosAdd (gensim's ``most_similar``) or 3CosMul (Levy & Goldberg)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from embinspect.errors import Option, QueryError, UsageError
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable, Grid
from embinspect.tables.queries import printable, shown
from embinspect.tables.scoring import top_k
from embinspect.tables.search import ANALOGY_METHODS, Neighbor, Searcher


@dataclass(frozen=True)
class AnalogyResult(Displayable):
    """A - B + C: the rows nearest to it, A, B and C left out, or why it has no answer."""

    formula: str
    method: str
    queries: list[dict[str, Any]]  # how A, B and C resolved
    results: list[Neighbor] = field(default_factory=list)
    error: str | None = None
    provenance: Provenance | None = None

    @property
    def metric(self) -> str:
        """What ``score`` is: the cosine to A - B + C (3CosAdd), or 3CosMul's objective."""
        return "cosine" if self.method == "add" else "3cosmul"

    def to_dict(self) -> dict[str, Any]:
        """The element ``analogy --format json`` prints for this question."""
        data: dict[str, Any] = {"formula": self.formula, "method": self.method}
        if self.error is not None:
            data.update(metric=self.metric, error=self.error)
        else:
            data.update(queries=self.queries, metric=self.metric)
            data["results"] = [asdict(n) for n in self.results]
        return stamped(data, self.provenance)

    def _grid(self) -> Grid:
        title = f"{self.formula} ({self.method})"
        if self.error is not None:
            return Grid(title, [], [], after=[f"error: {self.error}"])
        rows = [[n.rank, n.token_id, n.token, n.score] for n in self.results]
        resolved = [f"{q['query']} = {' '.join(q['tokens'])}" for q in self.queries]
        header = ["rank", "id", "token", self.metric]
        return Grid(title, header, rows, before=["; ".join(resolved)])


def analogies(
    searcher: Searcher, questions: Iterable[Sequence[str]], k: int, method: str = "add"
) -> Iterator[AnalogyResult]:
    """For each (A, B, C): the k rows nearest to A - B + C, in input order, a batch at a
    time; a question that cannot be resolved yields a result carrying its ``error``."""
    import numpy as np

    if method not in ANALOGY_METHODS:
        raise UsageError(Option("method", method), ": choose add or mul")

    def score(good):
        triples = np.stack([v for _, v in good])
        exclude = [{i for q in r for i in q.token_ids} for r, _ in good]
        if method == "add":  # a cosine search for one direction each: either scan
            return searcher.top_k("cosine", searcher.analogy_directions(triples), k, exclude)
        import torch

        scorer = searcher.analogy_scorer(torch.from_numpy(triples), method)
        return top_k(searcher.table, scorer, k, exclude, searcher.allowed, searcher.device)

    def resolve(question):
        if len(question) != 3:
            raise QueryError(
                f"expected three queries A B C, got {len(question)}: {shown(' '.join(question))}"
            )
        return searcher.resolve_arrays(list(question), needs_direction=True)

    for question, answer, ranked in searcher.in_batches(questions, resolve, score):
        parts = [printable(part) for part in question]
        formula = " - ".join(parts[:2]) + (f" + {parts[2]}" if len(parts) > 2 else "")
        if ranked is None:
            yield AnalogyResult(
                formula, method, [], error=answer.message, provenance=searcher.provenance
            )
        else:
            echoed = [q.echo() for q in answer]
            yield AnalogyResult(formula, method, echoed, ranked, provenance=searcher.provenance)
