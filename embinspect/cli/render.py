"""Print a result in the format asked for: a Rich table, JSON, JSON lines, TSV or CSV.

Every format is drawn from the same result object, so they never disagree. Each command
describes its result's shapes once, as a ``View`` (in the command's own module), and
hands it to ``Output.emit`` / ``Output.stream`` with the result. Data goes to stdout;
notes and errors go to stderr, so ``--format json`` output stays parseable.

Nothing from outside reaches the terminal raw (``embinspect.text`` says how it is written):
TSV and CSV cells go through ``terminal_cell``, messages through ``message_line``, and the
table format through ``console()``, whose every plain string is escaped and never read as
Rich markup, emoji codes or highlighting. A view hands the console plain strings, data
included; ``styled`` is the one way to colour a piece of text. JSON keeps the exact
strings, with every unprintable character written as a JSON ``\\uNNNN`` escape.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from embinspect.errors import Option
from embinspect.text import escaped_whole, terminal_cell, terminal_line


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
    """Where a command's results go, in the format asked for (``--format``); ``csv_raw``
    (``--csv-raw``): CSV cells without the quote that keeps a spreadsheet from reading
    a formula."""

    format: OutputFormat
    csv_raw: bool = False

    def emit(self, result: Any, view: View) -> None:
        """Print one result."""
        self.stream([result], view, as_array=False)

    def stream(self, results: Iterable[Any], view: View, as_array: bool = True) -> int:
        """Print results as they arrive (jsonl, tsv and csv rows stream; json is one array).

        Returns how many results carried an error, so the caller can set the exit code.
        """
        try:
            return _stream(results, self, view, as_array)
        except BrokenPipeError:
            # `embinspect ... | head` on a stdout main() did not guard (Rich reports EPIPE
            # so too): the reader has what it wanted; main() ends the run quietly with 0.
            from embinspect.cli.streams import ReaderGone

            raise ReaderGone from None


def _stream(results: Iterable[Any], output: Output, view: View, as_array: bool) -> int:
    fmt = output.format
    out = sys.stdout
    failed = 0
    header_due = True  # TSV and CSV: before the first rows
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
            if header is None:  # no rows (an error reported above): the header waits
                pass
            elif writer is not None:
                if header_due:
                    writer.writerow([_csv_cell(h, output.csv_raw) for h in header])
                writer.writerows([[_csv_cell(v, output.csv_raw) for v in row] for row in rows])
            else:
                if header_due:
                    out.write("\t".join(terminal_cell(h) for h in header) + "\n")
                lines = ["\t".join([terminal_cell(_cell(v)) for v in row]) for row in rows]
                out.write("".join(line + "\n" for line in lines))
            header_due = header_due and header is None
            for note in view.notes(result):
                report_note(note)
        out.flush()
    if fmt is OutputFormat.json:
        document = collected if as_array else collected[0]
        out.write(_json(document, indent=2) + "\n")
    out.flush()  # here, where a closed pipe is caught, not at exit where it is not
    return failed


def _json(document: Any, indent: int | None = None) -> str:
    """Strict JSON: NaN and infinities (which JSON has no words for) become null. Strings
    keep their exact value; a character a terminal would act on (C1 controls, bidi
    controls, lone surrogates: JSON itself escapes only C0) is written ``\\uNNNN``."""
    try:  # most documents hold no NaN or infinity: then _finite's copy is the same
        text = json.dumps(document, ensure_ascii=False, indent=indent, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(document), ensure_ascii=False, indent=indent, allow_nan=False)
    if text.replace("\n", " ").isprintable():
        return text
    # Outside strings JSON holds only printable ASCII and the newlines of the indent.
    return "".join(c if c.isprintable() or c == "\n" else _json_escape(c) for c in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters above U+FFFF
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_finite(child) for child in value]
    return value


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


def message_line(text: str) -> str:
    """A message as printed on stderr: one line, Hub tokens hidden, and no character a
    terminal would act on (a file name or a token may hold ESC, CR, bidi controls...)."""
    return terminal_line(redact_secrets(one_line(text)))


def report_error(message: str) -> None:
    """One line on stderr: how every user-facing error is reported."""
    print(f"embinspect: error: {message_line(message)}", file=sys.stderr)


def report_note(note: str) -> None:
    """A note or warning on stderr (``note: ...``, ``warning: ...``), one line."""
    print(f"embinspect: {message_line(note)}", file=sys.stderr)


def _cell(value: Any) -> str:
    kind = type(value)  # the common cells first: a stream writes a million of them
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
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


# OWASP's list of the first characters that make a spreadsheet read a CSV cell as a
# formula (tab and CR cannot start an escaped cell, but stay listed).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any, raw: bool) -> str:
    """A CSV cell: escaped as a TSV cell (one record per line, no control character), and a
    cell that holds text starting as a formula (``=cmd|...``, and real tokens ``-``, ``+``,
    ``=``) quoted with a leading ``'``, as OWASP advises, unless ``raw``. Numbers are never
    quoted: ``-0.25`` stays a number."""
    text = terminal_cell(_cell(value))
    if not raw and text.startswith(_FORMULA_START) and _holds_text(value):
        return "'" + text
    return text


def _holds_text(value: Any) -> bool:
    """Whether a cell's value is (or holds) a string, rather than numbers, bools or None."""
    if isinstance(value, (list, tuple)):
        return any(_holds_text(v) for v in value)
    return isinstance(value, (str, dict))


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
    from rich.text import Text

    console().print(Text(_json(result.to_dict(), indent=2)))  # _json leaves nothing raw


@dataclass(frozen=True)
class View:
    """How one kind of result is printed, in every format: ``table`` draws it on the
    terminal; ``rows`` gives TSV/CSV's header and rows; ``records`` the JSON lines;
    ``notes`` the lines for stderr that TSV/CSV leave out. JSON is ``to_dict()``."""

    table: Callable[[Any], None] = _json_table
    # (header, rows); a header of None: this result has no rows (an error on stderr)
    rows: Callable[[Any], tuple[list[str] | None, list[list[Any]]]] = _field_rows
    records: Callable[[Any], list[dict[str, Any]]] = _records
    notes: Callable[[Any], list[str]] = _no_notes


def console() -> Any:
    """The Rich console of the table format, on stdout: every plain string it is given
    (printed, a cell, a title) is escaped with ``terminal_cell`` and never read as markup,
    emoji codes (``:smile:``) or highlighting. Rich ``Text`` passes as it is: build it with
    ``styled``."""
    console = _safe_console_class()(highlight=False, markup=False, emoji=False)
    # Rich ends the process with exit 1 on a closed pipe; emit_stream ends it with 0.
    console.on_broken_pipe = _raise_broken_pipe
    return console


@functools.cache
def _safe_console_class() -> Any:
    from rich.console import Console
    from rich.text import Text

    class SafeConsole(Console):
        def render_str(self, text: str, **options: Any) -> Text:
            options.update(markup=False, emoji=False, highlight=False)
            return super().render_str(drawn(text), **options)

    return SafeConsole


def drawn(text: str) -> str:
    """``text`` as the table format draws it: its cell form, or, where a terminal would
    draw that as nothing at all (a lone combining mark, a skin-tone modifier), every
    character escaped, so no token shows as an empty cell."""
    from rich.cells import cell_len

    cell = terminal_cell(text)
    return escaped_whole(text) if cell and cell_len(cell) == 0 else cell


def styled(text: str, style: str) -> Any:
    """``text`` (escaped as any cell) in a Rich style, e.g. ``styled(score, "green")``."""
    from rich.text import Text

    return Text(drawn(text), style=style)


def plain(text: str) -> Any:
    """``text`` escaped as a Rich ``Text``, for a view that measures its cells as printed."""
    return styled(text, "")


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def shown(text: str) -> Any:
    """A token's text in double quotes, so leading and trailing spaces show: escaped as
    any cell, and ``"`` as ``\\"`` (a Rich ``Text``: the console must not escape it again)."""
    from rich.text import Text

    return Text('"' + drawn(text).replace('"', '\\"') + '"')


def resolved_line(query: str, token_ids: list[int], tokens: list[str], pooled: str | None) -> str:
    """``'king' = king #2332``: how a query resolved (plain text, for the console)."""
    pieces = " ".join(f"{t} #{i}" for t, i in zip(tokens, token_ids, strict=True))
    return f"'{query}' = {pieces}" + (f" (pooled: {pooled})" if pooled else "")


def figure(value: float, signed: bool = False) -> str:
    """A score, norm or component for a person: four decimals, or four significant digits
    with an exponent where four decimals would show 0.0000 or a 300-digit number (rows
    of 1e-200 or 1e300 are scored exactly; their figures must show it)."""
    sign = "+" if signed else ""
    if value == 0 or not math.isfinite(value) or 1e-4 <= abs(value) < 1e9:
        return f"{value:{sign}.4f}"
    return f"{value:{sign}.4e}"


def ranked_table(title: str, neighbors: list[Any], score_name: str) -> Any:
    """Print the title line; return a table of ranked tokens."""
    from rich.table import Table

    console().print(title)  # above the table: a title would wrap at its width
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("id", justify="right")
    table.add_column("token")
    table.add_column(score_name, justify="right")
    for n in neighbors:
        token = n.token if n.token is not None else f"#{n.token_id}"  # no token names it
        table.add_row(str(n.rank), str(n.token_id), token, figure(n.score))
    return table


def progress_display(no_color: bool) -> Any:
    """A Rich ``Progress`` on stderr (a terminal: the caller checked): label (plain text,
    never markup), bar, ``done/total`` and the time so far; no colour with ``no_color``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        """``12,345/400,000``; nothing for a step of unknown length (its bar pulses)."""

        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            return Text(f"{int(task.completed):,}/{int(task.total):,}")

    console = Console(
        file=sys.stderr,
        force_terminal=True,
        color_system=None if no_color else "auto",
        highlight=False,
        emoji=False,
    )
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        Count(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # results on stdout go where they always go
    )
