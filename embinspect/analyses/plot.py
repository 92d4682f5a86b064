"""``embinspect plot``: named tokens (and their neighbors) projected to two dimensions.

The projection is PCA fitted on the points drawn: centred on their mean, the two
directions of largest variance (from an SVD, in float64), each signed so that its
largest coefficient is positive, so a run always draws the same picture. The
coordinates are the result; the picture (matplotlib, an optional extra) is drawn from
them, so the PNG, the TSV and the JSON never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embinspect.analyses.neighbors import neighbors as nearest
from embinspect.errors import Option, QueryError, UsageError
from embinspect.result import Displayable
from embinspect.tables.queries import printable

if TYPE_CHECKING:
    from embinspect.tables.search import Searcher

PICTURE_SUFFIXES = (".png", ".svg")
FIGURE_INCHES = (10.0, 7.5)
FIGURE_DPI = 100  # a PNG of 1000 × 750 pixels


@dataclass(frozen=True)
class Point:
    label: str  # the query, or the neighbor's token
    kind: str  # "query" or "neighbor"
    of: str | None  # for a neighbor: the query it is near
    token_ids: list[int]
    tokens: list[str]
    x: float
    y: float


@dataclass(frozen=True)
class Projection(Displayable):
    model: str
    tensor: str
    method: str
    explained: list[float]  # share of the points' variance along each axis
    points: list[Point]
    errors: list[dict[str, str]]
    picture: str | None = None  # the file written, if any

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.errors:
            del data["errors"]
        return data


def project(searcher: Searcher, model: str, queries: list[str], neighbors: int = 0) -> Projection:
    """PCA coordinates of each resolvable query's vector and, with ``neighbors``, of its
    nearest rows (cosine, as ``embinspect neighbors`` finds them)."""
    import torch

    labelled: list[tuple[str, str, str | None, list[int], list[str]]] = []
    vectors = []
    errors = []
    # Each row is drawn once (PCA would weigh a repeated point twice): a neighbor that
    # is a query, or another query's neighbor too, keeps its first place.
    drawn_rows: set[tuple[int, ...]] = set()
    results = list(nearest(searcher, queries, neighbors, "cosine")) if neighbors else None
    for query in queries:
        try:
            resolved, vector = searcher.resolve_vector(query)
        except QueryError as err:  # reported; the other queries are still drawn
            errors.append({"query": printable(query), "error": err.message})
            continue
        labelled.append((query, "query", None, resolved.token_ids, resolved.tokens))
        vectors.append(vector)
        drawn_rows.add(tuple(resolved.token_ids))
    for query, answer in zip(queries, results or [], strict=False):
        for near in answer.neighbors if answer.error is None else []:
            if (near.token_id,) in drawn_rows:
                continue
            drawn_rows.add((near.token_id,))
            token = near.token if near.token is not None else f"#{near.token_id}"
            labelled.append((token, "neighbor", query, [near.token_id], [token]))
            vectors.append(searcher.table.gather([near.token_id])[0])
    if len(vectors) < 2:
        raise UsageError("plot needs at least two points that resolve (queries or neighbors)")
    points = torch.stack(vectors)
    coordinates, explained = pca_2d(points)
    drawn = [
        Point(label, kind, of, ids, tokens, float(x), float(y))
        for (label, kind, of, ids, tokens), (x, y) in zip(
            labelled, coordinates.tolist(), strict=True
        )
    ]
    return Projection(model, searcher.table.name, "pca", explained, drawn, errors)


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
    does not exist, or matplotlib is missing."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        kinds = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise UsageError(Option(option, path), f": write a {kinds} file")
    if not out.parent.is_dir():
        raise UsageError(Option(option, path), f": no such folder {str(out.parent)!r}")
    import_matplotlib(option)
    return out


def draw(projection: Projection, out: Path) -> None:
    """The points as a labelled scatter plot, queries in bold, neighbors joined to theirs."""
    matplotlib = import_matplotlib("out")
    matplotlib.use("Agg")  # no display: write the file only
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    axes = figure.add_subplot()
    where = {p.label: (p.x, p.y) for p in projection.points if p.kind == "query"}
    colours = {}
    palette = matplotlib.colormaps["tab10"]
    for point in projection.points:
        if point.kind == "query":
            colours[point.label] = palette(len(colours) % 10)
    for point in projection.points:
        colour = colours[point.of or point.label]
        if point.kind == "neighbor":
            qx, qy = where[point.of]
            axes.plot([qx, point.x], [qy, point.y], color=colour, alpha=0.25, linewidth=0.8)
            axes.scatter([point.x], [point.y], color=colour, s=18, alpha=0.8)
            axes.annotate(point.label, (point.x, point.y), fontsize=8, color=colour,
                          xytext=(3, 3), textcoords="offset points")  # fmt: skip
        else:
            axes.scatter([point.x], [point.y], color=colour, s=60, edgecolors="black")
            axes.annotate(point.label, (point.x, point.y), fontsize=11, fontweight="bold",
                          xytext=(4, 4), textcoords="offset points")  # fmt: skip
    first, second = projection.explained
    axes.set_xlabel(f"PC 1 ({first:.1%} of the variance of these points)")
    axes.set_ylabel(f"PC 2 ({second:.1%})")
    # The folder's own name: a long path as MODEL would crowd out the picture.
    axes.set_title(f"{projection.tensor} of {Path(projection.model).name or projection.model}")
    axes.grid(alpha=0.2)
    figure.tight_layout()
    save_picture(figure, out, "out")


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
