"""A checkpoint's ``config.json``: optional, read leniently, and its fields read by type.

Nothing that scores a table needs the config; it only names the hidden size, tying and
the position scheme. So a missing or broken ``config.json`` gives a warning, never an
error, and a field of the wrong type (``"hidden_size": "big"``) counts as absent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from embinspect.errors import ModelError, Option

if TYPE_CHECKING:
    from embinspect.sources.locate import CheckpointFiles

CONFIG_FILE = "config.json"


def load_config(files: CheckpointFiles) -> tuple[dict[str, Any], tuple[str | Option, ...]]:
    """``(config, warning)``: the config ({} when absent or unreadable) and, when it could
    not be used, why (the parts of a warning; empty when there is none). A lone .safetensors
    file has no config, and needs no warning; a GGUF file's metadata stands in for one
    (``gguf_file.gguf_config``)."""
    if files.gguf is not None:
        from embinspect.sources.gguf_file import gguf_config

        return gguf_config(files.gguf), ()
    try:
        config = files.read_json(CONFIG_FILE)
    except ModelError as err:
        return {}, (*err.parts, "; going on without config.json")
    if config is None and files.kind not in ("file", "word-vectors"):
        return {}, (f"{files.model} has no {CONFIG_FILE}; going on without it",)
    return config or {}, ()


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: multimodal configs nest it in ``text_config``."""
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else dict(config)


# No real count (a context, a vocabulary, a width) comes near 2^53, where float64 stops
# holding every integer; a config claiming more is hostile or broken, and ignored.
MAX_COUNT = 2**53


def config_count(config: dict[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` that holds a positive integer (at most 2^53), else None."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_COUNT:
            return value
    return None


def config_number(
    config: dict[str, Any], *keys: str, low: float = -math.inf, high: float = math.inf
) -> float | None:
    """The first of ``keys`` that holds a finite number in [low, high], else None."""
    for key in keys:
        value = config.get(key)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and math.isfinite(value) and low <= value <= high:
            return float(value)
    return None


def config_text(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    return value if isinstance(value, str) else None
