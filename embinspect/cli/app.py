"""The ``embinspect`` Typer app: every command registered, and ``main``, which turns a
user's mistake into one line on stderr and a documented exit code.

Each command lives in a module of its own (``embinspect.cli.neighbors`` ...): it parses,
calls the library, and hands the result to ``render.Output`` with its ``View``. Heavy
modules (torch, transformers, tokenizers) are imported inside the library functions that
need them, so ``--help`` and ``info`` start fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Annotated, NoReturn

import typer

import embinspect
from embinspect.cli import (
    analogy,
    cache,
    compare,
    diff,
    export,
    info,
    neighbors,
    outlier,
    plot,
    positions,
    shell,
    stats,
    streams,
    tokens,
    undertrained,
)
from embinspect.cli.render import flag, message_line, report_error, report_note
from embinspect.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EmbinspectError,
    EmbinspectWarning,
    StreamError,
    Terminated,
)

app = typer.Typer(
    name="embinspect",
    help="Inspect the embedding tables of real model checkpoints: read only the embedding "
    "tensors, look up rows, and print shapes, tokens and vectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # main() prints one clean line instead
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        # Read here, not at import: the installed metadata costs every other run ~30 ms.
        typer.echo(f"embinspect {embinspect.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    pass


# One line per command: its module holds its arguments and its renderers; here, the
# summary `embinspect --help` lists (whole: Click would cut a summary taken from the
# docstring at the width left) and two real examples, which end the command's --help.
COMMANDS: list[tuple[Callable[..., None], str, tuple[str, str]]] = [
    (
        info.info,
        "Embedding tensors, vocabulary, tying, position scheme.",
        (
            "embinspect info sentence-transformers/all-MiniLM-L6-v2",
            "embinspect info model.gguf",
        ),
    ),
    (
        tokens.tokens,
        "Each token of a text: id, text, row norm, components.",
        (
            'embinspect tokens sentence-transformers/all-MiniLM-L6-v2 "The cat sat" --positions',
            'embinspect tokens gpt2 "Paris, naively" --components 3 -f json',
        ),
    ),
    (
        neighbors.neighbors,
        "The k nearest rows to each query, exact.",
        (
            "embinspect neighbors sentence-transformers/all-MiniLM-L6-v2 king queen -k 5",
            "embinspect neighbors glove.6B.50d.txt paris --metric dot -f tsv",
        ),
    ),
    (
        compare.compare,
        "Similarity of two or more queries, or a word-pair suite.",
        (
            "embinspect compare sentence-transformers/all-MiniLM-L6-v2 cat dog car",
            "embinspect compare glove.6B.50d.txt --pairs wordsim353",
        ),
    ),
    (
        analogy.analogy,
        "A - B + C and its nearest rows, or an analogy suite.",
        (
            "embinspect analogy glove.6B.50d.txt king man woman -k 3",
            "embinspect analogy sentence-transformers/all-MiniLM-L6-v2 --file google",
        ),
    ),
    (
        outlier.outlier,
        "Which query does not belong with the others.",
        (
            "embinspect outlier glove.6B.50d.txt breakfast cereal dinner lunch",
            "embinspect outlier sentence-transformers/all-MiniLM-L6-v2 cat dog mouse car",
        ),
    ),
    (
        positions.positions,
        "How the model encodes position: learned or rotary.",
        (
            "embinspect positions gpt2 --max-positions 128",
            "embinspect positions Qwen/Qwen3-0.6B --offsets 1,16,256",
        ),
    ),
    (
        diff.diff,
        "How far each row moved from one checkpoint to another.",
        (
            "embinspect diff gpt2 distilgpt2 -k 10",
            "embinspect diff HuggingFaceTB/SmolLM2-135M HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    ),
    (
        export.export,
        "The table, or some rows, for TensorBoard, gensim, numpy.",
        (
            "embinspect export glove.6B.50d.txt --to tensorboard --ids 0:5000 --out projector",
            "embinspect export sentence-transformers/all-MiniLM-L6-v2 --to safetensors "
            "--out minilm.safetensors",
        ),
    ),
    (
        stats.stats,
        "The whole table's health: norms, anisotropy, odd rows.",
        (
            "embinspect stats HuggingFaceTB/SmolLM2-135M",
            "embinspect stats model.gguf -f json",
        ),
    ),
    (
        undertrained.undertrained,
        "Tokens likely never or barely trained.",
        (
            "embinspect undertrained gpt2 -k 20",
            "embinspect undertrained Qwen/Qwen3-0.6B -f tsv",
        ),
    ),
    (
        plot.plot,
        "Tokens and their neighbours in 2-D: a picture or an HTML view.",
        (
            "embinspect plot sentence-transformers/all-MiniLM-L6-v2 king queen man woman "
            "--neighbors 8 --out view.html",
            "embinspect plot glove.6B.50d.txt paris france --neighbors 3 -f json",
        ),
    ),
    (
        shell.shell,
        "Open a model once and ask it at a prompt, or line by line.",
        (
            "embinspect shell sentence-transformers/all-MiniLM-L6-v2",
            "embinspect shell glove.6B.50d.txt -k 5 --metric dot -f tsv",
        ),
    ),
]


def examples(*lines: str) -> str:
    """A command's epilog: an ``Examples:`` block whose lines Click prints as they are
    (``\\b``: not rewrapped), after the options."""
    return "Examples:\n\n\b\n" + "\n".join("  " + line for line in lines)


for _command, _summary, _examples in COMMANDS:
    app.command(short_help=_summary, epilog=examples(*_examples))(_command)
app.add_typer(
    cache.app,
    epilog=examples("embinspect cache ls", "embinspect cache prune --dry-run"),
)  # a group of its own: cache ls, rm, prune, path


def _notes_on_stderr(show_other: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints the library's notes as ``embinspect: note:
    ...`` lines and leaves other warnings to ``show_other`` (the one in place before)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if isinstance(message, EmbinspectWarning):
            report_note(f"{message.kind}: {message.worded(flag)}")
        else:
            show_other(message, category, filename, lineno, file, line)

    return show


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind as Ctrl-C does, so that partial files and temp folders are removed.
    A second SIGTERM while unwinding is ignored: the cleanup is short and must finish."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a documented exit code.

    ``argv`` is the arguments after the program name (default ``sys.argv[1:]``). Always
    ends with SystemExit carrying the exit code, as the installed script does. A failing
    standard stream ends the run too (``embinspect.cli.streams``): quietly with 0 when the
    reader of stdout left, with ``EXIT_IO`` otherwise; SIGTERM with ``EXIT_TERMINATED``.
    """
    sys.exit(_exit_code(argv))


def entry() -> NoReturn:
    """The installed ``embinspect`` command and ``python -m embinspect``: ``main``'s run,
    then the process ends at once with its exit code, without the interpreter's
    teardown, which finalizes every module (0.3 s once torch is loaded: a third of
    ``python -c "import torch"``, 0.45 s after a batch on the 8B shape). Nothing is lost
    by then: stdout is flushed, every file is written through a ``with`` block
    (``sources.files``), and every thread pool is joined where it was opened. Only the
    outermost caller may end the process: tests and scripts call ``main``."""
    code = _exit_code(None)
    for stream in (sys.stdout, sys.stderr):
        # None when the process started with that descriptor closed; a reader gone or a
        # stream closed: the run has reported what it must.
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.flush()
    os._exit(code)


def _exit_code(argv: list[str] | None) -> int:
    """``main``'s run: the exit code, every error reported and stdout flushed."""
    args = sys.argv[1:] if argv is None else list(argv)
    # torch's OpenMP threads spin while they wait for work by default: on a machine whose
    # cores are busy with anything else, a batch then waits on threads that hold no core
    # (the Google suite on MiniLM took 12.8 s instead of 3.5 s beside one other busy
    # process on 2 cores). Sleeping instead costs ~10% on an idle machine. Read when torch
    # loads, so set here, before any import of it; OMP_WAIT_POLICY=ACTIVE restores spinning.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    saved = streams.guard()
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = _run(args)
        code = _finish(code, sys.stdout.flush)  # here, not at exit, where a failure is not caught
    except Terminated:
        code = EXIT_TERMINATED
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        streams.restore(saved)
    return code


def _finish(code: int, flush: Callable[[], None]) -> int:
    """``code``, unless the last of stdout cannot be written: then 0 (the reader left) or
    ``EXIT_IO`` with its line."""
    try:
        flush()
    except streams.ReaderGone:
        streams.quiet_stdout()
        return 0
    except StreamError as err:
        streams.quiet_stdout()
        report_error(err.worded(flag))
        return err.exit_code
    return code


def _run(args: list[str]) -> int:
    """Run the app; the exit code, every error reported."""
    # typer carries its own copy of click (0.26 and later): no click import.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    debug = os.environ.get("EMBINSPECT_DEBUG", "") not in {"", "0"}
    # A path or token that is not UTF-8 (argv is decoded with surrogateescape) must not
    # crash the output: such characters are written as \udcNN escapes instead.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            # The library's notes, each once, as one line on stderr.
            warnings.simplefilter("always", EmbinspectWarning)
            warnings.showwarning = _notes_on_stderr(warnings.showwarning)
            # Not standalone: Click would print a usage error as several lines; we print one.
            code = app(args=args, prog_name="embinspect", standalone_mode=False)
    except SystemExit as done:
        code = done.code
    except NoArgsIsHelpError as err:
        err.show()
        return EXIT_USAGE
    except ClickException as err:
        known = {c.callback.__name__ for c in app.registered_commands if c.callback}
        known |= {g.typer_instance.info.name for g in app.registered_groups}
        command = args[0] if args and args[0] in known else ""
        hint = f" (see embinspect {command} --help)".replace("  ", " ")
        report_error(err.format_message().replace("\n", " ") + hint)
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        # Ctrl-C: typer turns it into exit 130 itself; this catches one outside a command.
        return EXIT_INTERRUPTED
    except streams.ReaderGone:
        # `embinspect ... | head`: the reader has what it wanted. Stop quietly with 0, as
        # Unix tools do.
        streams.quiet_stdout()
        return 0
    except EmbinspectError as err:
        if debug:
            raise
        if isinstance(err, StreamError):
            streams.quiet_stdout()
        report_error(err.worded(flag))
        return err.exit_code
    except Exception as err:
        if debug:
            raise
        message = message_line(" ".join(f"{type(err).__name__}: {err}".split()))
        print(
            f"embinspect: internal error: {message} (EMBINSPECT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code if isinstance(code, int) else 0
