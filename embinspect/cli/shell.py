"""``embinspect shell``: one checkpoint, opened once, asked at a prompt.

Each line is a command as on the command line, without ``embinspect`` and MODEL
(``neighbors king queen``, ``compare cat dog car``, ``analogy king man woman``, ``tokens
The cat sat``, ``vector king``, ``info``), or a setting (``:k 20``, ``:metric dot``,
``:table output``, ``:center on``, ``:format json``, ``:help``, ``:quit``). A line is
answered by the command's own analysis and printed by the command's own ``View``, so the
answers, errors and formats are the commands'. The checkpoint, its tokenizer and what a
search prepares (row masks, the mean row, row norms) are kept for the session.

At a terminal: a prompt, line editing and history (the standard library's ``readline``;
the history in embinspect's cache folder), Tab completing commands, settings and
vocabulary entries; Ctrl-C cancels the line or the query, Ctrl-D leaves (exit 0). With
stdin not a terminal the lines are read as they come, with no prompt or banner, each
answer flushed: a session can be scripted. A failed line is one line on stderr and the
session goes on; a scripted session then ends with the exit code of its first failed line.
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli import analogy as analogy_cli
from embinspect.cli import compare as compare_cli
from embinspect.cli import info as info_cli
from embinspect.cli import neighbors as neighbors_cli
from embinspect.cli import tokens as tokens_cli
from embinspect.cli.options import (
    STDIN,
    CenterOpt,
    DeviceOpt,
    Metric,
    MetricOpt,
    ModelArg,
    Table,
    TableOpt,
    read_queries,
)
from embinspect.cli.render import (
    Output,
    OutputFormat,
    flag,
    message_line,
    report_error,
    report_note,
)
from embinspect.cli.source import Source, command
from embinspect.errors import (
    EXIT_QUERY,
    EmbinspectError,
    EmbinspectWarning,
    Option,
    StreamError,
    UsageError,
)
from embinspect.model.checkpoint import TABLES
from embinspect.model.tokenizer import WORDPIECE
from embinspect.tables.queries import MAX_QUERY_CHARS
from embinspect.tables.scoring import METRICS
from embinspect.text import quoted, terminal_cell

if TYPE_CHECKING:
    from embinspect.model.checkpoint import Checkpoint
    from embinspect.model.tokenizer import Vocabulary, WordKeys
    from embinspect.tables.search import Searcher

PROMPT = "embinspect> "
HISTORY_FILE = "shell-history"  # in embinspect's cache folder (EMBINSPECT_CACHE)
HISTORY_LINES = 1000
COMPLETIONS = 200  # at most this many offered for one Tab: a prefix of one letter matches 10,000s
# Until :k sets one, each command's own -k default (10 for neighbors, 5 for analogy).
NEIGHBORS_K = inspect.signature(neighbors_cli.neighbors).parameters["k"].default
ANALOGY_K = inspect.signature(analogy_cli.analogy).parameters["k"].default
SWITCHES = {"on": True, "off": False}
FORMATS = tuple(f.value for f in OutputFormat)


@command()
def shell(
    model: ModelArg,
    k: Annotated[
        Optional[int],
        typer.Option(
            "--top-k",
            "-k",
            min=1,
            help="How many results [default: as each command: 10 for neighbors, 5 for analogy].",
            show_default=False,
        ),
    ] = None,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    device: DeviceOpt = "auto",
    *,
    source: Source,
    output: Output,
) -> None:
    """Open MODEL once and answer commands at a prompt: neighbors, compare, analogy,
    tokens, vector, info, and settings such as :k 20 (:help lists them). With stdin not a
    terminal, each line is answered as it arrives; the exit code is then that of the first
    line that failed, 0 when every line was answered."""
    stdin = sys.stdin
    if stdin is None:  # before the model is opened; in the shell's words (it has no -)
        raise StreamError(f"{STDIN}: closed (the shell reads its lines from it)")
    settings = Settings(k, metric.value, table.value, center, output)
    session = Session(source, model, settings, device)
    code = session.converse() if stdin.isatty() else session.follow(read_queries(["-"]))
    if code:
        raise typer.Exit(code)


@dataclass
class Settings:
    """What the ``:`` settings change, for the lines after them."""

    k: int | None  # None: each command's own default
    metric: str
    table: str
    center: bool
    output: Output


class Quit(Exception):  # noqa: N818 (not an error: the session ends)
    """``:quit``: the session ends."""


class Session:
    """One checkpoint, opened once, and the settings the lines change."""

    def __init__(self, source: Source, model: str, settings: Settings, device: str) -> None:
        self.source = source
        self.model = model
        self.settings = settings
        self.device = device
        self.checkpoint: Checkpoint = source.open(model)
        self.vocabulary = source.vocabulary_or_none(self.checkpoint)
        self._info_checkpoint: Checkpoint | None = None
        self._searchers: dict[tuple[str, bool], Searcher] = {}
        self._noted: set[tuple[str, bool]] = set()
        self._notes_shown: set[str] = set()
        self._completions: Completions | None = None
        self.searcher()  # a table, device or tokenizer that cannot be used ends the start
        self.commands: dict[str, Callable[[str], int]] = {
            "neighbors": self.neighbors,
            "compare": self.compare,
            "analogy": self.analogy,
            "tokens": self.tokens,
            "vector": self.vector,
            "info": self.info,
        }
        self.settings_handlers: dict[str, Callable[[str], None]] = {
            ":k": self.set_k,
            ":metric": self.set_metric,
            ":table": self.set_table,
            ":center": self.set_center,
            ":format": self.set_format,
        }

    # --- reading lines -----------------------------------------------------------------------

    def follow(self, lines: Iterator[str]) -> int:
        """Answer each line as it comes (stdin not a terminal); the exit code of the first
        line that failed, or 0."""
        first_failure = 0
        for line in lines:
            try:
                code = self.answer(line)
            except Quit:
                break
            finally:
                _flush()
            first_failure = first_failure or code
        return first_failure

    def converse(self) -> int:
        """A person at a terminal: a prompt, line editing, history and Tab completion. Every
        failure was shown as it happened: leaving with Ctrl-D or :quit is exit 0."""
        edits = _line_editing(self)
        rows, dim = self.checkpoint.token_table.header.shape
        print(
            message_line(
                f"embinspect shell: {self.model} ({rows:,} × {dim}); :help lists the "
                "commands, Ctrl-D leaves"
            ),
            file=sys.stderr,
        )
        try:
            while True:
                try:
                    line = _read_line(PROMPT)
                except KeyboardInterrupt:  # Ctrl-C at the prompt: the line is dropped
                    print(file=sys.stderr)
                    continue
                except EOFError:  # Ctrl-D
                    print(file=sys.stderr)
                    return 0
                try:
                    self.answer(line)
                except KeyboardInterrupt:
                    _flush()
                    report_note("cancelled")
                    # What a search was preparing when it stopped is not kept half-made.
                    self._searchers.clear()
                except Quit:
                    return 0
                finally:
                    _flush()
        finally:
            if edits is not None:
                edits.save()

    # --- one line ----------------------------------------------------------------------------

    def answer(self, line: str) -> int:
        """Answer one line: 0, or the exit code the command would have ended with (its
        error already on stderr). ``Quit`` for ``:quit``."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", EmbinspectWarning)
                warnings.showwarning = self._note_once(warnings.showwarning)
                return self._answer(line)
        except StreamError:
            raise  # stdout failed: nothing more can be answered (main says so, once)
        except EmbinspectError as err:
            report_error(err.worded(_worded))
            return err.exit_code

    def _note_once(self, show_other: Callable[..., None]) -> Callable[..., None]:
        """A ``warnings.showwarning`` for one line: the library's notes worded as the shell
        spells its settings (``:k 99,999,999``, not ``-k``), each shown once a session
        (once per setting value: the value is in the note), not on every line."""

        def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
            if not isinstance(message, EmbinspectWarning):
                show_other(message, category, filename, lineno, file, line)
                return
            text = f"{message.kind}: {message.worded(_worded)}"
            if text not in self._notes_shown:
                self._notes_shown.add(text)
                report_note(text)

        return show

    def _answer(self, line: str) -> int:
        length = getattr(line, "length", len(line))  # a LongLine was cut short on reading
        if length > _LINE_CHARS:
            raise UsageError(
                # Its first characters, quoted; the length said once (quoted would add it).
                f"{quoted(line[:_QUOTED_CHARS])}... ({length:,} characters): a line is at most "
                f"{_LINE_CHARS:,} characters"
            )
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#"):  # a blank line, or a comment
            return 0
        name, rest = words[0], (words[1] if len(words) > 1 else "")
        if name in self.commands:
            return self.commands[name](rest)
        if name in self.settings_handlers:
            if rest:
                self.settings_handlers[name](rest.strip())
            else:
                self._show(name)
            return 0
        if name == ":help":
            sys.stdout.write(self.help())
            sys.stdout.flush()
            return 0
        if name == ":quit":
            raise Quit
        raise UsageError(
            f"{quoted(name)}: not a shell command; the commands are {', '.join(self.commands)}"
            f", and {', '.join([*self.settings_handlers, ':help', ':quit'])}"
        )

    # --- the commands ------------------------------------------------------------------------

    def neighbors(self, rest: str) -> int:
        from embinspect.analyses.neighbors import neighbors as nearest

        queries = split_queries(rest)
        if not queries:
            raise UsageError("neighbors needs a query (neighbors king)")
        searcher = self.searcher()
        k = searcher.limit_k(self.settings.k or NEIGHBORS_K)
        found = nearest(searcher, queries, k, self.settings.metric)
        failed = self.settings.output.stream(found, neighbors_cli.VIEW)
        self._note_left_out()
        return EXIT_QUERY if failed else 0

    def compare(self, rest: str) -> int:
        from embinspect.analyses.compare import compare as pairwise_scores

        queries = split_queries(rest)
        if len(queries) < 2:
            raise UsageError("compare needs at least two queries")
        result = pairwise_scores(self.searcher(), queries, self.settings.metric)
        for failure in result.errors:
            report_error(failure["error"])
        self.settings.output.emit(result, compare_cli.COMPARISON_VIEW)
        return EXIT_QUERY if result.errors else 0

    def analogy(self, rest: str) -> int:
        from embinspect.analyses.analogy import analogies

        queries = split_queries(rest)
        if len(queries) != 3:
            raise UsageError("analogy takes three queries A B C (analogy king man woman)")
        searcher = self.searcher()
        k = searcher.limit_k(self.settings.k or ANALOGY_K)
        found = analogies(searcher, [queries], k)
        failed = self.settings.output.stream(found, analogy_cli.ANALOGY_RESULT_VIEW)
        self._note_left_out()
        return EXIT_QUERY if failed else 0

    def tokens(self, rest: str) -> int:
        from embinspect.analyses.tokens import lookup_tokens

        text = rest.strip()
        if not text:
            raise UsageError("tokens needs a text (tokens The cat sat)")
        vocabulary = self.vocabulary
        if vocabulary is None:
            vocabulary = self.source.vocabulary(self.checkpoint)  # its UsageError says why
        result = lookup_tokens(self.checkpoint, vocabulary, text)
        self.settings.output.emit(result, tokens_cli.VIEW)
        return 0

    def vector(self, rest: str) -> int:
        queries = split_queries(rest)
        if len(queries) != 1:
            raise UsageError('vector takes one query (vector king; vector "New York")')
        values = self.searcher().stored_vector(queries[0])  # as Model.vector gives it
        figures = [str(value) for value in values]  # the shortest round trip of its dtype
        if self.settings.output.format in (OutputFormat.json, OutputFormat.jsonl):
            # JSON has no words for NaN and the infinities: null, as every JSON output.
            line = "[" + ", ".join(_json_number(figure) for figure in figures) + "]"
        else:
            line = " ".join(figures)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return 0

    def info(self, rest: str) -> int:
        from embinspect.analyses.info import inspect_checkpoint

        if rest.strip():
            raise UsageError("info takes no arguments")
        checkpoint = self.checkpoint
        if checkpoint.files.kind == "hub":
            # As `info` does: every shard's header, for exact parameter counts; once.
            if self._info_checkpoint is None:
                self._info_checkpoint = self.source.open(self.model, all_headers=True)
            checkpoint = self._info_checkpoint
        self.settings.output.emit(inspect_checkpoint(checkpoint), info_cli.VIEW)
        return 0

    # --- settings ----------------------------------------------------------------------------

    def set_k(self, value: str) -> None:
        if not (value.isascii() and value.isdigit() and int(value) >= 1):
            raise UsageError(f":k {quoted(value)}: give a whole number of at least 1 (:k 20)")
        self.settings.k = int(value)

    def set_metric(self, value: str) -> None:
        self.settings.metric = _choice(":metric", value, METRICS)

    def set_table(self, value: str) -> None:
        table = _choice(":table", value, TABLES)
        with warnings.catch_warnings():  # its notes (a tied head) come with the first answer
            warnings.simplefilter("ignore", EmbinspectWarning)
            self.checkpoint.table_header(table)  # its UsageError when the model has none
        self.settings.table = table

    def set_center(self, value: str) -> None:
        self.settings.center = SWITCHES[_choice(":center", value, tuple(SWITCHES))]

    def set_format(self, value: str) -> None:
        chosen = _choice(":format", value.lower(), FORMATS)
        output = self.settings.output
        if output.csv_raw and chosen != OutputFormat.csv.value:
            raise UsageError(f":format {chosen}: the shell was started with --csv-raw, for csv")
        self.settings.output = Output(OutputFormat(chosen), output.csv_raw)

    def _show(self, name: str) -> None:
        sys.stdout.write(f"{name} {self._value(name)}\n")
        sys.stdout.flush()

    def _value(self, name: str) -> str:
        settings = self.settings
        return {
            ":k": str(settings.k)
            if settings.k
            else f"{NEIGHBORS_K} for neighbors, {ANALOGY_K} for analogy",
            ":metric": settings.metric,
            ":table": settings.table,
            ":center": "on" if settings.center else "off",
            ":format": settings.output.format.value,
        }[name]

    def help(self) -> str:
        value = self._value
        return "\n".join(
            [
                "Commands (queries as on the command line: text, #id, =entry;"
                ' "double quotes" make several words one query):',
                "  neighbors QUERY...      the k nearest rows to each query",
                "  compare A B [C...]      the metric between every two queries",
                "  analogy A B C           A - B + C and its k nearest rows",
                "  tokens TEXT             each token of TEXT (the rest of the line)",
                "  vector QUERY            the query's vector: one line of floats, a JSON list"
                " with :format json",
                "  info                    the embedding tensors, vocabulary, tying, positions",
                "Settings (alone, a setting shows its value):",
                f"  :k N                    how many results (now {value(':k')})",
                f"  :metric {'|'.join(METRICS):<15} neighbors and compare (now {value(':metric')})",
                f"  :table {'|'.join(TABLES):<16} the token table or the output head"
                f" (now {value(':table')})",
                f"  :center on|off          subtract the mean row first (now {value(':center')})",
                f"  :format {'|'.join(FORMATS)}  (now {value(':format')})",
                "  :help                   this list",
                "  :quit                   leave (or Ctrl-D)",
                "",
            ]
        )

    # --- what the session keeps --------------------------------------------------------------

    def searcher(self) -> Searcher:
        """The searcher of the current table and centring, made once for the session."""
        from embinspect.tables.search import Searcher

        key = (self.settings.table, self.settings.center)
        searcher = self._searchers.get(key)
        if searcher is None:
            searcher = Searcher(
                self.checkpoint, self.vocabulary, table=key[0], device=self.device,
                center=key[1],
            )  # fmt: skip
            self._searchers[key] = searcher
        return searcher

    def _note_left_out(self) -> None:
        """The note of rows left out of results, once per table in a session, not per line."""
        key = (self.settings.table, self.settings.center)
        if key not in self._noted:
            self._noted.add(key)
            self.searcher().note_left_out()

    def completions(self) -> Completions:
        if self._completions is None:
            self._completions = Completions(self.searcher().vocabulary)
        return self._completions


# A line holds a few queries: each at most MAX_QUERY_CHARS, as on stdin.
_LINE_CHARS = MAX_QUERY_CHARS
_QUOTED_CHARS = 60  # what a too-long line's error shows of it


def split_queries(text: str) -> list[str]:
    """The queries of a line: words split at white space, and a word that starts with
    ``"`` joined with those after it up to the closing ``"`` (``"New York"``: one query).
    Other quotes are kept (``don't``, ``'s``); UsageError for an unclosed ``"``."""
    queries: list[str] = []
    for match in re.finditer(r'"([^"]*)"(?=\s|$)|"|\S+', text):
        if match.group(0) == '"' or (match.group(0).startswith('"') and match.group(1) is None):
            raise UsageError(f"{quoted(text)}: a query in double quotes lacks its closing quote")
        queries.append(match.group(1) if match.group(1) is not None else match.group(0))
    return queries


# The library's options that a setting stands for in the shell: named as the setting.
_SETTING_OPTIONS = {"k": ":k", "metric": ":metric", "table": ":table", "center": ":center"}


def _worded(option: Option) -> str:
    """An option named in an error, as the shell spells it: ``:table output``, not
    ``--table output``; the options the shell has no setting for, as on the command line."""
    name = _SETTING_OPTIONS.get(option.name)
    if name is None:
        return flag(option)
    if option.has_value:
        return f"{name} {option.value}"
    return f"{name} {option.metavar}" if option.metavar is not None else name


def _choice(setting: str, value: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise UsageError(f"{setting} {quoted(value)}: choose {', '.join(accepted)}")
    return value


def _flush() -> None:
    """Each answer, and its errors and notes, out before the next line is read (stderr in
    a pipe is buffered)."""
    sys.stdout.flush()
    sys.stderr.flush()


def _json_number(figure: str) -> str:
    return figure if figure not in ("nan", "inf", "-inf") else "null"


# --- at a terminal -----------------------------------------------------------------------------


def _read_line(prompt: str) -> str:
    """A line typed at the terminal. The prompt goes where input() puts it (stdout, through
    readline) when stdout is the terminal too; with stdout redirected it goes to stderr,
    so that the file gets the answers only."""
    if sys.stdout.isatty():
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


class Completions:
    """What Tab offers after a query command: the words the vocabulary spells (``Ġking``
    and ``▁king`` as ``king``; WordPiece's ``##ing`` and special tokens left out), and after
    ``=`` the entries as stored. Built on the first Tab, sorted, searched by prefix; only
    entries a terminal shows as they are (no control, escape or space) are offered."""

    def __init__(self, vocabulary: Vocabulary | WordKeys | None) -> None:
        words: set[str] = set()
        entries: set[str] = set()
        if vocabulary is not None:
            special = getattr(vocabulary, "special_ids", set())
            for token_id in range(vocabulary.size):
                token = vocabulary.id_to_token(token_id)
                if not token or token_id in special:
                    continue
                if _offerable(token):
                    entries.add(token)
                if token.startswith("##") and getattr(vocabulary, "scheme", None) == WORDPIECE:
                    continue
                word = vocabulary.token_text(token_id).strip()
                if word and _offerable(word):
                    words.add(word)
        self.words = sorted(words)
        self.entries = sorted("=" + entry for entry in entries)

    def matching(self, prefix: str) -> list[str]:
        pool = self.entries if prefix.startswith("=") else self.words
        start = bisect.bisect_left(pool, prefix)
        found: list[str] = []
        for candidate in pool[start : start + COMPLETIONS]:
            if not candidate.startswith(prefix):
                break
            found.append(candidate)
        return found


def _offerable(text: str) -> bool:
    """Whether a terminal shows ``text`` as it is, as one word: no control, escape or
    invisible character (``terminal_cell`` leaves it unchanged), no space, no quote."""
    return terminal_cell(text) == text and not any(c.isspace() for c in text) and '"' not in text


class _LineEditing:
    """readline set up for the session: Tab completion, and the history file."""

    def __init__(self, readline: Any, session: Session, history: Path) -> None:
        self.readline = readline
        self.session = session
        self.history = history
        self.offered: list[str] = []
        readline.set_completer_delims(" \t\n")
        readline.set_completer(self.complete)
        if "libedit" in (readline.__doc__ or ""):  # macOS's Python
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        readline.set_history_length(HISTORY_LINES)
        with contextlib.suppress(OSError):
            readline.read_history_file(str(history))

    def complete(self, text: str, state: int) -> str | None:
        try:
            if state == 0:
                self.offered = self._candidates(text)
            return self.offered[state] if state < len(self.offered) else None
        except Exception:  # readline would swallow it silently; offer nothing instead
            return None

    def _candidates(self, text: str) -> list[str]:
        line = self.readline.get_line_buffer()
        before = line[: self.readline.get_begidx()].split()
        session = self.session
        if not before:
            names = [*session.commands, *session.settings_handlers, ":help", ":quit"]
            return [name + " " for name in names if name.startswith(text)]
        first = before[0]
        if len(before) == 1 and first in _SETTING_VALUES:
            return [value for value in _SETTING_VALUES[first] if value.startswith(text)]
        if first in session.commands and first != "info" and text and not text.startswith('"'):
            return session.completions().matching(text)
        return []

    def save(self) -> None:
        """Write the history (owner-only: it holds what was asked); a folder that cannot
        take it is a note, not a failure."""
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(str(self.history))
            os.chmod(self.history, 0o600)
        except OSError as err:
            report_note(f"note: the shell history was not kept in {self.history}: {err.strerror}")


_SETTING_VALUES: dict[str, tuple[str, ...]] = {
    ":metric": METRICS,
    ":table": TABLES,
    ":center": tuple(SWITCHES),
    ":format": FORMATS,
}


def _line_editing(session: Session) -> _LineEditing | None:
    """readline for the session, where Python has it (not on Windows) and input() uses it
    (stdout a terminal too); None otherwise."""
    if not sys.stdout.isatty():
        return None
    try:
        import readline
    except ImportError:
        return None
    from embinspect.sources.cache import cached_file

    return _LineEditing(readline, session, cached_file(HISTORY_FILE))
