"""``embinspect tokens``: its arguments, and how its result is printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from embinspect.cli.options import (
    ModelArg,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    figure,
    plain,
    shown,
)
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.tokens import TokenLookup


@command()
def tokens(
    model: ModelArg,
    text: Annotated[str, typer.Argument(help="Text to tokenize.", show_default=False)],
    positions: Annotated[
        bool,
        typer.Option(
            "--positions",
            help="Add the learned position row and the norm of token + position "
            "(what the first block sees).",
        ),
    ] = False,
    vectors: Annotated[bool, typer.Option("--vectors", help="Print whole rows.")] = False,
    special: Annotated[
        bool,
        typer.Option(
            "--special/--no-special",
            help="Add the tokenizer's special tokens ([CLS] ... [SEP], <bos>).",
        ),
    ] = False,
    components: Annotated[
        int, typer.Option("--components", min=0, help="How many leading components to show.")
    ] = 4,
    *,
    source: Source,
    output: Output,
) -> None:
    """Tokenize TEXT and show each token: id, stored form, text, row norm, first components."""
    from embinspect.analyses.tokens import lookup_tokens

    checkpoint = source.open(model)
    vocabulary = source.vocabulary(checkpoint)
    result = lookup_tokens(
        checkpoint,
        vocabulary,
        text,
        components=components,
        positions=positions,
        vectors=vectors,
        special_tokens=special,
    )
    output.emit(result, VIEW)


def token_lookup_records(result: TokenLookup) -> list[dict[str, Any]]:
    # Columns that a run did not ask for (--vectors, --positions) are left out, not empty.
    return [
        {key: value for key, value in row.items() if value is not None}
        for row in result.to_dict()["tokens"]
    ]


def token_lookup_rows(result: TokenLookup) -> tuple[list[str], list[list[Any]]]:
    records = token_lookup_records(result)
    header = list(records[0]) if records else ["position", "token_id", "token", "text"]
    return header, [[record[key] for key in header] for record in records]


def token_lookup_notes(result: TokenLookup) -> list[str]:
    return [result.position_note] if result.position_note else []


def token_lookup_table(result: TokenLookup) -> None:
    from rich.table import Table

    screen = console()
    with_positions = any(row.position_id is not None for row in result.tokens)
    columns = ["pos", "id", "token", "text", "norm", "first components"]
    if with_positions:
        columns += ["pos id", "pos norm", "input norm"]
    rows = []
    for row in result.tokens:
        cells = [
            str(row.position),
            str(row.token_id),
            plain(row.token),  # Text, measured below as printed
            shown(row.text),
            figure(row.norm),
            " ".join(figure(v, signed=True) for v in row.head),
        ]
        if with_positions:
            cells += [str(row.position_id), figure(row.position_norm), figure(row.input_norm)]
        rows.append(cells)
    screen.print(f"{result.tensor} of {result.model}")  # above: it would wrap at the table's width
    table = Table()
    for index, column in enumerate(columns):
        if column == "first components":
            table.add_column(column)  # the one column that wraps on a narrow terminal
            continue
        # Numbers are never cut: a narrow terminal wraps the components instead.
        widest = max([len(column.split()[-1])] + [len(cells[index]) for cells in rows])
        justify = "left" if column in {"token", "text"} else "right"
        table.add_column(column, justify=justify, min_width=widest, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    screen.print(table)
    if result.position_note:
        screen.print(result.position_note)
    if any(row.vector is not None for row in result.tokens):
        for row in result.tokens:
            screen.print(f"{row.token_id}: " + " ".join(f"{v:.6g}" for v in row.vector or []))


VIEW = View(
    records=token_lookup_records,
    rows=token_lookup_rows,
    notes=token_lookup_notes,
    table=token_lookup_table,
)
