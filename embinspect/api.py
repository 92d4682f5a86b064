"""The Python API: ``load()`` a checkpoint once, then ask it what the CLI's commands answer.

>>> import embinspect
>>> m = embinspect.load("sentence-transformers/all-MiniLM-L6-v2")
>>> m.neighbors("king", k=5)            # one query: one NeighborsResult
>>> m.neighbors(["king", "#1000"])      # several: a list, answered in batches
>>> m.analogy("king", "man", "woman")   # king - man + woman
>>> m.vector("king")                    # the row, as a numpy array

The layer above ``embinspect.analyses`` and below ``embinspect.cli``: it never imports the
CLI, typer or rich. Every method gives what the CLI command of the same name prints with
``--format json`` for the same arguments (``result.to_dict()``). Keyword names are the
CLI's long options in snake_case (``--no-space``: ``no_space``, ``--filter``:
``word_filter``); the result count is ``k`` everywhere; defaults are the CLI's.

The notes the CLI prints on stderr (a tied output head, ``k`` larger than the table) are
issued as ``EmbinspectWarning`` through ``warnings``. Mistakes raise the library's own
errors: ``UsageError`` (a bad argument), ``ModelError``, ``QueryError`` (a single query
that names no row; in a list, that item's result carries ``error`` instead),
``NetworkError``; all are ``EmbinspectError``.

``offline=True`` reads Hub files from the local cache only, for embinspect's own reads and
for a ``tokenizer=`` given as a Hub repo id; unlike the CLI's ``--offline`` it does not set
``HF_HUB_OFFLINE`` in the process, so other libraries in the same notebook stay online.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, TypeVar, Union, overload

from embinspect.analyses import cache as _cache
from embinspect.analyses.analogy import AnalogyResult, analogies
from embinspect.analyses.cache import CacheListing, CacheRemoval
from embinspect.analyses.compare import Comparison
from embinspect.analyses.compare import compare as pairwise_scores
from embinspect.analyses.diff import TableDiff, diff_tables
from embinspect.analyses.export import ExportResult
from embinspect.analyses.info import Info, inspect_checkpoint
from embinspect.analyses.neighbors import NeighborsResult, vector_neighbors
from embinspect.analyses.neighbors import neighbors as nearest
from embinspect.analyses.outlier import OutlierResult
from embinspect.analyses.plot import Projection
from embinspect.analyses.positions import PositionReport
from embinspect.analyses.stats import TableStats
from embinspect.analyses.suites import AnalogyEvaluation, PairsEvaluation
from embinspect.analyses.tokens import TokenLookup
from embinspect.analyses.undertrained import UndertrainedResult
from embinspect.errors import Option, QueryError, UsageError, note
from embinspect.model.checkpoint import TABLES, Checkpoint, open_checkpoint
from embinspect.sources.hub_options import HubOptions
from embinspect.tables.queries import POOLS
from embinspect.tables.scoring import METRICS
from embinspect.tables.search import ANALOGY_METHODS, FILTERS, Searcher

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from embinspect.model.tokenizer import Vocabulary
    from embinspect.tables.table import EmbeddingTable

__all__ = [
    "Model",
    "cache_entries",
    "clear_cache",
    "diff",
    "load",
    "prune_cache",
    "remove_cache_entries",
]

Source = Union[str, "os.PathLike[str]"]
TableName = Literal["input", "output"]
MetricName = Literal["cosine", "dot", "l2"]
PoolName = Literal["mean", "first", "last", "error"]
FilterName = Literal["none", "words"]
MethodName = Literal["add", "mul"]
_Answered = TypeVar("_Answered", NeighborsResult, AnalogyResult)


def load(
    source: Source,
    *,
    revision: str | None = None,
    tensor: str | None = None,
    tokenizer: str | None = None,
    tokenizer_revision: str | None = None,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    full_download: bool = False,
) -> Model:
    """Open a checkpoint: a Hugging Face folder, a ``.safetensors`` or ``.gguf`` file,
    ``ollama:NAME[:TAG]``, a word2vec/GloVe/fastText file, or a Hub repo id.

    Reads headers and JSON only; rows are read when a method needs them. ``revision``: a
    Hub branch, tag or commit. ``tensor``: the token table's name when the known names do
    not find it. ``tokenizer``: a tokenizer.json, a folder or a Hub repo id to use instead
    of the checkpoint's own; ``tokenizer_revision``: the branch, tag or commit of a
    ``tokenizer`` given as a Hub repo id (default its main branch). ``device``: where
    searches run (cpu, cuda, cuda:N, mps, auto). ``cache_dir``: the huggingface_hub cache,
    the tokenizer's included. ``offline``: only what is cached (the process's
    HF_HUB_OFFLINE is left as it is). ``full_download``: whole files, never byte ranges.
    """
    return Model(
        source,
        revision=revision,
        tensor=tensor,
        tokenizer=tokenizer,
        tokenizer_revision=tokenizer_revision,
        device=device,
        cache_dir=cache_dir,
        offline=offline,
        full_download=full_download,
    )


class Model:
    """An opened checkpoint. Its tokenizer is loaded once, on first need, and what a search
    prepares (masks, the mean row, row norms) is kept per distinct settings, so asking
    again in a notebook does not pay again."""

    def __init__(
        self,
        source: Source,
        *,
        revision: str | None = None,
        tensor: str | None = None,
        tokenizer: str | None = None,
        tokenizer_revision: str | None = None,
        device: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool = False,
        full_download: bool = False,
    ) -> None:
        self.source = _source(source)
        _optional_str("revision", revision)
        _optional_str("tensor", tensor)
        _optional_str("tokenizer", tokenizer)
        _optional_str("tokenizer_revision", tokenizer_revision)
        if tokenizer_revision is not None and tokenizer is None:
            raise UsageError(
                Option("tokenizer_revision", tokenizer_revision),
                " goes with ",
                Option("tokenizer", metavar="REPO_ID"),
            )
        if not isinstance(device, str):
            raise UsageError(f"device={device!r}: give cpu, cuda, cuda:N, mps or auto")
        self._revision = revision
        self._tensor = tensor
        self._tokenizer = tokenizer
        self._tokenizer_revision = tokenizer_revision
        self._device = device
        self._hub = HubOptions(
            os.fspath(cache_dir) if cache_dir is not None else None,
            bool(offline),
            bool(full_download),
            progress=False,
        )
        self._checkpoint = open_checkpoint(self.source, revision, tensor, hub=self._hub)
        self._info_checkpoint: Checkpoint | None = None
        # The tokenizer, or why there is none: loaded on first need, once.
        self._vocabulary_memo: Vocabulary | UsageError | None = None
        self._searchers: dict[tuple[Any, ...], Searcher] = {}

    def __repr__(self) -> str:
        rows, dim = self.shape
        return f"<embinspect.Model {self.source!r}: {rows:,} × {dim} {self.dtype}>"

    # --- facts -----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dim) of the token table."""
        rows, dim = self._checkpoint.token_table.header.shape
        return int(rows), int(dim)

    @property
    def dtype(self) -> str:
        """The token table's stored type as the file names it (F32, BF16, Q8_0, ...)."""
        return str(self._checkpoint.token_table.header.dtype)

    def info(self) -> Info:
        """Embedding tensors, vocabulary against rows, tying, the position scheme (``info``)."""
        checkpoint = self._checkpoint
        if checkpoint.files.kind == "hub":
            # As `info` does: every shard's header, for exact parameter counts.
            if self._info_checkpoint is None:
                self._info_checkpoint = open_checkpoint(
                    self.source, self._revision, self._tensor, hub=self._hub, all_headers=True
                )
            checkpoint = self._info_checkpoint
        return inspect_checkpoint(checkpoint)

    def tokens(
        self,
        text: str,
        *,
        positions: bool = False,
        vectors: bool = False,
        special: bool | None = None,
        components: int = 4,
    ) -> TokenLookup:
        """Tokenize ``text``: each token's id, stored form, text, row norm and first
        ``components`` values (``tokens``); ``positions`` adds the learned position row,
        ``vectors`` whole rows, ``special`` the tokenizer's special tokens (None: with
        ``positions``, so positions are the model's own: BERT's [CLS] at 0)."""
        from embinspect.analyses.tokens import lookup_tokens

        text = _query(text, "text")
        components = _count("components", components, minimum=0)
        return lookup_tokens(
            self._checkpoint,
            self._vocabulary(),
            text,
            components=components,
            positions=bool(positions),
            vectors=bool(vectors),
            special_tokens=_optional_bool("special", special),
        )

    def vector(
        self,
        query: str,
        *,
        table: TableName = "input",
        no_space: bool = False,
        pool: PoolName = "mean",
    ) -> NDArray[np.floating[Any]]:
        """The query's vector, shape (dim,): its row, or its rows pooled as searches pool
        them. float64 for a float64 table, else float32 (which holds bf16, f16 and
        dequantized rows exactly)."""
        query = _query(query)
        searcher = self._searcher(table=table, device="cpu", no_space=no_space, pool=pool)
        result: NDArray[np.floating[Any]] = searcher.stored_vector(query)
        return result

    # --- searches --------------------------------------------------------------------

    @overload
    def neighbors(  # type: ignore[overload-overlap]  # a str is one query, not a list
        self,
        queries: str | None = None,
        k: int = 10,
        *,
        positive: str | Iterable[str] | None = None,
        negative: str | Iterable[str] | None = None,
        vector: Any = None,
        restrict: int | None = None,
        metric: MetricName = "cosine",
        table: TableName = "input",
        word_filter: FilterName = "none",
        center: bool = False,
        keep_query: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        batch_size: int = 256,
    ) -> NeighborsResult: ...

    @overload
    def neighbors(
        self,
        queries: Iterable[str],
        k: int = 10,
        *,
        positive: str | Iterable[str] | None = None,
        negative: str | Iterable[str] | None = None,
        vector: Any = None,
        restrict: int | None = None,
        metric: MetricName = "cosine",
        table: TableName = "input",
        word_filter: FilterName = "none",
        center: bool = False,
        keep_query: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        batch_size: int = 256,
    ) -> list[NeighborsResult]: ...

    def neighbors(
        self,
        queries: str | Iterable[str] | None = None,
        k: int = 10,
        *,
        positive: str | Iterable[str] | None = None,
        negative: str | Iterable[str] | None = None,
        vector: Any = None,
        restrict: int | None = None,
        metric: MetricName = "cosine",
        table: TableName = "input",
        word_filter: FilterName = "none",
        center: bool = False,
        keep_query: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        batch_size: int = 256,
    ) -> NeighborsResult | list[NeighborsResult]:
        """The ``k`` nearest rows to a query (text, ``#id`` or ``=entry``), exact, its own
        tokens left out (``neighbors``). One query: its result, or QueryError. A list: one
        result per query, in order, answered ``batch_size`` at a time; a query that
        cannot be answered has its ``error`` set.

        ``positive`` and ``negative`` (a query or a list of them): gensim's
        ``most_similar(positive, negative)``, the rows nearest to the sum of the terms'
        unit vectors, every term's rows left out; each query is one more positive term,
        and without queries the terms are one question (one result). ``vector``: the rows
        nearest to this array of shape (dim,) (gensim's ``similar_by_vector``; a hidden
        state), with no queries or terms; one result. ``restrict``: only the first
        ``restrict`` rows are searched (gensim's ``restrict_vocab``)."""
        plus = _terms(positive, "positive")
        minus = _terms(negative, "negative")
        if vector is not None and (queries is not None or plus or minus):
            raise UsageError("vector goes alone: no queries, positive or negative")
        if queries is None and vector is None and not (plus or minus):
            raise UsageError(
                "queries must be a list or a str; or give positive/negative terms, or a vector"
            )
        single, items = (True, None) if queries is None else _queries(queries)
        k = _count("k", k)
        _choice("metric", metric, METRICS)
        restrict = _count("restrict", restrict) if restrict is not None else None
        searcher = self._searcher(
            table=table, device=self._device, center=center, word_filter=word_filter,
            keep_query=keep_query, no_space=no_space, pool=pool, batch_size=batch_size,
            restrict=restrict,
        )  # fmt: skip
        k = searcher.limit_k(k)
        if vector is not None:
            results = [vector_neighbors(searcher, vector, k, metric, label="vector")]
        else:
            results = list(nearest(searcher, items, k, metric, positive=plus, negative=minus))
        searcher.note_left_out()
        return _one(results[0]) if single else results

    def compare(
        self,
        queries: Iterable[str],
        *,
        metric: MetricName = "cosine",
        table: TableName = "input",
        center: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
    ) -> Comparison:
        """Pairwise cosine (or dot, or L2 distance) of two or more queries, in float64
        (``compare``); queries that cannot be resolved are listed in ``errors``."""
        if isinstance(queries, str):
            raise UsageError("compare takes a list of two or more queries, not one string")
        _, items = _queries(queries)
        if len(items) < 2:
            raise UsageError("compare needs at least two queries")
        _choice("metric", metric, METRICS)
        searcher = self._searcher(
            table=table, device="cpu", center=center, no_space=no_space, pool=pool
        )
        return pairwise_scores(searcher, items, metric)

    def analogy(
        self,
        a: str,
        b: str,
        c: str,
        k: int = 5,
        *,
        method: MethodName = "add",
        table: TableName = "input",
        word_filter: FilterName = "none",
        center: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        restrict: int | None = None,
    ) -> AnalogyResult:
        """A − B + C (king − man + woman): the ``k`` rows nearest to it, A, B and C left
        out, by 3CosAdd (``add``, gensim's most_similar) or 3CosMul (``mul``); QueryError
        when a word names no row (``analogy``)."""
        question = [_query(a, "a"), _query(b, "b"), _query(c, "c")]
        results = self.analogies(
            [question], k, method=method, table=table, word_filter=word_filter,
            center=center, no_space=no_space, pool=pool, restrict=restrict,
        )  # fmt: skip
        return _one(results[0])

    def analogies(
        self,
        questions: Iterable[Sequence[str] | str],
        k: int = 5,
        *,
        method: MethodName = "add",
        table: TableName = "input",
        word_filter: FilterName = "none",
        center: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        batch_size: int = 256,
        restrict: int | None = None,
    ) -> list[AnalogyResult]:
        """Many questions A B C at once, answered ``batch_size`` at a time, as the CLI
        answers stdin: each a sequence of three queries, or one string of three words
        (tab-separated, or space-separated when there is no tab). A question that cannot
        be answered has its ``error`` set."""
        if isinstance(questions, str):
            raise UsageError("analogies takes a list of questions; for one, use analogy(a, b, c)")
        parsed = [_question(q) for q in _iterable(questions, "questions")]
        if not parsed:
            raise UsageError("no questions given")
        k = _count("k", k)
        _choice("method", method, ANALOGY_METHODS)
        restrict = _count("restrict", restrict) if restrict is not None else None
        searcher = self._searcher(
            table=table, device=self._device, center=center, word_filter=word_filter,
            no_space=no_space, pool=pool, batch_size=batch_size, restrict=restrict,
        )  # fmt: skip
        k = searcher.limit_k(k)
        results = list(analogies(searcher, parsed, k, method))
        searcher.note_left_out()
        return results

    def outlier(
        self,
        queries: Iterable[str],
        *,
        table: TableName = "input",
        center: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
    ) -> OutlierResult:
        """Which of three or more queries does not belong (``outlier``, gensim's
        ``doesnt_match``): each query's cosine to the mean of their unit vectors, most
        central first, and the farthest as ``outlier``; queries that cannot be resolved
        are listed in ``errors`` and take no part."""
        from embinspect.analyses.outlier import outlier as odd_one_out

        if isinstance(queries, str):
            raise UsageError("outlier takes a list of three or more queries, not one string")
        _, items = _queries(queries)
        searcher = self._searcher(
            table=table, device="cpu", center=center, no_space=no_space, pool=pool
        )
        return odd_one_out(searcher, items)

    def plot(
        self,
        queries: Iterable[str],
        *,
        neighbors: int = 0,
        out: str | os.PathLike[str] | None = None,
        table: TableName = "input",
        center: bool = False,
        no_space: bool = False,
        pool: PoolName = "mean",
        match: str | None = None,
    ) -> Projection:
        """A 2-D PCA projection of the queries and each one's ``neighbors`` nearest rows
        (``plot``; with ``match``, a regular expression, the nearest rows whose readable
        token matches it); with ``out`` also the view: ``.html`` (the interactive page),
        ``.png`` or ``.svg`` (need matplotlib). ``result.save(path)`` and
        ``result.to_html()`` write it later."""
        from dataclasses import replace

        from embinspect.analyses.plot import (
            PLOT_SUFFIXES,
            compile_match,
            draw,
            picture_path,
            project,
        )

        if isinstance(queries, str):
            raise UsageError("plot takes a list of queries, not one string")
        _, items = _queries(queries)
        neighbors = _count("neighbors", neighbors, minimum=0)
        picture = picture_path(os.fspath(out), "out", PLOT_SUFFIXES) if out is not None else None
        pattern = compile_match(match, neighbors)
        searcher = self._searcher(
            table=table, device="cpu", center=center, no_space=no_space, pool=pool
        )
        result = project(searcher, self.source, items, neighbors, match=pattern)
        if picture is not None:
            draw(result, picture)
            result = replace(result, picture=str(picture))
        return result

    # --- suites ----------------------------------------------------------------------

    def evaluate_analogies(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        method: MethodName = "add",
        restrict: int | None = None,
        case_insensitive: bool | None = None,
        table: TableName = "input",
        center: bool = False,
        no_space: bool = False,
        batch_size: int = 256,
    ) -> AnalogyEvaluation:
        """An analogy suite in the Google format scored as gensim's evaluate_word_analogies
        (``analogy --file``): accuracy per section and in total, with coverage. ``path``
        None (or "google") is gensim's questions-words.txt (needs gensim installed)."""
        from embinspect.analyses.suites import (
            GENSIM_RESTRICT,
            evaluate_analogies,
            find_suite,
            read_analogies,
            word_index,
        )

        _choice("method", method, ANALOGY_METHODS)
        restrict = _count("restrict", restrict) if restrict is not None else GENSIM_RESTRICT
        folded = _optional_bool("case_insensitive", case_insensitive)
        found = find_suite(_path(path, "google"), "analogies")
        suite = read_analogies(found)
        searcher = self._searcher(
            table=table, device=self._device, center=center, no_space=no_space,
            batch_size=batch_size, restrict=restrict,
        )  # fmt: skip
        index = word_index(searcher, restrict, folded, not no_space)
        result = evaluate_analogies(searcher, index, suite, method=method)
        if result.failures:
            first = result.failures[0]
            note(
                f"{len(result.failures):,} questions could not be scored (first: "
                f"{first['question']}: {first['error']})"
            )
        searcher.note_left_out()
        return result

    def evaluate_pairs(
        self,
        path: str | os.PathLike[str],
        *,
        restrict: int | None = None,
        case_insensitive: bool | None = None,
        table: TableName = "input",
        center: bool = False,
        no_space: bool = False,
    ) -> PairsEvaluation:
        """A word-pair suite (w1 TAB w2 TAB score) scored as gensim's evaluate_word_pairs
        (``compare --pairs``): Pearson and Spearman of the cosines against the human
        scores. "wordsim353" and "simlex999" name gensim's copies."""
        from embinspect.analyses.suites import (
            GENSIM_RESTRICT,
            evaluate_pairs,
            find_suite,
            read_pairs,
            word_index,
        )

        restrict = _count("restrict", restrict) if restrict is not None else GENSIM_RESTRICT
        folded = _optional_bool("case_insensitive", case_insensitive)
        found = find_suite(_path(path, None), "pairs")
        suite = read_pairs(found)
        searcher = self._searcher(table=table, device="cpu", center=center, no_space=no_space)
        index = word_index(searcher, restrict, folded, not no_space)
        return evaluate_pairs(searcher, index, suite)

    # --- whole tables ----------------------------------------------------------------

    def export(
        self,
        to: Literal["tensorboard", "word2vec", "word2vec-binary", "npy", "safetensors"],
        out: str | os.PathLike[str],
        *,
        ids: str | None = None,
        words: str | os.PathLike[str] | None = None,
        neighbors_of: Iterable[str] | str | None = None,
        k: int = 100,
        metric: MetricName = "cosine",
        table: TableName = "input",
        no_space: bool = False,
        force: bool = False,
    ) -> ExportResult:
        """Write the table, or the rows one selection names, as ``to`` at ``out``
        (``export``): ``ids`` ("0:5000,42"), ``words`` (a file of queries, one a line), or
        ``neighbors_of`` (queries, each with its ``k`` nearest rows by ``metric``); every
        row by default. float32 values; ``force`` replaces what is at ``out``."""
        from embinspect.analyses.export import FORMATS, export

        _choice("to", to, FORMATS)
        _choice("metric", metric, METRICS)
        k = _count("k", k)
        _optional_str("ids", ids)
        near = _terms(neighbors_of, "neighbors_of")
        searcher = self._searcher(table=table, device=self._device, no_space=no_space)
        return export(
            searcher, self._checkpoint.files.model, to, os.fspath(out), ids=ids,
            words=os.fspath(words) if words is not None else None, neighbors_of=near, k=k,
            metric=metric, force=bool(force),
        )  # fmt: skip

    def stats(
        self, *, table: TableName = "input", pairs: int = 10_000, seed: int = 0
    ) -> TableStats:
        """The whole table's health (``stats``): row norms, anisotropy (mean cosine of
        ``pairs`` random pairs drawn with ``seed``), zero, non-finite, duplicate and padding
        rows."""
        from embinspect.analyses.stats import table_stats

        pairs = _count("pairs", pairs)
        seed = _count("seed", seed, minimum=None)
        rows = self._table(table)
        vocabulary, _ = self._checkpoint.labelled(rows.header, self._vocabulary_or_none())
        return table_stats(self._checkpoint.files.model, rows, vocabulary, pairs=pairs, seed=seed)

    def undertrained(
        self,
        k: int = 50,
        *,
        reference: Iterable[str] | str | None = None,
        keep_reference: bool = False,
        table: TableName = "input",
    ) -> UndertrainedResult:
        """Tokens likely never or barely trained, ranked by Land & Bartolo 2024's indicator
        (``undertrained``); ``reference``: tokens known to be unused (as the vocabulary
        spells them, or #ID), by default the vocabulary's [unusedN] and the like."""
        from embinspect.analyses.undertrained import find_reference, rank_undertrained

        k = _count("k", k)
        given: list[str] | None = None
        if reference is not None:
            given = [reference] if isinstance(reference, str) else list(reference)
            given = [_query(r, "reference") for r in given]
        rows = self._table(table)
        vocabulary, _ = self._checkpoint.labelled(rows.header, self._vocabulary_or_none())
        ids, source = find_reference(vocabulary, rows.rows, given)
        return rank_undertrained(
            self._checkpoint.files.model,
            rows,
            vocabulary,
            ids,
            source,
            top=k,
            keep_reference=bool(keep_reference),
        )

    def positions(
        self,
        *,
        offsets: str | Iterable[int] | None = None,
        max_positions: int | None = None,
        center: bool = False,
        plot: str | os.PathLike[str] | None = None,
        seed: int = 0,
    ) -> PositionReport:
        """How the model encodes position (``positions``): a learned table's norms and the
        cosine between positions ``offsets`` apart (default 1, 2, 4, ...), or a rotary
        model's frequencies and a check that scores depend only on the offset."""
        from embinspect.analyses.positions import (
            check_plot_path,
            inspect_positions,
            parse_offsets,
        )

        if offsets is not None and not isinstance(offsets, str):
            offsets = ",".join(str(_count("offsets", o, minimum=None)) for o in offsets)
        wanted = parse_offsets(offsets)
        if max_positions is not None:
            max_positions = _count("max_positions", max_positions, minimum=2)
        seed = _count("seed", seed, minimum=None)
        picture = check_plot_path(os.fspath(plot) if plot is not None else None)
        return inspect_positions(
            self._checkpoint,
            offsets=wanted,
            max_positions=max_positions,
            center=bool(center),
            seed=seed,
            plot=picture,
        )

    def diff(
        self,
        other: Model | Source,
        k: int = 20,
        *,
        table: TableName = "input",
        align: bool = False,
        center: bool = False,
    ) -> TableDiff:
        """How far ``other``'s table moved from this one's (``diff``); see ``embinspect.diff``."""
        return diff(self, other, k, table=table, align=align, center=center)

    # --- internals -------------------------------------------------------------------

    def _vocabulary_or_none(self) -> Vocabulary | None:
        """The tokenizer, or None when the checkpoint has none (rows are then #ids)."""
        memo = self._loaded_vocabulary()
        if isinstance(memo, UsageError) and self._tokenizer_revision is not None:
            raise UsageError(*memo.parts)  # a tokenizer_revision for one that takes none
        return None if isinstance(memo, UsageError) else memo

    def _vocabulary(self) -> Vocabulary:
        memo = self._loaded_vocabulary()
        if isinstance(memo, UsageError):
            raise UsageError(*memo.parts)
        return memo

    def _loaded_vocabulary(self) -> Vocabulary | UsageError:
        from embinspect.model.tokenizer import load_vocabulary

        if self._vocabulary_memo is None:
            try:
                self._vocabulary_memo = load_vocabulary(
                    self._checkpoint.files,
                    self._tokenizer,
                    revision=self._tokenizer_revision,
                    cache_dir=self._hub.cache_dir,
                    offline=self._hub.offline,
                )
            except UsageError as err:
                self._vocabulary_memo = err
        return self._vocabulary_memo

    def _table(self, table: str) -> EmbeddingTable:
        from embinspect.tables.table import EmbeddingTable

        _choice("table", table, TABLES)
        return EmbeddingTable(self._checkpoint.files, self._checkpoint.table_header(table))

    def _searcher(
        self,
        *,
        table: str,
        device: str,
        center: bool = False,
        word_filter: str = "none",
        keep_query: bool = False,
        no_space: bool = False,
        pool: str = "mean",
        batch_size: int = 256,
        restrict: int | None = None,
    ) -> Searcher:
        """A Searcher for these settings, made once: what it prepares (row masks, the
        mean row, the table on a GPU, row norms) is reused by later calls."""
        from embinspect.tables import array_scan
        from embinspect.tables.device import resolve_device

        _choice("table", table, TABLES)
        _choice("word_filter", word_filter, FILTERS)
        _choice("pool", pool, POOLS)
        batch_size = _count("batch_size", batch_size)
        # The CPU is named without torch (compare reads a few rows with numpy alone, and a
        # few queries are scanned in numpy): ``cpu``, or ``auto`` with no GPU in sight.
        cpu = array_scan.cpu_without_torch(device)
        where = "cpu" if cpu else str(resolve_device(device))
        key = (table, where, bool(center), word_filter, not no_space, pool, restrict)
        searcher = self._searchers.get(key)
        if searcher is None:
            searcher = Searcher(
                self._checkpoint, self._vocabulary_or_none(), table=table, device=where,
                center=bool(center), word_filter=word_filter, leading_space=not no_space,
                pool=pool, restrict=restrict,
            )  # fmt: skip
            self._searchers[key] = searcher
        # Settings that prepare nothing are set per call.
        searcher.keep_query = bool(keep_query)
        searcher.batch_size = batch_size
        return searcher


def diff(
    a: Model | Source,
    b: Model | Source,
    k: int = 20,
    *,
    table: TableName = "input",
    align: bool = False,
    center: bool = False,
    revision_a: str | None = None,
    revision_b: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    full_download: bool = False,
) -> TableDiff:
    """Row by row, how far B's embedding table moved from A's (``embinspect diff``): per-token
    cosine and L2 change, the ``k`` tokens that moved most, rows added or removed, the
    overall drift. ``a`` and ``b`` are Models or sources to load (with ``revision_a``,
    ``revision_b`` and the Hub options). Rows are paired by token id, and the vocabularies
    must agree, else ``align=True`` pairs them by token string."""
    k = _count("k", k)
    _choice("table", table, TABLES)

    def opened(side: Model | Source, revision: str | None, name: str) -> Model:
        if isinstance(side, Model):
            if revision is not None:
                raise UsageError(f"revision_{name}: {name} is a loaded Model; load it so")
            return side
        return Model(
            side,
            revision=revision,
            cache_dir=cache_dir,
            offline=offline,
            full_download=full_download,
        )

    model_a, model_b = opened(a, revision_a, "a"), opened(b, revision_b, "b")
    return diff_tables(
        model_a._checkpoint,
        model_b._checkpoint,
        model_a._vocabulary_or_none(),
        model_b._vocabulary_or_none(),
        table=table,
        align=bool(align),
        center=bool(center),
        k=k,
    )


# ---------------------------------------------------------------------------------------
# The cache (`embinspect cache`): what embinspect keeps on disk, listed and removed.


def cache_entries() -> CacheListing:
    """Every entry of embinspect's cache (``embinspect cache ls``): Hub ranges and headers,
    derived tokenizers, unfinished writes; each a ``CacheEntry`` with its id, kind, model,
    size, time written and state. ``cache_dir`` and ``hub_dir`` say where they are."""
    return _cache.cache_entries()


def remove_cache_entries(*ids: str) -> CacheRemoval:
    """Remove the entries with these ids (``embinspect cache rm ID...``): each an id as
    listed, or its first characters (at least 4) when no other id starts so. UsageError,
    before anything is removed, for an id that names no entry or several."""
    for value in ids:
        if not isinstance(value, str):
            raise UsageError(f"ids must be str, not {type(value).__name__}")
    return _cache.remove_cache_entries(ids)


def clear_cache() -> CacheRemoval:
    """Remove every entry of embinspect's cache (``embinspect cache rm --all --yes``)."""
    return _cache.clear_cache()


def prune_cache(*, dry_run: bool = False) -> CacheRemoval:
    """Remove the entries of no more use (``embinspect cache prune``): their source file gone
    or changed, built by another transformers version, damaged, or writes left unfinished
    over an hour ago. ``dry_run``: list them, remove nothing."""
    return _cache.prune_cache(dry_run=bool(dry_run))


# ---------------------------------------------------------------------------------------
# Checking arguments: a mistake is a UsageError that names the argument, never a
# TypeError or KeyError from deep inside.


def _source(source: object) -> str:
    if isinstance(source, Model):
        raise UsageError("source is already a loaded Model")
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(
            f"source must be a path or a model name (str), not {type(source).__name__}"
        )
    text = os.fspath(source)
    if not isinstance(text, str):
        raise UsageError("source must be a str path, not bytes")
    if not text.strip():
        raise UsageError("source is empty: give a folder, a file or a Hub repo id")
    return os.path.expanduser(text) if text.startswith("~") else text


def _optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{name} must be a str or None, not {type(value).__name__}")


def _optional_bool(name: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise UsageError(f"{name} must be True, False or None, not {value!r}")
    return value


def _path(value: object, default: str | None) -> str:
    if value is None:
        if default is None:
            raise UsageError("path: give a suite file")
        return default
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"path must be a file path (str), not {type(value).__name__}")
    return str(os.fspath(value))


def _choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise UsageError(f"{name}={value!r}: choose one of {options}")
    return value


def _count(name: str, value: object, minimum: int | None = 1) -> int:
    """An integer argument (numpy integers too), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise UsageError(f"{name}={value!r}: give an integer")
    number = operator.index(value)
    if minimum is not None and number < minimum:
        raise UsageError(f"{name}={number}: must be at least {minimum}")
    return number


def _query(value: object, name: str = "query") -> str:
    if not isinstance(value, str):
        hint = f" (write '#{value}' for token id {value})" if isinstance(value, int) else ""
        raise UsageError(
            f"{name} must be a str (text, #id or =entry), not {type(value).__name__}{hint}"
        )
    return value


def _iterable(value: object, name: str) -> list[Any]:
    if isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        raise UsageError(f"{name} must be a list, not {type(value).__name__}")
    return list(value)


def _queries(queries: object) -> tuple[bool, list[str]]:
    """(whether one query was given, the queries as a list); UsageError for an empty list
    or a query that is not a str."""
    if isinstance(queries, str):
        return True, [queries]
    items = [_query(q) for q in _iterable(queries, "queries")]
    if not items:
        raise UsageError("no queries given")
    return False, items


def _terms(terms: object, name: str) -> list[str]:
    """``positive``, ``negative``, ``neighbors_of``: None, one query, or a list of queries."""
    if terms is None:
        return []
    if isinstance(terms, str):
        return [_query(terms, name)]
    return [_query(term, name) for term in _iterable(terms, name)]


def _question(question: object) -> list[str]:
    """A question A B C: a sequence of queries, or a line as the CLI reads it on stdin."""
    if isinstance(question, str):
        line = question.strip()
        return [p.strip() for p in line.split("\t")] if "\t" in line else line.split()
    return [_query(part) for part in _iterable(question, "a question")]


def _one(result: _Answered) -> _Answered:
    """A single query's result, or its QueryError."""
    error = getattr(result, "error", None)
    if error is not None:
        raise QueryError(str(error))
    return result
