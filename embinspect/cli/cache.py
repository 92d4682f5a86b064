"""``embinspect cache``: ``ls``, ``rm``, ``prune`` and ``path``, the verbs of ``hf cache``,
over what embinspect keeps on disk (``embinspect.analyses.cache``), and how each result
is printed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import FormatOpt
from embinspect.cli.render import Output, View, console, report_note, resolve_format
from embinspect.cli.source import CsvRawOpt
from embinspect.errors import UsageError

if TYPE_CHECKING:
    from embinspect.analyses.cache import CacheEntry, CacheListing, CachePaths, CacheRemoval

app = typer.Typer(
    name="cache",
    help="What embinspect keeps on disk (Hub byte ranges, GGUF tokenizers): list it (ls), "
    "remove entries (rm) or those of no more use (prune), and say where it is (path).",
    short_help="List or remove what embinspect keeps on disk.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Remove without asking (needed when stdin is not a terminal)."
    ),
]


def _output(fmt: Any, csv_raw: bool) -> Output:
    output = Output(resolve_format(fmt), csv_raw)
    if csv_raw and output.format.value != "csv":
        raise UsageError("--csv-raw goes with --format csv")
    return output


@app.command("ls", short_help="List the entries: id, kind, model, size, state.")
def ls(fmt: FormatOpt = None, csv_raw: CsvRawOpt = False) -> None:
    """List what embinspect keeps: each entry's id, kind, model, size, when it was written,
    and whether it is still of use (ok, gone, changed, outdated, damaged, incomplete).

    \b
    Examples:
      embinspect cache ls
      embinspect cache ls --format json
    """
    from embinspect.analyses.cache import cache_entries

    _output(fmt, csv_raw).emit(cache_entries(), LISTING)


@app.command("rm", short_help="Remove entries by id, or all of them.")
def rm(
    entries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="ENTRY",
            help="Entry ids, as cache ls shows them (or their first characters, at least 4).",
            show_default=False,
        ),
    ] = None,
    all_entries: Annotated[
        bool, typer.Option("--all", help="Remove every entry (asks first, unless --yes).")
    ] = False,
    yes: YesOpt = False,
    fmt: FormatOpt = None,
    csv_raw: CsvRawOpt = False,
) -> None:
    """Remove entries by id, or all of them with --all (after a confirmation, or --yes;
    without a terminal to ask on and without --yes, nothing is removed: exit 2).

    \b
    Examples:
      embinspect cache rm 3f2a9c1b0d4e
      embinspect cache rm --all --yes
    """
    from embinspect.analyses.cache import cache_entries, remove_cache_entries

    output = _output(fmt, csv_raw)
    if all_entries and entries:
        raise UsageError("give the ids of the entries to remove, or --all, not both")
    if not all_entries and not entries:
        raise UsageError("give the ids of the entries to remove (cache ls shows them), or --all")
    if entries:
        output.emit(remove_cache_entries(entries), REMOVAL)
        return
    listing = cache_entries()
    ids = [entry.id for entry in listing.entries]
    if ids and not yes and not _confirmed(listing):
        report_note("note: nothing removed")
        return
    output.emit(remove_cache_entries(ids), REMOVAL)


def _confirmed(listing: CacheListing) -> bool:
    """Whether the person at the terminal agrees to remove every entry; UsageError when
    there is no terminal to ask on (a script must say --yes)."""
    count = len(listing.entries)
    what = f"{count:,} {'entry' if count == 1 else 'entries'} ({listing.size:,} bytes)"
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        raise UsageError(
            f"cache rm --all would remove {what}, and stdin is not a terminal to confirm on: "
            "pass --yes"
        )
    sys.stderr.write(f"Remove {what} from embinspect's cache? [y/N] ")
    sys.stderr.flush()
    answer = stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@app.command("prune", short_help="Remove the entries of no more use.")
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    fmt: FormatOpt = None,
    csv_raw: CsvRawOpt = False,
) -> None:
    """Remove the entries of no more use: whose source file is gone or changed, built by
    another transformers version, damaged, or writes left unfinished over an hour ago.

    \b
    Examples:
      embinspect cache prune --dry-run
      embinspect cache prune --format json
    """
    from embinspect.analyses.cache import prune_cache

    _output(fmt, csv_raw).emit(prune_cache(dry_run=dry_run), REMOVAL)


@app.command("path", short_help="Where the cache is.")
def path(fmt: FormatOpt = None, csv_raw: CsvRawOpt = False) -> None:
    """Where the cache is: cache_dir (EMBINSPECT_CACHE, else XDG_CACHE_HOME/embinspect) for
    derived entries, hub_dir (HF_ASSETS_CACHE/embinspect, under HF_HOME) for Hub ranges.

    \b
    Examples:
      embinspect cache path
      embinspect cache path --format json
    """
    from embinspect.analyses.cache import cache_paths

    _output(fmt, csv_raw).emit(cache_paths(), PATHS)


# --- how each result is printed -------------------------------------------------------------

COLUMNS = ["id", "kind", "model", "revision", "file", "tensor", "size", "written", "state"]


def _row(entry: CacheEntry) -> list[Any]:
    return [getattr(entry, column) for column in COLUMNS] + [entry.reason]


def _entries_table(entries: list[CacheEntry]) -> Any:
    from rich.table import Table

    from embinspect.analyses.cache import part_of

    table = Table()
    for column in ("id", "kind", "model", "part", "size", "written", "state"):
        # Names and paths are what users copy: fold, never cut them; the short columns stay
        # on one line.
        wrap = column in ("model", "part")
        table.add_column(
            column,
            justify="right" if column == "size" else "left",
            overflow="fold",
            no_wrap=not wrap,
            ratio=1 if wrap else None,
        )
    for e in entries:
        model = e.model or ""
        if e.revision:
            model += f"@{e.revision[:8]}"
        # The minute it was written: the JSON has the second, in ISO 8601.
        written = e.written[:16].replace("T", " ")
        table.add_row(e.id, e.kind, model, part_of(e), f"{e.size:,}", written, e.state)
    return table


def listing_table(result: CacheListing) -> None:
    screen = console()
    if not result.entries:
        screen.print(f"The cache is empty ({result.cache_dir}, {result.hub_dir}).")
        return
    screen.print(_entries_table(result.entries))
    count = len(result.entries)
    screen.print(
        f"{count:,} {'entry' if count == 1 else 'entries'}, {result.size:,} bytes, in "
        f"{result.cache_dir} and {result.hub_dir}"
    )


def listing_rows(result: CacheListing) -> tuple[list[str], list[list[Any]]]:
    return [*COLUMNS, "reason"], [_row(entry) for entry in result.entries]


def listing_records(result: CacheListing) -> list[dict[str, Any]]:
    return [entry.to_dict() for entry in result.entries]


def _removed_words(result: CacheRemoval) -> str:
    count = len(result.removed)
    verb = "would remove" if result.dry_run else "removed"
    return f"{verb} {count:,} {'entry' if count == 1 else 'entries'}, {result.size:,} bytes"


def removal_table(result: CacheRemoval) -> None:
    screen = console()
    if result.removed:
        screen.print(_entries_table(result.removed))
    if not result.removed:
        screen.print("Nothing to remove.")
        return
    words = _removed_words(result)
    screen.print(words[0].upper() + words[1:] + ".")


def removal_rows(result: CacheRemoval) -> tuple[list[str], list[list[Any]]]:
    return [*COLUMNS, "reason"], [_row(entry) for entry in result.removed]


def removal_records(result: CacheRemoval) -> list[dict[str, Any]]:
    return [entry.to_dict() for entry in result.removed]


def removal_notes(result: CacheRemoval) -> list[str]:
    return [f"note: {_removed_words(result)}"]


def paths_table(result: CachePaths) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("cache_dir", result.cache_dir)
    table.add_row("hub_dir", result.hub_dir)
    console().print(table)


def paths_rows(result: CachePaths) -> tuple[list[str], list[list[Any]]]:
    return ["name", "path"], [["cache_dir", result.cache_dir], ["hub_dir", result.hub_dir]]


LISTING = View(table=listing_table, rows=listing_rows, records=listing_records)
REMOVAL = View(table=removal_table, rows=removal_rows, records=removal_records, notes=removal_notes)
PATHS = View(table=paths_table, rows=paths_rows)
