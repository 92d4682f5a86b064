"""The ``embinspect`` Typer app: every command registered, and ``main``, which turns a
user's mistake into one line on stderr and a documented exit code.

Each command lives in a module of its own (``embinspect.cli.neighbors`` ...): it parses,
calls the library, and hands the result to ``render.Output`` with its ``View``. Heavy
modules (torch, transformers, tokenizers) are imported inside the library functions that
need them, so ``--help`` and ``info`` start fast.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Annotated

import typer

from embinspect import __version__
from embinspect.cli import (
    analogy,
    compare,
    diff,
    info,
    neighbors,
    plot,
    positions,
    stats,
    tokens,
    undertrained,
)
from embinspect.cli.render import flag, message_line, report_error, report_note
from embinspect.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EmbinspectError,
    EmbinspectWarning,
)

app = typer.Typer(
    name="embinspect",
    help="Inspect the embedding tables of real model checkpoints: read only the embedding "
    "tensors, look up rows, and print shapes, tokens and vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # main() prints one clean line instead
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    pass


# One line per command: its module holds its arguments and its renderers.
for _command in (
    info.info,
    tokens.tokens,
    neighbors.neighbors,
    compare.compare,
    analogy.analogy,
    positions.positions,
    diff.diff,
    stats.stats,
    undertrained.undertrained,
    plot.plot,
):
    app.command()(_command)


def _notes_on_stderr(show_other: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints the library's notes as ``embinspect: note:
    ...`` lines and leaves other warnings to ``show_other`` (the one in place before)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if isinstance(message, EmbinspectWarning):
            report_note(f"{message.kind}: {message.worded(flag)}")
        else:
            show_other(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and a documented exit code.

    ``argv`` is the arguments after the program name (default ``sys.argv[1:]``). Always
    ends with SystemExit carrying the exit code, as the installed script does.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:  # recent typer carries its own copy of click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, NoArgsIsHelpError

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
    except NoArgsIsHelpError as err:
        err.show()
        sys.exit(EXIT_USAGE)
    except ClickException as err:
        known = {c.callback.__name__ for c in app.registered_commands if c.callback}
        command = args[0] if args and args[0] in known else ""
        hint = f" (see embinspect {command} --help)".replace("  ", " ")
        report_error(err.format_message().replace("\n", " ") + hint)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        # Ctrl-C: typer turns it into exit 130 itself; this catches one outside a command.
        sys.exit(EXIT_INTERRUPTED)
    except EmbinspectError as err:
        if debug:
            raise
        report_error(err.worded(flag))
        sys.exit(err.exit_code)
    except Exception as err:
        if debug:
            raise
        message = message_line(" ".join(f"{type(err).__name__}: {err}".split()))
        print(
            f"embinspect: internal error: {message} (EMBINSPECT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
