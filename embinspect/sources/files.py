"""Local files: JSON objects read from a checkpoint, and files written so that a reader
never sees half of one (a temporary name beside the target, then a rename)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from embinspect.errors import ModelError, reading


def load_json(path: Path) -> dict:
    """A JSON object from a checkpoint file; ModelError for anything else."""
    with reading(path, "a JSON file"):
        raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except ValueError as err:  # JSONDecodeError, or an integer too long to convert
        raise ModelError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def output_path(path: str | os.PathLike[str]) -> Path:
    """A path to write that a user gave (``--out``, ``plot``'s picture): ``~`` expanded
    as a shell would, when the shell did not (``--out=~/t.npy``, the Python API)."""
    return Path(os.fspath(path)).expanduser()


def temporary_beside(path: Path) -> Path:
    """A name next to ``path``, unique to this process, for writing before the rename."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.incomplete")


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` under a temporary name beside ``path``, then rename: a reader never
    sees half a file. OSError when the folder cannot be written (nothing is left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_files(path, sync=False) as (handle,):
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def atomic_files(*paths: Path, sync: bool = True, replace: bool = True) -> Iterator[list[BinaryIO]]:
    """Binary handles on temporary names beside ``paths``; when the block ends, each is
    flushed to disk (``sync``; a cache that can be rebuilt passes False) and renamed to
    its path, in the order given, replacing what is there; with ``replace`` False a path
    that exists by then (one made while the block ran) is left alone and FileExistsError
    names it: nothing of the block is published then (``publish_new``). When the block
    fails (an error, Ctrl-C, SIGTERM) every temporary file is removed, and nothing of the
    block is left on disk. OSError when a folder cannot be written."""
    temporaries = [temporary_beside(path) for path in paths]
    handles: list[BinaryIO] = []
    try:
        for temporary in temporaries:
            handles.append(open(temporary, "xb"))  # noqa: SIM115 (closed below, on any end)
        yield handles
        for handle in handles:
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
            handle.close()
        published: list[tuple[Path, os.stat_result]] = []
        try:
            for temporary, path in zip(temporaries, paths, strict=True):
                if replace:
                    os.replace(temporary, path)
                else:
                    written = os.stat(temporary)
                    publish_new(temporary, path)
                    published.append((path, written))
        except FileExistsError:
            for path, written in published:  # the earlier files of the set: taken back
                _unlink_if_same(path, written)
            raise
    finally:
        for handle in handles:
            handle.close()
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def publish_new(temporary: Path, path: Path) -> None:
    """Give the file ``temporary`` the name ``path`` unless something is there by now
    (FileExistsError naming it): a hard link, which never replaces, then the temporary
    name removed. Where the file system has no hard links, a check just before the
    rename (a smaller window, not none)."""
    try:
        os.link(temporary, path, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
        os.rename(temporary, path)
        return
    temporary.unlink()


def _unlink_if_same(path: Path, written: os.stat_result) -> None:
    """Remove ``path`` when it is still the file ``written`` (published here): never a file
    someone else put there since."""
    try:
        if os.path.samestat(os.stat(path, follow_symlinks=False), written):
            path.unlink()
    except OSError:
        pass


@contextmanager
def atomic_folder(path: Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; when the block ends it is renamed to
    ``path`` (a folder there already is replaced: moved aside, then removed). With
    ``replace`` False, whatever is at ``path`` by then (made while the block ran) is left
    alone and FileExistsError names it, except an empty folder, which a rename replaces
    with nothing lost. When the block fails the temporary folder is removed, and ``path``
    is left as it was."""
    temporary = temporary_beside(path)
    temporary.mkdir()
    try:
        yield temporary
        if not replace:
            try:
                os.rename(temporary, path)  # never replaces a file or a non-empty folder
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
                raise
        elif path.is_dir() and not path.is_symlink():
            old = temporary_beside(path).with_suffix(".old")
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if path.is_symlink() or path.exists():
                path.unlink()
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
