"""``embinspect positions``: its arguments, and how its result is printed."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from embinspect.cli.options import (
    ModelArg,
)
from embinspect.cli.render import (
    Output,
    View,
    console,
    styled,
)
from embinspect.cli.source import Source, command

if TYPE_CHECKING:
    from embinspect.analyses.positions import PositionReport


@command(tokenizer=False)
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
    *,
    source: Source,
    output: Output,
) -> None:
    """How the model encodes position: a learned table's norms and the cosine between
    positions at several offsets; or, for rotary models (RoPE), each rotated pair's
    frequency and wavelength and a check that scores depend only on the offset."""
    from embinspect.analyses.positions import check_plot_path, inspect_positions, parse_offsets

    wanted = parse_offsets(offsets)
    picture = check_plot_path(plot)  # refused before anything is downloaded or read
    checkpoint = source.open(model)
    result = inspect_positions(
        checkpoint,
        offsets=wanted,
        max_positions=max_positions,
        center=center,
        seed=seed,
        plot=picture,
    )
    output.emit(result, VIEW)


_LEARNED_COLUMNS = ["offset", "pairs", "mean_cosine", "min_cosine", "max_cosine"]
_ROTARY_COLUMNS = [
    "pair", "dim_a", "dim_b", "inv_freq", "wavelength", "turns", "unscaled_inv_freq",
]  # fmt: skip


def position_report_rows(result: PositionReport) -> tuple[list[str], list[list[Any]]]:
    """Learned: one line per offset; rotary: one line per rotated pair (JSON has the rest)."""
    if result.learned is not None:
        rows = [[o.offset, o.pairs, o.mean, o.min, o.max] for o in result.learned.offsets]
        return _LEARNED_COLUMNS, rows
    pairs = result.rotary.pairs
    return _ROTARY_COLUMNS, [
        [p.pair, *p.dims, p.inv_freq, p.wavelength, p.turns, p.unscaled_inv_freq] for p in pairs
    ]


def position_report_records(result: PositionReport) -> list[dict[str, Any]]:
    header, rows = position_report_rows(result)
    return [dict(zip(header, row, strict=True)) for row in rows]


def position_report_notes(result: PositionReport) -> list[str]:
    return [_positions_summary(result)]


def _norm_line(learned: Any) -> str:
    n = learned.norms
    return (
        f"min {n.min:.4f} (position {n.min_position}), p5 {n.p5:.4f}, median {n.median:.4f}, "
        f"p95 {n.p95:.4f}, max {n.max:.4f} (position {n.max_position}), mean {n.mean:.4f}"
    )


def _check_line(check: Any) -> str:
    return (
        f"max |score(m, n) - score(m+s, n+s)| = {check.max_abs_diff:.1e} in float64, "
        f"{check.max_abs_diff_float32:.1e} in float32 ({check.vectors} random unit q, k × "
        f"{check.offsets} offsets × {check.pairs_per_offset} position pairs, positions "
        f"0..{check.context - 1:,}, seed {check.seed})"
    )


def _slow_line(rotary: Any) -> str:
    if rotary.max_positions is None:
        return "no max context in config.json: turns not counted"
    slow = [p.pair for p in rotary.pairs if p.turns is not None and p.turns < 1]
    which = ""
    if slow:
        which = f" (pairs {slow[0]}..{slow[-1]})" if len(slow) > 1 else f" (pair {slow[0]})"
    return (
        f"{rotary.max_positions:,} positions; {len(slow)} of {len(rotary.pairs)} pairs turn "
        f"less than once over it{which}"
    )


def _positions_summary(result: PositionReport) -> str:
    learned, rotary = result.learned, result.rotary
    if learned is not None:
        top = sum(learned.components[:3])
        return (
            f"{learned.tensor}: {learned.positions:,} positions × {learned.dim}; norm "
            f"{_norm_line(learned)}; top 3 principal directions hold {top:.1%} of the variance"
        )
    return (
        f"rotary: theta {rotary.theta:g}, {rotary.rotary_dims} of {rotary.head_dim} head dims; "
        f"{_slow_line(rotary)}; {_check_line(rotary.check)}"
    )


def position_report_table(result: PositionReport) -> None:
    from rich.table import Table

    screen = console()
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    learned, rotary = result.learned, result.rotary
    if learned is not None:
        screen.print(
            f"Learned positions of {result.model}: {learned.tensor} "
            f"({learned.rows:,} × {learned.dim}, {learned.dtype})"
        )
        first = learned.first_position_id
        summary.add_row(
            "positions",
            f"{learned.positions:,}, rows {first}..{first + learned.positions - 1:,}",
        )
        summary.add_row("norm", _norm_line(learned))
        shares = " ".join(f"{share:.1%}" for share in learned.components)
        summary.add_row("variance", f"top principal directions (centred): {shares}")
        if learned.left_out:
            summary.add_row("left out", f"{learned.left_out} rows (NaN, infinite or zero)")
        screen.print(summary)
        centred = ", centred" if learned.centered else ""
        screen.print(f"cosine between positions i and i + offset{centred}")
        table = Table()
        for column in ("offset", "pairs", "mean", "min", "max"):
            table.add_column(column, justify="right")
        for o in learned.offsets:
            cells = [_signed(v) for v in (o.mean, o.min, o.max)]
            table.add_row(f"{o.offset:,}", f"{o.pairs:,}", *cells)
        screen.print(table)
    else:
        screen.print(f"Rotary positions (RoPE) of {result.model}")
        theta = f"{rotary.theta:g}" + (" (default)" if rotary.theta_is_default else "")
        summary.add_row("theta", theta)
        summary.add_row(
            "rotated",
            f"{rotary.rotary_dims} of {rotary.head_dim} head dims (partial_rotary_factor "
            f"{rotary.partial_rotary_factor:g}): {len(rotary.pairs)} pairs, "
            f"inv_freq = theta^(-2i/{rotary.rotary_dims})",
        )
        summary.add_row("context", _slow_line(rotary))
        if rotary.scaling:
            how = "applied by transformers" if rotary.scaling_applied else "not applied"
            scaling = f"{json.dumps(rotary.scaling)} ({how})"
            if rotary.attention_factor != 1:
                scaling += f"; attention factor {rotary.attention_factor:.4f}"
            summary.add_row("scaling", scaling)
        else:
            summary.add_row("scaling", "none")
        summary.add_row("layout", rotary.check.layout)
        summary.add_row("check", _check_line(rotary.check))
        screen.print(summary)
        # Titles above the tables: a title would wrap at a narrow table's width.
        screen.print("rotated dimension pairs: angle = position × inv_freq")
        pairs = Table()
        columns = ["pair", "dims", "inv_freq", "wavelength", "turns"]
        if rotary.scaling_applied:
            columns.append("unscaled wavelength")
        for column in columns:
            pairs.add_column(column, justify="right")
        for p in rotary.pairs:
            slow = p.turns is not None and p.turns < 1
            turns = _turns(p.turns)
            cells = [
                str(p.pair),
                f"{p.dims[0]}, {p.dims[1]}",
                f"{p.inv_freq:.6g}",
                f"{p.wavelength:,.1f}",
                styled(turns, "yellow") if slow else turns,  # never a full turn
            ]
            if rotary.scaling_applied:
                cells.append(f"{2 * math.pi / p.unscaled_inv_freq:,.1f}")
            pairs.add_row(*cells)
        screen.print(pairs)
        screen.print("expected cosine of a random direction with itself, offset positions later")
        offsets = Table()
        offsets.add_column("offset", justify="right")
        offsets.add_column("cosine", justify="right")
        for o in rotary.offsets:
            offsets.add_row(f"{o.offset:,}", _signed(o.expected_cosine))
        screen.print(offsets)
    if result.plot:
        screen.print(f"picture: {result.plot}")


def _turns(turns: float | None) -> str:
    if turns is None:
        return "–"
    return f"{turns:,.0f}" if turns >= 100 else f"{turns:.2f}" if turns >= 1 else f"{turns:.3g}"


def _signed(value: float | None) -> str:
    return f"{value:+.4f}" if value is not None else "–"


VIEW = View(
    rows=position_report_rows,
    records=position_report_records,
    notes=position_report_notes,
    table=position_report_table,
)
