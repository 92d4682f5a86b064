"""``embinspect stats``: its arguments, and how its result is printed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from embinspect.cli.options import (
    ModelArg,
    Table,
    TableOpt,
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
    from embinspect.analyses.stats import TableStats


@command()
def stats(
    model: ModelArg,
    table: TableOpt = Table.input,
    pairs: Annotated[
        int,
        typer.Option("--pairs", min=1, help="Random pairs of rows whose mean cosine is reported."),
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random pairs.")] = 0,
    *,
    source: Source,
    output: Output,
) -> None:
    """The whole table's health: row norms (quantiles, histogram, extremes), anisotropy
    (mean cosine of random pairs, cosine to the mean row), all-zero, non-finite and
    duplicate rows, and padding rows past the tokenizer's vocabulary."""
    from embinspect.analyses.stats import table_stats

    checkpoint, rows, vocabulary = source.table(model, table.value)
    result = table_stats(checkpoint.files.model, rows, vocabulary, pairs=pairs, seed=seed)
    output.emit(result, VIEW)


def _stats_summary(result: TableStats) -> list[tuple[str, str]]:
    """(label, text) lines of ``stats``, shared by the table and the notes of TSV/JSONL."""
    q = result.norm_quantiles
    pairs = result.pair_cosine
    odd = [
        f"{result.zero_rows:,} all zeros",
        f"{result.nonfinite_rows:,} with NaN or infinity",
        f"{result.duplicate_rows:,} duplicates of another row ({result.duplicate_groups:,} "
        "distinct)",
    ]
    vocab = (
        f"{result.vocab_size:,} tokens; {result.padding_rows:,} padding rows past them"
        if result.vocab_size is not None
        else "no tokenizer: every row counted as a token"
    )
    return [
        ("table", f"{result.tensor}: {result.rows:,} × {result.dim} {result.dtype}"),
        ("vocabulary", vocab),
        ("odd rows", ", ".join(odd)),
        (
            "row norms",
            f"mean {result.norm_mean:.4g} ± {result.norm_std:.3g}; min {q['min']:.4g}, "
            f"p5 {q['p5']:.4g}, median {q['median']:.4g}, p95 {q['p95']:.4g}, max {q['max']:.4g}",
        ),
        (
            "anisotropy",
            f"random pairs: mean cosine {pairs['mean']:.4f} ± {pairs['stderr']:.4f} "
            f"({pairs['pairs']:,} pairs, seed {pairs['seed']}); cosine to the mean row: mean "
            f"{result.cosine_to_mean['mean']:.4f}; |mean row| / mean norm "
            f"{result.mean_row_norm:.4f}",
        ),
    ]


def table_stats_notes(result: TableStats) -> list[str]:
    return [f"note: {label}: {text}" for label, text in _stats_summary(result)]


def table_stats_rows(result: TableStats) -> tuple[list[str], list[list[Any]]]:
    """The norm histogram, one bin a line; the other figures are notes on stderr."""
    return ["low", "high", "count"], [[b["low"], b["high"], b["count"]] for b in result.histogram]


def table_stats_records(result: TableStats) -> list[dict[str, Any]]:
    return [result.to_dict()]


def table_stats_table(result: TableStats) -> None:
    from rich.table import Table

    screen = console()
    screen.print(f"{result.tensor} of {result.model}")  # above: it would wrap at the table's width
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column()
    for label, text in _stats_summary(result):
        summary.add_row(label, text)
    screen.print(summary)
    histogram = Table(title="row norms", title_justify="left", box=None, padding=(0, 1, 0, 0))
    for column in ("from", "to", "rows"):
        histogram.add_column(column, justify="right")
    histogram.add_column("")
    widest = max(b["count"] for b in result.histogram) or 1
    for b in result.histogram:
        bar = "█" * round(40 * b["count"] / widest)
        histogram.add_row(f"{b['low']:.4g}", f"{b['high']:.4g}", f"{b['count']:,}", bar)
    screen.print(histogram)
    extremes = Table(title="extremes of the norm", title_justify="left")
    for column in ("", "id", "token", "norm"):
        extremes.add_column(column, justify="right" if column in ("id", "norm") else "left")
    for kind, picked in (("smallest", result.smallest), ("largest", result.largest)):
        for index, row in enumerate(picked):
            token = shown(row.token) if row.token is not None else f"#{row.token_id}"
            label = kind if index == 0 else ""
            extremes.add_row(label, str(row.token_id), token, figure(row.norm))
    screen.print(extremes)
    if result.duplicate_examples:
        groups = "; ".join(" = ".join(f"#{i}" for i in g) for g in result.duplicate_examples[:5])
        screen.print(f"duplicate rows: {groups}")


VIEW = View(
    notes=table_stats_notes,
    rows=table_stats_rows,
    records=table_stats_records,
    table=table_stats_table,
)
