"""Build the synthetic benchmark checkpoints once into ``.cache/bench/``.

Each checkpoint has a real model's tensor shapes (the embedding table is what the bench
measures; decoder layers make the 8B-shaped one as heavy to load as a user's checkpoint)
and seeded random bf16 values. A checkpoint is written into a temporary folder and
renamed into place only when complete, so an interrupted build is never mistaken for a
finished one. Prints a JSON object: {name: folder or null, "notes": [...]}.
``build.py --scaling`` builds the scaling tables instead (4k to 256k rows × 4096 bf16)
and prints {rows: folder}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import torch
from common import CACHE
from safetensors.torch import save_file

SEED = 20240604
STD = 0.02  # the usual initializer range; the scale does not change cosine rankings
CHUNK = 32 * 1024 * 1024  # elements drawn per step: a 128 MB float32 scratch at most
QWEN_MIN_FREE = 15e9  # bytes of free disk needed before writing the 2.5 GB Qwen table

LLAMA3_8B = {
    "hidden": 4096,
    "intermediate": 14336,
    "heads": 32,
    "kv_heads": 8,
    "head_dim": 128,
    "vocab": 128256,
    "layers": 3,  # 2 × 1.05 GB of tables + 3 × 436 MB of layers = 3.4 GB
}
QWEN36 = {"hidden": 5120, "vocab": 248320}
# The scaling tables: one token table each, dim 4096 bf16, 4k to 256k rows (34 MB to 2.1 GB).
SCALING_ROWS = (4096, 32768, 131072, 262144)
SCALING_DIM = 4096


def random_bf16(shape: tuple[int, ...], std: float = STD) -> torch.Tensor:
    """Gaussian bf16 values drawn chunk by chunk from the global (seeded) generator,
    so that the float32 scratch stays small whatever the tensor's size."""
    out = torch.empty(shape, dtype=torch.bfloat16)
    flat = out.view(-1)
    for start in range(0, flat.numel(), CHUNK):
        stop = min(start + CHUNK, flat.numel())
        flat[start:stop] = torch.randn(stop - start).mul_(std)  # cast to bf16 on copy
    return out


def ones_bf16(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.ones(shape, dtype=torch.bfloat16)  # RMSNorm weights start at 1


def llama_layer(i: int, s: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, init)} of one Llama decoder layer."""
    h, f, q, kv = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"], s["kv_heads"]
    kv = kv * s["head_dim"]
    p = f"model.layers.{i}."
    return {
        p + "self_attn.q_proj.weight": ((q, h), "randn"),
        p + "self_attn.k_proj.weight": ((kv, h), "randn"),
        p + "self_attn.v_proj.weight": ((kv, h), "randn"),
        p + "self_attn.o_proj.weight": ((h, q), "randn"),
        p + "mlp.gate_proj.weight": ((f, h), "randn"),
        p + "mlp.up_proj.weight": ((f, h), "randn"),
        p + "mlp.down_proj.weight": ((h, f), "randn"),
        p + "input_layernorm.weight": ((h,), "ones"),
        p + "post_attention_layernorm.weight": ((h,), "ones"),
    }


def llama_plan() -> tuple[dict, list[dict]]:
    s = LLAMA3_8B
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": s["hidden"],
        "intermediate_size": s["intermediate"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"],
        "head_dim": s["head_dim"],
        "num_hidden_layers": s["layers"],
        "vocab_size": s["vocab"],
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }
    table = (s["vocab"], s["hidden"])
    # As in the real Llama-3-8B, the token table shares the first shard with layer 0
    # and the LM head sits in the last shard.
    shards = [
        {"model.embed_tokens.weight": (table, "randn"), **llama_layer(0, s)},
        {**llama_layer(1, s), **llama_layer(2, s)},
        {"model.norm.weight": ((s["hidden"],), "ones"), "lm_head.weight": (table, "randn")},
    ]
    return config, shards


def qwen_plan() -> tuple[dict, list[dict]]:
    s = QWEN36
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": s["hidden"],
        "intermediate_size": 17408,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "num_hidden_layers": 0,  # only the table matters here; no decoder layer is stored
        "vocab_size": s["vocab"],
        "max_position_embeddings": 262144,
        "rope_theta": 10000000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    shards = [
        {"model.embed_tokens.weight": ((s["vocab"], s["hidden"]), "randn")},
        {"model.norm.weight": ((s["hidden"],), "ones")},
    ]
    return config, shards


def scaling_plan(rows: int):
    """A checkpoint holding one tied token table of ``rows`` × 4096 bf16 and nothing else."""

    def plan() -> tuple[dict, list[dict]]:
        config = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": SCALING_DIM,
            "num_hidden_layers": 0,  # only the table is measured
            "vocab_size": rows,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
        }
        return config, [{"model.embed_tokens.weight": ((rows, SCALING_DIM), "randn")}]

    return plan


def scaling_name(rows: int) -> str:
    return f"scaling-{rows}x{SCALING_DIM}"


def is_complete(folder) -> bool:
    index = folder / "model.safetensors.index.json"
    if not (folder / "config.json").is_file() or not index.is_file():
        return False
    names = set(json.loads(index.read_text())["weight_map"].values())
    return all((folder / name).is_file() for name in names)


def build(name: str, plan, seed: int) -> str:
    """Write checkpoint ``name`` unless it is already complete; return its folder."""
    final = CACHE / name
    if is_complete(final):
        return str(final)
    config, shards = plan()
    tmp = CACHE / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted build
    shutil.rmtree(final, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(seed)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, start=1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        # One shard in memory at a time (1.5 GB at most), tensor by tensor in chunks.
        tensors = {
            t: random_bf16(shape) if init == "randn" else ones_bf16(shape)
            for t, (shape, init) in shard.items()
        }
        save_file(tensors, str(tmp / file), metadata={"format": "pt"})
        for t, tensor in tensors.items():
            weight_map[t] = file
            total += tensor.numel() * tensor.element_size()
        del tensors
        print(f"built {name}/{file}", file=sys.stderr, flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, final)  # atomic: the folder appears only when complete
    return str(final)


def main() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["--scaling"]:
        # {rows: folder} of the scaling tables, each seeded on its own. BENCH_SCALING_ROWS
        # (e.g. 512,1024) picks other sizes: tiny ones check the bench's own code quickly.
        sizes = os.environ.get("BENCH_SCALING_ROWS")
        chosen = [int(r) for r in sizes.split(",")] if sizes else SCALING_ROWS
        tables = {
            rows: build(scaling_name(rows), scaling_plan(rows), SEED + 10 + i)
            for i, rows in enumerate(chosen)
        }
        print(json.dumps(tables))
        return
    out: dict = {"notes": []}
    out["llama3-8b-shape"] = build("llama3-8b-shape", llama_plan, SEED)
    qwen = CACHE / "qwen3.6-shape"
    free = shutil.disk_usage(CACHE).free
    if is_complete(qwen) or free >= QWEN_MIN_FREE:
        out["qwen3.6-shape"] = build("qwen3.6-shape", qwen_plan, SEED + 1)
    else:
        out["qwen3.6-shape"] = None
        out["notes"].append(f"qwen3.6-shape skipped: only {free / 1e9:.1f} GB free disk")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
