"""embinspect: look inside the embedding tables of real model checkpoints.

The Python API::

    import embinspect
    m = embinspect.load("sentence-transformers/all-MiniLM-L6-v2")
    m.neighbors("king", k=10)

``load``, ``Model`` and ``diff`` live in ``embinspect.api``; the result types in the
``embinspect.analyses`` module of their command. They are imported on first use, so
``import embinspect`` stays cheap (no torch, transformers, numpy, typer or rich). The
library opens a checkpoint's headers (``checkpoint.open_checkpoint``), reads only the rows
it needs and returns small result dataclasses; the CLI in ``embinspect.cli`` parses
arguments and prints those results.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from embinspect.errors import (
    EmbinspectError,
    EmbinspectWarning,
    ModelError,
    NetworkError,
    QueryError,
    UsageError,
)

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "load": "embinspect.api",
    "Model": "embinspect.api",
    "diff": "embinspect.api",
    "cache_entries": "embinspect.api",
    "remove_cache_entries": "embinspect.api",
    "clear_cache": "embinspect.api",
    "prune_cache": "embinspect.api",
    "CacheListing": "embinspect.analyses.cache",
    "CacheEntry": "embinspect.analyses.cache",
    "CacheRemoval": "embinspect.analyses.cache",
    "Info": "embinspect.analyses.info",
    "TokenLookup": "embinspect.analyses.tokens",
    "NeighborsResult": "embinspect.analyses.neighbors",
    "Neighbor": "embinspect.tables.search",
    "Comparison": "embinspect.analyses.compare",
    "AnalogyResult": "embinspect.analyses.analogy",
    "AnalogyEvaluation": "embinspect.analyses.suites",
    "OutlierResult": "embinspect.analyses.outlier",
    "PairsEvaluation": "embinspect.analyses.suites",
    "TableStats": "embinspect.analyses.stats",
    "UndertrainedResult": "embinspect.analyses.undertrained",
    "PositionReport": "embinspect.analyses.positions",
    "TableDiff": "embinspect.analyses.diff",
    "Projection": "embinspect.analyses.plot",
    "ExportResult": "embinspect.analyses.export",
}

__all__ = [
    "__version__",
    "load",
    "Model",
    "diff",
    "cache_entries",
    "remove_cache_entries",
    "clear_cache",
    "prune_cache",
    "CacheListing",
    "CacheEntry",
    "CacheRemoval",
    "Info",
    "TokenLookup",
    "NeighborsResult",
    "Neighbor",
    "Comparison",
    "AnalogyResult",
    "AnalogyEvaluation",
    "PairsEvaluation",
    "OutlierResult",
    "TableStats",
    "UndertrainedResult",
    "PositionReport",
    "TableDiff",
    "Projection",
    "ExportResult",
    "EmbinspectError",
    "UsageError",
    "ModelError",
    "QueryError",
    "NetworkError",
    "EmbinspectWarning",
]


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written.
    Read on first use (importlib.metadata costs a few milliseconds at import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("embinspect")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embinspect' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    __version__: str

    from embinspect.analyses.analogy import AnalogyResult
    from embinspect.analyses.cache import CacheEntry, CacheListing, CacheRemoval
    from embinspect.analyses.compare import Comparison
    from embinspect.analyses.diff import TableDiff
    from embinspect.analyses.info import Info
    from embinspect.analyses.neighbors import NeighborsResult
    from embinspect.analyses.outlier import OutlierResult
    from embinspect.analyses.plot import Projection
    from embinspect.analyses.positions import PositionReport
    from embinspect.analyses.stats import TableStats
    from embinspect.analyses.suites import AnalogyEvaluation, PairsEvaluation
    from embinspect.analyses.tokens import TokenLookup
    from embinspect.analyses.undertrained import UndertrainedResult
    from embinspect.api import (
        Model,
        cache_entries,
        clear_cache,
        diff,
        load,
        prune_cache,
        remove_cache_entries,
    )
    from embinspect.tables.search import Neighbor
