"""Print a result in the format asked for: a Rich table, JSON, JSON lines, TSV or CSV.

Every format is drawn from the same result object, so they never disagree. Data goes
to stdout; notes and errors go to stderr, so ``--format json`` output stays parseable.
"""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from functools import singledispatch
from typing import Any

from embinspect.info import Info
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
    if fmt is OutputFormat.table:
        render_table(result)
        return
    out = sys.stdout
    if fmt is OutputFormat.json:
        out.write(json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n")
        return
    if fmt is OutputFormat.jsonl:
        for record in json_lines(result):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    header, rows = delimited_rows(result)
    if fmt is OutputFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    else:
        out.write("\t".join(header) + "\n")
        for row in rows:
            out.write("\t".join(_tsv_escape(_cell(v)) for v in row) + "\n")
    for note in notes(result):
        print(f"embinspect: {note}", file=sys.stderr)


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


# --- Rich tables -------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


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
    summary.add_row("vocabulary", vocab)
    summary.add_row("hidden size", str(result.hidden_size))
    about = "" if result.total_params_exact else "about "
    summary.add_row(
        "parameters",
        f"{result.embedding_params:,} in embeddings of {about}{result.total_params:,} "
        f"({result.embedding_share:.1%})",
    )
    summary.add_row("output head", ("tied: " if result.tied else "untied: ") + result.tied_reason)
    summary.add_row("positions", describe_position_scheme(result.position))
    console.print(summary)


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
    return "unknown (no position table, no rotary settings in config.json)"


@render_table.register
def _(result: TokenLookup) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table(title=f"{result.tensor} of {result.model}", title_justify="left")
    for column in ("pos", "id", "token", "text", "norm"):
        table.add_column(column, justify="right" if column in {"pos", "id", "norm"} else "left")
    table.add_column("first components", no_wrap=True)
    with_positions = any(row.position_id is not None for row in result.tokens)
    if with_positions:
        for column in ("pos id", "pos norm", "input norm"):
            table.add_column(column, justify="right")
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
        table.add_row(*cells)
    console.print(table)
    if result.position_note:
        console.print(result.position_note)
    if any(row.vector is not None for row in result.tokens):
        for row in result.tokens:
            console.print(f"{row.token_id}: " + " ".join(f"{v:.6g}" for v in row.vector or []))
