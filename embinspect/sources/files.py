"""Local files: JSON objects read from a checkpoint, and files written so that a reader
never sees half of one (a temporary name beside the target, then a rename)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

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


def temporary_beside(path: Path) -> Path:
    """A name next to ``path``, unique to this process, for writing before the rename."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.incomplete")


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` under a temporary name beside ``path``, then rename: a reader never
    sees half a file. OSError when the folder cannot be written (nothing is left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    try:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
