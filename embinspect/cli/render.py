"""Print a result in the format asked for: a Rich table, JSON, JSON lines, TSV or CSV.

Every format is drawn from the same result object, so they never disagree. Data goes
to stdout; notes and errors go to stderr, so ``--format json`` output stays parseable.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # renderers are found by the result's class name (``_by_result_type``)
    from embinspect.analyses.analogy import AnalogyResult
    from embinspect.analyses.compare import Comparison
    from embinspect.analyses.diff import TableDiff
    from embinspect.analyses.info import Info
    from embinspect.analyses.neighbors import NeighborsResult
    from embinspect.analyses.plot import Projection
    from embinspect.analyses.positions import PositionReport
    from embinspect.analyses.stats import TableStats
    from embinspect.analyses.suites import AnalogyEvaluation, PairsEvaluation
    from embinspect.analyses.tokens import TokenLookup
    from embinspect.analyses.undertrained import UndertrainedResult


def _by_result_type(default: Callable[..., Any]) -> Any:
    """Like ``functools.singledispatch``, but keyed by the result class's name as each
    renderer's first annotation spells it: this module then imports none of the library
    modules that define the results, which would cost ``--help`` and ``info`` their
    start-up time."""
    renderers: dict[str, Callable[..., Any]] = {}

    @wraps(default)
    def dispatch(result: Any, *args: Any, **kwargs: Any) -> Any:
        for cls in type(result).__mro__:
            renderer = renderers.get(cls.__name__)
            if renderer is not None:
                return renderer(result, *args, **kwargs)
        return default(result, *args, **kwargs)

    def register(renderer: Callable[..., Any]) -> Callable[..., Any]:
        annotation = next(v for k, v in renderer.__annotations__.items() if k != "return")
        renderers[annotation if isinstance(annotation, str) else annotation.__name__] = renderer
        return renderer

    dispatch.register = register  # type: ignore[attr-defined]
    return dispatch


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    tsv = "tsv"
    csv = "csv"


def resolve_format(requested: OutputFormat | None) -> OutputFormat:
    """A Rich table for a person at a terminal, TSV with a header line for a pipe."""
    if requested is not None:
        return requested
    return OutputFormat.table if sys.stdout.isatty() else OutputFormat.tsv


def emit(result: Any, fmt: OutputFormat) -> None:
    """Print one result."""
    emit_stream([result], fmt, as_array=False)


def emit_stream(results: Iterable[Any], fmt: OutputFormat, as_array: bool = True) -> int:
    """Print results as they arrive (jsonl, tsv and csv rows stream; json is one array).

    Returns how many results carried an error, so the caller can set the exit code.
    """
    try:
        return _emit_stream(results, fmt, as_array)
    except BrokenPipeError:
        # `embinspect ... | head`: the reader has what it wanted. Stop quietly with 0, as
        # Unix tools do; point stdout at /dev/null so the exit-time flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


def _emit_stream(results: Iterable[Any], fmt: OutputFormat, as_array: bool) -> int:
    out = sys.stdout
    failed = 0
    first = True
    collected: list[Any] = []
    writer = csv.writer(out, lineterminator="\n") if fmt is OutputFormat.csv else None
    for result in results:
        if getattr(result, "error", None):
            failed += 1
            report_error(result.error)
        if fmt is OutputFormat.table:
            render_table(result)
        elif fmt is OutputFormat.json:
            collected.append(result.to_dict())
        elif fmt is OutputFormat.jsonl:
            for record in json_lines(result):
                out.write(_json(record) + "\n")
        else:
            header, rows = delimited_rows(result)
            if writer is not None:
                if first:
                    writer.writerow(header)
                writer.writerows([[_cell(v) for v in row] for row in rows])
            else:
                if first:
                    out.write("\t".join(header) + "\n")
                for row in rows:
                    out.write("\t".join(_tsv_escape(_cell(v)) for v in row) + "\n")
            for note in notes(result):
                report_note(note)
        first = False
        out.flush()
    if fmt is OutputFormat.json:
        document = collected if as_array else collected[0]
        out.write(_json(document, indent=2) + "\n")
    out.flush()  # here, where a closed pipe is caught, not at exit where it is not
    return failed


def _json(document: Any, indent: int | None = None) -> str:
    """Strict JSON: NaN and infinities (which JSON has no words for) become null."""
    return json.dumps(_finite(document), ensure_ascii=False, indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_finite(child) for child in value]
    return value


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback ``(done, total)`` drawing a bar on stderr, or None when stderr
    is not a terminal (a script's log gets no bar)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


# Hugging Face access tokens ("hf_" and 34 letters and digits), wherever they come from
# (HF_TOKEN, the token file, a pasted argument): never shown in an error or a note.
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def redact_secrets(text: str) -> str:
    """``text`` with Hub tokens (any hf_... token and the token variables' values) hidden."""
    for variable in _TOKEN_VARIABLES:
        secret = os.environ.get(variable, "").strip()
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return _HF_TOKEN.sub("hf_***", text)


def one_line(text: str) -> str:
    """A message as one line: library messages quote files and errors that may hold
    newlines, and every report must stay one line for scripts that read stderr."""
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def report_error(message: str) -> None:
    """One line on stderr: how every user-facing error is reported."""
    print(f"embinspect: error: {redact_secrets(one_line(message))}", file=sys.stderr)


def report_note(note: str) -> None:
    """A note or warning on stderr (``note: ...``, ``warning: ...``), one line."""
    print(f"embinspect: {redact_secrets(one_line(note))}", file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _tsv_escape(text: str) -> str:
    # One record per line: tabs and newlines inside a token must not split it.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, child in value.items():
            items.extend(_flatten(child, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = []
        for index, child in enumerate(value):
            items.extend(_flatten(child, f"{prefix}.{index}"))
        return items
    return [(prefix, value)]


# --- per-result shapes -------------------------------------------------------------


@_by_result_type
def json_lines(result: Any) -> list[dict[str, Any]]:
    return [result.to_dict()]


@_by_result_type
def delimited_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for TSV/CSV; nested results become ``field value`` pairs."""
    return ["field", "value"], [[key, value] for key, value in _flatten(result.to_dict())]


@_by_result_type
def notes(result: Any) -> list[str]:
    return []


@json_lines.register
def _(result: TokenLookup) -> list[dict[str, Any]]:
    # Columns that a run did not ask for (--vectors, --positions) are left out, not empty.
    return [
        {key: value for key, value in row.items() if value is not None}
        for row in result.to_dict()["tokens"]
    ]


@delimited_rows.register
def _(result: TokenLookup) -> tuple[list[str], list[list[Any]]]:
    records = json_lines(result)
    header = list(records[0]) if records else ["position", "token_id", "token", "text"]
    return header, [[record[key] for key in header] for record in records]


@notes.register
def _(result: TokenLookup) -> list[str]:
    return [result.position_note] if result.position_note else []


@delimited_rows.register
def _(result: NeighborsResult) -> tuple[list[str], list[list[Any]]]:
    header = ["query", "query_ids", "rank", "token_id", "token", "score", "error"]
    if result.error is not None:
        return header, [[result.query, None, None, None, None, None, result.error]]
    ids = result.token_ids
    rows = [
        [result.query, ids, n.rank, n.token_id, n.token, n.score, None] for n in result.neighbors
    ]
    return header, rows


@delimited_rows.register
def _(result: AnalogyResult) -> tuple[list[str], list[list[Any]]]:
    header = ["formula", "method", "rank", "token_id", "token", "score", "error"]
    if result.error is not None:
        return header, [[result.formula, result.method, None, None, None, None, result.error]]
    return header, [
        [result.formula, result.method, n.rank, n.token_id, n.token, n.score, None]
        for n in result.results
    ]


@delimited_rows.register
def _(result: Comparison) -> tuple[list[str], list[list[Any]]]:
    """Long format, one pair a line, ready for sort and awk."""
    names = [item["query"] for item in result.items]
    rows = [
        [names[i], names[j], result.matrix[i][j]]
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    return ["a", "b", result.metric], rows


@json_lines.register
def _(result: Comparison) -> list[dict[str, Any]]:
    header, rows = delimited_rows(result)
    return [{"a": a, "b": b, "score": score} for a, b, score in rows]


_SECTION_COLUMNS = ["section", "kind", "questions", "scored", "correct", "accuracy", "skipped"]


def _section_rows(result: AnalogyEvaluation) -> list[dict[str, Any]]:
    parts = [*result.sections, result.semantic, result.syntactic, result.total]
    return [{key: part.to_dict()[key] for key in _SECTION_COLUMNS} for part in parts]


@delimited_rows.register
def _(result: AnalogyEvaluation) -> tuple[list[str], list[list[Any]]]:
    """One line per section, then the semantic, syntactic and overall totals."""
    return _SECTION_COLUMNS, [list(row.values()) for row in _section_rows(result)]


@json_lines.register
def _(result: AnalogyEvaluation) -> list[dict[str, Any]]:
    return _section_rows(result)


@notes.register
def _(result: AnalogyEvaluation) -> list[str]:
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


@delimited_rows.register
def _(result: PairsEvaluation) -> tuple[list[str], list[list[Any]]]:
    rows = [[p.word1, p.word2, p.human, p.cosine] for p in result.pairs]
    return ["word1", "word2", "human", "cosine"], rows


@json_lines.register
def _(result: PairsEvaluation) -> list[dict[str, Any]]:
    return [vars(p) for p in result.pairs]


@notes.register
def _(result: PairsEvaluation) -> list[str]:
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


# --- Rich tables -------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    # Rich ends the process with exit 1 on a closed pipe; emit_stream ends it with 0.
    console.on_broken_pipe = _raise_broken_pipe
    return console


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def _shown(text: str) -> str:
    """A token's text with spaces and control characters made visible, and Rich markup escaped."""
    from rich.markup import escape

    return escape(json.dumps(text, ensure_ascii=False))


@_by_result_type
def render_table(result: Any) -> None:
    _console().print_json(json.dumps(result.to_dict()))


@render_table.register
def _(result: Info) -> None:
    from rich.table import Table

    console = _console()
    tensors = Table(title=f"Embedding tensors of {result.model}", title_justify="left")
    for column in ("role", "name", "shape", "dtype", "file", "bytes"):
        # Names and shard files are what users copy into --tensor: fold, never cut them.
        tensors.add_column(
            column, justify="right" if column == "bytes" else "left", overflow="fold"
        )
    for t in result.tensors:
        shape = " × ".join(str(d) for d in t.shape)
        tensors.add_row(t.role, t.name, shape, t.dtype, t.file, f"{t.bytes:,}")
    console.print(tensors)

    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column()
    if result.vocab_size is not None:
        vocab = (
            f"{result.vocab_size:,} tokens ({result.vocab_source}); table has {result.rows:,} rows"
        )
        if result.padding_rows and result.padding_rows > 0:
            vocab += f": {result.padding_rows:,} padding rows no token reaches"
        elif result.padding_rows and result.padding_rows < 0:
            vocab += f": {-result.padding_rows:,} token ids have no row"
    else:
        vocab = f"no tokenizer files; table has {result.rows:,} rows"
    if result.gguf is not None:
        gguf = result.gguf
        described = [f"GGUF v{gguf['version']}", f"{gguf['tensors']:,} tensors"]
        if gguf["file_type"]:
            described.append(f"file type {gguf['file_type']}")
        summary.add_row("format", ", ".join(described))
        named = f" ({gguf['name']})" if gguf["name"] else ""
        summary.add_row("architecture", f"{result.architecture or 'unknown'}{named}")
    summary.add_row("vocabulary", vocab)
    summary.add_row("hidden size", str(result.hidden_size))
    about = "" if result.total_params_exact else "about "
    summary.add_row(
        "parameters",
        f"{result.embedding_params:,} in embeddings of {about}{result.total_params:,} "
        f"({result.embedding_share:.1%})",
    )
    if result.format not in ("safetensors", "gguf"):  # a word-vector file
        summary.add_row("format", result.tensors[0].family)
        summary.add_row("output head", result.tied_reason)
    else:
        head = ("tied: " if result.tied else "untied: ") + result.tied_reason
        summary.add_row("output head", head)
    summary.add_row("positions", describe_position_scheme(result.position))
    for index, fetch in enumerate(result.fetch or []):
        summary.add_row("fetch" if index == 0 else "", describe_fetch(fetch))
    console.print(summary)


def describe_fetch(fetch: Any) -> str:
    """One line of ``info`` on a Hub repo: what some commands would download, and from where:
    ``tokens --positions: 47,671,296 bytes (3 ranges of model.safetensors)``."""
    if fetch.bytes == 0:
        return f"{fetch.commands}: nothing, all cached"
    ranges: dict[str, int] = {}
    files: list[str] = []
    for part in fetch.parts:
        if part["how"] == "range":
            ranges[part["file"]] = ranges.get(part["file"], 0) + 1
        elif part["how"] == "file" and part["file"] not in files:
            files.append(part["file"])
    pieces = [f"{n} range{'s' if n > 1 else ''} of {file}" for file, n in ranges.items()]
    pieces += [f"all of {file}" for file in files]
    return f"{fetch.commands}: {fetch.bytes:,} bytes ({', '.join(pieces)})"


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


@delimited_rows.register
def _(result: TableDiff) -> tuple[list[str], list[list[Any]]]:
    """One line per listed row (moved, added, removed); the summary goes to stderr."""
    return _DIFF_COLUMNS, [[r[key] for key in _DIFF_COLUMNS] for r in _diff_records(result)]


@json_lines.register
def _(result: TableDiff) -> list[dict[str, Any]]:
    """A summary record (every figure, no lists), then one record per listed row."""
    summary = {
        key: value
        for key, value in result.to_dict().items()
        if key not in ("moved", "added", "removed")
    }
    records = [{k: v for k, v in r.items() if v is not None} for r in _diff_records(result)]
    return [{"kind": "summary", **summary}, *records]


@notes.register
def _(result: TableDiff) -> list[str]:
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


@render_table.register
def _(result: TableDiff) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    summary.add_row("A", escape(_side_line(result.a)))
    summary.add_row("B", escape(_side_line(result.b)))
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
        shown = ", ".join(f"{escape(r.token or '')} #{r.token_id}" for r in rows)
        more = f" and {count - len(rows):,} more" if count > len(rows) else ""
        side = "only in B" if label == "added" else "only in A"
        summary.add_row(label, f"{count:,} rows {side}" + (f": {shown}{more}" if rows else ""))
    if result.rows_without_token is not None:
        untokened = result.rows_without_token
        summary.add_row(
            "no token", f"{untokened['a']:,} rows of A, {untokened['b']:,} of B (not aligned)"
        )
    console.print(summary)
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
            escape(row.token) if row.token is not None else "",
            _cosine(row.cosine),
            f"{row.norm_a:.4f}",
            f"{row.norm_b:.4f}",
            f"{row.relative_change:.2%}",
        ]
        moved.add_row(*cells)
    console.print(moved)


def _resolved(query: str, token_ids: list[int], tokens: list[str], pooled: str | None) -> str:
    pieces = " ".join(f"{t} #{i}" for t, i in zip(tokens, token_ids, strict=True))
    return f"{query!r} = {pieces}" + (f" (pooled: {pooled})" if pooled else "")


def _ranked_table(title: str, neighbors: list[Any], score_name: str) -> Any:
    """Print the title line; return a table of ranked tokens."""
    from rich.markup import escape
    from rich.table import Table

    _console().print(escape(title))  # above the table: a title would wrap at its width
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column(score_name, justify="right")
    for n in neighbors:
        token = escape(n.token) if n.token is not None else ""
        table.add_row(str(n.rank), str(n.token_id), token, f"{n.score:.4f}")
    return table


@render_table.register
def _(result: NeighborsResult) -> None:
    console = _console()
    if result.error is not None:
        return  # already reported on stderr
    title = "Neighbors of " + _resolved(
        result.query, result.token_ids, result.tokens, result.pooled
    )
    console.print(_ranked_table(title, result.neighbors, "score"))


@render_table.register
def _(result: AnalogyResult) -> None:
    console = _console()
    if result.error is not None:
        return
    a, b, c = (q["query"] for q in result.queries)
    method = "3CosAdd" if result.method == "add" else "3CosMul"
    title = f"{a} − {b} + {c} ≈ ?   ({method})"
    console.print(_ranked_table(title, result.results, "score"))
    for q in result.queries:
        console.print(_resolved(q["query"], q["token_ids"], q["tokens"], q["pooled"]))


@render_table.register
def _(result: Comparison) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    names = [item["query"] for item in result.items]
    table = Table(title=f"{result.metric} between items", title_justify="left")
    table.add_column("")
    for name in names:
        table.add_column(escape(name), justify="right")
    for i, name in enumerate(names):
        cells = [_coloured(result.metric, result.matrix[i][j], i == j) for j in range(len(names))]
        table.add_row(escape(name), *cells)
    console.print(table)
    for item in result.items:
        console.print(_resolved(item["query"], item["token_ids"], item["tokens"], item["pooled"]))


@render_table.register
def _(result: AnalogyEvaluation) -> None:
    from rich import box
    from rich.markup import escape
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
            escape(str(row["section"])),
            f"{row['questions']:,}",
            f"{row['scored']:,}",
            f"{row['correct']:,}",
            f"{accuracy:.2%}" if accuracy is not None else "–",
            f"{row['skipped']:,}",
        ]
        table.add_row(*cells)
    console = _console()
    console.print(table)
    console.print(escape(_analogy_summary(result)))


@render_table.register
def _(result: PairsEvaluation) -> None:
    from rich.markup import escape
    from rich.table import Table

    folding = "case-insensitive" if result.case_insensitive else "case-sensitive"
    table = Table(
        title=f"Word pairs (cosine against human scores, {folding})", title_justify="left"
    )
    for column in ("file", "pairs", "scored", "skipped", "Pearson", "Spearman"):
        table.add_column(column, justify="left" if column == "file" else "right")
    table.add_row(
        escape(Path(result.file).name),
        f"{len(result.pairs):,}",
        f"{result.scored:,}",
        f"{result.skipped:,} ({result.oov_ratio:.1f}%)",
        _figure(result.pearson),
        _figure(result.spearman),
    )
    _console().print(table)
    print("embinspect: --format tsv or json lists every pair's cosine", file=sys.stderr)


def _coloured(metric: str, score: float, diagonal: bool) -> str:
    text = f"{score:.4f}"
    if diagonal or metric != "cosine":
        return f"[dim]{text}[/dim]" if diagonal else text
    # Cosine: green for similar, red for opposite, plain around zero.
    style = "green" if score >= 0.5 else "yellow" if score >= 0.2 else "red" if score < -0.1 else ""
    return f"[{style}]{text}[/{style}]" if style else text


# --- positions ---------------------------------------------------------------------

_LEARNED_COLUMNS = ["offset", "pairs", "mean_cosine", "min_cosine", "max_cosine"]
_ROTARY_COLUMNS = [
    "pair", "dim_a", "dim_b", "inv_freq", "wavelength", "turns", "unscaled_inv_freq",
]  # fmt: skip


@delimited_rows.register
def _(result: PositionReport) -> tuple[list[str], list[list[Any]]]:
    """Learned: one line per offset; rotary: one line per rotated pair (JSON has the rest)."""
    if result.learned is not None:
        rows = [[o.offset, o.pairs, o.mean, o.min, o.max] for o in result.learned.offsets]
        return _LEARNED_COLUMNS, rows
    pairs = result.rotary.pairs
    return _ROTARY_COLUMNS, [
        [p.pair, *p.dims, p.inv_freq, p.wavelength, p.turns, p.unscaled_inv_freq] for p in pairs
    ]


@json_lines.register
def _(result: PositionReport) -> list[dict[str, Any]]:
    header, rows = delimited_rows(result)
    return [dict(zip(header, row, strict=True)) for row in rows]


@notes.register
def _(result: PositionReport) -> list[str]:
    return [_positions_summary(result)]


def _norm_line(learned: Any) -> str:
    n = learned.norms
    return (
        f"min {n.min:.4f} (position {n.min_position}), p5 {n.p5:.4f}, median {n.median:.4f}, "
        f"p95 {n.p95:.4f}, max {n.max:.4f} (position {n.max_position}), mean {n.mean:.4f}"
    )


def _check_line(check: Any) -> str:
    return (
        f"max |score(m, n) - score(m+s, n+s)| = {check.max_abs_diff:.1e} in float64, "
        f"{check.max_abs_diff_float32:.1e} in float32 ({check.vectors} random unit q, k × "
        f"{check.offsets} offsets × {check.pairs_per_offset} position pairs, positions "
        f"0..{check.context - 1:,}, seed {check.seed})"
    )


def _slow_line(rotary: Any) -> str:
    if rotary.max_positions is None:
        return "no max context in config.json: turns not counted"
    slow = [p.pair for p in rotary.pairs if p.turns is not None and p.turns < 1]
    which = ""
    if slow:
        which = f" (pairs {slow[0]}..{slow[-1]})" if len(slow) > 1 else f" (pair {slow[0]})"
    return (
        f"{rotary.max_positions:,} positions; {len(slow)} of {len(rotary.pairs)} pairs turn "
        f"less than once over it{which}"
    )


def _positions_summary(result: PositionReport) -> str:
    learned, rotary = result.learned, result.rotary
    if learned is not None:
        top = sum(learned.components[:3])
        return (
            f"{learned.tensor}: {learned.positions:,} positions × {learned.dim}; norm "
            f"{_norm_line(learned)}; top 3 principal directions hold {top:.1%} of the variance"
        )
    return (
        f"rotary: theta {rotary.theta:g}, {rotary.rotary_dims} of {rotary.head_dim} head dims; "
        f"{_slow_line(rotary)}; {_check_line(rotary.check)}"
    )


@render_table.register
def _(result: PositionReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    learned, rotary = result.learned, result.rotary
    if learned is not None:
        console.print(
            escape(
                f"Learned positions of {result.model}: {learned.tensor} "
                f"({learned.rows:,} × {learned.dim}, {learned.dtype})"
            )
        )
        first = learned.first_position_id
        summary.add_row(
            "positions",
            f"{learned.positions:,}, rows {first}..{first + learned.positions - 1:,}",
        )
        summary.add_row("norm", _norm_line(learned))
        shares = " ".join(f"{share:.1%}" for share in learned.components)
        summary.add_row("variance", f"top principal directions (centred): {shares}")
        if learned.left_out:
            summary.add_row("left out", f"{learned.left_out} rows (NaN, infinite or zero)")
        console.print(summary)
        centred = ", centred" if learned.centered else ""
        console.print(f"cosine between positions i and i + offset{centred}")
        table = Table()
        for column in ("offset", "pairs", "mean", "min", "max"):
            table.add_column(column, justify="right")
        for o in learned.offsets:
            cells = [_signed(v) for v in (o.mean, o.min, o.max)]
            table.add_row(f"{o.offset:,}", f"{o.pairs:,}", *cells)
        console.print(table)
    else:
        console.print(escape(f"Rotary positions (RoPE) of {result.model}"))
        theta = f"{rotary.theta:g}" + (" (default)" if rotary.theta_is_default else "")
        summary.add_row("theta", theta)
        summary.add_row(
            "rotated",
            f"{rotary.rotary_dims} of {rotary.head_dim} head dims (partial_rotary_factor "
            f"{rotary.partial_rotary_factor:g}): {len(rotary.pairs)} pairs, "
            f"inv_freq = theta^(-2i/{rotary.rotary_dims})",
        )
        summary.add_row("context", _slow_line(rotary))
        if rotary.scaling:
            how = "applied by transformers" if rotary.scaling_applied else "not applied"
            scaling = f"{json.dumps(rotary.scaling)} ({how})"
            if rotary.attention_factor != 1:
                scaling += f"; attention factor {rotary.attention_factor:.4f}"
            summary.add_row("scaling", escape(scaling))
        else:
            summary.add_row("scaling", "none")
        summary.add_row("layout", escape(rotary.check.layout))
        summary.add_row("check", _check_line(rotary.check))
        console.print(summary)
        # Titles above the tables: a title would wrap at a narrow table's width.
        console.print("rotated dimension pairs: angle = position × inv_freq")
        pairs = Table()
        columns = ["pair", "dims", "inv_freq", "wavelength", "turns"]
        if rotary.scaling_applied:
            columns.append("unscaled wavelength")
        for column in columns:
            pairs.add_column(column, justify="right")
        for p in rotary.pairs:
            slow = p.turns is not None and p.turns < 1
            turns = _turns(p.turns)
            cells = [
                str(p.pair),
                f"{p.dims[0]}, {p.dims[1]}",
                f"{p.inv_freq:.6g}",
                f"{p.wavelength:,.1f}",
                f"[yellow]{turns}[/yellow]" if slow else turns,  # never a full turn
            ]
            if rotary.scaling_applied:
                cells.append(f"{2 * math.pi / p.unscaled_inv_freq:,.1f}")
            pairs.add_row(*cells)
        console.print(pairs)
        console.print("expected cosine of a random direction with itself, offset positions later")
        offsets = Table()
        offsets.add_column("offset", justify="right")
        offsets.add_column("cosine", justify="right")
        for o in rotary.offsets:
            offsets.add_row(f"{o.offset:,}", _signed(o.expected_cosine))
        console.print(offsets)
    if result.plot:
        console.print(escape(f"picture: {result.plot}"))


def _turns(turns: float | None) -> str:
    if turns is None:
        return "–"
    return f"{turns:,.0f}" if turns >= 100 else f"{turns:.2f}" if turns >= 1 else f"{turns:.3g}"


def _signed(value: float | None) -> str:
    return f"{value:+.4f}" if value is not None else "–"


def describe_position_scheme(position: dict[str, Any]) -> str:
    kind = position["kind"]
    if kind == "learned":
        return (
            f"learned, added to the input: {position['tensor']} "
            f"({position['positions']:,} positions)"
        )
    if kind == "rotary":
        theta = f"{position['theta']:g}" + (" (default)" if position["theta_is_default"] else "")
        parts = [f"rotary (RoPE) inside attention: theta {theta}"]
        if position["rotary_dims"] is not None:
            parts.append(
                f"{position['rotary_dims']} of {position['head_dim']} head dims rotated "
                f"(partial_rotary_factor {position['partial_rotary_factor']:g})"
            )
        if position["max_positions"]:
            parts.append(f"max context {position['max_positions']:,}")
        if position["scaling"]:
            parts.append(f"scaling {json.dumps(position['scaling'])}")
        return "; ".join(parts)
    if kind == "alibi":
        return "ALiBi: a linear bias on attention scores, no position vectors"
    if kind == "none":
        return "none: word vectors carry no position"
    return "unknown (no position table, no rotary settings in config.json)"


@render_table.register
def _(result: TokenLookup) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    with_positions = any(row.position_id is not None for row in result.tokens)
    columns = ["pos", "id", "token", "text", "norm", "first components"]
    if with_positions:
        columns += ["pos id", "pos norm", "input norm"]
    rows = []
    for row in result.tokens:
        cells = [
            str(row.position),
            str(row.token_id),
            escape(row.token),
            _shown(row.text),
            f"{row.norm:.4f}",
            " ".join(f"{v:+.4f}" for v in row.head),
        ]
        if with_positions:
            cells += [str(row.position_id), f"{row.position_norm:.4f}", f"{row.input_norm:.4f}"]
        rows.append(cells)
    table = Table(title=f"{result.tensor} of {result.model}", title_justify="left")
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
    console.print(table)
    if result.position_note:
        console.print(result.position_note)
    if any(row.vector is not None for row in result.tokens):
        for row in result.tokens:
            console.print(f"{row.token_id}: " + " ".join(f"{v:.6g}" for v in row.vector or []))


# --- stats ------------------------------------------------------------------------------


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


@notes.register
def _(result: TableStats) -> list[str]:
    return [f"note: {label}: {text}" for label, text in _stats_summary(result)]


@delimited_rows.register
def _(result: TableStats) -> tuple[list[str], list[list[Any]]]:
    """The norm histogram, one bin a line; the other figures are notes on stderr."""
    return ["low", "high", "count"], [[b["low"], b["high"], b["count"]] for b in result.histogram]


@json_lines.register
def _(result: TableStats) -> list[dict[str, Any]]:
    return [result.to_dict()]


@render_table.register
def _(result: TableStats) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    summary = Table(
        title=f"{result.tensor} of {result.model}", title_justify="left", show_header=False,
        box=None, padding=(0, 2, 0, 0),
    )  # fmt: skip
    summary.add_column(style="bold")
    summary.add_column()
    for label, text in _stats_summary(result):
        summary.add_row(label, escape(text))
    console.print(summary)
    histogram = Table(title="row norms", title_justify="left", box=None, padding=(0, 1, 0, 0))
    for column in ("from", "to", "rows"):
        histogram.add_column(column, justify="right")
    histogram.add_column("")
    widest = max(b["count"] for b in result.histogram) or 1
    for b in result.histogram:
        bar = "█" * round(40 * b["count"] / widest)
        histogram.add_row(f"{b['low']:.4g}", f"{b['high']:.4g}", f"{b['count']:,}", bar)
    console.print(histogram)
    extremes = Table(title="extremes of the norm", title_justify="left")
    for column in ("", "id", "token", "norm"):
        extremes.add_column(column, justify="right" if column in ("id", "norm") else "left")
    for kind, picked in (("smallest", result.smallest), ("largest", result.largest)):
        for index, row in enumerate(picked):
            token = _shown(row.token) if row.token is not None else f"#{row.token_id}"
            label = kind if index == 0 else ""
            extremes.add_row(label, str(row.token_id), token, f"{row.norm:.4f}")
    console.print(extremes)
    if result.duplicate_examples:
        groups = "; ".join(" = ".join(f"#{i}" for i in g) for g in result.duplicate_examples[:5])
        console.print(f"duplicate rows: {groups}")


# --- undertrained -----------------------------------------------------------------------


def _undertrained_summary(result: UndertrainedResult) -> str:
    unreachable = (
        f"{result.unreachable:,} tokens do not encode back to themselves (unreachable)"
        if result.unreachable is not None
        else "reachability unknown (no tokenizer)"
    )
    return (
        f"reference: {len(result.reference_ids):,} rows, {result.reference_source}; first "
        f"principal component removed ({result.first_pc_share:.1%} of the variance); "
        f"{result.zero_rows:,} all-zero rows; {unreachable}"
    )


_SUSPECT_COLUMNS = ["rank", "token_id", "token", "cosine", "norm", "reachable", "reference"]


@delimited_rows.register
def _(result: UndertrainedResult) -> tuple[list[str], list[list[Any]]]:
    return _SUSPECT_COLUMNS, [
        [getattr(s, column) for column in _SUSPECT_COLUMNS] for s in result.tokens
    ]


@json_lines.register
def _(result: UndertrainedResult) -> list[dict[str, Any]]:
    return [asdict(s) for s in result.tokens]


@notes.register
def _(result: UndertrainedResult) -> list[str]:
    return [f"note: {_undertrained_summary(result)}"]


@render_table.register
def _(result: UndertrainedResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    suspects = Table(
        title=f"Likely under-trained tokens of {result.tensor} ({result.model})",
        title_justify="left",
    )
    for column in ("rank", "id", "token", "cosine", "norm", "reachable"):
        justify = "left" if column in ("token", "reachable") else "right"
        suspects.add_column(column, justify=justify)
    for s in result.tokens:
        token = _shown(s.token) if s.token is not None else f"#{s.token_id}"
        if s.reference:
            token += " (ref)"
        cosine = "zero row" if s.cosine is None else f"{s.cosine:.4f}"
        reachable = {True: "yes", False: "no", None: "?"}[s.reachable]
        suspects.add_row(str(s.rank), str(s.token_id), token, cosine, f"{s.norm:.4f}", reachable)
    console.print(suspects)
    console.print(escape(_undertrained_summary(result)))


# --- plot -------------------------------------------------------------------------------

_POINT_COLUMNS = ["label", "kind", "of", "token_ids", "tokens", "x", "y"]


@delimited_rows.register
def _(result: Projection) -> tuple[list[str], list[list[Any]]]:
    return _POINT_COLUMNS, [[getattr(p, c) for c in _POINT_COLUMNS] for p in result.points]


@json_lines.register
def _(result: Projection) -> list[dict[str, Any]]:
    return [asdict(p) for p in result.points]


@notes.register
def _(result: Projection) -> list[str]:
    first, second = result.explained
    return [f"note: PCA of {len(result.points)} points: PC 1 {first:.1%}, PC 2 {second:.1%}"]


@render_table.register
def _(result: Projection) -> None:
    from rich.table import Table

    points = Table(
        title=f"PCA of {len(result.points)} points of {result.tensor} (PC 1 "
        f"{result.explained[0]:.1%}, PC 2 {result.explained[1]:.1%} of their variance)",
        title_justify="left",
    )
    for column in ("point", "near", "x", "y"):
        points.add_column(column, justify="right" if column in ("x", "y") else "left")
    for p in result.points:
        near = _shown(p.of) if p.of is not None else ""
        points.add_row(_shown(p.label), near, f"{p.x:+.4f}", f"{p.y:+.4f}")
    _console().print(points)
