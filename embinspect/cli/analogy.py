"""``embinspect analogy``: its arguments, and how its result is printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    AnalogyMethod,
    BatchSizeOpt,
    CaseOpt,
    CenterOpt,
    DeviceOpt,
    FilterOpt,
    MethodOpt,
    ModelArg,
    NoSpaceOpt,
    Pool,
    PoolOpt,
    RestrictOpt,
    Table,
    TableOpt,
    TopKOpt,
    WordFilter,
    read_questions,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    ranked_table,
    report_error,
    resolved_line,
)
from embinspect.cli.source import Source, command
from embinspect.errors import EXIT_QUERY, UsageError

if TYPE_CHECKING:
    from embinspect.analyses.analogy import AnalogyResult
    from embinspect.analyses.suites import AnalogyEvaluation


@command()
def analogy(
    model: ModelArg,
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="A B C",
            help="A B C for A - B + C (king man woman ≈ queen), or - for three per stdin line.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Optional[str],
        typer.Option(
            "--file",
            metavar="FILE",
            help="Score an analogy suite in the Google format (': section', then 'a b c d' "
            "for b - a + c ≈ d): accuracy per section and in total, with coverage, as "
            "gensim's evaluate_word_analogies; google names gensim's questions-words.txt.",
            show_default=False,
        ),
    ] = None,
    restrict: RestrictOpt = None,
    case_insensitive: CaseOpt = None,
    k: TopKOpt = 5,
    method: MethodOpt = AnalogyMethod.add,
    table: TableOpt = Table.input,
    word_filter: FilterOpt = WordFilter.none,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    *,
    source: Source,
    output: Output,
) -> None:
    """A - B + C: the rows nearest to it, with A, B and C left out of the results; or a
    whole analogy suite (--file)."""
    from embinspect.analyses.analogy import analogies

    if file is not None:
        if queries:
            raise UsageError("give A B C or --file FILE, not both")
        _evaluate_analogies(
            source, output, model, file, restrict, case_insensitive,
            method=method.value, table=table.value, center=center, leading_space=not no_space,
            device=device, batch_size=batch_size,
        )  # fmt: skip
        return
    if case_insensitive is not None:
        raise UsageError("--case-insensitive goes with --file FILE")
    questions = read_questions(queries or [])
    searcher = source.searcher(
        model,
        table=table.value, device=device, center=center, word_filter=word_filter.value,
        leading_space=not no_space, pool=pool.value, batch_size=batch_size, restrict=restrict,
    )  # fmt: skip
    k = searcher.limit_k(k)
    failed = output.stream(analogies(searcher, questions, k, method.value), ANALOGY_RESULT_VIEW)
    searcher.note_left_out()
    if failed:
        raise typer.Exit(EXIT_QUERY)


def _evaluate_analogies(
    source: Source,
    output: Output,
    model: str,
    file: str,
    restrict: int | None,
    case_insensitive: bool | None,
    **options: Any,
) -> None:
    from embinspect.analyses.suites import (
        GENSIM_RESTRICT,
        evaluate_analogies,
        find_suite,
        read_analogies,
        word_index,
    )

    path = find_suite(file, "analogies")
    suite = read_analogies(path)
    method = options.pop("method")
    restrict = restrict or GENSIM_RESTRICT
    searcher = source.searcher(model, restrict=restrict, **options)
    index = word_index(searcher, restrict, case_insensitive, options["leading_space"])
    result = evaluate_analogies(searcher, index, suite, method=method)
    for failure in result.failures:
        report_error(f"{failure['question']}: {failure['error']}")
    output.emit(result, ANALOGY_EVALUATION_VIEW)
    searcher.note_left_out()


def analogy_result_rows(result: AnalogyResult) -> tuple[list[str], list[list[Any]]]:
    # The score column is named after what it is: cosine (3CosAdd), or 3cosmul.
    header = ["formula", "method", "rank", "token_id", "token", result.metric, "error"]
    if result.error is not None:
        return header, [[result.formula, result.method, None, None, None, None, result.error]]
    return header, [
        [result.formula, result.method, n.rank, n.token_id, n.token, n.score, None]
        for n in result.results
    ]


_SECTION_COLUMNS = ["section", "kind", "questions", "scored", "correct", "accuracy", "skipped"]


def _section_rows(result: AnalogyEvaluation) -> list[dict[str, Any]]:
    parts = [*result.sections, result.semantic, result.syntactic, result.total]
    return [{key: part.to_dict()[key] for key in _SECTION_COLUMNS} for part in parts]


def analogy_evaluation_rows(result: AnalogyEvaluation) -> tuple[list[str], list[list[Any]]]:
    """One line per section, then the semantic, syntactic and overall totals."""
    return _SECTION_COLUMNS, [list(row.values()) for row in _section_rows(result)]


def analogy_evaluation_records(result: AnalogyEvaluation) -> list[dict[str, Any]]:
    return _section_rows(result)


def analogy_evaluation_notes(result: AnalogyEvaluation) -> list[str]:
    return [_analogy_summary(result)]


def _analogy_summary(result: AnalogyEvaluation) -> str:
    total = result.total
    accuracy = f"{total.accuracy:.2%}" if total.accuracy is not None else "n/a"
    coverage = f"{result.coverage:.1%}" if result.coverage is not None else "n/a"
    return (
        f"{Path(result.file).name}: accuracy {accuracy} ({total.correct} of {total.scored} "
        "scored); "
        f"{total.skipped} of {total.questions} questions skipped, a word not one token "
        f"(coverage {coverage})"
    )


def analogy_result_table(result: AnalogyResult) -> None:
    screen = console()
    if result.error is not None:
        return
    a, b, c = (q["query"] for q in result.queries)
    method = "3CosAdd" if result.method == "add" else "3CosMul"
    title = f"{a} − {b} + {c} ≈ ?   ({method})"
    screen.print(ranked_table(title, result.results, result.metric))
    for q in result.queries:
        screen.print(resolved_line(q["query"], q["token_ids"], q["tokens"], q["pooled"]))


def analogy_evaluation_table(result: AnalogyEvaluation) -> None:
    from rich import box
    from rich.table import Table

    method = "3CosAdd" if result.method == "add" else "3CosMul"
    folding = "case-insensitive" if result.case_insensitive else "case-sensitive"
    table = Table(
        title=f"Analogies ({method}, first {result.restrict:,} rows, {folding})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    columns = [c for c in _SECTION_COLUMNS if c != "kind"]  # the totals below say it
    for column in columns:
        left = column == "section"
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    rows = _section_rows(result)
    for number, row in enumerate(rows):
        if number == len(result.sections):
            table.add_section()
        accuracy = row["accuracy"]
        cells = [
            str(row["section"]),
            f"{row['questions']:,}",
            f"{row['scored']:,}",
            f"{row['correct']:,}",
            f"{accuracy:.2%}" if accuracy is not None else "–",
            f"{row['skipped']:,}",
        ]
        table.add_row(*cells)
    screen = console()
    screen.print(table)
    screen.print(_analogy_summary(result))


ANALOGY_RESULT_VIEW = View(rows=analogy_result_rows, table=analogy_result_table)
ANALOGY_EVALUATION_VIEW = View(
    rows=analogy_evaluation_rows,
    records=analogy_evaluation_records,
    notes=analogy_evaluation_notes,
    table=analogy_evaluation_table,
)
