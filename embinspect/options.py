"""Arguments and options shared by every command, declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embinspect.output import OutputFormat

ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Hugging Face folder, .safetensors file, or Hub repo id (gpt2, Qwen/Qwen3-0.6B).",
        show_default=False,
    ),
]
RevisionOpt = Annotated[
    Optional[str],
    typer.Option("--revision", help="Branch, tag or commit of a Hub repo.", show_default=False),
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
