"""``embinspect cache``: what embinspect keeps on disk, and taking it away again.

Two places hold it (``sources/cache.py`` lays them out): embinspect's own cache
(``EMBINSPECT_CACHE``), with what it derived from a checkpoint (GGUF tokenizers), and its
folder in huggingface_hub's assets cache (``$HF_ASSETS_CACHE/embinspect``), with the byte
ranges of Hub checkpoints. Each thing kept is one entry (``CacheEntry``):

- ``range``: one tensor's bytes, fetched by range from one file of a Hub repo's commit;
- ``headers``: that commit's file list and the safetensors headers read from it (a few
  kilobytes; fetched again when needed);
- ``tokenizer`` (and any other kind of derived entry): one file with its record, which
  says what it was derived from (the source's path, size, mtime and digest);
- ``word-vectors``: a word-vector file's parse (its float32 rows and its words, one
  safetensors file with the record in its metadata), keyed by the file's resolved path,
  size, mtime, ctime and the digest of its first and last megabyte;
- ``incomplete``: a file an interrupted write left under its temporary name.

An entry's ``state`` says whether it is still of use: ``ok``; ``gone`` (its source file no
longer exists); ``changed`` (its source is no longer what it was derived from);
``outdated`` (derived by another version of the converter, so never read again);
``damaged`` (not what embinspect wrote: unreadable, cut short, or content that does not
match its record); ``incomplete``. A Hub commit never changes, so a range is ``ok`` unless
it is damaged. ``prune_cache`` removes every entry that is not ``ok`` (an incomplete file
only when it has not been written to for an hour: a running download may own it).

Nothing here follows a symbolic link or looks outside the folders that embinspect writes:
a cache folder pointed at a folder of other files lists and removes none of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embinspect.errors import ModelError, UsageError
from embinspect.result import Displayable, Grid
from embinspect.sources.cache import (
    DERIVED_FOLDERS,
    FILE_LIST,
    HEADERS,
    MAX_DERIVED_BYTES,
    TENSORS,
    WORD_VECTORS,
    cache_dir,
    hub_commit_folder,
    hub_dir,
    hub_repo_id,
    read_arrays_entry,
    read_record,
)
from embinspect.sources.safetensors_header import read_header_and_metadata
from embinspect.text import quoted

STATES = ("ok", "gone", "changed", "outdated", "damaged", "incomplete")
# An incomplete file untouched this long belongs to no running write: prune removes it.
INCOMPLETE_AGE_S = 3600
# The fewest characters of an id that ``remove_cache_entries`` takes for the whole id.
MIN_ID_PREFIX = 4
ID_LENGTH = 12
_COMMIT = re.compile(r"[0-9a-f]{40}")
_INCOMPLETE = re.compile(r"^\..+\.[0-9a-f]{8}\.incomplete$")  # files.temporary_beside


@dataclass(frozen=True)
class CacheEntry(Displayable):
    """One thing embinspect keeps on disk.

    ``id``: 12 hex digits naming it (what ``remove_cache_entries`` and ``cache rm`` take);
    ``kind``: ``range``, ``headers``, ``tokenizer`` or ``incomplete``; ``model``: the Hub
    repo id, or the path of the file it was derived from (None when unknown); ``revision``:
    the Hub commit; ``file`` and ``tensor``: a range's checkpoint file and tensor; ``size``:
    bytes on disk (the sum of ``paths``' sizes); ``written``: when it was last written, UTC,
    ISO 8601; ``state`` and ``reason``: whether it is still of use, and why not.
    """

    id: str
    kind: str
    model: str | None
    revision: str | None
    file: str | None
    tensor: str | None
    size: int
    written: str
    state: str
    reason: str | None
    paths: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CacheListing(Displayable):
    """Every entry, and the two folders they are in: ``cache_dir`` (embinspect's own,
    ``EMBINSPECT_CACHE``) and ``hub_dir`` (the Hub's byte ranges, under ``HF_HOME``)."""

    cache_dir: str
    hub_dir: str
    entries: list[CacheEntry]

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache_dir": self.cache_dir,
            "hub_dir": self.hub_dir,
            "size": self.size,
            "entries": [entry.to_dict() for entry in self.entries],
        }

    def _grid(self) -> Grid:
        return Grid(
            title=f"embinspect cache: {len(self.entries)} entries, {self.size:,} bytes",
            header=["id", "kind", "model", "part", "size", "written", "state"],
            rows=[
                [e.id, e.kind, e.model, part_of(e), e.size, e.written, e.state]
                for e in self.entries
            ],
            before=[f"cache_dir: {self.cache_dir}", f"hub_dir: {self.hub_dir}"],
        )


@dataclass(frozen=True)
class CacheRemoval(Displayable):
    """The entries removed (or, with ``dry_run``, that would be) and the bytes freed."""

    removed: list[CacheEntry]
    dry_run: bool = False

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "size": self.size,
            "removed": [entry.to_dict() for entry in self.removed],
        }


@dataclass(frozen=True)
class CachePaths(Displayable):
    """Where the cache is: ``cache_dir`` (``EMBINSPECT_CACHE``, else
    ``$XDG_CACHE_HOME/embinspect``, else ``~/.cache/embinspect``) and ``hub_dir``
    (``$HF_ASSETS_CACHE/embinspect``, by default ``$HF_HOME/assets/embinspect``)."""

    cache_dir: str
    hub_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def part_of(entry: CacheEntry) -> str:
    """What part of its model an entry holds, in words: ``TENSOR (FILE)`` for a range."""
    if entry.kind == "range":
        return f"{entry.tensor} ({entry.file})"
    if entry.kind == "headers":
        return "file list, headers"
    if entry.kind == DERIVED_FOLDERS[WORD_VECTORS]:
        return "rows, words"
    return entry.kind


# --- listing -------------------------------------------------------------------------------


def cache_paths() -> CachePaths:
    return CachePaths(str(cache_dir()), str(hub_dir()))


def cache_entries() -> CacheListing:
    """Every entry of embinspect's cache, Hub ranges first (by repo, commit, file, tensor),
    then derived entries (by source), then incomplete files."""
    derived_root, hub_root = cache_dir(), hub_dir()
    entries = [*_hub_entries(hub_root), *_derived_entries(derived_root)]
    order = {kind: i for i, kind in enumerate(("headers", "range"))}
    entries.sort(
        key=lambda e: (
            e.kind == "incomplete",
            e.revision is None,
            e.model or "",
            e.revision or "",
            order.get(e.kind, 2),
            e.file or "",
            e.tensor or "",
            e.id,
        )
    )
    return CacheListing(str(derived_root), str(hub_root), entries)


def cached_ranges(repo_id: str, commit: str) -> list[CacheEntry]:
    """The ranges of one Hub repo's commit held in the cache and fit for use (``info``
    names them; a damaged one is fetched again, as ``info``'s fetch plan says)."""
    folder = hub_commit_folder(repo_id, commit)
    if not _is_folder(folder):
        return []
    found = _commit_entries(hub_dir(), repo_id, commit, folder)
    held = [e for e in found if e.kind == "range" and e.state == "ok"]
    return sorted(held, key=lambda e: (e.file or "", e.tensor or ""))


def derived_entry_id(path: Path) -> str:
    """The id ``cache ls`` gives the derived entry at ``path`` (in a derived folder)."""
    return _entry_id("derived", f"{path.parent.name}/{path.name}")


def _entry_id(root: str, relative: str) -> str:
    key = f"{root}:{relative}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:ID_LENGTH]


def _written(mtime: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))


def _is_folder(path: Path) -> bool:
    """A folder, and not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _folders(path: Path) -> Iterator[os.DirEntry[str]]:
    """The folders in ``path`` (never through a link), sorted by name."""
    for entry in _scan(path):
        if entry.is_dir(follow_symlinks=False):
            yield entry


def _files(path: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """The regular files in ``path`` (links left out), sorted, with their ``lstat``."""
    for entry in _scan(path):
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        if stat.S_ISREG(info.st_mode):
            yield Path(entry.path), info


def _scan(path: Path) -> list[os.DirEntry[str]]:
    if not _is_folder(path):
        return []
    try:
        with os.scandir(path) as found:
            return sorted(found, key=lambda e: e.name)
    except OSError:
        return []


def _hub_entries(root: Path) -> Iterator[CacheEntry]:
    for repo in _folders(root):
        repo_id = hub_repo_id(repo.name)
        if repo_id is None:
            continue
        for commit in _folders(Path(repo.path)):
            if _COMMIT.fullmatch(commit.name):
                yield from _commit_entries(root, repo_id, commit.name, Path(commit.path))


def _commit_entries(root: Path, repo_id: str, commit: str, folder: Path) -> list[CacheEntry]:
    """The entries of one commit's folder: its headers (one entry), each range, and what
    interrupted writes left."""
    entries: list[CacheEntry] = []
    metadata: list[tuple[Path, os.stat_result]] = []
    places = [folder, folder / HEADERS]
    places += [Path(f.path) for f in _folders(folder / TENSORS)]
    for place in places:
        for path, info in _files(place):
            relative = path.relative_to(root).as_posix()
            if _INCOMPLETE.match(path.name):
                entries.append(_incomplete(_entry_id("hub", relative), path, info, repo_id))
            elif (place == folder and path.name == FILE_LIST) or (
                place == folder / HEADERS and path.name.endswith(".header")
            ):
                metadata.append((path, info))
            elif place.parent == folder / TENSORS and path.suffix == ".safetensors":
                entries.append(_range(_entry_id("hub", relative), path, info, repo_id, commit))
    if metadata:
        relative = (folder / HEADERS).relative_to(root).as_posix()
        entries.append(
            CacheEntry(
                id=_entry_id("hub", relative),
                kind="headers",
                model=repo_id,
                revision=commit,
                file=None,
                tensor=None,
                size=sum(info.st_size for _, info in metadata),
                written=_written(max(info.st_mtime for _, info in metadata)),
                state="ok",
                reason=None,
                paths=[str(path) for path, _ in metadata],
            )
        )
    return entries


def _range(
    entry_id: str, path: Path, info: os.stat_result, repo_id: str, commit: str
) -> CacheEntry:
    """A range file: a one-tensor safetensors file, complete when its size is where its
    tensor ends. Its file and tensor names come from its header (the folder names stand
    for them where the header cannot be read)."""
    file = path.parent.name.replace("--", "/")
    tensor = path.stem.replace("--", "/")
    state, reason = "ok", None
    try:
        tensors, metadata = read_header_and_metadata(path)
    except ModelError:
        tensors, metadata = None, {}
    if tensors is None or len(tensors) != 1:
        state, reason = "damaged", "not a one-tensor safetensors file"
    else:
        (header,) = tensors.values()
        tensor = header.name
        end = header.offset + header.nbytes
        if info.st_size != end:
            state, reason = "damaged", f"{info.st_size:,} bytes where its tensor ends at {end:,}"
        # The checkpoint file it was cut from: its metadata's ``source``, ``REPO@COMMIT/FILE``
        # (the folder name spells a file's `/` as `--`, which a name may hold too).
        source, prefix = metadata.get("source", ""), f"{repo_id}@{commit}/"
        if source.startswith(prefix) and len(source) > len(prefix):
            file = source[len(prefix) :]
    return _one_file(entry_id, "range", path, info, state, reason, repo_id, commit, file, tensor)


def _incomplete(
    entry_id: str, path: Path, info: os.stat_result, model: str | None = None
) -> CacheEntry:
    reason = "a write that has not finished, or was interrupted"
    return _one_file(entry_id, "incomplete", path, info, "incomplete", reason, model)


def _derived_entries(root: Path) -> Iterator[CacheEntry]:
    for folder_name, kind in DERIVED_FOLDERS.items():
        for path, info in _files(root / folder_name):
            entry_id = _entry_id("derived", f"{folder_name}/{path.name}")
            if _INCOMPLETE.match(path.name):
                yield _incomplete(entry_id, path, info)
            elif folder_name == WORD_VECTORS:
                yield _word_vectors(entry_id, kind, path, info)
            else:
                yield _derived(entry_id, kind, path, info)


def _derived(entry_id: str, kind: str, path: Path, info: os.stat_result) -> CacheEntry:
    record = read_record(path) if info.st_size <= MAX_DERIVED_BYTES else None
    model = None
    if record is None:
        state, reason = "damaged", "not a record embinspect wrote, or its content changed since"
    else:
        where = record["provenance"].get("path")
        model = where if isinstance(where, str) else None
        state, reason = _derived_state(record)
    return _one_file(entry_id, kind, path, info, state, reason, model)


def _word_vectors(entry_id: str, kind: str, path: Path, info: os.stat_result) -> CacheEntry:
    """A word-vector file's parse: its record and sizes checked (its digest is checked
    before each use, not here), its state that of the file it was parsed from."""
    entry, untrusted = read_arrays_entry(path)
    if entry is None:
        reason = untrusted or "removed meanwhile"
        return _one_file(entry_id, kind, path, info, "damaged", reason)
    where = entry.record["provenance"].get("path")
    model = where if isinstance(where, str) else None
    state, reason = _word_vectors_state(entry.record["source"])
    return _one_file(entry_id, kind, path, info, state, reason, model)


def _word_vectors_state(source: dict[str, Any]) -> tuple[str, str | None]:
    """``ok`` when the entry would be used for its file as it is now: the same key."""
    from embinspect.sources.word_vectors import CACHE_FORMAT, file_key

    where = source.get("path")
    if source.get("format") != CACHE_FORMAT:
        return (
            "outdated",
            f"parse cache format {source.get('format')}; this embinspect reads {CACHE_FORMAT}",
        )
    if not isinstance(where, str) or not os.path.isabs(where):
        return "damaged", "its record names no file"
    try:
        now = file_key(Path(where))
    except FileNotFoundError:
        return "gone", f"{where}: no such file any more"
    except OSError as err:
        return "changed", f"{where}: cannot be read ({err.strerror or err})"
    if now != source:
        return "changed", f"{where} changed since (size, times or content)"
    return "ok", None


def _one_file(
    entry_id: str,
    kind: str,
    path: Path,
    info: os.stat_result,
    state: str,
    reason: str | None,
    model: str | None = None,
    revision: str | None = None,
    file: str | None = None,
    tensor: str | None = None,
) -> CacheEntry:
    """The entry of one file: its size and time from ``info``."""
    size, written = info.st_size, _written(info.st_mtime)
    return CacheEntry(
        entry_id, kind, model, revision, file, tensor, size, written, state, reason, [str(path)]
    )


def _derived_state(record: dict[str, Any]) -> tuple[str, str | None]:
    """Whether a derived entry's source is still what it was derived from: the file its
    record names (path, size, mtime; the digest of its GGUF metadata when those differ),
    and the converter's version (transformers') against the one installed."""
    source, provenance = record["source"], record["provenance"]
    where = provenance.get("path")
    if isinstance(where, str) and os.path.isabs(where):
        try:
            info = os.stat(where)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            return "gone", f"{where}: no such file any more"
        unchanged = (info.st_size, info.st_mtime_ns) == (
            provenance.get("size"),
            provenance.get("mtime_ns"),
        )
        if not unchanged and not _same_gguf_metadata(Path(where), source):
            return "changed", f"{where} changed since"
    built_with = source.get("transformers")
    if built_with is not None:
        installed = _installed("transformers")
        if built_with != installed:
            now = f"{installed} is installed" if installed else "it is not installed"
            return "outdated", f"built by transformers {built_with}; {now}"
    return "ok", None


def _same_gguf_metadata(path: Path, source: dict[str, Any]) -> bool:
    """Whether the GGUF at ``path`` still has the metadata an entry was derived from (a
    file touched, or its tensors rewritten, keeps its tokenizer)."""
    digest = source.get("gguf_metadata_sha256")
    if not isinstance(digest, str):
        return False
    from embinspect.sources.gguf_file import read_gguf

    try:
        return read_gguf(path).metadata_digest() == digest
    except (ModelError, OSError):
        return False


def _installed(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# --- removing ------------------------------------------------------------------------------


def remove_cache_entries(ids: Sequence[str]) -> CacheRemoval:
    """Remove the entries named by ``ids`` (each an id as listed, or the first characters
    of one, at least ``MIN_ID_PREFIX``, that no other id starts with). UsageError, before
    anything is removed, when one names no entry or several."""
    entries = cache_entries().entries
    chosen: dict[str, CacheEntry] = {}
    for wanted in ids:
        entry = _find(entries, wanted)
        chosen.setdefault(entry.id, entry)
    return _remove(list(chosen.values()))


def clear_cache() -> CacheRemoval:
    """Remove every entry."""
    return _remove(cache_entries().entries)


def prune_cache(dry_run: bool = False) -> CacheRemoval:
    """Remove (or, with ``dry_run``, list) every entry that is of no more use: its source
    gone or changed, outdated, damaged, or a write left unfinished over an hour ago."""
    now = time.time()
    useless = [e for e in cache_entries().entries if _useless(e, now)]
    return CacheRemoval(useless, dry_run=True) if dry_run else _remove(useless)


def _useless(entry: CacheEntry, now: float) -> bool:
    if entry.state == "ok":
        return False
    if entry.state == "incomplete":
        try:
            return now - os.lstat(entry.paths[0]).st_mtime > INCOMPLETE_AGE_S
        except OSError:
            return False
    return True


def _find(entries: list[CacheEntry], wanted: str) -> CacheEntry:
    if not isinstance(wanted, str) or not wanted:
        raise UsageError("name a cache entry by its id (embinspect cache ls lists them)")
    exact = [e for e in entries if e.id == wanted]
    if exact:
        return exact[0]
    if len(wanted) < MIN_ID_PREFIX:
        raise UsageError(
            f"no cache entry has the id {quoted(wanted)} (give at least {MIN_ID_PREFIX} "
            "characters of one)"
        )
    found = [e for e in entries if e.id.startswith(wanted)]
    if not found:
        raise UsageError(f"no cache entry has the id {quoted(wanted)}")
    if len(found) > 1:
        raise UsageError(
            f"{len(found)} cache entries have ids starting {quoted(wanted)}; give more of one"
        )
    return found[0]


def _remove(entries: list[CacheEntry]) -> CacheRemoval:
    """Remove each entry's files, then the folders left empty inside the cache's two."""
    roots = {cache_dir(), hub_dir()}
    emptied: set[Path] = set()
    for entry in entries:
        for name in entry.paths:
            path = Path(name)
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                raise ModelError(
                    f"{path}: cannot remove it from the cache ({err.strerror or err})"
                ) from None
            emptied.add(path.parent)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        _remove_empty_folders(folder, roots)
    return CacheRemoval(entries)


def _remove_empty_folders(folder: Path, roots: set[Path]) -> None:
    """``folder`` and its parents, while empty, up to (not including) a cache root."""
    while folder not in roots and any(root in folder.parents for root in roots):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): the rest above is not empty either
            return
        folder = folder.parent
