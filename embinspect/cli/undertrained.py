"""``embinspect undertrained``: its arguments, and how its result is printed."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    ModelArg,
    Table,
    TableOpt,
    TopKOpt,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    figure,
    shown,
)
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.undertrained import UndertrainedResult


@command()
def undertrained(
    model: ModelArg,
    k: TopKOpt = 50,
    reference: Annotated[
        Optional[list[str]],
        typer.Option(
            "--reference",
            metavar="TOKEN",
            help="A token known to be unused (as the vocabulary spells it, or #ID); repeat it. "
            "Default: the vocabulary's [unusedN], <|reserved_special_token_N|> or <unusedN>; "
            "with none, the tokens its tokenizer cannot produce (unreachable).",
            show_default=False,
        ),
    ] = None,
    keep_reference: Annotated[
        bool, typer.Option("--keep-reference", help="List the reference tokens too.")
    ] = False,
    table: TableOpt = Table.input,
    *,
    source: Source,
    output: Output,
) -> None:
    """Tokens likely never or barely trained, ranked by the indicator of Land & Bartolo 2024
    ("Fishing for Magikarp"): cosine to the mean row of tokens known to be unused, first
    principal component removed (where a tokenizer has none known, its unreachable tokens
    stand in); with each row's norm and whether its text encodes back to it (unreachable
    tokens)."""
    from embinspect.analyses.undertrained import find_reference, rank_undertrained

    checkpoint, rows, vocabulary = source.table(model, table.value)
    ids, reference_source = find_reference(vocabulary, rows.rows, reference)
    result = rank_undertrained(
        checkpoint.files.model,
        rows,
        vocabulary,
        ids,
        reference_source,
        top=k,
        keep_reference=keep_reference,
    )
    output.emit(result, VIEW)


def _undertrained_summary(result: UndertrainedResult) -> str:
    unreachable = (
        f"{result.unreachable:,} tokens do not encode back to themselves (unreachable)"
        if result.unreachable is not None
        else "reachability unknown (no tokenizer)"
    )
    if result.reference == "unreachable":
        reference = (
            f"reference: {result.reference_count:,} {result.reference_source}, as no token is "
            "known to be unused (--reference to choose)"
        )
    else:
        reference = f"reference: {result.reference_count:,} rows, {result.reference_source}"
    return (
        f"{reference}; first principal component removed ({result.first_pc_share:.1%} of the "
        f"variance); {result.zero_rows:,} all-zero rows; {unreachable}"
    )


_SUSPECT_COLUMNS = ["rank", "token_id", "token", "cosine", "norm", "reachable", "reference"]


def undertrained_result_rows(result: UndertrainedResult) -> tuple[list[str], list[list[Any]]]:
    return _SUSPECT_COLUMNS, [
        [getattr(s, column) for column in _SUSPECT_COLUMNS] for s in result.tokens
    ]


def undertrained_result_records(result: UndertrainedResult) -> list[dict[str, Any]]:
    return [asdict(s) for s in result.tokens]


def undertrained_result_notes(result: UndertrainedResult) -> list[str]:
    return [f"note: {_undertrained_summary(result)}"]


def undertrained_result_table(result: UndertrainedResult) -> None:
    from rich.table import Table

    screen = console()
    # Above the table: a title naming the model would wrap at the table's width.
    against = " (reference: unreachable tokens)" if result.reference == "unreachable" else ""
    screen.print(f"Likely under-trained tokens of {result.tensor} ({result.model}){against}")
    suspects = Table()
    for column in ("rank", "id", "token", "cosine", "norm", "reachable"):
        justify = "left" if column in ("token", "reachable") else "right"
        suspects.add_column(column, justify=justify)
    for s in result.tokens:
        token = shown(s.token) if s.token is not None else f"#{s.token_id}"
        if s.reference:
            token += " (ref)"
        cosine = "zero row" if s.cosine is None else f"{s.cosine:.4f}"
        reachable = {True: "yes", False: "no", None: "?"}[s.reachable]
        suspects.add_row(str(s.rank), str(s.token_id), token, cosine, figure(s.norm), reachable)
    screen.print(suspects)
    screen.print(_undertrained_summary(result))


VIEW = View(
    rows=undertrained_result_rows,
    records=undertrained_result_records,
    notes=undertrained_result_notes,
    table=undertrained_result_table,
)
