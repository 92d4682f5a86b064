"""Arguments and options shared by every command, declared once."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Optional

import typer

from embinspect.cli.completion import devices, local_paths
from embinspect.cli.render import OutputFormat
from embinspect.cli.streams import Arriving, BufferedInput, LiveInput, stdin_input
from embinspect.errors import StreamError, UsageError
from embinspect.model.checkpoint import TABLES
from embinspect.tables.queries import MAX_QUERY_CHARS, POOLS
from embinspect.tables.scoring import METRICS
from embinspect.tables.search import ANALOGY_METHODS, FILTERS


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum of the library's own choices, so Typer validates them and lists them in
    --help while the library stays the one place that declares them."""
    return Enum(name, {value: value for value in values}, type=str)


Metric = _choices("Metric", METRICS)
Table = _choices("Table", TABLES)
WordFilter = _choices("WordFilter", FILTERS)
Pool = _choices("Pool", POOLS)
AnalogyMethod = _choices("AnalogyMethod", ANALOGY_METHODS)

ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Hugging Face folder, .safetensors or .gguf file, ollama:NAME[:TAG], a word2vec/"
        "GloVe/fastText file, or Hub repo id (gpt2, Qwen/Qwen3-0.6B).",
        show_default=False,
        autocompletion=local_paths,
    ),
]
QueriesArg = Annotated[
    list[str],
    typer.Argument(
        metavar="QUERY...",
        help="Text (king), #token_id, =vocabulary_entry, or - to read one per line from stdin.",
        show_default=False,
    ),
]
RevisionOpt = Annotated[
    Optional[str],
    typer.Option("--revision", help="Branch, tag or commit of a Hub repo.", show_default=False),
]
CacheDirOpt = Annotated[
    Optional[str],
    typer.Option(
        "--cache-dir",
        help="huggingface_hub cache folder for Hub files (default: HF_HUB_CACHE, under HF_HOME).",
        show_default=False,
        autocompletion=local_paths,
    ),
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline", help="Use only what is cached, as HF_HUB_OFFLINE=1 does; fetch nothing."
    ),
]
FullDownloadOpt = Annotated[
    bool,
    typer.Option(
        "--full-download",
        help="Fetch the whole file holding a tensor, not just the tensor's byte range.",
    ),
]
TensorOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tensor",
        help="Name of the token table when the known names do not find it.",
        show_default=False,
    ),
]
TokenizerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tokenizer",
        help="Tokenizer to use: a tokenizer.json, a folder, or a Hub repo id.",
        show_default=False,
        autocompletion=local_paths,
    ),
]
TokenizerRevisionOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tokenizer-revision",
        help="Branch, tag or commit of the --tokenizer Hub repo (default: its main branch).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    Optional[OutputFormat],
    typer.Option(
        "--format",
        "-f",
        help="Output format. Default: table on a terminal, tsv in a pipe.",
        show_default=False,
        case_sensitive=False,
    ),
]
TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many results.")]
MetricOpt = Annotated[
    Metric,
    typer.Option("--metric", help="l2 is the Euclidean distance, smallest first."),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:N, mps, or auto (a GPU when torch sees one).",
        autocompletion=devices,
    ),
]
TableOpt = Annotated[
    Table,
    typer.Option("--table", help="The token table, or the output head (when not tied)."),
]
FilterOpt = Annotated[
    WordFilter,
    typer.Option(
        "--filter", help="words: only tokens that are whole words (letters, optional space mark)."
    ),
]
CenterOpt = Annotated[
    bool,
    typer.Option("--center", help="Subtract the mean row first (LLM tables are anisotropic)."),
]
NoSpaceOpt = Annotated[
    bool,
    typer.Option(
        "--no-space", help="Tokenize words bare (king), not as inside a sentence (Ġking, ▁king)."
    ),
]
PoolOpt = Annotated[
    Pool,
    typer.Option("--pool", help="A query of several tokens: pool its rows, or refuse (error)."),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option("--batch-size", min=1, help="Queries answered per pass over the table."),
]
MethodOpt = Annotated[
    AnalogyMethod,
    typer.Option(
        "--method", help="add: 3CosAdd (gensim most_similar); mul: 3CosMul (Levy & Goldberg)."
    ),
]
RestrictOpt = Annotated[
    Optional[int],
    typer.Option(
        "--restrict",
        min=1,
        help="Only the first N rows are words and candidates (gensim's restrict_vocab; "
        "300000 with --file/--pairs, every row otherwise).",
        show_default=False,
    ),
]
CaseOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--case-insensitive/--case-sensitive",
        help="Fold case as gensim does (upper-case both sides). Default: on when the "
        "tokenizer lower-cases text, off otherwise.",
        show_default=False,
    ),
]


class LongLine(str):
    """A stdin line longer than any query can be, kept as its first characters only (the
    rest was skipped unread into memory); ``length`` is the whole line's length in
    characters, which the query's length check reports."""

    length: int

    def __new__(cls, prefix: str, length: int) -> LongLine:
        line = super().__new__(cls, prefix)
        line.length = length
        return line


# Bytes of a line kept whole: a UTF-8 character is at most 4 bytes, so a longer line holds
# more than MAX_QUERY_CHARS characters. Longer lines are skipped in chunks, counted, never
# stored: a 300 MB line costs no more memory than a short one.
_LINE_BYTES = 4 * MAX_QUERY_CHARS + 64
_SKIP_CHUNK = 1 << 20
_QUOTED_CHARS = 60  # what is kept of a long line: what its error row shows
# UTF-8 continuation bytes: every other byte starts a character.
_CONTINUATION = bytes(range(0x80, 0xC0))


def _characters(chunk: bytes) -> int:
    return len(chunk.translate(None, _CONTINUATION))


def _stdin_lines(queries_per_line: int = 1) -> Iterator[str]:
    """Non-blank stdin lines, stripped, read lazily, each line's memory bounded.

    Read as bytes and decoded with surrogateescape, as Python decodes argv: a line that is
    not UTF-8 reaches the query parser, which refuses that line alone (the others are
    still answered) instead of the whole stream stopping at a decoding error. Stripped:
    a trailing space would otherwise become a token and be pooled into the query. A line
    longer than ``queries_per_line`` queries can be comes as a ``LongLine``.
    """
    cap = queries_per_line * _LINE_BYTES
    with stdin_errors("- reads the queries from it"):
        source = stdin_input()  # read as lines arrive: a search answers what is at hand
        while raw := source.readline(cap + 1):
            if len(raw) > cap and not raw.endswith(b"\n"):
                yield _long_line(raw, source)
                continue
            line = raw.decode("utf-8", "surrogateescape").strip()
            if line:
                yield line


STDIN = "standard input"  # how errors name stdin


@contextlib.contextmanager
def stdin_errors(reads: str) -> Iterator[None]:
    """Reading stdin, its failures as one line (exit 74): closed (``reads`` says what
    reads from it), or unreadable."""
    if sys.stdin is None:
        raise StreamError(f"{STDIN}: closed ({reads})")
    try:
        yield
    except (OSError, ValueError) as err:  # ValueError: stdin's file object was closed
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "closed"
        raise StreamError(f"{STDIN}: cannot read ({reason})") from None


def _long_line(start: bytes, source: LiveInput | BufferedInput) -> LongLine:
    """The rest of a line that began with ``start`` (no newline in it), skipped in chunks."""
    length = _characters(start)
    while chunk := source.readline(_SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            length += _characters(chunk.rstrip(b"\r\n"))
            break
        length += _characters(chunk)
    prefix = start.decode("utf-8", "surrogateescape").lstrip()[:_QUOTED_CHARS]
    return LongLine(prefix, length)


def read_queries(arguments: list[str]) -> Arriving[str]:
    """The queries in order; ``-`` stands for stdin, one query a line, each available to
    a search as soon as its line arrives."""
    return Arriving(_queries(arguments), reads_stdin="-" in arguments)


def _queries(arguments: list[str]) -> Iterator[str]:
    for argument in arguments:
        if argument == "-":
            yield from _stdin_lines()
        else:
            yield argument


def read_questions(arguments: list[str]) -> Arriving[list[str]]:
    """Analogy questions A B C: from the arguments, or three per stdin line (tab-separated,
    or space-separated when there is no tab), each as soon as its line arrives. A line of
    another length becomes an error result of its own; the other lines are still
    answered."""
    return Arriving(_questions(arguments), reads_stdin=arguments == ["-"])


def _questions(arguments: list[str]) -> Iterator[list[str]]:
    if arguments == ["-"]:
        for line in _stdin_lines(queries_per_line=3):
            if isinstance(line, LongLine):
                # Too long for three queries: answered as its first, too long, query.
                yield [line, "", ""]
            else:
                yield [part.strip() for part in line.split("\t")] if "\t" in line else line.split()
    elif len(arguments) == 3:
        yield list(arguments)
    else:
        raise UsageError("analogy takes three queries A B C (king man woman), or - for stdin")
