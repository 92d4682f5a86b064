"""The ``embinspect`` command line: parse, call the library, hand the result to ``output``.

Heavy modules (torch, transformers, tokenizers) are imported inside the library
functions that need them, so ``--help`` and ``info`` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from embinspect import __version__
from embinspect.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EmbinspectError
from embinspect.options import FormatOpt, ModelArg, RevisionOpt, TensorOpt, TokenizerOpt
from embinspect.output import emit, resolve_format

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


@app.command()
def info(
    model: ModelArg,
    revision: RevisionOpt = None,
    tensor: TensorOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Embedding tensors (role, name, shape, dtype, shard, bytes), vocabulary against rows,
    tying and the position scheme, from headers and JSON only: no tensor data is read."""
    from embinspect.checkpoint import open_checkpoint
    from embinspect.info import inspect_checkpoint

    checkpoint = open_checkpoint(model, revision, tensor)
    emit(inspect_checkpoint(checkpoint), resolve_format(fmt))


@app.command()
def tokens(
    model: ModelArg,
    text: Annotated[str, typer.Argument(help="Text to tokenize.", show_default=False)],
    positions: Annotated[
        bool,
        typer.Option(
            "--positions",
            help="Add the learned position row and the norm of token + position "
            "(what the first block sees).",
        ),
    ] = False,
    vectors: Annotated[bool, typer.Option("--vectors", help="Print whole rows.")] = False,
    special: Annotated[
        bool,
        typer.Option(
            "--special/--no-special",
            help="Add the tokenizer's special tokens ([CLS] ... [SEP], <bos>).",
        ),
    ] = False,
    components: Annotated[
        int, typer.Option("--components", min=0, help="How many leading components to show.")
    ] = 4,
    revision: RevisionOpt = None,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Tokenize TEXT and show each token: id, stored form, text, row norm, first components."""
    from embinspect.checkpoint import open_checkpoint
    from embinspect.tokenizer import load_vocabulary
    from embinspect.tokens import lookup_tokens

    checkpoint = open_checkpoint(model, revision, tensor)
    vocabulary = load_vocabulary(checkpoint.files, tokenizer)
    result = lookup_tokens(
        checkpoint,
        vocabulary,
        text,
        components=components,
        positions=positions,
        vectors=vectors,
        special_tokens=special,
    )
    emit(result, resolve_format(fmt))


def main() -> None:
    """Entry point: user mistakes become one line on stderr and a documented exit code."""
    debug = os.environ.get("EMBINSPECT_DEBUG", "") not in {"", "0"}
    try:
        app()
    except EmbinspectError as err:
        if debug:
            raise
        print(f"embinspect: error: {err.message}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # `embinspect ... | head`: the reader left; close quietly like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as err:
        if debug:
            raise
        print(
            f"embinspect: internal error: {type(err).__name__}: {err} "
            "(EMBINSPECT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
