"""``embinspect neighbors``: its arguments, and how its result is printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from embinspect.cli.options import (
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
    QueriesArg,
    Table,
    TableOpt,
    TopKOpt,
    WordFilter,
    read_queries,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    ranked_table,
    resolved_line,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY

if TYPE_CHECKING:
    from embinspect.analyses.neighbors import NeighborsResult


@command()
def neighbors(
    model: ModelArg,
    queries: QueriesArg,
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
    """The k nearest rows to each QUERY (cosine by default), exact, the query's tokens left out."""
    from embinspect.analyses.neighbors import neighbors as nearest

    searcher = source.searcher(
        model,
        table=table.value, device=device, center=center, word_filter=word_filter.value,
        keep_query=keep_query, leading_space=not no_space, pool=pool.value, batch_size=batch_size,
    )  # fmt: skip
    k = searcher.limit_k(k)
    results = nearest(searcher, read_queries(queries), k, metric.value)
    failed = output.stream(results, VIEW)
    searcher.note_left_out()
    if failed:
        raise typer.Exit(EXIT_QUERY)


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
    title = "Neighbors of " + resolved_line(
        result.query, result.token_ids, result.tokens, result.pooled
    )
    screen.print(ranked_table(title, result.neighbors, result.metric))


VIEW = View(rows=neighbors_result_rows, table=neighbors_result_table)
