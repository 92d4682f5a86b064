"""``embinspect neighbors``: its arguments, and how its result is printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.completion import local_paths
from embinspect.cli.options import (
    STDIN,
    BatchSizeOpt,
    CenterOpt,
    DeviceOpt,
    FilterOpt,
    Metric,
    MetricOpt,
    ModelArg,
    NoSpaceOpt,
    Pool,
    PoolOpt,
    Table,
    TableOpt,
    TopKOpt,
    WordFilter,
    read_queries,
    stdin_errors,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    ranked_table,
    resolved_line,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY, UsageError

if TYPE_CHECKING:
    from embinspect.analyses.neighbors import NeighborsResult


@command()
def neighbors(
    model: ModelArg,
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="[QUERY]...",
            help="Text (king), #token_id, =vocabulary_entry, or - to read one per line from "
            "stdin; optional with --positive/--negative, none with --vector.",
            show_default=False,
        ),
    ] = None,
    positive: Annotated[
        Optional[list[str]],
        typer.Option(
            "--positive",
            metavar="QUERY",
            help="A term added, as in gensim's most_similar (repeatable): the rows nearest "
            "to the sum of the terms' unit vectors; each QUERY is one more positive term.",
            show_default=False,
        ),
    ] = None,
    negative: Annotated[
        Optional[list[str]],
        typer.Option(
            "--negative",
            metavar="QUERY",
            help="A term taken away (repeatable), as --positive adds one.",
            show_default=False,
        ),
    ] = None,
    vector: Annotated[
        Optional[str],
        typer.Option(
            "--vector",
            metavar="FILE",
            help="The rows nearest to this vector (gensim's similar_by_vector): a .npy "
            "array of shape (dim,), a JSON list, or a text row of numbers (a word first "
            "is skipped); - reads it from stdin.",
            show_default=False,
            autocompletion=local_paths,
        ),
    ] = None,
    restrict: Annotated[
        Optional[int],
        typer.Option(
            "--restrict",
            min=1,
            help="Search only the first N rows (gensim's restrict_vocab).",
            show_default=False,
        ),
    ] = None,
    k: TopKOpt = 10,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    word_filter: FilterOpt = WordFilter.none,
    center: CenterOpt = False,
    keep_query: Annotated[
        bool, typer.Option("--keep-query", help="Keep the query's own tokens in the results.")
    ] = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    *,
    source: Source,
    output: Output,
) -> None:
    """The k nearest rows to each QUERY (cosine by default), exact, the query's tokens left
    out; or to a sum of terms (--positive, --negative), or to a vector (--vector)."""
    from embinspect.analyses.neighbors import neighbors as nearest

    terms = bool(positive or negative)
    if vector is not None and (queries or terms):
        raise UsageError("--vector FILE goes alone: no QUERY, --positive or --negative")
    if vector is None and not queries and not terms:
        raise UsageError("give a QUERY, --positive/--negative terms, or --vector FILE")
    # Read and checked before the table is opened; parsed again with the table's width.
    given = _read_vector(vector) if vector is not None else None
    searcher = source.searcher(
        model,
        table=table.value, device=device, center=center, word_filter=word_filter.value,
        keep_query=keep_query, leading_space=not no_space, pool=pool.value, batch_size=batch_size,
        restrict=restrict,
    )  # fmt: skip
    k = searcher.limit_k(k)
    if given is not None:
        from embinspect.analyses.neighbors import vector_neighbors

        label = STDIN if vector == "-" else str(vector)
        values = given(searcher.table.dim)
        results: Any = [vector_neighbors(searcher, values, k, metric.value, label, named=vector)]
    else:
        asked = read_queries(queries) if queries else None
        results = nearest(
            searcher, asked, k, metric.value, positive=positive or (), negative=negative or ()
        )
    failed = output.stream(results, VIEW)
    searcher.note_left_out()
    if failed:
        raise typer.Exit(EXIT_QUERY)


def _read_vector(path: str) -> Callable[[int | None], Any]:
    """The --vector file's vector, or stdin's for -, given the table's row width (which
    settles a text row whose word looks like a number). Read, and parsed once to refuse a
    malformed vector, before the table is opened."""
    from embinspect.analyses.neighbors import MAX_VECTOR_BYTES, parse_vector, read_vector

    if path != "-":
        read_vector(path)
        return lambda width: read_vector(path, width)
    with stdin_errors("--vector - reads the vector from it"):
        data = sys.stdin.buffer.read(MAX_VECTOR_BYTES + 1)
    parse_vector(data, STDIN)
    return lambda width: parse_vector(data, STDIN, width)


def neighbors_result_rows(result: NeighborsResult) -> tuple[list[str], list[list[Any]]]:
    # The score column is named after the metric: cosine, dot, or l2 (a distance).
    header = ["query", "query_ids", "rank", "token_id", "token", result.metric, "error"]
    if result.error is not None:
        return header, [[result.query, None, None, None, None, None, result.error]]
    ids = result.token_ids
    rows = [
        [result.query, ids, n.rank, n.token_id, n.token, n.score, None] for n in result.neighbors
    ]
    return header, rows


def neighbors_result_table(result: NeighborsResult) -> None:
    screen = console()
    if result.error is not None:
        return  # already reported on stderr
    if result.vector:
        where = "read from stdin" if result.query == "-" else f"in {result.query}"
        title = f"Neighbors of the vector {where}"
    elif result.positive is not None or result.negative is not None:
        title = f"Neighbors of {result.query}"
    else:
        title = "Neighbors of " + resolved_line(
            result.query, result.token_ids, result.tokens, result.pooled
        )
    screen.print(ranked_table(title, result.neighbors, result.metric))
    for term in [*(result.positive or []), *(result.negative or [])]:
        screen.print(
            resolved_line(term["query"], term["token_ids"], term["tokens"], term["pooled"])
        )


VIEW = View(rows=neighbors_result_rows, table=neighbors_result_table)
