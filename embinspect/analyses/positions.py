"""``embinspect positions``: what a model's position encoding looks like.

Learned tables (GPT-2's ``wpe``, BERT's ``position_embeddings``) are read and measured:
per-position norms, the mean cosine between positions ``d`` apart, and how much of the
table a few principal directions hold. Rotary models (RoPE) store no position vectors:
their frequencies come from ``rope_theta``, the rotated dimensions and any rope scaling
in ``config.json``, and a numeric check rotates random vectors as transformers' Llama
does to show that a query-key score depends only on the offset between positions.

numpy (which reads the table too: no torch) is imported inside functions; matplotlib only
when a picture is asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embinspect.analyses.plot import picture_path, save_picture
from embinspect.errors import ModelError, Option, UsageError, note
from embinspect.model.checkpoint import Checkpoint
from embinspect.model.tensor_names import POSITION, TOKEN_TYPE
from embinspect.result import Displayable

if TYPE_CHECKING:
    import numpy as np

# Offsets 1, 2, 4, ... up to the last one the positions allow (or --offsets).
CHECK_VECTORS = 4  # random (q, k) pairs in the rotary check
CHECK_PAIRS = 64  # position pairs (m, m + d) per offset and vector pair
CHECK_CONTEXT = 4096  # positions the rotary check spans when config.json gives no context
# The longest context a position check spans: positions are exact integers in float64
# (and in numpy's int64 sampling) up to 2^53; a config claiming more is not believed.
MAX_CONTEXT = 2**53
TOP_COMPONENTS = 8  # principal directions whose share of variance is reported
Note = tuple["str | Option", ...]  # the parts of a note, for errors.note
PLOT_FORMATS = (".png", ".svg", ".pdf")
PLOT_SIZE = (7.0, 6.0)  # inches; at PLOT_DPI a PNG is 700 x 600 pixels
PLOT_DPI = 100
# transformers' Llama rotates the whole head this way; GPT-NeoX, Phi and StableLM the first
# rotated dims of it, the rest passing through. llama.cpp pairs dims 2i, 2i+1 instead: the
# same frequencies, the same scores, other dims.
ROTATE_HALF = "rotate_half, as transformers' Llama and GPT-NeoX: pair i is dims i, i + rotated/2"


@dataclass(frozen=True)
class NormSummary:
    """L2 norms of the position vectors (finite rows), quantiles by numpy's linear rule.
    ``min_position``/``max_position`` are sequence positions (0 = first token)."""

    min: float
    p5: float
    median: float
    p95: float
    max: float
    mean: float
    min_position: int
    max_position: int


@dataclass(frozen=True)
class OffsetCosine:
    """Cosine between the vectors of positions i and i + offset, over ``pairs`` values of i."""

    offset: int
    pairs: int
    mean: float | None  # None when no pair had two usable rows
    min: float | None
    max: float | None


@dataclass(frozen=True)
class LearnedPositions:
    tensor: str
    dtype: str
    rows: int  # rows of the table
    dim: int
    first_position_id: int  # row of position 0 (2 for RoBERTa: rows 0-1 are padding)
    positions: int  # positions measured (--max-positions, else every row from the first)
    centered: bool  # the mean position vector was subtracted before the cosines
    left_out: int  # rows of NaN, infinity or all zeros: no norm quantile, no cosine
    norms: NormSummary
    norm_per_position: list[float]  # index = position; NaN rows are None in JSON
    offsets: list[OffsetCosine]
    components: list[float]  # share of variance along the top principal directions


@dataclass(frozen=True)
class RotaryPair:
    """Pair ``pair`` of rotated dimensions, turned by angle position × inv_freq."""

    pair: int
    dims: list[int]  # the two head dimensions this pair rotates (rotate_half layout)
    inv_freq: float  # radians per position, scaled when rope scaling applies
    wavelength: float  # positions for one full turn, 2π / inv_freq
    turns: float | None  # full turns over the max context; < 1: never wraps around
    unscaled_inv_freq: float  # theta ** (-2 pair / rotated dims)


@dataclass(frozen=True)
class RotaryOffset:
    """Expected cosine between a random direction rotated at m and at m + offset:
    (2 Σ cos(offset · inv_freq) + unrotated dims) / head_dim."""

    offset: int
    expected_cosine: float


@dataclass(frozen=True)
class RelativeCheck:
    """max |score(m, n) - score(m', n')| over position pairs with n - m = n' - m' = offset,
    for random unit q and k rotated as ``layout`` says: 0 up to rounding when the score
    depends only on the offset."""

    layout: str
    seed: int
    vectors: int  # random (q, k) pairs
    offsets: int  # offsets tried (0, ±1, ±2, ±4, ... within the context)
    pairs_per_offset: int
    context: int  # positions 0 .. context - 1
    max_abs_diff: float  # in float64
    max_abs_diff_float32: float  # angles, cos/sin and products in float32, as models run


@dataclass(frozen=True)
class RotaryPositions:
    head_dim: int
    rotary_dims: int
    partial_rotary_factor: float
    theta: float
    theta_is_default: bool
    max_positions: int | None  # the context the turns are counted over
    scaling: dict[str, Any] | None
    scaling_applied: bool  # inv_freq are transformers' scaled ones
    attention_factor: float  # transformers' cos/sin multiplier (YaRN), 1 otherwise
    slow_pairs: int  # pairs that turn less than once over the context
    pairs: list[RotaryPair]
    offsets: list[RotaryOffset]
    check: RelativeCheck


@dataclass(frozen=True)
class PositionReport(Displayable):
    """Everything ``positions`` reports; ``to_dict`` is the documented JSON schema."""

    model: str
    kind: str  # learned or rotary
    scheme: dict[str, Any]  # Checkpoint.position_scheme(), as info shows it
    learned: LearnedPositions | None = None
    rotary: RotaryPositions | None = None
    plot: str | None = None  # the picture written, with --plot
    notes: list[str] = field(default_factory=list)  # for stderr, and in JSON

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("learned", "rotary", "plot"):
            if data[optional] is None:
                del data[optional]
        return data


def parse_offsets(text: str | None) -> list[int] | None:
    """``--offsets 1,2,8`` as sorted distinct positive integers; None when not given."""
    if text is None:
        return None
    offsets = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(
                Option("offsets"), f": {part!r} is not an integer (write 1,2,4)"
            ) from None
        if value < 1:
            raise UsageError(Option("offsets"), f": {value} is not a positive offset")
        offsets.add(value)
    if not offsets:
        raise UsageError(Option("offsets"), ": no offsets given (write 1,2,4)")
    return sorted(offsets)


def check_plot_path(plot: str | None) -> Path | None:
    """The picture to draw (``plot``), refused before anything is read when it cannot be
    written; None when none is asked for."""
    return None if plot is None else picture_path(plot, "plot", PLOT_FORMATS)


def inspect_positions(
    checkpoint: Checkpoint,
    *,
    offsets: list[int] | None = None,
    max_positions: int | None = None,
    center: bool = False,
    seed: int = 0,
    plot: Path | None = None,
) -> PositionReport:
    """Measure a learned position table, or a rotary model's frequencies (see the module).

    ``offsets`` default to 1, 2, 4, ... below the positions measured; ``max_positions``
    keeps the first N positions of a learned table (and is the context of a rotary
    check); ``center`` subtracts the mean position vector before cosines; ``plot`` writes
    the cosine matrix (learned) or the wavelength of each pair (rotary).
    """
    if max_positions is not None and max_positions > MAX_CONTEXT:
        raise UsageError(
            Option("max_positions", max_positions), f": at most {MAX_CONTEXT:,} (2^53) positions"
        )
    scheme = checkpoint.position_scheme()
    model = checkpoint.files.model
    kind = scheme["kind"]
    if kind == "learned":
        vectors, learned_header, first = _read_learned(checkpoint, max_positions)
        learned = _describe_learned(vectors, learned_header, first, offsets, center)
        notes = _learned_notes(checkpoint, learned)
        if plot is not None:
            _plot_cosines(vectors, learned, plot, _label(model))
        return PositionReport(
            model, kind, scheme, learned=learned, plot=_shown(plot), notes=_noted(notes)
        )
    if kind == "rotary":
        if center:
            raise UsageError(
                Option("center"), f": {model} is rotary; only a learned table is centred"
            )
        rotary, notes = _describe_rotary(checkpoint, scheme, offsets, max_positions, seed)
        if plot is not None:
            _plot_wavelengths(rotary, plot, _label(model))
        return PositionReport(
            model, kind, scheme, rotary=rotary, plot=_shown(plot), notes=_noted(notes)
        )
    raise ModelError(f"{model}: {_nothing_to_inspect(kind, scheme)}")


def _label(model: str) -> str:
    """MODEL as a picture's title names it: a long path by its last two parts."""
    parts = Path(model).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else model


def _shown(plot: Path | None) -> str | None:
    return str(plot) if plot is not None else None


def _nothing_to_inspect(kind: str, scheme: dict[str, Any]) -> str:
    if kind == "alibi":
        return (
            "ALiBi: position is a linear bias on attention scores, with no position table "
            "and no rotary frequencies to inspect"
        )
    if kind == "none":
        return "word vectors carry no position; positions inspects learned tables and RoPE"
    return (
        "no position table and no rotary settings in config.json: nothing to inspect "
        "(the model adds no positions, or its config.json is missing or does not say)"
    )


# --- learned tables ------------------------------------------------------------------


def _read_learned(checkpoint: Checkpoint, max_positions: int | None) -> tuple[np.ndarray, Any, int]:
    """The position vectors in float64, shape (positions, dim), from the first position's
    row; the header; that first row."""
    from embinspect.model.position_scheme import first_position_id
    from embinspect.tables.table import EmbeddingTable

    header = checkpoint.embeddings[POSITION].header
    table = EmbeddingTable(checkpoint.files, header)
    first = first_position_id(checkpoint.text_config)
    available = table.rows - first
    if available < 2:
        raise ModelError(
            f"{header.name}: {table.rows} rows from row {first} leave {max(available, 0)} "
            "positions; at least 2 are needed"
        )
    count = available if max_positions is None else min(max_positions, available)
    return table.gather_array(range(first, first + count)), header, first


def _describe_learned(
    vectors: np.ndarray,
    header: Any,
    first: int,
    offsets: list[int] | None,
    center: bool,
) -> LearnedPositions:
    import numpy as np

    count, dim = vectors.shape
    norms = np.linalg.norm(vectors, axis=1)
    # A NaN/inf row, or (cosines) a zero row, has no direction: out of every figure.
    finite = np.isfinite(vectors).all(axis=1)
    usable = finite & (norms > 0)
    if not usable.any():
        raise ModelError(f"{header.name}: no position row is finite and non-zero")
    if offsets is None:
        offsets = default_offsets(count - 1)
    elif offsets[-1] >= count:
        raise UsageError(
            Option("offsets", offsets[-1]),
            f": {count} positions are measured, so offsets go up to {count - 1}",
        )
    measured = vectors - vectors[usable].mean(axis=0) if center else vectors
    unit = np.zeros_like(measured)
    lengths = np.linalg.norm(measured, axis=1)
    usable = usable & (lengths > 0)  # centring can leave a row at the mean
    unit[usable] = measured[usable] / lengths[usable, None]
    finite_norms = norms[finite]
    quantiles = np.percentile(finite_norms, [0, 5, 50, 95, 100])
    positions = np.flatnonzero(finite)
    summary = NormSummary(
        min=float(quantiles[0]),
        p5=float(quantiles[1]),
        median=float(quantiles[2]),
        p95=float(quantiles[3]),
        max=float(quantiles[4]),
        mean=float(finite_norms.mean()),
        min_position=int(positions[np.argmin(finite_norms)]),
        max_position=int(positions[np.argmax(finite_norms)]),
    )
    return LearnedPositions(
        tensor=header.name,
        dtype=header.dtype,
        rows=header.shape[0],
        dim=dim,
        first_position_id=first,
        positions=count,
        centered=center,
        left_out=int(count - usable.sum()),
        norms=summary,
        norm_per_position=[float(n) for n in norms],
        offsets=[_offset_cosine(unit, usable, d) for d in offsets],
        components=_component_shares(vectors[finite]),
    )


def default_offsets(largest: int) -> list[int]:
    """1, 2, 4, 8, ... up to ``largest``."""
    offsets, step = [], 1
    while step <= largest:
        offsets.append(step)
        step *= 2
    return offsets


def _offset_cosine(unit: np.ndarray, usable: np.ndarray, offset: int) -> OffsetCosine:
    """Cosines of unit rows i and i + offset where both rows are usable."""
    both = usable[:-offset] & usable[offset:]
    cosines = (unit[:-offset] * unit[offset:]).sum(axis=1)[both]
    if cosines.size == 0:
        return OffsetCosine(offset, 0, None, None, None)
    return OffsetCosine(
        offset, int(cosines.size), float(cosines.mean()), float(cosines.min()), float(cosines.max())
    )


def _component_shares(vectors: np.ndarray) -> list[float]:
    """Share of the (centred) table's variance along each of its top principal directions."""
    import numpy as np

    centred = vectors - vectors.mean(axis=0)
    # Eigenvalues of the smaller Gram matrix are the squared singular values: cheaper
    # than an SVD of a long table, and the same numbers.
    gram = centred @ centred.T if centred.shape[0] < centred.shape[1] else centred.T @ centred
    variances = np.clip(np.linalg.eigvalsh(gram)[::-1], 0, None)
    total = variances.sum()
    if total == 0:
        return []
    return [float(v / total) for v in variances[:TOP_COMPONENTS]]


def _learned_notes(checkpoint: Checkpoint, learned: LearnedPositions) -> list[Note]:
    notes: list[Note] = []
    if learned.first_position_id:
        notes.append(
            (
                f"position 0 is row {learned.first_position_id} of {learned.tensor}: rows "
                f"before it are padding rows (RoBERTa numbers positions from padding_idx + 1), "
                "left out",
            )
        )
    if learned.positions < learned.rows - learned.first_position_id:
        notes.append(
            (
                Option("max_positions"),
                f": the first {learned.positions:,} of "
                f"{learned.rows - learned.first_position_id:,} positions measured",
            )
        )
    if learned.left_out:
        notes.append(
            (
                f"{learned.left_out} position rows left out of the cosines (NaN, infinite "
                "or all zeros)",
            )
        )
    token_type = checkpoint.embeddings.get(TOKEN_TYPE)
    if token_type is not None:
        rows = token_type.header.shape[0]
        notes.append(
            (
                f"{token_type.header.name} ({rows} rows) is the segment (token type) "
                "table, not positions: it is left out",
            )
        )
    return notes


def _noted(notes: list[Note]) -> list[str]:
    """Issue each note; the report keeps them too, as the API words them, for JSON."""
    for parts in notes:
        note(*parts)
    return ["note: " + "".join(str(part) for part in parts) for parts in notes]


# --- rotary --------------------------------------------------------------------------


def _describe_rotary(
    checkpoint: Checkpoint,
    scheme: dict[str, Any],
    offsets: list[int] | None,
    max_positions: int | None,
    seed: int,
) -> tuple[RotaryPositions, list[Note]]:
    import numpy as np

    model = checkpoint.files.model
    head_dim, rotated = scheme["head_dim"], scheme["rotary_dims"]
    if head_dim is None or rotated is None:
        raise ModelError(
            f"{model}: rotary, but config.json gives neither head_dim nor hidden_size and "
            "num_attention_heads: the rotated dimensions are unknown"
        )
    if rotated < 2 or rotated % 2:
        raise ModelError(f"{model}: {rotated} rotated dimensions: RoPE needs an even number")
    notes: list[Note] = []
    theta = scheme["theta"]
    if scheme["theta_is_default"]:
        notes.append((f"config.json gives no rope_theta; transformers' default {theta:g}",))
    context = max_positions or scheme["max_positions"]
    if context is None:
        notes.append(
            (
                "config.json gives no max_position_embeddings: turns are not counted and "
                f"the check spans {CHECK_CONTEXT:,} positions (set ",
                Option("max_positions"),
                ")",
            )
        )
    unscaled = unscaled_inv_freq(theta, rotated)
    inv_freq, attention_factor, applied, scaling_note = _scaled_inv_freq(
        checkpoint, scheme, unscaled
    )
    if scaling_note:
        notes.append((scaling_note.removeprefix("note: "),))
    wavelength = 2 * np.pi / inv_freq
    pairs = [
        RotaryPair(
            pair=i,
            dims=[i, i + rotated // 2],
            inv_freq=float(inv_freq[i]),
            wavelength=float(wavelength[i]),
            turns=float(context / wavelength[i]) if context else None,
            unscaled_inv_freq=float(unscaled[i]),
        )
        for i in range(rotated // 2)
    ]
    span = context or CHECK_CONTEXT
    if offsets is None:
        offsets = default_offsets(span - 1)
    elif offsets[-1] >= span:
        raise UsageError(
            Option("offsets", offsets[-1]),
            f": the context is {span:,} positions, so offsets go up to {span - 1:,}",
        )
    expected = [
        RotaryOffset(d, float((2 * np.cos(d * inv_freq).sum() + head_dim - rotated) / head_dim))
        for d in [0, *offsets]
    ]
    check = relative_check(inv_freq, head_dim, rotated, span, seed)
    return (
        RotaryPositions(
            head_dim=head_dim,
            rotary_dims=rotated,
            partial_rotary_factor=scheme["partial_rotary_factor"],
            theta=theta,
            theta_is_default=scheme["theta_is_default"],
            max_positions=context,
            scaling=scheme["scaling"],
            scaling_applied=applied,
            attention_factor=attention_factor,
            slow_pairs=sum(1 for p in pairs if p.turns is not None and p.turns < 1),
            pairs=pairs,
            offsets=expected,
            check=check,
        ),
        notes,
    )


def unscaled_inv_freq(theta: float, rotated: int) -> np.ndarray:
    """RoPE's inverse frequencies theta ** (-2i / rotated), i < rotated / 2, in float64."""
    import numpy as np

    return 1.0 / theta ** (np.arange(0, rotated, 2, dtype=np.float64) / rotated)


def _scaled_inv_freq(
    checkpoint: Checkpoint, scheme: dict[str, Any], unscaled: np.ndarray
) -> tuple[np.ndarray, float, bool, str | None]:
    """``(inv_freq, attention_factor, scaled, note)``: with rope scaling, transformers' own
    ROPE_INIT_FUNCTIONS compute the frequencies (in float32, as models use them)."""
    import numpy as np

    scaling = scheme["scaling"]
    if not scaling:
        return unscaled, 1.0, False, None
    rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type in (None, "default"):
        return unscaled, 1.0, False, None
    try:
        import transformers
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    except ImportError:
        return _unscaled(unscaled, f"transformers is not importable to apply {rope_type!r}")
    if rope_type not in ROPE_INIT_FUNCTIONS:
        version = transformers.__version__
        return _unscaled(unscaled, f"transformers {version} knows no rope scaling {rope_type!r}")
    config = _rope_config(checkpoint, scheme, rope_type)
    try:
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
    except Exception as err:  # a config transformers cannot use: say so, show unscaled
        message = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        return _unscaled(unscaled, f"transformers could not apply {rope_type!r} ({message})")
    values = np.asarray(inv_freq.double().numpy(), dtype=np.float64)
    if values.shape != unscaled.shape:
        reason = f"transformers' {rope_type!r} gave {values.size} frequencies for {unscaled.size}"
        return _unscaled(unscaled, reason)
    note = (
        f"note: rope scaling {rope_type!r} applied by transformers {transformers.__version__} "
        "(float32 frequencies, as the model uses them)"
    )
    if rope_type == "dynamic":
        note += "; dynamic NTK changes them only past max_position_embeddings"
    return values, float(attention_factor), True, note


def _unscaled(unscaled: np.ndarray, reason: str) -> tuple[np.ndarray, float, bool, str]:
    return unscaled, 1.0, False, f"note: {reason}: the frequencies shown are unscaled"


def _rope_config(checkpoint: Checkpoint, scheme: dict[str, Any], rope_type: str) -> Any:
    """A bare transformers config carrying what the rope functions read, under both the
    5.x names (``rope_parameters``) and the 4.x ones (``rope_scaling``, ``rope_theta``)."""
    try:
        from transformers import PreTrainedConfig as Config
    except ImportError:  # transformers 4.x
        from transformers import PretrainedConfig as Config

    cfg = checkpoint.text_config
    parameters = dict(scheme["scaling"])
    parameters["rope_type"] = rope_type
    parameters["rope_theta"] = scheme["theta"]
    parameters["partial_rotary_factor"] = scheme["partial_rotary_factor"]
    original = parameters.get("original_max_position_embeddings")
    if isinstance(original, float) and original.is_integer():
        parameters["original_max_position_embeddings"] = int(original)  # GGUF stores floats
    config = Config()
    config.hidden_size = cfg.get("hidden_size") or scheme["head_dim"]
    config.num_attention_heads = cfg.get("num_attention_heads") or 1
    config.head_dim = scheme["head_dim"]
    config.max_position_embeddings = scheme["max_positions"] or CHECK_CONTEXT
    config.rope_theta = scheme["theta"]
    config.partial_rotary_factor = scheme["partial_rotary_factor"]
    if isinstance(cfg.get("original_max_position_embeddings"), int):
        config.original_max_position_embeddings = cfg["original_max_position_embeddings"]
    config.rope_parameters = parameters
    if not hasattr(config, "standardize_rope_params"):
        config.rope_scaling = dict(parameters)  # 4.x; 5.x warns that the name is deprecated
    return config


def rotate(vectors: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """RoPE as transformers' Llama applies it: ``vectors`` (n, head_dim) at ``positions``
    (n,); the first 2 × len(inv_freq) dims are rotated with rotate_half (pair i is dims i
    and i + rotated/2), the rest pass through. Computes in the dtype of the inputs."""
    import numpy as np

    rotated = 2 * inv_freq.shape[0]
    angles = positions[:, None] * inv_freq[None, :]
    emb = np.concatenate([angles, angles], axis=1)  # as LlamaRotaryEmbedding.forward
    cos, sin = np.cos(emb), np.sin(emb)
    part, passed = vectors[:, :rotated], vectors[:, rotated:]
    half = rotated // 2
    turned = np.concatenate([-part[:, half:], part[:, :half]], axis=1)  # rotate_half
    return np.concatenate([part * cos + turned * sin, passed], axis=1)


def relative_check(
    inv_freq: np.ndarray, head_dim: int, rotated: int, context: int, seed: int
) -> RelativeCheck:
    """Score rotated random unit vectors at many position pairs sharing each offset (0, ±1,
    ±2, ±4, ... within ``context``) and return the largest spread of a score within one
    offset, in float64 and in float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ladder = default_offsets(context - 1)
    offsets = [0, *ladder, *(-d for d in ladder)]
    worst = {np.float64: 0.0, np.float32: 0.0}
    for _ in range(CHECK_VECTORS):
        q, k = rng.standard_normal((2, head_dim))
        q, k = q / np.linalg.norm(q), k / np.linalg.norm(k)
        for offset in offsets:
            # m and m + offset both inside 0 .. context - 1; the first pair starts at 0.
            low, high = max(0, -offset), context - max(0, offset)
            m = np.concatenate([[low], rng.integers(low, high, CHECK_PAIRS - 1)])
            for dtype in worst:
                m_, n_ = m.astype(dtype), (m + offset).astype(dtype)
                freq = inv_freq.astype(dtype)
                qs = rotate(np.tile(q.astype(dtype), (m.size, 1)), m_, freq)
                ks = rotate(np.tile(k.astype(dtype), (m.size, 1)), n_, freq)
                scores = (qs * ks).sum(axis=1)
                worst[dtype] = max(worst[dtype], float(np.abs(scores - scores[0]).max()))
    return RelativeCheck(
        layout=ROTATE_HALF,
        seed=seed,
        vectors=CHECK_VECTORS,
        offsets=len(offsets),
        pairs_per_offset=CHECK_PAIRS,
        context=context,
        max_abs_diff=worst[np.float64],
        max_abs_diff_float32=worst[np.float32],
    )


# --- pictures ------------------------------------------------------------------------


def _figure():
    """A matplotlib Figure of the fixed size (no pyplot: no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI, layout="constrained")


def cosine_matrix(vectors: np.ndarray, center: bool) -> np.ndarray:
    """Cosine between every two position vectors, shape (positions, positions); rows with
    no direction (zero, NaN) are NaN."""
    import numpy as np

    finite = np.isfinite(vectors).all(axis=1)
    measured = vectors - vectors[finite].mean(axis=0) if center else vectors
    lengths = np.linalg.norm(measured, axis=1)
    usable = finite & (lengths > 0)
    unit = np.full_like(measured, np.nan)
    unit[usable] = measured[usable] / lengths[usable, None]
    return unit @ unit.T


def _plot_cosines(vectors: np.ndarray, learned: LearnedPositions, path: Path, label: str) -> None:
    import numpy as np

    matrix = cosine_matrix(vectors, learned.centered)
    figure = _figure()
    axes = figure.add_subplot()
    count = matrix.shape[0]
    image = axes.imshow(
        np.ma.masked_invalid(matrix),
        cmap="RdBu_r",
        vmin=-1,
        vmax=1,
        extent=(-0.5, count - 0.5, count - 0.5, -0.5),
        # One screen pixel or more per position: cells drawn as blocks; more positions
        # than pixels: averaged, so no position is dropped unseen.
        interpolation="nearest" if count <= 700 else "antialiased",
    )
    axes.set_xlabel("position")
    axes.set_ylabel("position")
    centred = ", centred" if learned.centered else ""
    total = learned.rows - learned.first_position_id
    shown = f"positions 0..{count - 1}" + (f" of {total:,}" if count < total else "")
    rows = f" (rows {learned.first_position_id}..)" if learned.first_position_id else ""
    axes.set_title(
        f"cosine between position vectors{centred}, {shown}{rows}\n{label}: {learned.tensor}",
        fontsize=10,
    )
    figure.colorbar(image, ax=axes, label="cosine", shrink=0.85)
    save_picture(figure, path, "plot", dpi=PLOT_DPI)


def _plot_wavelengths(rotary: RotaryPositions, path: Path, model: str) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    pairs = [p.pair for p in rotary.pairs]
    axes.semilogy(
        pairs, [p.wavelength for p in rotary.pairs], "o-", markersize=3, label="wavelength"
    )
    if rotary.scaling_applied:
        unscaled = [2 * math.pi / p.unscaled_inv_freq for p in rotary.pairs]
        axes.semilogy(pairs, unscaled, "--", color="grey", label="unscaled")
    if rotary.max_positions:
        axes.axhline(rotary.max_positions, color="red", linewidth=1, label="max context")
    axes.set_xlabel("rotated dimension pair i")
    axes.set_ylabel("positions per full turn, 2π / θ_i")
    scaled = ""
    if rotary.scaling_applied:
        scaled = f", {rotary.scaling.get('rope_type', rotary.scaling.get('type'))} scaling"
    axes.set_title(
        f"RoPE wavelengths: theta {rotary.theta:g}, {rotary.rotary_dims} of "
        f"{rotary.head_dim} dims{scaled}\n{model}",
        fontsize=10,
    )
    axes.legend()
    axes.grid(True, which="major", alpha=0.3)
    save_picture(figure, path, "plot", dpi=PLOT_DPI)
