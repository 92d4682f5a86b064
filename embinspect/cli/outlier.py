"""``embinspect outlier``: its arguments, and how its result is printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from embinspect.cli.options import (
    CenterOpt,
    ModelArg,
    NoSpaceOpt,
    Pool,
    PoolOpt,
    Table,
    TableOpt,
    read_queries,
)
from embinspect.cli.render import Output, View, console, figure, report_error, styled
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY

if TYPE_CHECKING:
    from embinspect.analyses.outlier import OutlierResult


@command()
def outlier(
    model: ModelArg,
    queries: Annotated[
        list[str],
        typer.Argument(
            metavar="A B C [D...]",
            help="Three or more queries (text, #id, =entry, or - for one per stdin line).",
            show_default=False,
        ),
    ],
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    *,
    source: Source,
    output: Output,
) -> None:
    """Which query does not belong (gensim's doesnt_match): each query's cosine to the mean
    of their unit vectors, the farthest named."""
    from embinspect.analyses.outlier import check_queries
    from embinspect.analyses.outlier import outlier as odd_one_out

    items = list(read_queries(queries))
    check_queries(items)  # before the table is opened
    searcher = source.searcher(
        model,
        table=table.value, device="cpu", center=center, leading_space=not no_space,
        pool=pool.value,
    )  # fmt: skip
    result = odd_one_out(searcher, items)
    for failure in result.errors:
        report_error(failure["error"])
    output.emit(result, OUTLIER_VIEW)
    if result.errors:
        raise typer.Exit(EXIT_QUERY)


_COLUMNS = ["rank", "query", "query_ids", "tokens", "cosine", "outlier"]


def outlier_rows(result: OutlierResult) -> tuple[list[str], list[list[Any]]]:
    """One line a query, most central first; ``outlier`` is true on the last."""
    return _COLUMNS, [list(record.values()) for record in outlier_records(result)]


def outlier_records(result: OutlierResult) -> list[dict[str, Any]]:
    last = len(result.ranking)
    return [
        {
            "rank": rank,
            "query": item["query"],
            "query_ids": item["token_ids"],
            "tokens": item["tokens"],
            "cosine": item["cosine"],
            "outlier": result.outlier is not None and rank == last,
        }
        for rank, item in enumerate(result.ranking, start=1)
    ]


def outlier_table(result: OutlierResult) -> None:
    from rich.table import Table as RichTable

    screen = console()
    if result.outlier is None:
        screen.print("No outlier: fewer than three queries could be resolved")
        if not result.ranking:
            return
    else:
        screen.print(f"Does not belong: '{result.outlier}'")
    table = RichTable()
    table.add_column("rank", justify="right")
    table.add_column("query")
    table.add_column("tokens")
    table.add_column("cosine to mean", justify="right")
    last = len(result.ranking)
    for rank, item in enumerate(result.ranking, start=1):
        ids = item["token_ids"]
        pieces = " ".join(f"{t} #{i}" for t, i in zip(item["tokens"], ids, strict=True))
        cosine = figure(item["cosine"])
        row = [str(rank), item["query"], pieces, cosine]
        if rank == last and result.outlier is not None:
            row = [row[0], styled(item["query"], "bold red"), pieces, cosine]
        table.add_row(*row)
    screen.print(table)
    screen.print("cosine of each unit vector to the mean of the unit vectors")


OUTLIER_VIEW = View(rows=outlier_rows, records=outlier_records, table=outlier_table)
