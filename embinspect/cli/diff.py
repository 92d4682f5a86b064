"""``embinspect diff``: its arguments, and how its result is printed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.completion import local_paths
from embinspect.cli.options import (
    CenterOpt,
    Table,
    TableOpt,
    TopKOpt,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    figure,
)
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.diff import TableDiff


@command(revision=False, tensor=False, tokenizer=False)
def diff(
    model_a: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_A",
            help="The base checkpoint (any MODEL: folder, .safetensors, .gguf, Hub repo id...).",
            show_default=False,
            autocompletion=local_paths,
        ),
    ],
    model_b: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_B",
            help="The checkpoint to compare with it (a fine-tune, a quantized copy).",
            show_default=False,
            autocompletion=local_paths,
        ),
    ],
    k: TopKOpt = 20,
    table: TableOpt = Table.input,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="Pair rows by token string, for tokenizers that number tokens differently.",
        ),
    ] = False,
    center: CenterOpt = False,
    revision_a: Annotated[
        Optional[str],
        typer.Option("--revision-a", help="Branch, tag or commit of MODEL_A.", show_default=False),
    ] = None,
    revision_b: Annotated[
        Optional[str],
        typer.Option("--revision-b", help="Branch, tag or commit of MODEL_B.", show_default=False),
    ] = None,
    *,
    source: Source,
    output: Output,
) -> None:
    """Row by row, how far MODEL_B's embedding table moved from MODEL_A's: per-token cosine
    and L2 change, the k tokens that moved most, rows added or removed, the overall drift.
    Rows are paired by token id, and the vocabularies must agree (else --align)."""
    from embinspect.analyses.diff import diff_tables

    # Without a tokenizer, rows are paired by id, unchecked.
    a, b = (source.open(m, revision=r) for m, r in ((model_a, revision_a), (model_b, revision_b)))
    vocab_a, vocab_b = source.vocabulary_or_none(a), source.vocabulary_or_none(b)
    result = diff_tables(a, b, vocab_a, vocab_b, table=table.value, align=align, center=center, k=k)
    output.emit(result, VIEW)


_DIFF_COLUMNS = [
    "kind", "rank", "token_id", "token_id_b", "token", "cosine", "norm_a", "norm_b",
    "relative_change",
]  # fmt: skip


def _diff_records(result: TableDiff) -> list[dict[str, Any]]:
    """The moved-most rows, then rows only B has (added) and only A has (removed)."""
    records = [{"kind": "moved", **row} for row in result.to_dict()["moved"]]
    empty = dict.fromkeys(_DIFF_COLUMNS)
    for row in result.added:
        records.append({**empty, "kind": "added", "token_id_b": row.token_id, "token": row.token})
    for row in result.removed:
        records.append({**empty, "kind": "removed", "token_id": row.token_id, "token": row.token})
    return records


def table_diff_rows(result: TableDiff) -> tuple[list[str], list[list[Any]]]:
    """One line per listed row (moved, added, removed); the summary goes to stderr."""
    return _DIFF_COLUMNS, [[r[key] for key in _DIFF_COLUMNS] for r in _diff_records(result)]


def table_diff_records(result: TableDiff) -> list[dict[str, Any]]:
    """A summary record (every figure, no lists), then one record per listed row."""
    summary = {
        key: value
        for key, value in result.to_dict().items()
        if key not in ("moved", "added", "removed")
    }
    records = [{k: v for k, v in r.items() if v is not None} for r in _diff_records(result)]
    return [{"kind": "summary", **summary}, *records]


def table_diff_notes(result: TableDiff) -> list[str]:
    return [_diff_summary(result)]


def _diff_summary(result: TableDiff) -> str:
    """The figures in one line: what TSV and CSV leave to stderr."""
    paired = f"{result.compared:,} rows paired by {result.paired_by}, {result.scored:,} scored"
    if result.cosine is None:
        return f"{paired}: no row of both tables is finite and non-zero"
    cosine = result.cosine
    below = ", ".join(f"{b['rows']:,} below {b['threshold']:g}" for b in result.below)
    return (
        f"{paired}: cosine mean {_cosine(cosine['mean'])}, median "
        f"{_cosine(cosine['median'])}, min {_cosine(cosine['min'])} ({below}); relative "
        f"change mean "
        f"{result.relative_change['mean']:.4g}; drift {result.drift:.4g}; "
        f"{result.identical:,} identical; {result.added_count:,} added, "
        f"{result.removed_count:,} removed"
    )


def _cosine(value: float) -> str:
    """A cosine with enough decimals to show how far below 1 it is: 0.8735, but
    0.99999847 for a row that only rounding moved (never 1.0000 for a row that moved)."""
    gap = 1.0 - value
    decimals = 4 if gap <= 0 or gap >= 1e-3 else min(12, 2 - math.floor(math.log10(gap)))
    return f"{value:.{decimals}f}"


def _side_line(side: Any) -> str:
    vocab = f"{side.vocab_size:,} tokens" if side.vocab_size is not None else "no tokenizer"
    return f"{side.model}: {side.tensor}, {side.dtype}, {side.rows:,} × {side.dim}, {vocab}"


def table_diff_table(result: TableDiff) -> None:
    from rich.table import Table

    screen = console()
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    summary.add_row("A", _side_line(result.a))
    summary.add_row("B", _side_line(result.b))
    paired = f"{result.compared:,} rows by {result.paired_by}"
    vocabulary = result.vocabulary
    if result.paired_by == "token id" and vocabulary["same"]:
        paired += f" (the vocabularies agree on all {vocabulary['shared_ids']:,} shared ids)"
    if result.centered:
        paired += "; each table's mean row subtracted"
    summary.add_row("paired", paired)
    left = result.left_out
    scored = f"{result.scored:,}"
    if left["total"]:
        scored += (
            f" ({left['total']:,} left out: zero in A/B {left['zero_a']:,}/{left['zero_b']:,},"
            f" NaN or inf in A/B {left['non_finite_a']:,}/{left['non_finite_b']:,})"
        )
    summary.add_row("scored", scored)
    summary.add_row("identical", f"{result.identical:,} rows equal in every component")
    if result.cosine is not None:
        cosine = result.cosine
        summary.add_row(
            "cosine",
            f"mean {_cosine(cosine['mean'])}, median {_cosine(cosine['median'])}, "
            f"min {_cosine(cosine['min'])}, max {_cosine(cosine['max'])}",
        )
        summary.add_row(
            "quantiles",
            ", ".join(f"{q['q'] * 100:g}%: {_cosine(q['cosine'])}" for q in cosine["quantiles"]),
        )
        summary.add_row(
            "below",
            ", ".join(f"{b['threshold']:g}: {b['rows']:,}" for b in result.below),
        )
        change = result.relative_change
        summary.add_row(
            "change",
            f"|a − b| / |a|: mean {change['mean']:.4%}, median {change['median']:.4%}, "
            f"max {change['max']:.4%}",
        )
        summary.add_row("drift", f"{result.drift:.4%} (|B − A| / |A| over the scored rows)")
    for label, count, rows in (
        ("added", result.added_count, result.added),
        ("removed", result.removed_count, result.removed),
    ):
        shown = ", ".join(f"{r.token or ''} #{r.token_id}" for r in rows)
        more = f" and {count - len(rows):,} more" if count > len(rows) else ""
        side = "only in B" if label == "added" else "only in A"
        summary.add_row(label, f"{count:,} rows {side}" + (f": {shown}{more}" if rows else ""))
    if result.rows_without_token is not None:
        untokened = result.rows_without_token
        summary.add_row(
            "no token", f"{untokened['a']:,} rows of A, {untokened['b']:,} of B (not aligned)"
        )
    screen.print(summary)
    if not result.moved:
        return
    aligned = result.paired_by == "token string"
    moved = Table(title="Moved most (lowest cosine)", title_justify="left")
    columns = ["rank", "id", *(["id in B"] if aligned else []), "token", "cosine"]
    for column in [*columns, "norm A", "norm B", "change"]:
        moved.add_column(column, justify="left" if column == "token" else "right")
    for row in result.moved:
        cells = [str(row.rank), str(row.token_id)]
        if aligned:
            cells.append(str(row.token_id_b))
        cells += [
            row.token if row.token is not None else "",
            _cosine(row.cosine),
            figure(row.norm_a),
            figure(row.norm_b),
            f"{row.relative_change:.2%}",
        ]
        moved.add_row(*cells)
    screen.print(moved)


VIEW = View(
    records=table_diff_records, rows=table_diff_rows, notes=table_diff_notes, table=table_diff_table
)
