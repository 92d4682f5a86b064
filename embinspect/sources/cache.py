"""Where embinspect keeps what it derives from a checkpoint and can derive again: a GGUF
file's tokenizer, converted once (seconds) and read back on later runs (milliseconds).

``EMBINSPECT_CACHE`` names the folder; else ``$XDG_CACHE_HOME/embinspect``, else
``~/.cache/embinspect``. Anything in it may be deleted at any time.

What is derived is kept with its record (``keep_derived``): what it was derived from and
the SHA-256 of its own content, in the same file, written at once. An entry is used only
when its record names the same source and its content still has that digest
(``read_derived``); anything else (tampered, truncated, swapped for another entry, or
derived from something else) is derived again, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from embinspect.errors import note
from embinspect.sources.files import write_atomically

# What marks a file that keep_derived wrote, and the layout of its record.
DERIVED_KIND = "embinspect derived cache"
DERIVED_VERSION = 1
# An entry larger than this is not one embinspect wrote (the largest tokenizer.json known is
# tens of megabytes): it is derived again rather than read into memory.
MAX_DERIVED_BYTES = 512 * 1024 * 1024


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


def content_digest(text: str) -> str:
    """SHA-256 of ``text`` as UTF-8: what a derived entry's record says its content is."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def keep_derived(
    path: Path, text: str, source: dict[str, Any], provenance: dict[str, Any] | None = None
) -> bool:
    """Keep ``text``, derived from ``source``, at ``path`` with its record, atomically.

    ``source``: what the text was derived from, every field of which must match for the
    entry to be used again (a digest of the input, the converter's version);
    ``provenance``: more about the input, kept for whoever reads the file (its path, size
    and mtime), not checked. False when the cache cannot be written (only time is lost).
    """
    record = {
        "kind": DERIVED_KIND,
        "version": DERIVED_VERSION,
        "source": source,
        "provenance": provenance or {},
        "sha256": content_digest(text),
        "content": text,
    }
    return keep(path, json.dumps(record))


def read_derived(path: Path, source: dict[str, Any], what: str) -> str | None:
    """The content ``keep_derived`` kept at ``path`` for this same ``source``, or None.

    None, silently, when there is no entry; None with a note naming ``what`` ("tokenizer of
    FILE") when there is one that cannot be trusted: not a regular file, not a record, a
    record of another source, or content whose SHA-256 is not the one recorded (changed
    after it was written). The caller derives the content again and keeps it over the entry.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    content = None
    if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_DERIVED_BYTES:
        content = _verified(path, source)
    if content is None:
        note(f"cached {what} ({path}) does not match its record; building it again")
    return content


def _verified(path: Path, source: dict[str, Any]) -> str | None:
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON
        return None
    if not isinstance(record, dict):
        return None
    content = record.get("content")
    if (
        record.get("kind") != DERIVED_KIND
        or record.get("version") != DERIVED_VERSION
        or record.get("source") != source
        or not isinstance(content, str)
        or record.get("sha256") != content_digest(content)
    ):
        return None
    return content
