"""``embinspect compare``: its arguments, and how its result is printed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    CaseOpt,
    CenterOpt,
    Metric,
    MetricOpt,
    ModelArg,
    NoSpaceOpt,
    Pool,
    PoolOpt,
    RestrictOpt,
    Table,
    TableOpt,
    read_queries,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    figure,
    report_error,
    resolved_line,
    styled,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY, UsageError

if TYPE_CHECKING:
    from embinspect.analyses.compare import Comparison
    from embinspect.analyses.suites import PairsEvaluation


@command()
def compare(
    model: ModelArg,
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="QUERY...",
            help="Two or more queries (text, #id, =entry, or -).",
            show_default=False,
        ),
    ] = None,
    pairs: Annotated[
        Optional[str],
        typer.Option(
            "--pairs",
            metavar="FILE",
            help="Score a word-pair suite (w1 TAB w2 TAB score): Pearson and Spearman of the "
            "cosines against the human scores, as gensim's evaluate_word_pairs; wordsim353 "
            "and simlex999 name gensim's copies.",
            show_default=False,
        ),
    ] = None,
    restrict: RestrictOpt = None,
    case_insensitive: CaseOpt = None,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    *,
    source: Source,
    output: Output,
) -> None:
    """Pairwise cosine similarity (or dot, or L2 distance) of two or more queries, or a
    word-pair suite scored against human judgement (--pairs)."""
    from embinspect.analyses.compare import compare as pairwise_scores

    if pairs is not None:
        if queries:
            raise UsageError("give queries or --pairs FILE, not both")
        if metric is not Metric.cosine:
            raise UsageError("--pairs scores cosines, as gensim does; drop --metric")
        _evaluate_pairs(
            source, output, model, pairs, restrict, case_insensitive,
            table=table.value, center=center, leading_space=not no_space,
        )  # fmt: skip
        return
    if restrict is not None or case_insensitive is not None:
        raise UsageError("--restrict and --case-insensitive go with --pairs FILE")
    items = list(read_queries(queries or []))
    if len(items) < 2:
        raise UsageError("compare needs at least two queries")
    searcher = source.searcher(
        model,
        table=table.value, device="cpu", center=center, leading_space=not no_space,
        pool=pool.value,
    )  # fmt: skip
    result = pairwise_scores(searcher, items, metric.value)
    for failure in result.errors:
        report_error(failure["error"])
    output.emit(result, COMPARISON_VIEW)
    if result.errors:
        raise typer.Exit(EXIT_QUERY)


def _evaluate_pairs(
    source: Source,
    output: Output,
    model: str,
    pairs: str,
    restrict: int | None,
    case_insensitive: bool | None,
    **options: Any,
) -> None:
    from embinspect.analyses.suites import (
        GENSIM_RESTRICT,
        evaluate_pairs,
        find_suite,
        read_pairs,
        word_index,
    )

    path = find_suite(pairs, "pairs")
    suite = read_pairs(path)
    searcher = source.searcher(model, device="cpu", **options)
    restrict = restrict or GENSIM_RESTRICT
    index = word_index(searcher, restrict, case_insensitive, options["leading_space"])
    output.emit(evaluate_pairs(searcher, index, suite), PAIRS_EVALUATION_VIEW)


def comparison_rows(result: Comparison) -> tuple[list[str], list[list[Any]]]:
    """Long format, one pair a line, ready for sort and awk."""
    names = [item["query"] for item in result.items]
    rows = [
        [names[i], names[j], result.matrix[i][j]]
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    return ["a", "b", result.metric], rows


def comparison_records(result: Comparison) -> list[dict[str, Any]]:
    header, rows = comparison_rows(result)
    return [{"a": a, "b": b, "metric": result.metric, "score": score} for a, b, score in rows]


def pairs_evaluation_rows(result: PairsEvaluation) -> tuple[list[str], list[list[Any]]]:
    rows = [[p.word1, p.word2, p.human, p.cosine] for p in result.pairs]
    return ["word1", "word2", "human", "cosine"], rows


def pairs_evaluation_records(result: PairsEvaluation) -> list[dict[str, Any]]:
    return [vars(p) for p in result.pairs]


def pairs_evaluation_notes(result: PairsEvaluation) -> list[str]:
    return [_pairs_summary(result)]


def _figure(value: float | None) -> str:
    """A correlation, or why there is none (a constant side)."""
    return f"{value:.4f}" if value is not None else "undefined"


def _pairs_summary(result: PairsEvaluation) -> str:
    name = Path(result.file).name
    return (
        f"{name}: Pearson {_figure(result.pearson)}, Spearman {_figure(result.spearman)} over"
        f" {result.scored} pairs; {result.skipped} of {len(result.pairs)} skipped, a word "
        f"not one token ({result.oov_ratio:.1f}%)"
    )


def comparison_table(result: Comparison) -> None:
    from rich.table import Table

    screen = console()
    names = [item["query"] for item in result.items]
    table = Table(title=f"{result.metric} between items", title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    for i, name in enumerate(names):
        cells = [_coloured(result.metric, result.matrix[i][j], i == j) for j in range(len(names))]
        table.add_row(name, *cells)
    screen.print(table)
    for item in result.items:
        screen.print(
            resolved_line(item["query"], item["token_ids"], item["tokens"], item["pooled"])
        )


def pairs_evaluation_table(result: PairsEvaluation) -> None:
    from rich.table import Table

    folding = "case-insensitive" if result.case_insensitive else "case-sensitive"
    table = Table(
        title=f"Word pairs (cosine against human scores, {folding})", title_justify="left"
    )
    for column in ("file", "pairs", "scored", "skipped", "Pearson", "Spearman"):
        table.add_column(column, justify="left" if column == "file" else "right")
    table.add_row(
        Path(result.file).name,
        f"{len(result.pairs):,}",
        f"{result.scored:,}",
        f"{result.skipped:,} ({result.oov_ratio:.1f}%)",
        _figure(result.pearson),
        _figure(result.spearman),
    )
    console().print(table)
    print("embinspect: --format tsv or json lists every pair's cosine", file=sys.stderr)


def _coloured(metric: str, score: float, diagonal: bool) -> Any:
    text = figure(score)
    if diagonal or metric != "cosine":
        return styled(text, "dim") if diagonal else text
    # Cosine: green for similar, red for opposite, plain around zero.
    style = "green" if score >= 0.5 else "yellow" if score >= 0.2 else "red" if score < -0.1 else ""
    return styled(text, style) if style else text


COMPARISON_VIEW = View(rows=comparison_rows, records=comparison_records, table=comparison_table)
PAIRS_EVALUATION_VIEW = View(
    rows=pairs_evaluation_rows,
    records=pairs_evaluation_records,
    notes=pairs_evaluation_notes,
    table=pairs_evaluation_table,
)
