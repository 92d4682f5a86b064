"""``neighbors``: the k rows nearest to each query, exact, the query's own tokens left out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embinspect.errors import ModelError, Option, QueryError, UsageError
from embinspect.model.checkpoint import Provenance, stamped
from embinspect.result import Displayable, Grid
from embinspect.sources.exported import NPY_MAGIC, read_npy
from embinspect.tables.queries import printable
from embinspect.tables.scoring import METRICS
from embinspect.tables.search import Neighbor, Searcher
from embinspect.text import brief
from embinspect.text import quoted as shown

if TYPE_CHECKING:
    import numpy as np


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
    # gensim's most_similar(positive, negative): how each term resolved (None otherwise).
    positive: list[dict[str, Any]] | None = None
    negative: list[dict[str, Any]] | None = None
    vector: bool = False  # the query is a vector given as it is (gensim's similar_by_vector)

    def to_dict(self) -> dict[str, Any]:
        """The element ``neighbors --format json`` prints for this query (``lowercased`` and
        ``vector`` only when true, ``positive`` and ``negative`` only for such terms)."""
        data: dict[str, Any] = {"query": self.query}
        if self.error is not None:
            data.update(metric=self.metric, error=self.error)
        else:
            data.update(token_ids=self.token_ids, tokens=self.tokens, pooled=self.pooled)
            if self.lowercased:
                data.update(lowercased=True)
            if self.positive is not None or self.negative is not None:
                data.update(positive=self.positive or [], negative=self.negative or [])
            if self.vector:
                data.update(vector=True)
            data.update(metric=self.metric, neighbors=[neighbor_dict(n) for n in self.neighbors])
        return stamped(data, self.provenance)

    def _grid(self) -> Grid:
        title = f"neighbors of {self.query}"
        return ranked_grid(title, self.tokens, self.pooled, self.neighbors, self.error, self.metric)


def neighbor_dict(n: Neighbor) -> dict[str, Any]:
    """One ranked row as JSON prints it: ``asdict(n)``, built directly (``asdict``
    deep-copies every field, the larger part of a 10,000-query stream's JSON output)."""
    return {"rank": n.rank, "token_id": n.token_id, "token": n.token, "score": n.score}


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


def neighbors(
    searcher: Searcher,
    queries: Iterable[str] | None,
    k: int,
    metric: str = "cosine",
    *,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> Iterator[NeighborsResult]:
    """The k nearest rows to each query, in input order, a batch at a time; a query that
    cannot be resolved yields a result carrying its ``error``.

    With ``positive`` or ``negative`` terms, gensim's ``most_similar(positive, negative)``:
    each query is one more positive term (no queries: the terms alone are one question),
    and the rows nearest, by cosine, to the sum of the terms' unit vectors, positives
    added and negatives taken away; every term's rows are left out of the results."""
    if metric not in METRICS:
        raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
    if positive or negative:
        yield from _combinations(searcher, queries, k, metric, list(positive), list(negative))
        return

    import numpy as np

    def score(good):
        vectors = np.concatenate([vector for _, vector in good])
        exclude = [set() if searcher.keep_query else searcher.own_rows(r[0]) for r, _ in good]
        return searcher.top_k(metric, vectors, k, exclude)

    def resolve(query):
        return searcher.resolve_arrays([query], needs_direction=metric == "cosine")

    stamp = {"metric": metric, "provenance": searcher.provenance}
    for query, answer, ranked in searcher.in_batches(queries, resolve, score):
        if ranked is None:
            yield NeighborsResult(query=printable(query), error=answer.message, **stamp)
        else:
            r = answer[0]
            yield NeighborsResult(
                r.query, r.token_ids, r.tokens, r.pooled, ranked, lowercased=r.lowercased, **stamp
            )


def formula(positive: Sequence[str], negative: Sequence[str]) -> str:
    """``king + woman - man``: positive terms joined by +, negative ones after a -."""
    text = " + ".join(printable(term) for term in positive)
    for term in negative:
        text += f" - {printable(term)}" if text else f"- {printable(term)}"
    return text


def combined_direction(units: np.ndarray, plus: int) -> np.ndarray:
    """The terms' unit vectors (n, dim), the first ``plus`` positive, the rest negative,
    summed in the order p1 - n1 + p2 - n2 + ... (then the rest): the order ``analogy``
    sums A - B + C in, so that ``analogy A B C`` and ``--positive A --positive C
    --negative B`` agree to the last bit. Shape (dim,)."""
    added, taken = list(units[:plus]), list(units[plus:])
    total = added[0] if added else -taken.pop(0)
    for i in range(1, max(len(added), len(taken) + 1)):
        if i - 1 < len(taken):
            total = total - taken[i - 1]
        if i < len(added):
            total = total + added[i]
    return total


def _combinations(
    searcher: Searcher,
    queries: Iterable[str] | None,
    k: int,
    metric: str,
    positive: list[str],
    negative: list[str],
) -> Iterator[NeighborsResult]:
    import numpy as np

    from embinspect.tables import scaling

    if metric != "cosine":
        raise UsageError(
            Option("metric", metric),
            " goes not with positive and negative terms: they add unit vectors, as gensim's "
            "most_similar does (cosine)",
        )
    # Each item: the question's terms, positives first; a query is one more positive.
    items: Iterable[tuple[str, ...]]
    if queries is None:
        items = [(*positive, *negative)]
        plus = len(positive)
    else:
        items = _WithTerms(queries, positive, negative)
        plus = len(positive) + 1

    def resolve(item):
        resolved, vectors = searcher.resolve_arrays(list(item), needs_direction=True)
        center = searcher.center_array
        centered = vectors - center if center is not None else vectors
        direction = combined_direction(scaling.array_units(centered), plus)
        if not bool(direction.any()):
            raise QueryError(
                f"{formula(item[:plus], item[plus:])}: the terms cancel out, and a zero "
                "vector has no direction to compare"
            )
        if center is not None:
            direction = direction + center
        return resolved, direction[None, :]

    def score(good):
        exclude = [
            set() if searcher.keep_query else {i for r in terms for i in searcher.own_rows(r)}
            for terms, _ in good
        ]
        return searcher.top_k("cosine", np.concatenate([v for _, v in good]), k, exclude)

    stamp = {"metric": metric, "provenance": searcher.provenance}
    for item, answer, ranked in searcher.in_batches(items, resolve, score):
        named = formula(item[:plus], item[plus:])
        if ranked is None:
            yield NeighborsResult(query=named, error=answer.message, **stamp)
            continue
        echoed = [r.echo() for r in answer]
        yield NeighborsResult(
            named,
            [i for r in answer for i in r.token_ids],
            [t for r in answer for t in r.tokens],
            None,
            ranked,
            lowercased=any(r.lowercased for r in answer),
            positive=echoed[:plus],
            negative=echoed[plus:],
            **stamp,
        )


class _WithTerms:
    """Each query as a question's terms (the query, then the positive terms, then the
    negative ones), keeping its source's ``ready()``."""

    def __init__(self, queries: Iterable[str], positive: list[str], negative: list[str]):
        self.queries = iter(queries)
        self.positive, self.negative = positive, negative
        ready = getattr(self.queries, "ready", None)
        if ready is not None:
            self.ready = ready

    def __iter__(self) -> _WithTerms:
        return self

    def __next__(self) -> tuple[str, ...]:
        return (next(self.queries), *self.positive, *self.negative)


# ---------------------------------------------------------------------------------------
# The nearest rows to a vector given as it is (gensim's similar_by_vector): a hidden
# state, a mean of rows computed elsewhere.

MAX_VECTOR_BYTES = 64 * 1024 * 1024  # a text row of a million floats fits with room


def read_vector(path: str, width: int | None = None) -> np.ndarray:
    """The vector in ``path`` (as ``parse_vector``), ``width`` the table's row width when
    known. Shape (dim,) float64; UsageError naming the file for anything else."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_VECTOR_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    return parse_vector(data, path, width)


def parse_vector(data: bytes, label: str, width: int | None = None) -> np.ndarray:
    """A vector from a file's bytes: a ``.npy`` array of shape (dim,); a JSON list of
    numbers (what the shell's ``vector`` prints with ``:format json``); or one text row of
    whitespace-separated numbers, optionally after a word (a word2vec or GloVe row).
    ``width``, the table's row width when known, settles a row whose word looks like a
    number (GloVe's ``1996``, ``nan``): ``width + 1`` fields are a word and its numbers,
    ``width`` fields are all numbers. Without it, the first field is the word only when
    it is not a number. ``label`` names the vector in errors."""
    import numpy as np

    if len(data) > MAX_VECTOR_BYTES:
        raise UsageError(f"{label}: over {MAX_VECTOR_BYTES >> 20} MB, too large for one vector")
    if data.startswith(NPY_MAGIC):
        return _npy_vector(data, label)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{label}: neither a .npy array nor UTF-8 text") from None
    if text.lstrip().startswith("["):
        return _json_vector(text, label)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"{label}: empty; give one row of numbers, or a .npy array")
    if len(lines) > 1:
        raise UsageError(f"{label}: {len(lines):,} lines; give one row of numbers (one vector)")
    fields = lines[0].split()
    if width is not None and len(fields) in (width, width + 1):
        word = len(fields) == width + 1  # a word first, whatever it looks like
    else:
        word = _number(fields[0]) is None
    if word:
        fields = fields[1:]  # a word before the numbers, as a word2vec row has
        if not fields:
            raise UsageError(f"{label}: {shown(lines[0].strip())} holds no numbers")
    values = []
    for field_ in fields:
        value = _number(field_)
        if value is None:
            raise UsageError(f"{label}: {shown(field_)} is not a number")
        values.append(value)
    return np.array(values, dtype=np.float64)


def _json_vector(text: str, label: str) -> np.ndarray:
    """A JSON list of numbers; null (the shell's word for NaN) as NaN, which
    ``check_vector`` then refuses by name."""
    import json

    import numpy as np

    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise UsageError(f"{label}: not a JSON list of numbers ({brief(err)})") from None
    if not isinstance(values, list) or not all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    ):
        raise UsageError(f"{label}: not a JSON list of numbers; give one flat list, [0.1, 0.2]")
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _npy_vector(data: bytes, label: str) -> np.ndarray:
    """The array of a ``.npy`` file's bytes, through the one checked reader (its header
    against its bytes before anything is allocated; never ``np.load``, never a pickle);
    a user's file, so what it refuses is a UsageError."""
    try:
        return read_npy(data, label, ndims=(1,))
    except ModelError as err:
        raise UsageError(*err.parts) from None


def check_vector(values: Any, dim: int, label: str, needs_direction: bool) -> np.ndarray:
    """``values`` as a float64 query of shape (1, dim): a real array of shape (dim,),
    finite, and nonzero when a direction is needed (cosine); UsageError otherwise."""
    import numpy as np

    try:
        array = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise UsageError(f"{label}: not an array of numbers ({brief(err)})") from None
    if array.dtype.kind not in "fiu":
        raise UsageError(f"{label}: {array.dtype} values; give real numbers (float)")
    if array.ndim != 1:
        raise UsageError(f"{label}: shape {tuple(array.shape)}; a vector is one row, ({dim},)")
    if array.shape[0] != dim:
        raise UsageError(f"{label}: {array.shape[0]:,} values; the table's rows have {dim:,}")
    vector = np.asarray(array, dtype=np.float64)
    if not np.isfinite(vector).all():
        raise UsageError(f"{label}: holds NaN or infinite values")
    if needs_direction and not vector.any():
        raise UsageError(f"{label}: a zero vector has no direction to compare")
    return vector.copy()[None, :]


def vector_neighbors(
    searcher: Searcher,
    values: Any,
    k: int,
    metric: str = "cosine",
    label: str = "vector",
    *,
    named: str | None = None,
) -> NeighborsResult:
    """The k rows nearest to a vector of shape (dim,) (gensim's ``similar_by_vector``),
    exact as every search is; no row is left out for being the query. ``label`` names
    the vector (its file) in errors, and in the result unless ``named`` is given (``-``
    for stdin, whose errors say "standard input")."""
    if metric not in METRICS:
        raise UsageError(Option("metric", metric), f": choose one of {', '.join(METRICS)}")
    query = check_vector(values, searcher.table.dim, label, needs_direction=False)
    if metric == "cosine":
        center = searcher.center_array
        moved = query[0] - center if center is not None else query[0]
        if not bool(moved.any()):
            what = "the mean row" if searcher.center is not None else "a zero vector"
            raise UsageError(f"{label}: {what} has no direction to compare")
    (ranked,) = searcher.top_k(metric, query, k, [set()])
    stamp = {"metric": metric, "provenance": searcher.provenance}
    if isinstance(ranked, QueryError):
        return NeighborsResult(query=named or label, error=f"{label}: {ranked.message}", **stamp)
    listed = [
        Neighbor(rank, s.token_id, searcher.token(s.token_id), s.score)
        for rank, s in enumerate(ranked, start=1)
    ]
    return NeighborsResult(named or label, [], [], None, listed, vector=True, **stamp)
