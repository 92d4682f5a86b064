"""How to reach the Hub, as the source options say: kept apart from ``hub`` so that a
local checkpoint never imports huggingface_hub."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from embinspect.errors import UsageError

# One variable bounds every wait on the Hub (README "Hugging Face Hub").
TIMEOUT_VARIABLE = "EMBINSPECT_HTTP_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class HubOptions:
    """How to reach the Hub: the cache folder, offline, whole files, progress bars."""

    cache_dir: str | None = None  # huggingface_hub's cache (HF_HUB_CACHE) when None
    offline: bool = False  # also on when HF_HUB_OFFLINE is set
    full_download: bool = False  # whole files, never ranges
    progress: bool = False  # progress bars on stderr (the CLI sets it when stderr is a terminal)


def http_timeout() -> float:
    """Seconds from ``EMBINSPECT_HTTP_TIMEOUT`` (default 30); UsageError unless positive."""
    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise UsageError(
            f"{TIMEOUT_VARIABLE}={shown!r}: expected a number of seconds greater than 0 "
            f"(default {DEFAULT_TIMEOUT:g})"
        )
    return seconds
