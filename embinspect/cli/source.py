"""The source options every command shares (``--revision``, ``--cache-dir``, ``--offline``,
``--full-download``, ``--tensor``, ``--tokenizer``), ``--format``, ``--csv-raw`` and
``--quiet``, declared once.

A command asks for them with ``@command(...)`` and two parameters, ``source: Source`` and
``output: Output``; the decorator puts the options in their place in its signature (last,
before ``--format``, ``--csv-raw`` and ``--quiet``) and hands the command one ``Source``
and one ``Output``, and runs it with progress bars on stderr (``cli.progress``) unless
``--quiet`` or stderr is no terminal.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from embinspect.cli.options import (
    CacheDirOpt,
    FormatOpt,
    FullDownloadOpt,
    OfflineOpt,
    RevisionOpt,
    TensorOpt,
    TokenizerOpt,
    TokenizerRevisionOpt,
)
from embinspect.cli.progress import bars, shows_bars
from embinspect.cli.render import Output, OutputFormat, resolve_format
from embinspect.errors import UsageError

if TYPE_CHECKING:
    from embinspect.model.checkpoint import Checkpoint
    from embinspect.model.tokenizer import Vocabulary
    from embinspect.sources.hub_options import HubOptions
    from embinspect.tables.search import Searcher
    from embinspect.tables.table import EmbeddingTable


@dataclass(frozen=True)
class Source:
    """Where MODEL's bytes come from and how it is read, as the source options say."""

    revision: str | None = None
    cache_dir: str | None = None
    offline: bool = False
    full_download: bool = False
    tensor: str | None = None
    tokenizer: str | None = None
    tokenizer_revision: str | None = None
    progress: bool = False  # download bars on stderr (a terminal, and no --quiet)

    def hub(self) -> HubOptions:
        from embinspect.sources.hub_options import HubOptions

        if self.offline:
            # As HF_HUB_OFFLINE=1 for everything after, transformers (--tokenizer REPO_ID)
            # included.
            os.environ["HF_HUB_OFFLINE"] = "1"
        return HubOptions(self.cache_dir, self.offline, self.full_download, progress=self.progress)

    def open(
        self, model: str, *, revision: str | None = None, all_headers: bool = False
    ) -> Checkpoint:
        """The checkpoint (``revision`` overrides ``--revision``: ``diff`` has one for each
        side)."""
        from embinspect.model.checkpoint import open_checkpoint

        return open_checkpoint(
            model,
            revision or self.revision,
            self.tensor,
            hub=self.hub(),
            all_headers=all_headers,
        )

    def vocabulary(self, checkpoint: Checkpoint) -> Vocabulary:
        """The tokenizer (``--tokenizer``, else the checkpoint's); UsageError without one."""
        from embinspect.model.tokenizer import load_vocabulary

        return load_vocabulary(
            checkpoint.files,
            self.tokenizer,
            revision=self.tokenizer_revision,
            cache_dir=self.cache_dir,
        )

    def vocabulary_or_none(self, checkpoint: Checkpoint) -> Vocabulary | None:
        """The tokenizer, or None when the checkpoint has no tokenizer files: rows are then
        named and queried by id (#1234)."""
        try:
            return self.vocabulary(checkpoint)
        except UsageError:
            if self.tokenizer_revision is not None:
                raise  # --tokenizer-revision given for a tokenizer that takes none
            return None

    def searcher(self, model: str, **options: Any) -> Searcher:
        """A searcher over MODEL's table (``options``: ``Searcher``'s keywords)."""
        from embinspect.tables.search import Searcher

        checkpoint = self.open(model)
        return Searcher(checkpoint, self.vocabulary_or_none(checkpoint), **options)

    def table(self, model: str, table: str) -> tuple[Checkpoint, EmbeddingTable, Vocabulary | None]:
        """(checkpoint, the table ``--table`` names, vocabulary or None), for the commands
        that look at a whole table."""
        from embinspect.tables.table import EmbeddingTable

        checkpoint = self.open(model)
        header = checkpoint.table_header(table)
        vocabulary, _ = checkpoint.labelled(header, self.vocabulary_or_none(checkpoint))
        return checkpoint, EmbeddingTable(checkpoint.files, header), vocabulary


CsvRawOpt = Annotated[
    bool,
    typer.Option(
        "--csv-raw",
        help="With --format csv: no ' before a text cell that starts like a spreadsheet "
        "formula (=, +, -, @).",
    ),
]

QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No progress bars on stderr (drawn only when stderr is a terminal).",
    ),
]


# name -> (annotation, default), in the order --help lists them.
_SOURCE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "revision": (RevisionOpt, None),
    "cache_dir": (CacheDirOpt, None),
    "offline": (OfflineOpt, False),
    "full_download": (FullDownloadOpt, False),
    "tensor": (TensorOpt, None),
    "tokenizer": (TokenizerOpt, None),
    "tokenizer_revision": (TokenizerRevisionOpt, None),
}


def command(
    *, revision: bool = True, tensor: bool = True, tokenizer: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the source options (those it takes: ``diff`` has a revision per
    side and no --tensor or --tokenizer), ``--format`` and ``--csv-raw``, as ``source``
    and ``output``, and ``--quiet``."""
    skip = {
        name
        for name, wanted in (("revision", revision), ("tensor", tensor), ("tokenizer", tokenizer))
        if not wanted
    }
    if not tokenizer:
        skip.add("tokenizer_revision")
    names = [name for name in _SOURCE_OPTIONS if name not in skip]

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name not in ("source", "output")]
        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        added = [
            inspect.Parameter(name, keyword, default=default, annotation=annotation)
            for name, (annotation, default) in _SOURCE_OPTIONS.items()
            if name in names
        ]
        added.append(inspect.Parameter("fmt", keyword, default=None, annotation=FormatOpt))
        added.append(inspect.Parameter("csv_raw", keyword, default=False, annotation=CsvRawOpt))
        added.append(inspect.Parameter("quiet", keyword, default=False, annotation=QuietOpt))

        @functools.wraps(func)
        def run(**arguments: Any) -> None:
            quiet = arguments.pop("quiet")
            given = {name: arguments.pop(name) for name in names}
            source = Source(**given, progress=shows_bars(quiet))
            output = Output(resolve_format(arguments.pop("fmt")), arguments.pop("csv_raw"))
            if output.csv_raw and output.format is not OutputFormat.csv:
                raise UsageError("--csv-raw goes with --format csv")
            if source.tokenizer_revision is not None and source.tokenizer is None:
                raise UsageError("--tokenizer-revision goes with --tokenizer REPO_ID")
            with bars(quiet):
                func(source=source, output=output, **arguments)

        parameters = own + added
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate
