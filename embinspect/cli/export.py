"""``embinspect export``: its arguments, and how its report of what was written is printed."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.analyses.export import FORMATS
from embinspect.cli.completion import local_paths
from embinspect.cli.options import (
    DeviceOpt,
    Metric,
    MetricOpt,
    ModelArg,
    NoSpaceOpt,
    Table,
    TableOpt,
)
from embinspect.cli.render import Output, View, console
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.export import ExportResult

ExportFormat = Enum("ExportFormat", {value: value for value in FORMATS}, type=str)  # type: ignore[misc]


@command()
def export(
    model: ModelArg,
    to: Annotated[
        ExportFormat,
        typer.Option(
            "--to",
            help="tensorboard (a folder: vectors.tsv, metadata.tsv), word2vec (text), "
            "word2vec-binary, npy (NAME.npy + NAME.vocab.json), safetensors (vocabulary in "
            "its metadata).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Where to write: a folder (tensorboard), NAME.npy, NAME.safetensors, a file.",
            show_default=False,
            autocompletion=local_paths,
        ),
    ],
    ids: Annotated[
        Optional[str],
        typer.Option(
            "--ids",
            help="Rows by id: ids and ranges joined by commas (0:5000,42; the end excluded).",
            show_default=False,
        ),
    ] = None,
    words: Annotated[
        Optional[str],
        typer.Option(
            "--words",
            help="Rows of the queries in FILE, one a line (text, #id or =entry).",
            metavar="FILE",
            show_default=False,
            autocompletion=local_paths,
        ),
    ] = None,
    neighbors_of: Annotated[
        Optional[list[str]],
        typer.Option(
            "--neighbors-of",
            help="Rows of QUERY and its -k nearest rows (exact, as neighbors); repeatable.",
            metavar="QUERY",
            show_default=False,
        ),
    ] = None,
    k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, help="Neighbours per --neighbors-of query.")
    ] = 100,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    no_space: NoSpaceOpt = False,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace what is at --out.")] = False,
    *,
    source: Source,
    output: Output,
) -> None:
    """Write the table, or the rows asked for, for other tools: TensorBoard's projector,
    word2vec text or binary (gensim), .npy + vocabulary, or safetensors with its
    vocabulary (the last two read back as MODEL). float32, written atomically."""
    from embinspect.analyses.export import export as write

    searcher = source.searcher(model, table=table.value, device=device, leading_space=not no_space)
    result = write(
        searcher, model, to.value, out, ids=ids, words=words,
        neighbors_of=neighbors_of or (), k=k, metric=metric.value, force=force,
    )  # fmt: skip
    output.emit(result, VIEW)


def export_rows(result: ExportResult) -> tuple[list[str], list[list[Any]]]:
    """One line per file written."""
    header = ["format", "path", "rows", "dim", "dtype"]
    return header, [[result.format, p, result.rows, result.dim, result.dtype] for p in result.paths]


def export_notes(result: ExportResult) -> list[str]:
    notes = [f"note: wrote {result.rows:,} × {result.dim} float32 rows, {result.bytes:,} bytes"]
    if result.escaped:
        notes.append(f"note: {_escaped(result.escaped)}")
    return notes


def _escaped(count: int) -> str:
    tokens = "token" if count == 1 else "tokens"
    return f"{count:,} {tokens} written escaped (a space, control character or backslash)"


def export_table(result: ExportResult) -> None:
    screen = console()
    screen.print(
        f"wrote {result.rows:,} × {result.dim} float32 rows of {result.tensor} "
        f"({result.selection}) as {result.format}, {result.bytes:,} bytes:"
    )
    for path in result.paths:
        screen.print(f"  {path}")
    if result.escaped:
        screen.print(_escaped(result.escaped))


VIEW = View(
    notes=export_notes,
    rows=export_rows,
    records=lambda result: [result.to_dict()],
    table=export_table,
)
