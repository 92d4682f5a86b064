"""The ``embinspect`` command line: parse, call the library, hand the result to ``output``.

Heavy modules (torch, transformers, tokenizers) are imported inside the library
functions that need them, so ``--help`` and ``info`` start fast.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Annotated, Optional

import typer

from embinspect import __version__
from embinspect.cli.options import (
    AnalogyMethod,
    BatchSizeOpt,
    CacheDirOpt,
    CaseOpt,
    CenterOpt,
    DeviceOpt,
    FilterOpt,
    FormatOpt,
    FullDownloadOpt,
    MethodOpt,
    Metric,
    MetricOpt,
    ModelArg,
    NoSpaceOpt,
    OfflineOpt,
    Pool,
    PoolOpt,
    QueriesArg,
    RestrictOpt,
    RevisionOpt,
    Table,
    TableOpt,
    TensorOpt,
    TokenizerOpt,
    TopKOpt,
    WordFilter,
)
from embinspect.cli.render import (
    emit,
    emit_stream,
    progress_bar,
    redact_secrets,
    report_error,
    report_note,
    resolve_format,
)
from embinspect.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_QUERY,
    EXIT_USAGE,
    EmbinspectError,
    UsageError,
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


@app.command()
def info(
    model: ModelArg,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Embedding tensors (role, name, shape, dtype, shard, bytes), vocabulary against rows,
    tying and the position scheme, from headers and JSON only: no tensor data is read. For a
    Hub repo, also the bytes each command would download."""
    from embinspect.analyses.info import inspect_checkpoint
    from embinspect.model.checkpoint import open_checkpoint

    hub = _hub_options(cache_dir, offline, full_download)
    checkpoint = open_checkpoint(model, revision, tensor, hub=hub, all_headers=True)
    result = inspect_checkpoint(checkpoint)
    for warning in checkpoint.warnings + result.warnings:
        report_note(warning)
    emit(result, resolve_format(fmt))


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
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Tokenize TEXT and show each token: id, stored form, text, row norm, first components."""
    from embinspect.analyses.tokens import lookup_tokens
    from embinspect.model.tokenizer import load_vocabulary

    checkpoint = _open(model, revision, _hub_options(cache_dir, offline, full_download), tensor)
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


def _hub_options(cache_dir: str | None, offline: bool, full_download: bool):
    from embinspect.sources.hub_options import HubOptions

    if offline:
        # As HF_HUB_OFFLINE=1 for everything after, transformers (--tokenizer REPO_ID) included.
        os.environ["HF_HUB_OFFLINE"] = "1"
    return HubOptions(cache_dir, offline, full_download, progress=sys.stderr.isatty())


def _open(model: str, revision: str | None, hub, tensor: str | None = None):
    """The checkpoint, its warnings reported on stderr."""
    from embinspect.model.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(model, revision, tensor, hub=hub)
    for warning in checkpoint.warnings:
        report_note(warning)
    return checkpoint


def _vocabulary_or_none(checkpoint, tokenizer: str | None = None):
    """The tokenizer, or None when the checkpoint has no tokenizer files: rows are then
    named and queried by id (#1234)."""
    from embinspect.model.tokenizer import load_vocabulary

    try:
        return load_vocabulary(checkpoint.files, tokenizer)
    except UsageError:
        return None


def _searcher(
    model: str,
    revision: str | None,
    hub,
    tensor: str | None,
    tokenizer: str | None,
    **options,
):
    from embinspect.tables.search import Searcher

    checkpoint = _open(model, revision, hub, tensor)
    searcher = Searcher(checkpoint, _vocabulary_or_none(checkpoint, tokenizer), **options)
    if searcher.note:
        report_note(searcher.note)
    return searcher


def _stdin_lines():
    """Non-blank stdin lines, stripped, read lazily.

    Read as bytes and decoded with surrogateescape, as Python decodes argv: a line that is
    not UTF-8 reaches the query parser, which refuses that line alone (the others are
    still answered) instead of the whole stream stopping at a decoding error. Stripped:
    a trailing space would otherwise become a token and be pooled into the query.
    """
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", "surrogateescape").strip()
        if line:
            yield line


def _queries(arguments: list[str]):
    """The queries in order; ``-`` stands for stdin, one query a line."""
    for argument in arguments:
        if argument == "-":
            yield from _stdin_lines()
        else:
            yield argument


def _questions(arguments: list[str]):
    """Analogy questions A B C: from the arguments, or three per stdin line (tab-separated,
    or space-separated when there is no tab). A line of another length becomes an error
    result of its own; the other lines are still answered."""
    if arguments == ["-"]:
        for line in _stdin_lines():
            yield [part.strip() for part in line.split("\t")] if "\t" in line else line.split()
    elif len(arguments) == 3:
        yield list(arguments)
    else:
        raise UsageError("analogy takes three queries A B C (king man woman), or - for stdin")


@app.command()
def neighbors(
    model: ModelArg,
    queries: QueriesArg,
    k: TopKOpt = 10,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    word_filter: FilterOpt = WordFilter.none,
    center: CenterOpt = False,
    keep_query: Annotated[
        bool, typer.Option("--keep-query", help="Keep the query's own tokens in the results.")
    ] = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """The k nearest rows to each QUERY (cosine by default), exact, the query's tokens left out."""
    searcher = _searcher(
        model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
        table=table.value, device=device, center=center, word_filter=word_filter.value,
        keep_query=keep_query, leading_space=not no_space, pool=pool.value, batch_size=batch_size,
    )  # fmt: skip
    k = _fit_k(searcher, k)
    from embinspect.analyses.neighbors import neighbors as nearest

    results = nearest(searcher, _queries(queries), k, metric.value)
    failed = emit_stream(results, resolve_format(fmt))
    _report_left_out(searcher)
    if failed:
        raise typer.Exit(EXIT_QUERY)


@app.command()
def compare(
    model: ModelArg,
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="QUERY...",
            help="Two or more queries (text, #id, =entry, or -).",
            show_default=False,
        ),
    ] = None,
    pairs: Annotated[
        Optional[str],
        typer.Option(
            "--pairs",
            metavar="FILE",
            help="Score a word-pair suite (w1 TAB w2 TAB score): Pearson and Spearman of the "
            "cosines against the human scores, as gensim's evaluate_word_pairs; wordsim353 "
            "and simlex999 name gensim's copies.",
            show_default=False,
        ),
    ] = None,
    restrict: RestrictOpt = None,
    case_insensitive: CaseOpt = None,
    metric: MetricOpt = Metric.cosine,
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Pairwise cosine similarity (or dot, or L2 distance) of two or more queries, or a
    word-pair suite scored against human judgement (--pairs)."""
    if pairs is not None:
        if queries:
            raise UsageError("give queries or --pairs FILE, not both")
        if metric is not Metric.cosine:
            raise UsageError("--pairs scores cosines, as gensim does; drop --metric")
        _evaluate_pairs(
            model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
            pairs, restrict, case_insensitive,
            table=table.value, center=center, leading_space=not no_space, fmt=fmt,
        )  # fmt: skip
        return
    if restrict is not None or case_insensitive is not None:
        raise UsageError("--restrict and --case-insensitive go with --pairs FILE")
    items = list(_queries(queries or []))
    if len(items) < 2:
        raise UsageError("compare needs at least two queries")
    searcher = _searcher(
        model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
        table=table.value, device="cpu", center=center, leading_space=not no_space,
        pool=pool.value,
    )  # fmt: skip
    from embinspect.analyses.compare import compare as pairwise_scores

    result = pairwise_scores(searcher, items, metric.value)
    for failure in result.errors:
        report_error(failure["error"])
    emit(result, resolve_format(fmt))
    if result.errors:
        raise typer.Exit(EXIT_QUERY)


@app.command()
def analogy(
    model: ModelArg,
    queries: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="A B C",
            help="A B C for A - B + C (king man woman ≈ queen), or - for three per stdin line.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Optional[str],
        typer.Option(
            "--file",
            metavar="FILE",
            help="Score an analogy suite in the Google format (': section', then 'a b c d' "
            "for b - a + c ≈ d): accuracy per section and in total, with coverage, as "
            "gensim's evaluate_word_analogies; google names gensim's questions-words.txt.",
            show_default=False,
        ),
    ] = None,
    restrict: RestrictOpt = None,
    case_insensitive: CaseOpt = None,
    k: TopKOpt = 5,
    method: MethodOpt = AnalogyMethod.add,
    table: TableOpt = Table.input,
    word_filter: FilterOpt = WordFilter.none,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """A - B + C: the rows nearest to it, with A, B and C left out of the results; or a
    whole analogy suite (--file)."""
    if file is not None:
        if queries:
            raise UsageError("give A B C or --file FILE, not both")
        _evaluate_analogies(
            model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
            file, restrict, case_insensitive,
            method=method.value, table=table.value, center=center, leading_space=not no_space,
            device=device, batch_size=batch_size, fmt=fmt,
        )  # fmt: skip
        return
    if case_insensitive is not None:
        raise UsageError("--case-insensitive goes with --file FILE")
    questions = _questions(queries or [])
    searcher = _searcher(
        model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
        table=table.value, device=device, center=center, word_filter=word_filter.value,
        leading_space=not no_space, pool=pool.value, batch_size=batch_size, restrict=restrict,
    )  # fmt: skip
    k = _fit_k(searcher, k)
    from embinspect.analyses.analogy import analogies

    failed = emit_stream(analogies(searcher, questions, k, method.value), resolve_format(fmt))
    _report_left_out(searcher)
    if failed:
        raise typer.Exit(EXIT_QUERY)


@app.command()
def positions(
    model: ModelArg,
    offsets: Annotated[
        Optional[str],
        typer.Option(
            "--offsets",
            metavar="D,D,...",
            help="Offsets between positions to compare (default 1,2,4,... up to the last).",
            show_default=False,
        ),
    ] = None,
    max_positions: Annotated[
        Optional[int],
        typer.Option(
            "--max-positions",
            min=2,
            metavar="N",
            help="Learned: measure and plot the first N positions only. Rotary: the "
            "context the turns and the check span (default max_position_embeddings).",
            show_default=False,
        ),
    ] = None,
    center: Annotated[
        bool,
        typer.Option(
            "--center", help="Subtract the mean position vector before the cosines (learned)."
        ),
    ] = False,
    plot: Annotated[
        Optional[str],
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Draw a picture (.png, .svg, .pdf): the cosine matrix of learned position "
            "vectors, or each rotary pair's wavelength. Needs matplotlib.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the random vectors of the rotary check.")
    ] = 0,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """How the model encodes position: a learned table's norms and the cosine between
    positions at several offsets; or, for rotary models (RoPE), each rotated pair's
    frequency and wavelength and a check that scores depend only on the offset."""
    from embinspect.analyses.positions import check_plot_path, inspect_positions, parse_offsets

    wanted = parse_offsets(offsets)
    picture = check_plot_path(plot)  # refused before anything is downloaded or read
    checkpoint = _open(model, revision, _hub_options(cache_dir, offline, full_download), tensor)
    result = inspect_positions(
        checkpoint,
        offsets=wanted,
        max_positions=max_positions,
        center=center,
        seed=seed,
        plot=picture,
    )
    for note in result.notes:
        report_note(note)
    emit(result, resolve_format(fmt))


def _evaluate_analogies(
    model, revision, hub, tensor, tokenizer, file, restrict, case_insensitive, *, fmt, **options
) -> None:
    from embinspect.analyses.suites import (
        GENSIM_RESTRICT,
        evaluate_analogies,
        find_suite,
        read_analogies,
        word_index,
    )

    path, found = find_suite(file, "analogies")
    if found:
        report_note(found)
    suite = read_analogies(path)
    method = options.pop("method")
    restrict = restrict or GENSIM_RESTRICT
    searcher = _searcher(model, revision, hub, tensor, tokenizer, restrict=restrict, **options)
    index = word_index(searcher, restrict, case_insensitive, options["leading_space"])
    with progress_bar("analogies") as progress:
        result = evaluate_analogies(searcher, index, suite, method=method, progress=progress)
    for failure in result.failures:
        report_error(f"{failure['question']}: {failure['error']}")
    emit(result, resolve_format(fmt))
    _report_left_out(searcher)


def _evaluate_pairs(
    model, revision, hub, tensor, tokenizer, pairs, restrict, case_insensitive, *, fmt, **options
) -> None:
    from embinspect.analyses.suites import (
        GENSIM_RESTRICT,
        evaluate_pairs,
        find_suite,
        read_pairs,
        word_index,
    )

    path, found = find_suite(pairs, "pairs")
    if found:
        report_note(found)
    suite = read_pairs(path)
    searcher = _searcher(model, revision, hub, tensor, tokenizer, device="cpu", **options)
    restrict = restrict or GENSIM_RESTRICT
    index = word_index(searcher, restrict, case_insensitive, options["leading_space"])
    emit(evaluate_pairs(searcher, index, suite), resolve_format(fmt))


@app.command()
def diff(
    model_a: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_A",
            help="The base checkpoint (any MODEL: folder, .safetensors, .gguf, Hub repo id...).",
            show_default=False,
        ),
    ],
    model_b: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_B",
            help="The checkpoint to compare with it (a fine-tune, a quantized copy).",
            show_default=False,
        ),
    ],
    k: TopKOpt = 20,
    table: TableOpt = Table.input,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="Pair rows by token string, for tokenizers that number tokens differently.",
        ),
    ] = False,
    center: CenterOpt = False,
    revision_a: Annotated[
        Optional[str],
        typer.Option("--revision-a", help="Branch, tag or commit of MODEL_A.", show_default=False),
    ] = None,
    revision_b: Annotated[
        Optional[str],
        typer.Option("--revision-b", help="Branch, tag or commit of MODEL_B.", show_default=False),
    ] = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Row by row, how far MODEL_B's embedding table moved from MODEL_A's: per-token cosine
    and L2 change, the k tokens that moved most, rows added or removed, the overall drift.
    Rows are paired by token id, and the vocabularies must agree (else --align)."""
    from embinspect.analyses.diff import diff_tables

    hub = _hub_options(cache_dir, offline, full_download)
    # Without a tokenizer, rows are paired by id, unchecked.
    a, b = (_open(m, r, hub) for m, r in ((model_a, revision_a), (model_b, revision_b)))
    vocab_a, vocab_b = _vocabulary_or_none(a), _vocabulary_or_none(b)
    result = diff_tables(a, b, vocab_a, vocab_b, table=table.value, align=align, center=center, k=k)
    for note in result.notes:
        report_note(note)
    emit(result, resolve_format(fmt))


def _fit_k(searcher, k: int) -> int:
    k, note = searcher.limit_k(k)
    if note:
        report_note(note)
    return k


def _report_left_out(searcher) -> None:
    note = searcher.left_out_note()
    if note:
        report_note(note)


def _table_and_vocabulary(model, revision, hub, tensor, tokenizer, table: str):
    """(checkpoint, EmbeddingTable of --table, vocabulary or None) for the commands that
    look at a whole table."""
    from embinspect.tables.table import EmbeddingTable

    checkpoint = _open(model, revision, hub, tensor)
    header, note = checkpoint.table_header(table)
    if note:
        report_note(note)
    vocabulary = _vocabulary_or_none(checkpoint, tokenizer)
    return checkpoint, EmbeddingTable(checkpoint.files, header), vocabulary


@app.command()
def stats(
    model: ModelArg,
    table: TableOpt = Table.input,
    pairs: Annotated[
        int,
        typer.Option("--pairs", min=1, help="Random pairs of rows whose mean cosine is reported."),
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random pairs.")] = 0,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """The whole table's health: row norms (quantiles, histogram, extremes), anisotropy
    (mean cosine of random pairs, cosine to the mean row), all-zero, non-finite and
    duplicate rows, and padding rows past the tokenizer's vocabulary."""
    from embinspect.analyses.stats import table_stats

    hub = _hub_options(cache_dir, offline, full_download)
    checkpoint, rows, vocabulary = _table_and_vocabulary(
        model, revision, hub, tensor, tokenizer, table.value
    )
    result = table_stats(checkpoint.files.model, rows, vocabulary, pairs=pairs, seed=seed)
    emit(result, resolve_format(fmt))


@app.command()
def undertrained(
    model: ModelArg,
    k: TopKOpt = 50,
    reference: Annotated[
        Optional[list[str]],
        typer.Option(
            "--reference",
            metavar="TOKEN",
            help="A token known to be unused (as the vocabulary spells it, or #ID); repeat it. "
            "Default: the vocabulary's [unusedN], <|reserved_special_token_N|> or <unusedN>.",
            show_default=False,
        ),
    ] = None,
    keep_reference: Annotated[
        bool, typer.Option("--keep-reference", help="List the reference tokens too.")
    ] = False,
    table: TableOpt = Table.input,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Tokens likely never or barely trained, ranked by the indicator of Land & Bartolo 2024
    ("Fishing for Magikarp"): cosine to the mean row of tokens known to be unused, first
    principal component removed; with each row's norm and whether its text encodes back to
    it (unreachable tokens)."""
    from embinspect.analyses.undertrained import find_reference, rank_undertrained

    hub = _hub_options(cache_dir, offline, full_download)
    checkpoint, rows, vocabulary = _table_and_vocabulary(
        model, revision, hub, tensor, tokenizer, table.value
    )
    ids, source = find_reference(vocabulary, rows.rows, reference)
    result = rank_undertrained(
        checkpoint.files.model, rows, vocabulary, ids, source, top=k, keep_reference=keep_reference
    )
    emit(result, resolve_format(fmt))


@app.command()
def plot(
    model: ModelArg,
    queries: QueriesArg,
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the picture (.png or .svg; needs matplotlib: pip install "
            "'embinspect[plot]'). The coordinates are printed either way.",
            show_default=False,
        ),
    ] = None,
    neighbors_k: Annotated[
        int,
        typer.Option("--neighbors", min=0, help="Also draw each query's K nearest rows."),
    ] = 0,
    table: TableOpt = Table.input,
    center: CenterOpt = False,
    no_space: NoSpaceOpt = False,
    pool: PoolOpt = Pool.mean,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = False,
    full_download: FullDownloadOpt = False,
    tensor: TensorOpt = None,
    tokenizer: TokenizerOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """A 2-D projection (PCA of the points drawn) of the named tokens, with each one's
    --neighbors K, as coordinates (table, TSV, JSON) and, with --out, a labelled picture."""
    from embinspect.analyses.plot import check_picture_path, draw, import_matplotlib, project

    picture = check_picture_path(out) if out is not None else None
    if picture is not None:
        import_matplotlib()  # refuse before reading the table, not after
    searcher = _searcher(
        model, revision, _hub_options(cache_dir, offline, full_download), tensor, tokenizer,
        table=table.value, device="cpu", center=center, leading_space=not no_space,
        pool=pool.value,
    )  # fmt: skip
    result = project(searcher, model, list(_queries(queries)), neighbors_k)
    for failure in result.errors:
        report_error(failure["error"])
    if picture is not None:
        draw(result, picture)
        result = replace(result, picture=str(picture))
        report_note(f"note: wrote {picture}")
    emit(result, resolve_format(fmt))
    if result.errors:
        raise typer.Exit(EXIT_QUERY)


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
        report_error(err.message)
        sys.exit(err.exit_code)
    except Exception as err:
        if debug:
            raise
        message = redact_secrets(" ".join(f"{type(err).__name__}: {err}".split()))
        print(
            f"embinspect: internal error: {message} (EMBINSPECT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
