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
from enum import Enum
from functools import singledispatch
from pathlib import Path
from typing import Any

from embinspect.evaluation import AnalogyEvaluation, PairsEvaluation
from embinspect.info import Info
from embinspect.similarity import AnalogyResult, Comparison, NeighboursResult
from embinspect.tokens import TokenLookup


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
            collected.append(result.to_json())
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


@singledispatch
def json_lines(result: Any) -> list[dict[str, Any]]:
    return [result.to_json()]


@singledispatch
def delimited_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for TSV/CSV; nested results become ``field value`` pairs."""
    return ["field", "value"], [[key, value] for key, value in _flatten(result.to_json())]


@singledispatch
def notes(result: Any) -> list[str]:
    return []


@json_lines.register
def _(result: TokenLookup) -> list[dict[str, Any]]:
    # Columns that a run did not ask for (--vectors, --positions) are left out, not empty.
    return [
        {key: value for key, value in row.items() if value is not None}
        for row in result.to_json()["tokens"]
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
def _(result: NeighboursResult) -> tuple[list[str], list[list[Any]]]:
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
    return [{key: part.to_json()[key] for key in _SECTION_COLUMNS} for part in parts]


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


@singledispatch
def render_table(result: Any) -> None:
    _console().print_json(json.dumps(result.to_json()))


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


def _resolved(query: str, token_ids: list[int], tokens: list[str], pooled: str | None) -> str:
    pieces = " ".join(f"{t} #{i}" for t, i in zip(tokens, token_ids, strict=True))
    return f"{query!r} = {pieces}" + (f" (pooled: {pooled})" if pooled else "")


def _ranked_table(title: str, neighbours: list[Any], score_name: str) -> Any:
    """Print the title line; return a table of ranked tokens."""
    from rich.markup import escape
    from rich.table import Table

    _console().print(escape(title))  # above the table: a title would wrap at its width
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column(score_name, justify="right")
    for n in neighbours:
        token = escape(n.token) if n.token is not None else ""
        table.add_row(str(n.rank), str(n.token_id), token, f"{n.score:.4f}")
    return table


@render_table.register
def _(result: NeighboursResult) -> None:
    console = _console()
    if result.error is not None:
        return  # already reported on stderr
    title = "Neighbours of " + _resolved(
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
