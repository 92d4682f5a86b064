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
TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many results.")]
MetricOpt = Annotated[
    str,
    typer.Option("--metric", help="cosine, dot or l2 (Euclidean distance, smallest first)."),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="cpu, cuda, cuda:N, mps, or auto (a GPU when torch sees one)."),
]
TableOpt = Annotated[
    str,
    typer.Option("--table", help="input (token table) or output (the LM head, when not tied)."),
]
FilterOpt = Annotated[
    str,
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
    str,
    typer.Option(
        "--pool", help="A query of several tokens: mean, first or last row, or error to refuse."
    ),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option("--batch-size", min=1, help="Queries answered per pass over the table."),
]
