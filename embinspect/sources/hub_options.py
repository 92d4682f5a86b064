"""How to reach the Hub, as the source options say: kept apart from ``hub`` so that a
local checkpoint never imports huggingface_hub."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubOptions:
    """How to reach the Hub: the cache folder, offline, whole files, progress bars."""

    cache_dir: str | None = None  # huggingface_hub's cache (HF_HUB_CACHE) when None
    offline: bool = False  # also on when HF_HUB_OFFLINE is set
    full_download: bool = False  # whole files, never ranges
    progress: bool = False  # progress bars on stderr (the CLI sets it when stderr is a terminal)
