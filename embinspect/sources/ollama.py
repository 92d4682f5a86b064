"""``ollama:NAME[:TAG]``: the GGUF file Ollama keeps for a pulled model.

Ollama stores a model as an OCI-style manifest and content-addressed blobs under its
models folder (``OLLAMA_MODELS``, default ``~/.ollama/models``)::

    manifests/registry.ollama.ai/library/llama3.2/latest   (JSON: config + layers)
    blobs/sha256-<hex>                                      (one file per layer)

The layer of media type ``application/vnd.ollama.image.model`` is the model's GGUF file;
the others are its template, parameters, licence, or a vision projector. ``NAME`` is
``model`` (the ``library`` namespace), ``namespace/model`` or ``host/namespace/model``,
as ``ollama pull`` takes it; ``TAG`` defaults to ``latest``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from embinspect.errors import ModelError
from embinspect.sources.files import load_json

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MODEL_LAYER = "application/vnd.ollama.image.model"
_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


def models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def ollama_blob(reference: str) -> Path:
    """The GGUF blob of ``NAME[:TAG]``; ModelError naming what is missing otherwise."""
    root = models_dir()
    manifest_path = manifest_file(root, reference)
    if not manifest_path.is_file():
        raise ModelError(_not_pulled(root, reference, manifest_path))
    layers = load_json(manifest_path).get("layers")
    if not isinstance(layers, list):
        raise ModelError(f"{manifest_path}: not an Ollama manifest (no list of layers)")
    models = [
        layer
        for layer in layers
        if isinstance(layer, dict) and layer.get("mediaType") == MODEL_LAYER
    ]
    if not models:
        raise ModelError(f"{manifest_path}: the manifest names no model layer ({MODEL_LAYER})")
    layer = models[0]  # the language model; a vision projector has a media type of its own
    match = _DIGEST.match(str(layer.get("digest", "")))
    if match is None:
        raise ModelError(f"{manifest_path}: bad model layer digest {layer.get('digest')!r}")
    # Ollama names blobs sha256-HEX; releases before 0.1.34 used sha256:HEX.
    candidates = [root / "blobs" / f"sha256-{match[1]}", root / "blobs" / f"sha256:{match[1]}"]
    blob = next((path for path in candidates if path.is_file()), None)
    if blob is None:
        raise ModelError(
            f"ollama:{reference}: its model blob {candidates[0]} is missing (an unfinished "
            "pull? run `ollama pull` again)"
        )
    size = layer.get("size")
    # The size is cheap to check and catches a half-written blob; hashing gigabytes is not.
    if isinstance(size, int) and blob.stat().st_size != size:
        raise ModelError(
            f"{blob}: {blob.stat().st_size:,} bytes, but the manifest says {size:,} (an "
            "unfinished pull? run `ollama pull` again)"
        )
    return blob


def manifest_file(root: Path, reference: str) -> Path:
    """The manifest path of ``NAME[:TAG]`` under the models folder ``root``."""
    name, _, tag = reference.partition(":")
    tag = tag or DEFAULT_TAG
    parts = name.split("/") if name else []
    if not 1 <= len(parts) <= 3 or not all(_PART.match(p) for p in [*parts, tag]):
        raise ModelError(
            f"ollama:{reference}: not an Ollama model name (write ollama:NAME or ollama:NAME:TAG, "
            "as `ollama pull` takes it)"
        )
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 3:
        host, namespace, model = parts
    elif len(parts) == 2:
        namespace, model = parts
    else:
        (model,) = parts
    return root / "manifests" / host / namespace / model / tag


def _not_pulled(root: Path, reference: str, manifest_path: Path) -> str:
    if not (root / "manifests").is_dir():
        return (
            f"ollama:{reference}: no Ollama models folder at {root} (set OLLAMA_MODELS to where "
            "Ollama keeps its models)"
        )
    folder = manifest_path.parent
    tags = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if tags:
        return f"ollama:{reference}: no such tag; pulled tags: {', '.join(tags)}"
    return f"ollama:{reference}: not pulled into {root} (run `ollama pull {reference}`)"
