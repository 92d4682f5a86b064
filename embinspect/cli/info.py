"""``embinspect info``: its arguments, and how its result is printed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from embinspect.cli.options import ModelArg
from embinspect.cli.render import Output, View, console
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.info import Info


@command(tokenizer=False)
def info(model: ModelArg, *, source: Source, output: Output) -> None:
    """Embedding tensors (role, name, shape, dtype, shard, bytes), vocabulary against rows,
    tying and the position scheme, from headers and JSON only: no tensor data is read. For a
    Hub repo, also the bytes each command would download."""
    from embinspect.analyses.info import inspect_checkpoint

    checkpoint = source.open(model, all_headers=True)
    result = inspect_checkpoint(checkpoint)
    output.emit(result, VIEW)


def info_table(result: Info) -> None:
    from rich.table import Table

    screen = console()
    # Titles that name the model go above their table: one would wrap at the table's width.
    screen.print(f"Embedding tensors of {result.model}")
    tensors = Table()
    for column in ("role", "name", "shape", "dtype", "file", "bytes"):
        # Names and shard files are what users copy into --tensor: fold, never cut them.
        tensors.add_column(
            column, justify="right" if column == "bytes" else "left", overflow="fold"
        )
    for t in result.tensors:
        shape = " × ".join(str(d) for d in t.shape)
        tensors.add_row(t.role, t.name, shape, t.dtype, t.file, f"{t.bytes:,}")
    screen.print(tensors)

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
    if result.gguf is not None:
        gguf = result.gguf
        described = [f"GGUF v{gguf['version']}", f"{gguf['tensors']:,} tensors"]
        if gguf["file_type"]:
            described.append(f"file type {gguf['file_type']}")
        summary.add_row("format", ", ".join(described))
        named = f" ({gguf['name']})" if gguf["name"] else ""
        summary.add_row("architecture", f"{result.architecture or 'unknown'}{named}")
    summary.add_row("vocabulary", vocab)
    summary.add_row("hidden size", str(result.hidden_size))
    about = "" if result.total_params_exact else "about "
    summary.add_row(
        "parameters",
        f"{result.embedding_params:,} in embeddings of {about}{result.total_params:,} "
        f"({result.embedding_share:.1%})",
    )
    if result.format not in ("safetensors", "gguf"):  # a word-vector file
        summary.add_row("format", result.tensors[0].family)
    if result.tied is None:  # no output head at all: the reason reads "none: ..."
        summary.add_row("output head", result.tied_reason)
    else:
        head = ("tied: " if result.tied else "untied: ") + result.tied_reason
        summary.add_row("output head", head)
    summary.add_row("positions", describe_position_scheme(result.position))
    for index, fetch in enumerate(result.fetch or []):
        summary.add_row("fetch" if index == 0 else "", describe_fetch(fetch))
    if result.cached_ranges is not None:
        summary.add_row("cached ranges", describe_cached_ranges(result.cached_ranges))
    if result.cached_parse is not None:
        summary.add_row("cached parse", describe_cached_parse(result.cached_parse))
    screen.print(summary)


def describe_fetch(fetch: Any) -> str:
    """One line of ``info`` on a Hub repo: what some commands would download, and from where:
    ``tokens --positions: 47,671,296 bytes (3 ranges of model.safetensors)``."""
    if fetch.bytes == 0:
        return f"{fetch.commands}: nothing, all cached"
    ranges: dict[str, int] = {}
    files: list[str] = []
    for part in fetch.parts:
        if part["how"] == "range":
            ranges[part["file"]] = ranges.get(part["file"], 0) + 1
        elif part["how"] == "file" and part["file"] not in files:
            files.append(part["file"])
    pieces = [f"{n} range{'s' if n > 1 else ''} of {file}" for file, n in ranges.items()]
    pieces += [f"all of {file}" for file in files]
    return f"{fetch.commands}: {fetch.bytes:,} bytes ({', '.join(pieces)})"


def describe_cached_ranges(ranges: list[dict[str, Any]]) -> str:
    """One line of ``info`` on a Hub repo: the tensors held in embinspect's cache as ranges
    (``embinspect cache ls`` lists them): ``wte.weight of model.safetensors: 1,024 bytes``."""
    if not ranges:
        return "none"
    return ", ".join(f"{r['tensor']} of {r['file']}: {r['bytes']:,} bytes" for r in ranges)


def describe_cached_parse(cached: dict[str, Any]) -> str:
    """One line of ``info`` on a word-vector file: the cache entry its shape (and, for the
    other commands, its rows and words) was read from, or why there is none."""
    if not cached["kept"]:
        return str(cached["reason"])
    return f"read from cache entry {cached['id']} ({cached['bytes']:,} bytes), not parsed"


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
    if kind == "none":
        return "none: word vectors carry no position"
    return "unknown (no position table, no rotary settings in config.json)"


VIEW = View(table=info_table)
