"""Where embinspect keeps what it derives from a checkpoint and can derive again: a GGUF
file's tokenizer, converted once (seconds) and read back on later runs (milliseconds).

``EMBINSPECT_CACHE`` names the folder; else ``$XDG_CACHE_HOME/embinspect``, else
``~/.cache/embinspect``. Anything in it may be deleted at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

from embinspect.sources.files import write_atomically


def cache_dir() -> Path:
    explicit = os.environ.get("EMBINSPECT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "embinspect"


def cached_file(*parts: str) -> Path:
    return cache_dir().joinpath(*parts)


def keep(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; False (and nothing written) when the folder
    cannot be written: a cache that cannot be kept only costs time."""
    try:
        write_atomically(path, text)
    except OSError:
        return False
    return True
