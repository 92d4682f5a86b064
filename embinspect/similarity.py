"""Neighbours, analogies and pairwise comparisons on one embedding table.

``Searcher`` prepares what every query shares (the table, the tokenizer, row masks, the
mean row, the device) once; its methods take queries and yield small result objects, in
batches, so thousands of queries cost one pass over the table per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from embinspect.checkpoint import Checkpoint
from embinspect.errors import QueryError, UsageError
from embinspect.queries import QueryResolver, ResolvedQuery, query_vector
from embinspect.scoring import CosineScorer, CosMulScorer, make_scorer, top_k
from embinspect.table import EmbeddingTable
from embinspect.tensor_names import OUTPUT
from embinspect.tokenizer import WORDPIECE, Vocabulary, stored_to_text

if TYPE_CHECKING:
    import torch

TABLES = ("input", "output")
FILTERS = ("none", "words")
ANALOGY_METHODS = ("add", "mul")


@dataclass(frozen=True)
class Neighbour:
    rank: int
    token_id: int
    token: str | None
    score: float


@dataclass(frozen=True)
class NeighboursResult:
    """The nearest rows to one query, or why the query could not be answered."""

    query: str
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    pooled: str | None = None
    neighbors: list[Neighbour] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"query": self.query, "error": self.error}
        return {k: v for k, v in asdict(self).items() if k != "error"}


@dataclass(frozen=True)
class AnalogyResult:
    """A - B + C: the rows nearest to it, A, B and C left out."""

    formula: str
    method: str
    queries: list[dict[str, Any]]  # how A, B and C resolved
    results: list[Neighbour] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "error"}
        if self.error is not None:
            data = {"formula": self.formula, "method": self.method, "error": self.error}
        return data


@dataclass(frozen=True)
class Comparison:
    """Pairwise scores of resolved items; ``matrix[i][j]`` compares items i and j."""

    metric: str
    items: list[dict[str, Any]]
    matrix: list[list[float]]
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.errors:
            del data["errors"]
        return data


def resolve_device(name: str) -> torch.device:
    """``auto`` picks a GPU that torch sees (CUDA, then Apple MPS), else the CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: torch sees no CUDA GPU here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA devices")
        # Exactness bounds assume true float32 products, not TF32.
        torch.backends.cuda.matmul.allow_tf32 = False
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available here")
    elif device.type not in {"cpu", "cuda", "mps"}:
        raise UsageError(f"--device {name}: use cpu, cuda, cuda:N, mps or auto")
    return device


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
    ) -> None:
        if table not in TABLES:
            raise UsageError(f"--table {table}: choose input or output")
        if word_filter not in FILTERS:
            raise UsageError(f"--filter {word_filter}: choose none or words")
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        header = checkpoint.token_table.header
        self.note = None
        if table == "output":
            output = checkpoint.embeddings.get(OUTPUT)
            if output is None:
                self.note = "the output head is tied: it is the token table"
            else:
                header = output.header
        self.table = EmbeddingTable(checkpoint.files, header)
        self.vocabulary = vocabulary
        self.device = resolve_device(device)
        self.resolver = QueryResolver(
            vocabulary, self.table.rows, leading_space=leading_space, pool=pool
        )
        self.center = self.table.mean_row() if center else None
        self.keep_query = keep_query
        self.batch_size = batch_size
        self.word_filter = word_filter
        self.variants: dict[str, set[int]] = {}
        self.allowed = self._allowed_rows(word_filter)

    def _allowed_rows(self, word_filter: str) -> torch.Tensor | None:
        """Rows a result may name: rows with a token (not padding), whole words if asked."""
        import torch

        vocabulary = self.vocabulary
        if vocabulary is None:
            if word_filter == "words":
                raise UsageError("--filter words needs a tokenizer")
            return None
        if word_filter == "none" and vocabulary.size >= self.table.rows:
            return None
        allowed = torch.zeros(self.table.rows, dtype=torch.bool)
        for token_id in range(self.table.rows):
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

    def token(self, token_id: int) -> str | None:
        return self.vocabulary.id_to_token(token_id) if self.vocabulary else None

    def _ranked(self, scored) -> list[Neighbour]:
        return [
            Neighbour(rank, s.token_id, self.token(s.token_id), s.score)
            for rank, s in enumerate(scored, start=1)
        ]

    def _own_rows(self, resolved: ResolvedQuery) -> set[int]:
        """The query's tokens and, with --filter words, their case and space variants."""
        own = set(resolved.token_ids)
        if self.vocabulary is not None and self.variants:
            for token_id in resolved.token_ids:
                word = whole_word(self.token(token_id) or "", self.vocabulary, token_id)
                if word is not None:
                    own |= self.variants.get(word.casefold(), set())
        return own

    def neighbours(
        self, queries: Iterable[str], k: int, metric: str = "cosine"
    ) -> Iterator[NeighboursResult]:
        """The k nearest rows to each query, in input order, a batch at a time."""
        import torch

        iterator = iter(queries)
        while batch := list(islice(iterator, self.batch_size)):
            resolved: list[ResolvedQuery | QueryError] = []
            for query in batch:
                try:
                    resolved.append(self.resolver.resolve(query))
                except QueryError as err:
                    resolved.append(err)
            good = [r for r in resolved if isinstance(r, ResolvedQuery)]
            answers = []
            if good:
                vectors = torch.stack([query_vector(self.table, r) for r in good])
                scorer = make_scorer(metric, vectors, self.center, self.device)
                exclude = [set() if self.keep_query else self._own_rows(r) for r in good]
                answers = top_k(self.table, scorer, k, exclude, self.allowed, self.device)
            answer_iter = iter(answers)
            for query, r in zip(batch, resolved, strict=True):
                if isinstance(r, QueryError):
                    yield NeighboursResult(query=query, error=r.message)
                else:
                    yield NeighboursResult(
                        r.query, r.token_ids, r.tokens, r.pooled, self._ranked(next(answer_iter))
                    )

    def analogies(
        self, triples: Iterable[tuple[str, str, str]], k: int, method: str = "add"
    ) -> Iterator[AnalogyResult]:
        """For each (A, B, C): rows nearest to A - B + C, by 3CosAdd or 3CosMul."""
        import torch

        if method not in ANALOGY_METHODS:
            raise UsageError(f"--method {method}: choose add or mul")
        iterator = iter(triples)
        while batch := list(islice(iterator, self.batch_size)):
            resolved: list[list[ResolvedQuery] | QueryError] = []
            for triple in batch:
                try:
                    resolved.append([self.resolver.resolve(q) for q in triple])
                except QueryError as err:
                    resolved.append(err)
            good = [r for r in resolved if not isinstance(r, QueryError)]
            answers = []
            if good:
                vectors = torch.stack(
                    [torch.stack([query_vector(self.table, q) for q in triple]) for triple in good]
                )
                scorer = self._analogy_scorer(vectors, method)
                exclude = [{i for q in triple for i in q.token_ids} for triple in good]
                answers = top_k(self.table, scorer, k, exclude, self.allowed, self.device)
            answer_iter = iter(answers)
            for triple, r in zip(batch, resolved, strict=True):
                formula = f"{triple[0]} - {triple[1]} + {triple[2]}"
                if isinstance(r, QueryError):
                    yield AnalogyResult(formula, method, [], error=r.message)
                else:
                    yield AnalogyResult(
                        formula, method, [q.echo() for q in r], self._ranked(next(answer_iter))
                    )

    def _analogy_scorer(self, triples: torch.Tensor, method: str):
        if method == "mul":
            return CosMulScorer(triples, self.center, self.device)
        # 3CosAdd as gensim's most_similar: the mean of unit vectors, +A -B +C.
        centered = triples - self.center if self.center is not None else triples
        units = centered / centered.norm(dim=2, keepdim=True)
        combined = units[:, 0] - units[:, 1] + units[:, 2]
        if self.center is not None:
            combined = combined + self.center  # the scorer subtracts the mean again
        return CosineScorer(combined, self.center, self.device)

    def compare(self, queries: list[str], metric: str = "cosine") -> Comparison:
        """Pairwise scores in float64 of every resolvable query."""
        import torch

        items, errors = [], []
        for query in queries:
            try:
                items.append(self.resolver.resolve(query))
            except QueryError as err:
                errors.append({"query": query, "error": err.message})
        vectors = (
            torch.stack([query_vector(self.table, r) for r in items])
            if items
            else torch.zeros((0, self.table.dim), dtype=torch.float64)
        )
        if self.center is not None:
            vectors = vectors - self.center
        matrix = pairwise(vectors, metric)
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
    raise UsageError(f"--metric {metric}: choose one of cosine, dot, l2")


def whole_word(token: str, vocabulary: Vocabulary, token_id: int) -> str | None:
    """The word a token spells if it is letters only, with an optional leading-space marker
    (``Ġking``, ``▁king``, ``king``); None for fragments, punctuation and special tokens."""
    if token_id in vocabulary.special_ids:
        return None
    if vocabulary.scheme == WORDPIECE and token.startswith("##"):
        return None
    text = stored_to_text(token, vocabulary.scheme)
    if text.startswith(" "):
        text = text[1:]
    return text if text.isalpha() else None
