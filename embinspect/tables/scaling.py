"""Rows scaled by a power of two, so float64 arithmetic on them never overflows or
underflows, whatever the stored magnitudes (a float32 row of 1e20 or 1e-40, a float64 row
of 1e-300).

Each row is multiplied by 2^-e, where 2^e is just above its largest |value|: its largest
component then lies in [0.5, 1), its squares and dot products in float64 are far from
both ends of the range, and the scaling itself is exact (a power of two only moves the
exponent). Cosines are scale-invariant, so they come out of the scaled rows directly;
a dot product or a distance is a scaled value and an exponent, ``mantissa·2^exponent``,
rounded to float64 once, when reported (``rounded``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

# Norms (of rows, and of dot and L2 queries) that the float32 and half-precision passes of
# ``scoring`` take: between them a row's squares and products stay far inside float32
# (and bf16), and the absolute error of underflow, n·2^-150, stays below 2^-60 of their
# relative bounds. Rows outside are few in any real table; they are scored in float64.
SAFE_NORMS = (2.0**-40, 2.0**40)


def exponents(rows: torch.Tensor) -> torch.Tensor:
    """e per row of ``rows`` (n, dim) float64: the largest |value| lies in [2^(e-1), 2^e);
    0 for a row of zeros (and for a row with NaN or infinity: no scale helps it)."""
    import torch

    biggest = rows.abs().amax(dim=1) if rows.shape[1] else torch.zeros(rows.shape[0])
    usable = torch.isfinite(biggest) & (biggest > 0)
    _, exponent = torch.frexp(torch.where(usable, biggest, 1.0).double())
    return torch.where(usable, exponent.long(), 0)


def scaled(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows·2^-e, e)``: each row of ``rows`` (n, dim) float64 with its largest |value|
    in [0.5, 1), and e (n,) int64. Exact: numpy's ldexp moves exponents in one step, even
    from a subnormal row to 2^0, beyond what one float64 power of two could hold."""
    exponent = exponents(rows)
    return ldexp(rows, -exponent), exponent


def lengths(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|x| of each row (n, dim) float64 as ``(m, e)``, |x| = m·2^e with m = |x·2^-e| in
    [0.5, sqrt(dim)] (0 for a row of zeros): never rounded to float64's range, for a
    ratio of lengths (``lengths_apart``) or a sum of their squares (``root_sum_squares``).
    NaN or inf for a row with NaN or an infinity."""
    import torch

    values, exponent = scaled(rows)
    return torch.linalg.vector_norm(values, dim=1), exponent


def norms(rows: torch.Tensor) -> torch.Tensor:
    """|x| of each row (n, dim) in float64, without the overflow or underflow of squaring
    (|x| = 2^e·|x·2^-e|); inf only where |x| itself is beyond float64, NaN for a row with
    NaN, inf for one with an infinity."""
    import torch

    length = ldexp(*lengths(rows))
    finite = torch.isfinite(rows).all(dim=1)
    bad = torch.where(torch.isnan(rows).any(dim=1), torch.nan, torch.inf)
    return torch.where(finite, length, bad.double())


def units(rows: torch.Tensor) -> torch.Tensor:
    """Each row (n, dim) over its own length, in float64: a unit vector for any finite
    nonzero row, however large or small; NaN for a zero row."""
    import torch

    values, _ = scaled(rows)
    return values / torch.linalg.vector_norm(values, dim=1, keepdim=True)


def lengths_apart(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|a - b| of each pair of rows (n, dim) float64 as ``(m, e)``, as ``lengths``: both
    rows scaled by the larger one's power of two first, so a - b cannot overflow (rows
    near 1e308 of opposite signs) nor its squares underflow (rows of 1e-300)."""
    import torch

    exponent = torch.maximum(exponents(a), exponents(b))
    apart = ldexp(a, -exponent) - ldexp(b, -exponent)
    return torch.linalg.vector_norm(apart, dim=1), exponent


def paired_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_i) of each pair of rows (n, dim) float64, on rows scaled by their own
    power of two: exact at any scale; NaN where a row is zero or not finite."""
    import torch

    a, _ = scaled(a)
    b, _ = scaled(b)
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return torch.linalg.vecdot(a, b, dim=1) / norms


# The same formulas on numpy float64 arrays, for what reads a few rows (``tokens``,
# ``compare``) and need not import torch: each is its torch twin above, step for step.


def array_exponents(rows: np.ndarray) -> np.ndarray:
    """``exponents`` of rows (n, dim) float64 as a numpy array."""
    import numpy as np

    biggest = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(rows.shape[0])
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(biggest) & (biggest > 0)
    _, exponent = np.frexp(np.where(usable, biggest, 1.0).astype(np.float64))
    return np.where(usable, exponent.astype(np.int64), 0)


def array_ldexp(values: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``ldexp`` of numpy arrays: values·2^exponent, an exponent per row of a 2-D
    ``values`` broadcast over its columns."""
    import numpy as np

    power = np.asarray(exponent).astype(np.int32)
    if values.ndim == 2 and power.ndim == 1:
        power = power[:, None]
    with np.errstate(over="ignore"):
        return np.ldexp(values.astype(np.float64), power)


def array_scaled(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scaled`` of a numpy array: ``(rows·2^-e, e)``."""
    exponent = array_exponents(rows)
    return array_ldexp(rows, -exponent), exponent


def _row_norms(values: np.ndarray) -> np.ndarray:
    import numpy as np

    with np.errstate(invalid="ignore", over="ignore"):
        return np.linalg.norm(values, axis=1)


def array_norms(rows: np.ndarray) -> np.ndarray:
    """``norms`` of a numpy array: |x| of each row in float64, inf only where |x| is beyond
    float64, NaN for a row with NaN, inf for one with an infinity."""
    import numpy as np

    values, exponent = array_scaled(rows)
    length = array_ldexp(_row_norms(values), exponent)
    finite = np.isfinite(rows).all(axis=1)
    bad = np.where(np.isnan(rows).any(axis=1), np.nan, np.inf)
    return np.where(finite, length, bad)


def array_units(rows: np.ndarray) -> np.ndarray:
    """``units`` of a numpy array: each row over its own length; NaN for a zero row."""
    import numpy as np

    values, _ = array_scaled(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return values / _row_norms(values)[:, None]


def array_mean(rows: np.ndarray) -> np.ndarray:
    """``mean`` of a numpy array (n, dim) float64: summed scaled by the largest row's power
    of two, so that a sum of huge rows cannot overflow."""
    import numpy as np

    exponent = int(array_exponents(rows).max()) if rows.shape[0] else 0
    values = array_ldexp(rows, np.asarray(-exponent))
    return array_ldexp(values.mean(axis=0), np.asarray(exponent))


def root_sum_squares(mantissa: np.ndarray, exponent: np.ndarray) -> tuple[float, int]:
    """sqrt(Σ (m_i·2^e_i)²) of lengths given as ``lengths`` gives them, as ``(m, e)``:
    summed at the largest power of two, so squares of 1e300 cannot overflow (those far
    below the largest vanish, as they would in any float64 sum)."""
    import numpy as np

    if not len(mantissa):
        return 0.0, 0
    top = int(exponent.max())
    values = np.ldexp(mantissa, (exponent - top).astype(np.int32))
    return float(np.sqrt(np.dot(values, values))), top


class RunningSum:
    """The sum and mean of rows (n, dim) float64 added a block at a time, kept times
    2^-power, the power of two of the largest value so far (the sum rescaled, exactly,
    when a larger one comes): rows near 1e308 add up without overflow."""

    def __init__(self, dim: int) -> None:
        import torch

        self.total = torch.zeros(dim, dtype=torch.float64)
        self.power: int | None = None
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """Add finite rows (n, dim) float64."""
        import torch

        if not rows.shape[0]:
            return
        largest = int(exponents(rows).max())
        if self.power is None or largest > self.power:
            if self.power is not None:
                self.total = ldexp(self.total, torch.tensor(self.power - largest))
            self.power = largest
        self.total += ldexp(rows, torch.tensor(-self.power)).sum(dim=0)
        self.count += rows.shape[0]

    def mean(self) -> torch.Tensor:
        """The mean of the rows added (zeros if none)."""
        import torch

        return ldexp(self.total / max(self.count, 1), torch.tensor(self.power or 0))


def mean(rows: torch.Tensor) -> torch.Tensor:
    """The mean of ``rows`` (n, dim) float64, shape (dim,), summed scaled by the largest
    row's power of two so that a sum of huge rows cannot overflow."""
    import torch

    exponent = int(exponents(rows).max()) if rows.shape[0] else 0
    values = ldexp(rows, torch.tensor(-exponent))
    return ldexp(values.mean(dim=0), torch.tensor(exponent))


def ldexp(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """values·2^exponent (float64; an exponent per row of a 2-D ``values`` is broadcast
    over its columns), exact: numpy's ldexp moves the exponent in one step, where a float64
    power of two cannot hold 2^±1074."""
    import numpy as np
    import torch

    power = exponent.numpy().astype(np.int32)
    if values.dim() == 2 and power.ndim == 1:
        power = power[:, None]
    with np.errstate(over="ignore"):  # beyond float64: inf, as the caller expects
        return torch.from_numpy(np.ldexp(values.double().numpy(), power))


def rounded(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``mantissa·2^exponent`` (float64, int arrays) rounded to float64: ±inf beyond its
    range, 0 or a subnormal below it."""
    import numpy as np

    with np.errstate(over="ignore"):
        return np.ldexp(mantissa, exponent.astype(np.int32))


def value(mantissa: float, exponent: int) -> float:
    """``mantissa·2^exponent`` rounded to float64 (±inf beyond its range)."""
    import math

    try:
        return math.ldexp(mantissa, exponent)
    except OverflowError:
        return math.inf if mantissa > 0 else -math.inf
