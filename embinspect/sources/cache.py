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

A derived entry too large for a JSON string (a word-vector file's parse: a float32 table and
its words) is kept as arrays (``keep_derived_arrays``): one safetensors file whose
``__metadata__`` holds the same record, its ``sha256`` that of every byte after the header.
``read_arrays_entry`` checks the record and the sizes only (cheap, for ``info`` and
``embinspect cache ls``); ``open_arrays_verified`` checks the digest too, on the open file
that the caller then maps, before any of it is used.

``EMBINSPECT_NO_CACHE`` set (to anything but ``0``) turns derived entries off: none is read
or written, and each run derives again. The Hub's ranges are not derived: they stay.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from embinspect import progress
from embinspect.errors import ModelError, note
from embinspect.sources.files import atomic_files, write_atomically
from embinspect.sources.safetensors_header import parse_header
from embinspect.sources.tensor import TensorHeader

# What marks a file that keep_derived wrote, and the layout of its record.
DERIVED_KIND = "embinspect derived cache"
DERIVED_VERSION = 1
# An entry larger than this is not one embinspect wrote (the largest tokenizer.json known is
# tens of megabytes): it is derived again rather than read into memory.
MAX_DERIVED_BYTES = 512 * 1024 * 1024

# The folders of derived entries, and what an entry in each is (``embinspect cache ls``'s
# kind): a new kind of derived entry adds its folder here.
GGUF_TOKENIZERS = "gguf-tokenizers"
WORD_VECTORS = "word-vectors"
DERIVED_FOLDERS = {GGUF_TOKENIZERS: "tokenizer", WORD_VECTORS: "word-vectors"}
# The setting that turns derived entries off (any value but "" and "0").
NO_CACHE = "EMBINSPECT_NO_CACHE"

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


def derived_cache_off() -> bool:
    """Whether ``EMBINSPECT_NO_CACHE`` turns derived entries off for this run."""
    return os.environ.get(NO_CACHE, "") not in ("", "0")


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
    and mtime), not checked. False when the cache cannot be written (only time is lost),
    or is turned off (``EMBINSPECT_NO_CACHE``).
    """
    if derived_cache_off():
        return False
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
    None as well when derived entries are turned off (``EMBINSPECT_NO_CACHE``).
    """
    if derived_cache_off():
        return None
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


# --- derived entries of arrays ---------------------------------------------------------------

# The key of ``__metadata__`` that holds the record of an entry of arrays.
RECORD_KEY = "embinspect"
# An entry's header is its record and a few tensors: a larger one is not one we wrote.
MAX_ARRAYS_HEADER_BYTES = 1024 * 1024
# Bytes hashed at a time when an entry is checked (memory stays at this).
DIGEST_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ArraysEntry:
    """An entry of arrays as its header describes it, the sizes checked: ``record`` (kind,
    version, ``source``, ``provenance``, ``facts`` (what the caller kept beside the arrays)
    and the ``sha256`` of the data), ``tensors`` (each placed in the file), the file's
    ``size`` and where its data starts (``data_start``)."""

    path: Path
    record: dict[str, Any]
    tensors: dict[str, TensorHeader]
    size: int
    data_start: int


class Untrusted(Exception):
    """An entry that is there but cannot be used: ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def keep_derived_arrays(
    path: Path,
    arrays: dict[str, tuple[str, tuple[int, ...], Any]],
    source: dict[str, Any],
    provenance: dict[str, Any],
    facts: dict[str, Any],
) -> bool:
    """Keep ``arrays`` (``name: (safetensors dtype, shape, C-contiguous buffer)``), derived
    from ``source``, at ``path``: one safetensors file, its record in ``__metadata__``.

    Written under a temporary name and renamed, so a reader (another process) sees the
    old entry or the new one, never half of one; two writers leave one whole entry. Nothing
    is copied: the buffers are hashed, then written. False when the cache cannot be written
    (the folder, a full disk: only time is lost) or is turned off.
    """
    if derived_cache_off():
        return False
    header: dict[str, Any] = {}
    digest = hashlib.sha256()
    offset = 0
    buffers = []
    for name, (dtype, shape, data) in arrays.items():
        view = memoryview(data).cast("B")
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        offset += view.nbytes
        digest.update(view)
        buffers.append(view)
    record = {
        "kind": DERIVED_KIND,
        "version": DERIVED_VERSION,
        "source": source,
        "provenance": provenance,
        "facts": facts,
        "data_bytes": offset,
        "sha256": digest.hexdigest(),
    }
    header["__metadata__"] = {RECORD_KEY: json.dumps(record)}
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # safetensors: data aligned to 8 bytes
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_files(path, sync=False) as (handle,):  # a cache: rebuilt if lost
            handle.write(struct.pack("<Q", len(raw)))
            handle.write(raw)
            for view in buffers:
                handle.write(view)
    except OSError:
        return False
    return True


def read_arrays_entry(path: Path) -> tuple[ArraysEntry | None, str | None]:
    """The entry of arrays at ``path``, its record and sizes checked (not its digest):
    ``(entry, None)``; ``(None, None)`` when there is none; ``(None, why)`` when the file
    there is no entry embinspect wrote, or has been cut or grown since."""
    try:
        with _open_entry(path) as handle:
            return _arrays_entry(path, handle), None
    except (FileNotFoundError, NotADirectoryError):  # no entry, or no folder for one
        return None, None
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    except Untrusted as untrusted:
        return None, untrusted.reason


@contextmanager
def open_arrays_verified(path: Path, label: str) -> Iterator[tuple[IO[bytes], ArraysEntry]]:
    """The entry at ``path`` open, its record, sizes and the SHA-256 of all its data checked
    on that open file (which the caller may map: a later rename over ``path`` does not
    change what it reads). Raises ``Untrusted`` when it does not check out, and OSError when
    it cannot be opened. The check is a progress step named ``label``, in bytes."""
    with _open_entry(path) as handle:
        entry = _arrays_entry(path, handle)
        expected = entry.record["sha256"]
        digest = hashlib.sha256()
        handle.seek(entry.data_start)
        with progress.task(label, total=entry.size - entry.data_start) as advance:
            while block := handle.read(DIGEST_BLOCK_BYTES):
                digest.update(block)
                advance(len(block))
        if digest.hexdigest() != expected:
            raise Untrusted("its data does not have the SHA-256 its record gives")
        yield handle, entry


def _open_entry(path: Path) -> IO[bytes]:
    """An entry opened to read, never through a link (as ``embinspect cache`` lists none):
    a link where an entry should be is an OSError (ELOOP)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    return open(path, "rb", opener=lambda name, flags: os.open(name, flags | nofollow))


def _arrays_entry(path: Path, handle: IO[bytes]) -> ArraysEntry:
    """Read and check an entry's header from ``handle``; raise ``Untrusted``."""
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise Untrusted("not a regular file")
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise Untrusted(f"{info.st_size} bytes: cut short")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_ARRAYS_HEADER_BYTES or 8 + length > info.st_size:
        raise Untrusted("not an entry embinspect wrote (its header length does not fit)")
    raw = handle.read(length)
    try:
        record = json.loads(json.loads(raw)["__metadata__"][RECORD_KEY])
    except (ValueError, TypeError, KeyError, RecursionError):
        raise Untrusted("not an entry embinspect wrote (its header does not parse)") from None
    data_start = 8 + length
    if (
        not isinstance(record, dict)
        or record.get("kind") != DERIVED_KIND
        or record.get("version") != DERIVED_VERSION
        or not isinstance(record.get("source"), dict)
        or not isinstance(record.get("provenance"), dict)
        or not isinstance(record.get("facts"), dict)
        or not isinstance(record.get("sha256"), str)
        or type(record.get("data_bytes")) is not int
    ):
        raise Untrusted("not an entry embinspect wrote (no record in its header)")
    if info.st_size != data_start + record["data_bytes"]:
        raise Untrusted(
            f"{info.st_size:,} bytes where its record says {data_start + record['data_bytes']:,}"
        )
    try:
        tensors = parse_header(raw, info.st_size, path, path.name)
    except ModelError as err:
        raise Untrusted(f"its tensors do not fit it ({err.message})") from None
    ends = sorted(t.offset + t.nbytes for t in tensors.values())
    if not ends or ends[-1] != info.st_size:
        raise Untrusted("its tensors do not fill the file")
    return ArraysEntry(path, record, tensors, info.st_size, data_start)
