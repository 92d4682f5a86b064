"""Where embinspect keeps what it derives from a checkpoint and can derive again: a GGUF
file's tokenizer, converted once (seconds) and read back on later runs (milliseconds).

``EMBINSPECT_CACHE`` names the folder; else ``$XDG_CACHE_HOME/embinspect``, else
``~/.cache/embinspect``. Anything in it may be deleted at any time. Each kind of derived
entry has a folder of its own (``DERIVED_FOLDERS``); ``embinspect cache`` looks in those
folders only, so a cache folder pointed at a folder of other files never touches them.

The byte ranges of Hub checkpoints are kept elsewhere, in huggingface_hub's assets cache
(``hub_dir()``: ``$HF_ASSETS_CACHE/embinspect``, by default ``$HF_HOME/assets/embinspect``),
laid out per repo and commit as ``hub_commit_folder``, ``header_path`` and ``range_path``
say; ``sources/hub.py`` writes there.

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

# The folders of derived entries, and what an entry in each is (``embinspect cache ls``'s
# kind): a new kind of derived entry adds its folder here.
GGUF_TOKENIZERS = "gguf-tokenizers"
DERIVED_FOLDERS = {GGUF_TOKENIZERS: "tokenizer"}

# The Hub's part: huggingface_hub's assets cache, in embinspect's folder; per repo
# (``models--org--name``, as huggingface_hub names it) and commit, the file list, each
# safetensors header (two range requests' bytes) and each tensor fetched by range (a
# one-tensor safetensors file).
HUB_LIBRARY = "embinspect"
HUB_REPO_PREFIX = "models--"
FILE_LIST = "files.json"
HEADERS = "headers"
TENSORS = "tensors"


def cache_dir() -> Path:
    explicit = os.environ.get("EMBINSPECT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "embinspect"


def cached_file(*parts: str) -> Path:
    return cache_dir().joinpath(*parts)


def hub_dir() -> Path:
    """Where the Hub's byte ranges are kept: ``$HF_ASSETS_CACHE/embinspect`` (resolved, as
    huggingface_hub's ``cached_assets_path`` resolves it)."""
    from huggingface_hub import constants

    return Path(constants.HF_ASSETS_CACHE).expanduser().resolve() / HUB_LIBRARY


def hub_repo_folder_name(repo_id: str) -> str:
    """``org/name`` as huggingface_hub names its folder: ``models--org--name``."""
    return HUB_REPO_PREFIX + "--".join(repo_id.split("/"))


def hub_repo_id(folder_name: str) -> str | None:
    """The repo id a folder was named for (``models--org--name``: ``org/name``), or None.
    Unambiguous: a Hub repo id holds no ``--``."""
    if not folder_name.startswith(HUB_REPO_PREFIX) or len(folder_name) == len(HUB_REPO_PREFIX):
        return None
    return folder_name[len(HUB_REPO_PREFIX) :].replace("--", "/")


def hub_commit_folder(repo_id: str, commit: str) -> Path:
    """The folder of one repo's commit (not created)."""
    return hub_dir() / hub_repo_folder_name(repo_id) / commit


def header_path(folder: Path, file: str) -> Path:
    """Where a safetensors file's header (its first bytes) is kept in a commit's folder."""
    return folder / HEADERS / (file.replace("/", "--") + ".header")


def range_path(folder: Path, file: str, tensor: str) -> Path:
    """Where one tensor's bytes, fetched by range, are kept in a commit's folder."""
    safe = tensor.replace("/", "--")
    return folder / TENSORS / file.replace("/", "--") / f"{safe}.safetensors"


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
    record = read_record(path)
    if record is None or record["source"] != source:
        return None
    content: str = record["content"]
    return content


def read_record(path: Path) -> dict[str, Any] | None:
    """The record ``keep_derived`` wrote at ``path``, or None when it is not one or its
    content does not have the digest recorded. ``source`` and ``provenance`` are dicts,
    ``content`` a string (the caller bounds the file's size)."""
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
        or not isinstance(record.get("source"), dict)
        or not isinstance(record.setdefault("provenance", {}), dict)
        or not isinstance(content, str)
        or record.get("sha256") != content_digest(content)
    ):
        return None
    return record
