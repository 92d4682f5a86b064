"""``embinspect plot``: its arguments, and how its result is printed."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    CenterOpt,
    ModelArg,
    NoSpaceOpt,
    Pool,
    PoolOpt,
    QueriesArg,
    Table,
    TableOpt,
    read_queries,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    report_error,
    report_note,
    shown,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY

if TYPE_CHECKING:
    from embinspect.analyses.plot import Projection


@command()
def plot(
    model: ModelArg,
    queries: QueriesArg,
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the interactive view (.html: one self-contained page; hover, "
            "search, zoom) or a picture (.png or .svg; needs matplotlib: pip install "
            "'embinspect[plot]'). The coordinates are printed either way.",
            show_default=False,
        ),
    ] = None,
    neighbors_k: Annotated[
        int,
        typer.Option("--neighbors", min=0, help="Also draw each query's K nearest rows."),
    ] = 0,
    match: Annotated[
        Optional[str],
        typer.Option(
            "--match",
            metavar="REGEX",
            help="Draw only neighbors whose token, as the picture shows it (␣the for "
            "Ġthe), matches REGEX (Python re.search): each query's K nearest such rows.",
            show_default=False,
        ),
    ] = None,
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    *,
    source: Source,
    output: Output,
) -> None:
    """A 2-D projection (PCA of the points drawn) of the named tokens, with each one's
    --neighbors K, as coordinates (table, TSV, JSON) and, with --out, an interactive HTML
    view or a labelled picture."""
    from embinspect.analyses.plot import (
        PLOT_SUFFIXES,
        compile_match,
        draw,
        picture_path,
        project,
    )

    # Refused before the table is read, not after.
    picture = picture_path(out, "out", PLOT_SUFFIXES) if out is not None else None
    pattern = compile_match(match, neighbors_k)
    searcher = source.searcher(
        model,
        table=table.value, device="cpu", center=center, leading_space=not no_space,
        pool=pool.value,
    )  # fmt: skip
    result = project(searcher, model, list(read_queries(queries)), neighbors_k, match=pattern)
    for failure in result.errors:
        report_error(failure["error"])
    if picture is not None:
        draw(result, picture)
        result = replace(result, picture=str(picture))
        report_note(f"note: wrote {picture}")
    output.emit(result, VIEW)
    if result.errors:
        raise typer.Exit(EXIT_QUERY)


_POINT_COLUMNS = ["label", "kind", "of", "token_ids", "tokens", "x", "y"]


def projection_rows(result: Projection) -> tuple[list[str], list[list[Any]]]:
    return _POINT_COLUMNS, [[getattr(p, c) for c in _POINT_COLUMNS] for p in result.points]


def projection_records(result: Projection) -> list[dict[str, Any]]:
    return [asdict(p) for p in result.points]


def projection_notes(result: Projection) -> list[str]:
    first, second = result.explained
    return [f"note: PCA of {len(result.points)} points: PC 1 {first:.1%}, PC 2 {second:.1%}"]


def projection_table(result: Projection) -> None:
    from rich.table import Table

    points = Table(
        title=f"PCA of {len(result.points)} points of {result.tensor} (PC 1 "
        f"{result.explained[0]:.1%}, PC 2 {result.explained[1]:.1%} of their variance)",
        title_justify="left",
    )
    for column in ("point", "near", "x", "y"):
        points.add_column(column, justify="right" if column in ("x", "y") else "left")
    for p in result.points:
        near = shown(p.of) if p.of is not None else ""
        points.add_row(shown(p.readable), near, f"{p.x:+.4f}", f"{p.y:+.4f}")
    console().print(points)


VIEW = View(
    rows=projection_rows, records=projection_records, notes=projection_notes, table=projection_table
)
