"""How a model tells tokens their position: learned vectors added to the input, rotary
embeddings applied inside attention, ALiBi biases, or nothing known.

Read from ``config.json`` (and the position tensor, when there is one), never from weights.
"""

from __future__ import annotations

from typing import Any

# Families whose attention applies RoPE even when config.json leaves rope_theta at its
# default (transformers then uses 10000).
ROTARY_MODEL_TYPES = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
        "gemma2", "gemma3", "gemma3_text", "phi", "phi3", "olmo", "olmo2", "stablelm",
        "gpt_neox", "gptj", "falcon", "cohere", "starcoder2", "deepseek_v2", "deepseek_v3",
        "granite", "smollm3", "modernbert",
    }
)  # fmt: skip
ALIBI_MODEL_TYPES = frozenset({"bloom", "mpt"})
DEFAULT_ROPE_THETA = 10000.0
# RoBERTa-style models number positions from padding_idx + 1, not from 0.
OFFSET_POSITION_MODEL_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "longformer"})


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: multimodal configs nest it in ``text_config``."""
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else dict(config)


def describe_positions(
    config: dict[str, Any], position_rows: int | None, position_tensor: str | None
) -> dict[str, Any]:
    """The position scheme as a JSON-ready dict; ``kind`` is learned, rotary, alibi or unknown."""
    cfg = text_config(config)
    if position_tensor is not None:
        return {
            "kind": "learned",
            "tensor": position_tensor,
            "positions": position_rows,
            "first_position_id": first_position_id(cfg),
        }
    model_type = cfg.get("model_type")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        rope = {}
    theta = cfg.get("rope_theta", rope.get("rope_theta", cfg.get("rotary_emb_base")))
    if theta is not None or model_type in ROTARY_MODEL_TYPES:
        head_dim = cfg.get("head_dim")
        if head_dim is None and cfg.get("hidden_size") and cfg.get("num_attention_heads"):
            head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
        factor = cfg.get(
            "partial_rotary_factor", rope.get("partial_rotary_factor", cfg.get("rotary_pct", 1.0))
        )
        rotary_dims = int(head_dim * factor) if head_dim is not None else None
        scaling = {
            k: v for k, v in rope.items() if k not in {"rope_theta", "partial_rotary_factor"}
        }
        if scaling.get("rope_type", scaling.get("type")) == "default" and len(scaling) == 1:
            scaling = {}
        return {
            "kind": "rotary",
            "theta": float(theta) if theta is not None else DEFAULT_ROPE_THETA,
            "theta_is_default": theta is None,
            "head_dim": head_dim,
            "partial_rotary_factor": float(factor),
            "rotary_dims": rotary_dims,
            "max_positions": cfg.get("max_position_embeddings"),
            "scaling": scaling or None,
        }
    if model_type in ALIBI_MODEL_TYPES:
        return {"kind": "alibi", "max_positions": cfg.get("max_position_embeddings")}
    return {"kind": "unknown"}


def first_position_id(cfg: dict[str, Any]) -> int:
    """Row of the position table that the first token uses."""
    if cfg.get("model_type") in OFFSET_POSITION_MODEL_TYPES:
        return int(cfg.get("pad_token_id", 1)) + 1
    return 0
