"""``embinspect plot``: named tokens (and their neighbors) projected to two dimensions.

The projection is PCA fitted on the points drawn: centred on their mean, the two
directions of largest variance (from an SVD, in float64), each signed so that its
largest coefficient is positive, so a run always draws the same picture. The
coordinates are the result; the picture (matplotlib, an optional extra) is drawn from
them, so the PNG, the TSV and the JSON never disagree.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embinspect.analyses.neighbors import neighbors as nearest
from embinspect.errors import Option, QueryError, UsageError
from embinspect.model.tokenizer import PLAIN, readable_token
from embinspect.result import Displayable
from embinspect.sources.files import output_path
from embinspect.tables.queries import printable
from embinspect.text import terminal_line

if TYPE_CHECKING:
    from embinspect.tables.search import Searcher

PICTURE_SUFFIXES = (".png", ".svg")
PLOT_SUFFIXES = (".png", ".svg", ".html")  # what ``plot --out`` writes
FIGURE_INCHES = (10.0, 7.5)
FIGURE_DPI = 100  # a PNG of 1000 × 750 pixels
NEAR = 5  # nearest drawn points kept for each point (the HTML view shows them on hover)
# Each query's colour, then (past ten queries) its marker: 80 distinct styles. The same
# styles in the PNG, the SVG and the HTML view; matplotlib's tab10 colours.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def group_style(group: int) -> tuple[str, str]:
    """(colour, matplotlib marker) of the ``group``-th query: styles repeat only past
    ``len(COLOURS) * len(MARKERS)`` queries (and the legend says so)."""
    return COLOURS[group % len(COLOURS)], MARKERS[(group // len(COLOURS)) % len(MARKERS)]


@dataclass(frozen=True)
class Point:
    label: str  # the query, or the neighbor's token as stored (Ġthe)
    kind: str  # "query" or "neighbor"
    of: str | None  # for a neighbor: the query it is near
    token_ids: list[int]
    tokens: list[str]
    x: float
    y: float
    readable: str = ""  # how the picture shows it: ␣the, <0x0A> (model/tokenizer.readable_token)
    # The NEAR nearest other points drawn, by cosine of their full rows (float64), nearest
    # first: [index into points, cosine]. Among the points drawn, not the whole table.
    near: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Projection(Displayable):
    model: str
    tensor: str
    method: str
    explained: list[float]  # share of the points' variance along each axis
    points: list[Point]
    errors: list[dict[str, str]]
    picture: str | None = None  # the file written, if any
    match: str | None = None  # the regular expression neighbors had to match (--match)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.errors:
            del data["errors"]
        if self.match is None:
            del data["match"]
        for point in data["points"]:
            point["near"] = [list(pair) for pair in point["near"]]
        return data

    def to_html(self) -> str:
        """The interactive view (``plot --out view.html``) as one self-contained HTML page:
        no request at view time, safe for any token (see ``analyses/plot_html.py``)."""
        from embinspect.analyses.plot_html import render_html

        return render_html(view_data(self))

    def save(self, path: str | Path) -> Path:
        """Write the view to ``path``, by its suffix: ``.html`` (the interactive page),
        ``.png`` or ``.svg`` (needs matplotlib); the path written."""
        out = picture_path(str(path), "out", PLOT_SUFFIXES)
        draw(self, out)
        return out


def _short(value: float) -> float | None:
    """A coordinate or score with 6 significant digits: the page draws pixels, and 5,000
    points stay well under a megabyte. None (not drawn) for NaN or infinity (a row that
    holds them), which JSON cannot carry."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def view_data(projection: Projection) -> dict[str, Any]:
    """What the page draws: titles, the queries' styles, and per point its readable form
    (``s``), stored tokens (``t``), ids (``i``), whether it is a query (``q``), its group
    (``g``), coordinates and its nearest drawn points (``n``: [index, cosine])."""
    groups = query_groups(projection)
    styles = []
    for label, group in groups.items():
        colour, marker = group_style(group)
        shown = next(p.readable for p in projection.points if p.label == label)
        styles.append({"s": shown, "colour": colour, "shape": MARKERS.index(marker)})
    points = [
        {
            "s": p.readable,
            "t": p.tokens,
            "i": p.token_ids,
            "q": 1 if p.kind == "query" else 0,
            "g": groups.get(p.label if p.kind == "query" else p.of or "", -1),
            "x": _short(p.x),
            "y": _short(p.y),
            "n": [[j, _short(score)] for j, score in p.near],
        }
        for p in projection.points
    ]
    first, second = projection.explained
    name = Path(projection.model).name or projection.model
    about = (
        f"Hover a point: its token, id, and its {NEAR} nearest points among the "
        f"{len(points):,} drawn (cosine of their full rows, in float64; not a search of the "
        "whole table, which `embinspect neighbors` does). Wheel: zoom; drag: pan; the box "
        "finds a token as shown (␣the), as stored (Ġthe) or by #id."
    )
    if projection.match is not None:
        about += f" Neighbors shown: only tokens matching /{projection.match}/."
    if len(groups) > len(COLOURS) * len(MARKERS):
        about += f" Query styles repeat past {len(COLOURS) * len(MARKERS)} queries."
    return {
        "title": f"{projection.tensor} of {name}",
        "subtitle": f"PCA of {len(points):,} points: PC 1 {first:.1%}, PC 2 {second:.1%} "
        "of their variance",
        "about": about,
        "groups": styles,
        "points": points,
    }


def compile_match(pattern: str | None, neighbors: int = 1) -> re.Pattern[str] | None:
    """``--match``'s regular expression, or a UsageError saying why it is not one (or
    that it picks neighbors, and ``neighbors`` is 0)."""
    if pattern is None:
        return None
    if neighbors == 0:
        raise UsageError(
            Option("match"), " picks neighbors: give ", Option("neighbors", metavar="K"), " too"
        )
    try:
        return re.compile(pattern)
    except re.error as err:
        raise UsageError(
            Option("match", terminal_line(pattern)), f": not a regular expression ({err})"
        ) from None


def readable_label(searcher: Searcher, token_id: int, token: str | None) -> str:
    """A row's token as the picture shows it (``#id`` for a row without one)."""
    vocabulary = searcher.vocabulary
    if token is None or vocabulary is None:
        return f"#{token_id}"
    scheme = PLAIN if token_id in vocabulary.added_ids else vocabulary.scheme
    return readable_token(token, scheme)


def _matching(searcher: Searcher, match: re.Pattern[str]) -> Searcher:
    """A copy of ``searcher`` whose results are only rows whose readable token matches."""
    import numpy as np

    if searcher.vocabulary is None:
        raise UsageError(Option("match"), " needs token names, and these rows have none")
    rows = searcher.table.rows
    allowed = np.zeros(rows, dtype=bool)
    for token_id in range(min(rows, searcher.vocabulary.size)):
        token = searcher.vocabulary.id_to_token(token_id)
        if token is not None and match.search(readable_label(searcher, token_id, token)):
            allowed[token_id] = True
    if searcher.allowed is not None:
        allowed &= searcher.allowed
    if not bool(allowed.any()):
        raise UsageError(
            Option("match", terminal_line(match.pattern)), ": no token of this vocabulary matches"
        )
    narrowed = copy.copy(searcher)
    narrowed.allowed = allowed
    return narrowed


def project(
    searcher: Searcher,
    model: str,
    queries: list[str],
    neighbors: int = 0,
    *,
    match: str | re.Pattern[str] | None = None,
) -> Projection:
    """PCA coordinates of each resolvable query's vector and, with ``neighbors``, of its
    nearest rows (cosine, as ``embinspect neighbors`` finds them): with ``match`` (a regular
    expression, ``re.search`` on the readable token: ``␣the``, not ``Ġthe``) its nearest
    rows among those that match. Each point also carries its ``NEAR`` nearest points among
    those drawn."""
    import torch

    pattern = compile_match(match, neighbors) if isinstance(match, str) else match
    labelled: list[tuple[str, str, str | None, list[int], list[str], str]] = []
    vectors = []
    errors = []
    # Each row is drawn once (PCA would weigh a repeated point twice): a neighbor that
    # is a query, or another query's neighbor too, keeps its first place.
    drawn_rows: set[tuple[int, ...]] = set()
    search = _matching(searcher, pattern) if pattern is not None and neighbors else searcher
    results = list(nearest(search, queries, neighbors, "cosine")) if neighbors else None
    for query in queries:
        try:
            resolved, vector = searcher.resolve_vector(query)
        except QueryError as err:  # reported; the other queries are still drawn
            errors.append({"query": printable(query), "error": err.message})
            continue
        shown = terminal_line(printable(query))
        labelled.append((query, "query", None, resolved.token_ids, resolved.tokens, shown))
        vectors.append(vector.double().reshape(-1))
        drawn_rows.add(tuple(resolved.token_ids))
    near_ids = []
    for query, answer in zip(queries, results or [], strict=False):
        for near in answer.neighbors if answer.error is None else []:
            if (near.token_id,) in drawn_rows:
                continue
            drawn_rows.add((near.token_id,))
            token = near.token if near.token is not None else f"#{near.token_id}"
            shown = readable_label(searcher, near.token_id, near.token)
            labelled.append((token, "neighbor", query, [near.token_id], [token], shown))
            near_ids.append(near.token_id)
    if near_ids:  # one read for every neighbor's row
        vectors.extend(searcher.table.gather(near_ids).double().unbind(0))
    if len(vectors) < 2:
        raise UsageError("plot needs at least two points that resolve (queries or neighbors)")
    points = torch.stack(vectors)
    coordinates, explained = pca_2d(points)
    closest = nearest_drawn(points, NEAR)
    drawn = [
        Point(label, kind, of, ids, tokens, float(x), float(y), shown, near)
        for (label, kind, of, ids, tokens, shown), (x, y), near in zip(
            labelled, coordinates.tolist(), closest, strict=True
        )
    ]
    pattern_text = pattern.pattern if pattern is not None else None
    return Projection(
        model, searcher.table.name, "pca", explained, drawn, errors, match=pattern_text
    )


def nearest_drawn(points, count: int, block: int = 1024) -> list[list[tuple[int, float]]]:
    """For each of ``points`` (n, dim): its ``count`` nearest other points by cosine, in
    float64, nearest first, ties by index; a zero row has no cosine and no neighbors."""
    import torch

    unit = points.double()
    norms = unit.norm(dim=1)
    unit = unit / torch.where(norms > 0, norms, 1.0)[:, None]
    valid = torch.isfinite(norms) & (norms > 0)  # a row with NaN or inf has no cosine
    answer: list[list[tuple[int, float]]] = []
    total = unit.shape[0]
    take = min(count, total - 1)
    for start in range(0, total, block):
        scores = unit[start : start + block] @ unit.T
        scores[:, ~valid] = -torch.inf
        rows = torch.arange(start, start + scores.shape[0])
        scores[rows - start, rows] = -torch.inf  # not its own neighbor
        if take < 1:
            answer.extend([] for _ in range(scores.shape[0]))
            continue
        # The take-th largest score; every point scoring at least that is a candidate, so
        # ties at the edge are broken by index, not by topk's order.
        edge = torch.topk(scores, take, dim=1).values[:, -1:]
        for row, line, candidates in zip(rows.tolist(), scores, scores >= edge, strict=True):
            if not bool(valid[row]):
                answer.append([])
                continue
            picked = candidates.nonzero().flatten().tolist()
            found = sorted(((j, float(line[j])) for j in picked), key=lambda p: (-p[1], p[0]))
            answer.append([(j, s) for j, s in found[:count] if s != -torch.inf])
    return answer


def pca_2d(points):
    """(coordinates (n, 2), explained variance shares [2]) of ``points`` (n, dim), float64."""
    import torch

    centred = points.double() - points.double().mean(dim=0)
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    axes = directions[:2]
    if axes.shape[0] < 2:  # one-dimensional input: a second axis of zeros
        axes = torch.cat([axes, torch.zeros_like(axes)])
    # Sign each axis so that its largest coefficient is positive: SVD's signs are arbitrary.
    largest = axes.abs().argmax(dim=1)
    signs = torch.sign(axes[torch.arange(2), largest])
    axes = axes * torch.where(signs == 0, 1.0, signs).double()[:, None]
    variance = singular**2
    total = float(variance.sum())
    shares = [float(v) / total if total else 0.0 for v in variance[:2].tolist()]
    shares += [0.0] * (2 - len(shares))
    return centred @ axes.T, shares


def picture_path(path: str, option: str, suffixes: tuple[str, ...] = PICTURE_SUFFIXES) -> Path:
    """A picture to write, given by ``option`` (``out`` here, ``plot`` for positions):
    refused before anything is read when its suffix is not one of ``suffixes``, its folder
    does not exist, or matplotlib is missing (an ``.html`` view needs no matplotlib)."""
    out = output_path(path)
    if out.suffix.lower() not in suffixes:
        kinds = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise UsageError(Option(option, path), f": write a {kinds} file")
    if not out.parent.is_dir():
        raise UsageError(Option(option, path), f": no such folder {str(out.parent)!r}")
    if out.suffix.lower() != ".html":
        import_matplotlib(option)
    return out


def draw(projection: Projection, out: Path) -> None:
    """Write ``projection`` to ``out``: the HTML view for ``.html``, else a picture."""
    if out.suffix.lower() == ".html":
        from embinspect.sources.files import write_atomically

        try:
            write_atomically(out, projection.to_html())
        except OSError as err:
            raise UsageError(
                Option("out", str(out)), f": cannot write ({err.strerror or err})"
            ) from None
        return
    figure = draw_figure(projection)
    import matplotlib

    # Text stays text in an SVG (searchable, selectable, the tokens as they read).
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        save_picture(figure, out, "out")


def draw_figure(projection: Projection) -> Any:
    """The points as a matplotlib Figure (FIGURE_INCHES at FIGURE_DPI): a scatter plot,
    queries large with a black edge, each neighbor in its query's style and joined to it,
    a legend of the queries' styles, and labels (readable tokens) placed so that no two
    overlap (``place_labels``); a label that finds no free place is left out, and a line
    under the plot says how many."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    groups = query_groups(projection)
    queries = [p for p in projection.points if p.kind == "query"]
    where = {p.label: (p.x, p.y) for p in reversed(queries)}  # the first of equal labels
    joins = [p for p in projection.points if p.kind == "neighbor" and p.of in where]
    # One artist for every line (thousands of Line2D would take seconds).
    axes.add_collection(
        LineCollection(
            [[where[p.of or ""], (p.x, p.y)] for p in joins],
            colors=[group_style(groups[p.of or ""])[0] for p in joins],
            alpha=0.25, linewidths=0.8, zorder=1,
        )
    )  # fmt: skip
    for group in sorted(set(groups.values())):
        colour, marker = group_style(group)
        near = [p for p in projection.points if p.kind == "neighbor" and groups[p.of] == group]
        if near:
            axes.scatter([p.x for p in near], [p.y for p in near], color=colour,
                         marker=marker, s=18, alpha=0.8, zorder=2)  # fmt: skip
    for point in queries:
        colour, marker = group_style(groups[point.label])
        axes.scatter([point.x], [point.y], color=colour, marker=marker, s=70,
                     edgecolors="black", zorder=3)  # fmt: skip
    first, second = projection.explained
    axes.set_xlabel(f"PC 1 ({first:.1%} of the variance of these points)")
    axes.set_ylabel(f"PC 2 ({second:.1%})")
    # The folder's own name: a long path as MODEL would crowd out the picture.
    axes.set_title(
        f"{projection.tensor} of {Path(projection.model).name or projection.model}",
        parse_math=False,  # a $ in a name is a dollar sign, not mathtext
    )
    axes.grid(alpha=0.2)
    handles = []
    seen: set[int] = set()
    for point in queries:
        group = groups[point.label]
        if group in seen:
            continue
        seen.add(group)
        colour, marker = group_style(group)
        handles.append(Line2D([], [], linestyle="", marker=marker, color=colour,
                              markeredgecolor="black", markersize=8,
                              label=point.readable))  # fmt: skip
    title = "query (large) and its\nneighbors (small, joined)"
    if len(seen) > len(COLOURS) * len(MARKERS):
        title += f"\nstyles repeat past {len(COLOURS) * len(MARKERS)} queries"
    columns = 1 + (len(handles) - 1) // 30
    legend = axes.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.01, 1),
                         fontsize=8, title_fontsize=8, ncols=columns, borderaxespad=0)  # fmt: skip
    for text in legend.get_texts():
        text.set_parse_math(False)
    figure.tight_layout()
    left_out = place_labels(figure, axes, projection)
    if left_out:
        figure.text(0.01, 0.005, f"{left_out:,} of {len(projection.points):,} labels left "
                    "out to keep labels apart (every point is in the TSV/JSON)",
                    fontsize=7, color="dimgray")  # fmt: skip
    return figure


def query_groups(projection: Projection) -> dict[str, int]:
    """Each query label's group (its colour and marker): queries in order of appearance."""
    groups: dict[str, int] = {}
    for point in projection.points:
        if point.kind == "query" and point.label not in groups:
            groups[point.label] = len(groups)
    return groups


# Where a label may go around its point, tried in this order at each distance (pixels):
# (dx sign, dy sign, horizontal alignment, vertical alignment).
_PLACES = (
    (1, 1, "left", "bottom"), (-1, 1, "right", "bottom"), (1, -1, "left", "top"),
    (-1, -1, "right", "top"), (1, 0, "left", "center"), (-1, 0, "right", "center"),
    (0, 1, "center", "bottom"), (0, -1, "center", "top"),
)  # fmt: skip
_DISTANCES = (4.0, 9.0, 16.0, 26.0)
_GAP = 1.0  # pixels kept free between two labels
# Labels measured at most: a 1000 × 750 picture holds a few hundred legible labels, and
# measuring one takes about a millisecond (thousands of points would take seconds).
MEASURED = 800


def place_labels(figure: Any, axes: Any, projection: Projection) -> int:
    """Label each point with its readable token where the label overlaps no other label,
    stays inside the axes, and covers the fewest markers: queries first, then neighbors
    by rank; a label with no free place (or past the first MEASURED that were tried) is
    left out. Returns how many were left out."""
    renderer = figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    placed = _Boxes()
    markers = _Boxes()
    anchors = axes.transData.transform([[p.x, p.y] for p in projection.points])
    for px, py in anchors:
        markers.add((px - 4, py - 4, px + 4, py + 4))
    order = [i for i, p in enumerate(projection.points) if p.kind == "query"]
    # Then the neighbors, nearest first, each query's in turn (the first of each, then
    # the second of each ...): with many, every query's nearest get labels.
    rank: dict[str | None, int] = {}
    ranked = []
    for i, p in enumerate(projection.points):
        if p.kind != "query":
            rank[p.of] = rank.get(p.of, 0) + 1
            ranked.append((rank[p.of], i))
    order += [i for _, i in sorted(ranked)]
    left_out = measured = 0
    for index in order:
        point = projection.points[index]
        query = point.kind == "query"
        size = 10 if query else 8
        if measured >= MEASURED and not query:
            left_out += 1
            continue
        px, py = anchors[index]
        # A box surely no larger than the label's (a third of the font size a character):
        # when even it meets a placed label everywhere, the label cannot go anywhere, and
        # no Text need be made and measured (the slow part, with thousands of points).
        least = (len(point.readable) * size / 3, size * 0.7)
        if all(
            placed.hits(_label_box(px + sx * d, py + sy * d, *least, ha, va), _GAP)
            for d in _DISTANCES
            for sx, sy, ha, va in _PLACES
        ):
            left_out += 1
            continue
        text = axes.annotate(
            point.readable, (point.x, point.y), xytext=(0, 0), textcoords="offset pixels",
            fontsize=size, fontweight="bold" if query else "normal",
            color="black" if query else "#333333", zorder=4, parse_math=False,
            gid=f"label-{index}",  # the SVG's <g id="label-N">: point N's label
        )  # fmt: skip
        extent = text.get_window_extent(renderer)
        measured += 1
        width, height = extent.width, extent.height
        best = None
        for distance in _DISTANCES:
            for sx, sy, ha, va in _PLACES:
                box = _label_box(px + sx * distance, py + sy * distance, width, height, ha, va)
                inside = frame.x0 <= box[0] and box[2] <= frame.x1
                inside = inside and frame.y0 <= box[1] and box[3] <= frame.y1
                if not inside or placed.hits(box, _GAP):
                    continue
                covered = markers.count(box) - (1 if _contains(box, px, py) else 0)
                if best is None or covered < best[0]:
                    best = (covered, sx * distance, sy * distance, ha, va, box)
                if covered == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:
            text.remove()
            left_out += 1
            continue
        _, dx, dy, ha, va, box = best
        text.set_position((dx, dy))
        text.set_horizontalalignment(ha)
        text.set_verticalalignment(va)
        placed.add(box)
    return left_out


def _label_box(
    x: float, y: float, width: float, height: float, ha: str, va: str
) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) of a width × height label aligned ``ha``, ``va`` at x, y."""
    x0 = x - {"left": 0.0, "center": width / 2, "right": width}[ha]
    y0 = y - {"bottom": 0.0, "center": height / 2, "top": height}[va]
    return x0, y0, x0 + width, y0 + height


def _contains(box: tuple[float, float, float, float], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


class _Boxes:
    """Rectangles (x0, y0, x1, y1) in pixels, in a grid of cells: which a new one meets."""

    CELL = 40.0

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}

    def _keys(self, box: tuple[float, float, float, float]):
        for cx in range(int(box[0] // self.CELL), int(box[2] // self.CELL) + 1):
            for cy in range(int(box[1] // self.CELL), int(box[3] // self.CELL) + 1):
                yield cx, cy

    def add(self, box: tuple[float, float, float, float]) -> None:
        for key in self._keys(box):
            self.cells.setdefault(key, []).append(box)

    def _meeting(self, box, gap: float) -> set[tuple[float, float, float, float]]:
        grown = (box[0] - gap, box[1] - gap, box[2] + gap, box[3] + gap)
        found = set()
        for key in self._keys(grown):
            for other in self.cells.get(key, ()):
                if (other[0] < grown[2] and grown[0] < other[2]
                        and other[1] < grown[3] and grown[1] < other[3]):  # fmt: skip
                    found.add(other)
        return found

    def hits(self, box, gap: float = 0.0) -> bool:
        return bool(self._meeting(box, gap))

    def count(self, box) -> int:
        return len(self._meeting(box, 0.0))


def import_matplotlib(option: str) -> Any:
    """matplotlib, or a UsageError naming the option that asked for a picture."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            Option(option), " needs matplotlib: pip install 'embinspect[plot]'"
        ) from None
    return matplotlib


def save_picture(figure: Any, path: Path, option: str, **savefig: Any) -> None:
    """Write ``figure``; a UsageError naming ``option`` when the file cannot be written."""
    try:
        figure.savefig(path, **savefig)
    except OSError as err:
        raise UsageError(
            Option(option, str(path)), f": cannot write ({err.strerror or err})"
        ) from None
