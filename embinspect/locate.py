"""Where a checkpoint's files are: a local folder, a single file, or a Hugging Face repo.

``locate(model)`` answers which safetensors files hold the weights and gives a way to
get any other file of the checkpoint (config, tokenizer) by name. For a Hub repo a file
is fetched through huggingface_hub's cache only when asked for, so a command that needs
only ``config.json`` and one shard gets only those.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embinspect.errors import ModelError
from embinspect.safetensors_header import refuse_pickle_message

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt")

# owner/name or name, as the Hub accepts them (letters, digits, '-', '_', '.').
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


@dataclass
class CheckpointFiles:
    """The files of one checkpoint.

    ``weight_files`` are names relative to the checkpoint root, as they appear in an
    index's ``weight_map``. ``weight_map`` is None when there is no index (one file).
    """

    model: str
    kind: str  # "directory", "file" or "hub"
    weight_files: list[str]
    weight_map: dict[str, str] | None = None
    index_total_size: int | None = None
    _fetch: Callable[[str], Path | None] = field(default=lambda name: None, repr=False)
    _is_present: Callable[[str], bool] = field(default=lambda name: False, repr=False)

    def optional(self, name: str) -> Path | None:
        """Local path of a checkpoint file, fetching it if remote; None if it does not exist."""
        return self._fetch(name)

    def require(self, name: str) -> Path:
        path = self._fetch(name)
        if path is None:
            raise ModelError(f"{self.model}: file {name} is missing from the checkpoint")
        return path

    def is_present(self, name: str) -> bool:
        """True when the file is on this machine already (always, for local checkpoints)."""
        return self._is_present(name)

    def read_json(self, name: str) -> dict | None:
        path = self.optional(name)
        if path is None:
            return None
        return load_json(path)


def load_json(path: Path) -> dict:
    """A JSON object from a checkpoint file; ModelError for anything else."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except ValueError as err:  # JSONDecodeError, or an integer too long to convert
        raise ModelError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def locate(model: str, revision: str | None = None) -> CheckpointFiles:
    """Resolve MODEL (folder, ``.safetensors`` file, or Hub repo id) to its files."""
    if not model.strip():
        raise ModelError("MODEL is empty: give a folder, a .safetensors file or a Hub repo id")
    try:
        return _locate(model, revision)
    except PermissionError as err:
        raise ModelError(f"{err.filename or model}: permission denied") from None


def _locate(model: str, revision: str | None) -> CheckpointFiles:
    path = Path(model).expanduser()
    if path.is_dir():
        if revision:
            raise ModelError(f"{model}: --revision applies to Hub repos, not to a local folder")
        return _locate_directory(model, path)
    if path.is_file():
        if revision:
            raise ModelError(f"{model}: --revision applies to Hub repos, not to a local file")
        return _locate_file(model, path)
    if _REPO_ID.match(model) and not model.endswith((".safetensors", ".json")):
        return _locate_hub(model, revision)
    raise ModelError(f"{model}: no such file or directory, and not a Hugging Face repo id")


def _locate_directory(model: str, root: Path) -> CheckpointFiles:
    def fetch(name: str) -> Path | None:
        candidate = root / name
        return candidate if candidate.is_file() else None

    def present(name: str) -> bool:
        return (root / name).is_file()

    index_path = root / INDEX_FILE
    if index_path.is_file():
        return _from_index(model, "directory", load_json(index_path), index_path, fetch, present)
    if (root / SINGLE_FILE).is_file():
        return CheckpointFiles(model, "directory", [SINGLE_FILE], None, None, fetch, present)
    others = sorted(p.name for p in root.glob("*.safetensors"))
    if others:
        return CheckpointFiles(model, "directory", others, None, None, fetch, present)
    pickles = sorted(p.name for p in root.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelError(refuse_pickle_message(root / pickles[0]))
    raise ModelError(
        f"{model}: no .safetensors weights in this folder (expected {SINGLE_FILE} or {INDEX_FILE})"
    )


def _locate_file(model: str, path: Path) -> CheckpointFiles:
    if path.name.endswith(PICKLE_SUFFIXES):
        raise ModelError(refuse_pickle_message(path))
    # A lone file carries no config or tokenizer: only the file itself can be fetched.
    return CheckpointFiles(
        model,
        "file",
        [path.name],
        _fetch=lambda name: path if name == path.name else None,
        _is_present=lambda name: name == path.name,
    )


def _from_index(
    model: str,
    kind: str,
    index: dict,
    index_path: Path,
    fetch: Callable[[str], Path | None],
    present: Callable[[str], bool],
) -> CheckpointFiles:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelError(f"{index_path}: index has no weight_map")
    for tensor, file in weight_map.items():
        if not isinstance(file, str) or "/" in file or "\\" in file or file.startswith("."):
            # A shard name is a bare file name; anything else could point outside the checkpoint.
            raise ModelError(f"{index_path}: bad shard name {file!r} for tensor {tensor!r}")
    files = sorted(set(weight_map.values()))
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    # Only an estimate for `info`: anything but a count (a string, NaN, -1) is ignored.
    is_count = isinstance(total, int) and not isinstance(total, bool) and total >= 0
    total_size = total if is_count else None
    return CheckpointFiles(model, kind, files, dict(weight_map), total_size, fetch, present)


def _locate_hub(repo_id: str, revision: str | None) -> CheckpointFiles:
    # Imported here: only a Hub checkpoint needs huggingface_hub.
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    where = f"{repo_id}@{revision}" if revision else repo_id

    def fetch(name: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            # Offline, a file missing from the cache is as good as missing.
            return None
        except GatedRepoError:
            raise ModelError(f"{where}: gated repo; accept its terms and set HF_TOKEN") from None
        except RevisionNotFoundError:
            raise ModelError(f"{where}: no such revision") from None
        except RepositoryNotFoundError:
            raise ModelError(
                f"{repo_id}: no such local path, and no such Hub repo (or it is private: "
                "set HF_TOKEN)"
            ) from None

    def present(name: str) -> bool:
        cached = try_to_load_from_cache(repo_id, name, revision=revision)
        return isinstance(cached, str)

    index_path = fetch(INDEX_FILE)
    if index_path is not None:
        return _from_index(where, "hub", load_json(index_path), index_path, fetch, present)
    if fetch(SINGLE_FILE) is not None:
        return CheckpointFiles(where, "hub", [SINGLE_FILE], None, None, fetch, present)
    for name in PICKLE_WEIGHT_FILES:
        if present(name):
            raise ModelError(refuse_pickle_message(f"{where}/{name}"))
    if offline:
        raise ModelError(
            f"{where}: not in the local Hugging Face cache (HF_HUB_OFFLINE is set); "
            "download it first or unset HF_HUB_OFFLINE"
        )
    raise ModelError(
        f"{where}: no model.safetensors or {INDEX_FILE} found on the Hub or in the local cache"
    )
