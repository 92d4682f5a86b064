"""How a model tells tokens their position: learned vectors added to the input, rotary
embeddings applied inside attention, ALiBi biases, or nothing known.

Read from ``config.json`` (and the position tensor, when there is one), never from weights.
"""

from __future__ import annotations

from typing import Any

from embinspect.model.config import config_count, config_number, config_text, text_config

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


def describe_positions(
    config: dict[str, Any], position_rows: int | None, position_tensor: str | None
) -> dict[str, Any]:
    """The position scheme as a JSON-ready dict; ``kind`` is learned, rotary, alibi or unknown.

    Fields of the wrong type in ``config`` count as absent (``embinspect.model.config``)."""
    cfg = text_config(config)
    if position_tensor is not None:
        return {
            "kind": "learned",
            "tensor": position_tensor,
            "positions": position_rows,
            "first_position_id": first_position_id(cfg),
        }
    model_type = config_text(cfg, "model_type")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        rope = {}
    theta = config_number(cfg, "rope_theta", low=0)
    if theta is None:
        theta = config_number(rope, "rope_theta", low=0)
    if theta is None:
        theta = config_number(cfg, "rotary_emb_base", low=0)
    # Only rotary models rotate a part of each head: the factor alone says RoPE.
    has_factor = "partial_rotary_factor" in cfg or "partial_rotary_factor" in rope
    if theta is not None or model_type in ROTARY_MODEL_TYPES or has_factor:
        head_dim = config_count(cfg, "head_dim")
        hidden, heads = config_count(cfg, "hidden_size"), config_count(cfg, "num_attention_heads")
        if head_dim is None and hidden and heads:
            head_dim = hidden // heads
        factor = config_number(cfg, "partial_rotary_factor", low=0, high=1)
        if factor is None:
            factor = config_number(rope, "partial_rotary_factor", low=0, high=1)
        if factor is None:
            factor = config_number(cfg, "rotary_pct", low=0, high=1)
        factor = 1.0 if factor is None else factor
        rotary_dims = int(head_dim * factor) if head_dim is not None else None
        scaling = {
            k: v for k, v in rope.items() if k not in {"rope_theta", "partial_rotary_factor"}
        }
        if scaling.get("rope_type", scaling.get("type")) == "default" and len(scaling) == 1:
            scaling = {}
        return {
            "kind": "rotary",
            "theta": theta if theta is not None else DEFAULT_ROPE_THETA,
            "theta_is_default": theta is None,
            "head_dim": head_dim,
            "partial_rotary_factor": factor,
            "rotary_dims": rotary_dims,
            "max_positions": config_count(cfg, "max_position_embeddings"),
            "scaling": scaling or None,
        }
    if model_type in ALIBI_MODEL_TYPES:
        return {"kind": "alibi", "max_positions": config_count(cfg, "max_position_embeddings")}
    return {"kind": "unknown"}


def first_position_id(cfg: dict[str, Any]) -> int:
    """Row of the position table that the first token uses."""
    if config_text(cfg, "model_type") in OFFSET_POSITION_MODEL_TYPES:
        pad = cfg.get("pad_token_id", 1)
        return pad + 1 if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0 else 2
    return 0
