"""Print a result in the format asked for: a Rich table, JSON, JSON lines, TSV or CSV.

Every format is drawn from the same result object, so they never disagree. Each command
describes its result's shapes once, as a ``View`` (in the command's own module), and
hands it to ``Output.emit`` / ``Output.stream`` with the result. Data goes to stdout;
notes and errors go to stderr, so ``--format json`` output stays parseable.
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
from dataclasses import dataclass
from enum import Enum
from typing import Any

from embinspect.errors import Option


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


@dataclass(frozen=True)
class Output:
    """Where a command's results go, in the format asked for (``--format``)."""

    format: OutputFormat

    def emit(self, result: Any, view: View) -> None:
        """Print one result."""
        self.stream([result], view, as_array=False)

    def stream(self, results: Iterable[Any], view: View, as_array: bool = True) -> int:
        """Print results as they arrive (jsonl, tsv and csv rows stream; json is one array).

        Returns how many results carried an error, so the caller can set the exit code.
        """
        try:
            return _stream(results, self.format, view, as_array)
        except BrokenPipeError:
            # `embinspect ... | head` on a stdout main() did not guard (Rich reports EPIPE
            # so too): the reader has what it wanted; main() ends the run quietly with 0.
            from embinspect.cli.streams import ReaderGone

            raise ReaderGone from None


def _stream(results: Iterable[Any], fmt: OutputFormat, view: View, as_array: bool) -> int:
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
            view.table(result)
        elif fmt is OutputFormat.json:
            collected.append(result.to_dict())
        elif fmt is OutputFormat.jsonl:
            for record in view.records(result):
                out.write(_json(record) + "\n")
        else:
            header, rows = view.rows(result)
            if writer is not None:
                if first:
                    writer.writerow(header)
                writer.writerows([[_cell(v) for v in row] for row in rows])
            else:
                if first:
                    out.write("\t".join(header) + "\n")
                for row in rows:
                    out.write("\t".join(_tsv_escape(_cell(v)) for v in row) + "\n")
            for note in view.notes(result):
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


# The API's keywords that the command line spells otherwise.
_FLAGS = {"k": "-k", "word_filter": "--filter"}


def flag(option: Option) -> str:
    """An option named in a library message, as the command line spells it: ``--top-k 0``."""
    name = _FLAGS.get(option.name, "--" + option.name.replace("_", "-"))
    if option.has_value:
        return f"{name} {option.value}"
    return f"{name} {option.metavar}" if option.metavar is not None else name


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


def _records(result: Any) -> list[dict[str, Any]]:
    return [result.to_dict()]


def _field_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for TSV/CSV; nested results become ``field value`` pairs."""
    return ["field", "value"], [[key, value] for key, value in _flatten(result.to_dict())]


def _no_notes(result: Any) -> list[str]:
    return []


def _json_table(result: Any) -> None:
    console().print_json(json.dumps(result.to_dict()))


@dataclass(frozen=True)
class View:
    """How one kind of result is printed, in every format: ``table`` draws it on the
    terminal; ``rows`` gives TSV/CSV's header and rows; ``records`` the JSON lines;
    ``notes`` the lines for stderr that TSV/CSV leave out. JSON is ``to_dict()``."""

    table: Callable[[Any], None] = _json_table
    rows: Callable[[Any], tuple[list[str], list[list[Any]]]] = _field_rows
    records: Callable[[Any], list[dict[str, Any]]] = _records
    notes: Callable[[Any], list[str]] = _no_notes


def console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    # Rich ends the process with exit 1 on a closed pipe; emit_stream ends it with 0.
    console.on_broken_pipe = _raise_broken_pipe
    return console


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def shown(text: str) -> str:
    """A token's text with spaces and control characters made visible, and Rich markup escaped."""
    from rich.markup import escape

    return escape(json.dumps(text, ensure_ascii=False))


def resolved_line(query: str, token_ids: list[int], tokens: list[str], pooled: str | None) -> str:
    pieces = " ".join(f"{t} #{i}" for t, i in zip(tokens, token_ids, strict=True))
    return f"{query!r} = {pieces}" + (f" (pooled: {pooled})" if pooled else "")


def ranked_table(title: str, neighbors: list[Any], score_name: str) -> Any:
    """Print the title line; return a table of ranked tokens."""
    from rich.markup import escape
    from rich.table import Table

    console().print(escape(title))  # above the table: a title would wrap at its width
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column(score_name, justify="right")
    for n in neighbors:
        token = escape(n.token) if n.token is not None else ""
        table.add_row(str(n.rank), str(n.token_id), token, f"{n.score:.4f}")
    return table
