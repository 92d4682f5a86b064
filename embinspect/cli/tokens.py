"""``embinspect tokens``: its arguments, and how its result is printed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    ModelArg,
    read_queries,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    figure,
    flag,
    plain,
    shown,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY, QueryError

if TYPE_CHECKING:
    from embinspect.analyses.tokens import TokenLookup
    from embinspect.model.checkpoint import Checkpoint
    from embinspect.model.tokenizer import Vocabulary


@command()
def tokens(
    model: ModelArg,
    text: Annotated[
        str,
        typer.Argument(
            help="Text to tokenize, or - to read one text per line from stdin.", show_default=False
        ),
    ],
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
        Optional[bool],
        typer.Option(
            "--special/--no-special",
            help="Add the tokenizer's special tokens ([CLS] ... [SEP], <bos>) [default: on "
            "with --positions, so positions are the model's own; off without].",
            show_default=False,
        ),
    ] = None,
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
    if text == "-":  # one text a line, each answered in turn; a bad line does not stop the rest
        options = {"components": components, "positions": positions, "vectors": vectors}
        lines = each_line(
            checkpoint, vocabulary, read_queries([text]), special_tokens=special, **options
        )
        if output.stream(lines, lines_view()):
            raise typer.Exit(EXIT_QUERY)
        return
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
    notes = [result.position_note] if result.position_note else []
    if result.special_tokens:
        notes.append(f"note: {SPECIAL_NOTE}")
    return notes


# Said wherever special tokens were added: --positions adds them unless told not to.
SPECIAL_NOTE = "special tokens added, as the model sees the text; --no-special leaves them out"


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
    if result.special_tokens:
        screen.print(SPECIAL_NOTE)
    if any(row.vector is not None for row in result.tokens):
        for row in result.tokens:
            screen.print(f"{row.token_id}: " + " ".join(f"{v:.6g}" for v in row.vector or []))


VIEW = View(
    records=token_lookup_records,
    rows=token_lookup_rows,
    notes=token_lookup_notes,
    table=token_lookup_table,
)


# --- tokens MODEL -: one text a stdin line ----------------------------------------------------


@dataclass(frozen=True)
class LineTokens:
    """One stdin line's tokens (``lookup``), or why it has none (``error``)."""

    line: str
    lookup: TokenLookup | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.lookup is None:
            return {"text": self.line, "error": self.error}
        return self.lookup.to_dict()


def each_line(
    checkpoint: Checkpoint, vocabulary: Vocabulary, lines: Iterable[str], **options: Any
) -> Iterator[LineTokens]:
    """Each line looked up as ``tokens MODEL LINE`` would (``options``: ``lookup_tokens``'s);
    a line that cannot be (too long, not UTF-8, no tokens) carries its error instead."""
    from embinspect.analyses.tokens import lookup_tokens
    from embinspect.tables.queries import MAX_QUERY_CHARS
    from embinspect.tables.queries import shown as quoted

    for line in lines:
        # A line too long to keep came as its first characters and its whole length.
        length = getattr(line, "length", len(line))
        if length > MAX_QUERY_CHARS:
            error = (
                f"{quoted(line[:60])}... ({length:,} characters): a line is at most "
                f"{MAX_QUERY_CHARS:,} characters"
            )
            yield LineTokens(line[:60], None, error)
            continue
        try:
            yield LineTokens(line, lookup_tokens(checkpoint, vocabulary, line, **options))
        except QueryError as err:
            error = err.worded(flag)
            named = quoted(line) if len(line) <= 60 else f"{quoted(line[:60])}..."
            # Named, so that the line on stderr says which line it was.
            yield LineTokens(line, None, error if error.startswith(named) else f"{named}: {error}")


def lines_view() -> View:
    """Each line's tokens as ``tokens`` prints one text's, the line named: in the table a
    title, in JSON lines, TSV and CSV a leading ``input`` field; JSON is a list of the
    single-text documents. A failed line is its error on stderr, in JSON and JSON lines
    also a record ``{text|input, error}``; TSV and CSV have no row for it. The position
    note, the same for every line, is given once."""
    noted: set[str] = set()

    def records(result: LineTokens) -> list[dict[str, Any]]:
        if result.lookup is None:
            return [{"input": result.line, "error": result.error}]
        return [{"input": result.line, **row} for row in token_lookup_records(result.lookup)]

    def rows(result: LineTokens) -> tuple[list[str] | None, list[list[Any]]]:
        if result.lookup is None:
            return None, []  # no row: the header comes with the first line that has rows
        header, token_rows = token_lookup_rows(result.lookup)
        return ["input", *header], [[result.line, *row] for row in token_rows]

    def notes(result: LineTokens) -> list[str]:
        fresh = (
            [n for n in token_lookup_notes(result.lookup) if n not in noted]
            if result.lookup
            else []
        )
        noted.update(fresh)
        return fresh

    def table(result: LineTokens) -> None:
        if result.lookup is not None:  # an error is already on stderr
            console().print(plain("tokens of ") + shown(result.line))
            token_lookup_table(result.lookup)

    return View(records=records, rows=rows, notes=notes, table=table)
