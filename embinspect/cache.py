"""Where embinspect keeps what it derives from a checkpoint and can derive again: a GGUF
file's tokenizer, converted once (seconds) and read back on later runs (milliseconds).

``EMBINSPECT_CACHE`` names the folder; else ``$XDG_CACHE_HOME/embinspect``, else
``~/.cache/embinspect``. Anything in it may be deleted at any time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("EMBINSPECT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "embinspect"


def cached_file(*parts: str) -> Path:
    return cache_dir().joinpath(*parts)


def write_atomically(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` under a temporary name, then rename: a reader never sees
    half a file. False (and nothing written) when the folder cannot be written: a cache
    that cannot be kept only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError:
        return False
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        return False
    return True
