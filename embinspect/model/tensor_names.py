"""Which tensors of a checkpoint are embeddings, by name, for each model family.

Adding a family is one line in ``KNOWN_EMBEDDING_TENSORS``. A known name also matches
with a prefix in front of it at a dot (``bert.embeddings.word_embeddings.weight``),
because task heads wrap the base model under its own name; names too generic for that
are marked ``exact``.
"""

from __future__ import annotations

from dataclasses import dataclass

from embinspect.errors import ModelError, Option
from embinspect.sources.tensor import SCORABLE_DTYPES, TensorHeader

TOKEN, POSITION, TOKEN_TYPE, OUTPUT = "token", "position", "token_type", "output"
ROLES = (TOKEN, POSITION, TOKEN_TYPE, OUTPUT)
CHOSEN = "chosen with --tensor"  # the family of a token table named by --tensor


@dataclass(frozen=True)
class KnownTensor:
    role: str
    name: str
    family: str
    exact: bool = False


# Earlier rows win when several tensors of a checkpoint match the same role.
KNOWN_EMBEDDING_TENSORS: tuple[KnownTensor, ...] = (
    KnownTensor(TOKEN, "model.embed_tokens.weight", "Llama, Mistral, Qwen, Gemma, Phi-3, SmolLM"),
    KnownTensor(TOKEN, "model.language_model.embed_tokens.weight", "Gemma 3, LLaVA, Qwen-VL"),
    KnownTensor(TOKEN, "language_model.model.embed_tokens.weight", "LLaVA (before 4.52)"),
    KnownTensor(TOKEN, "transformer.wte.weight", "GPT-2, GPT-J, CodeGen"),
    KnownTensor(TOKEN, "wte.weight", "GPT-2 (bare GPT2Model)"),
    KnownTensor(TOKEN, "embeddings.word_embeddings.weight", "BERT, RoBERTa, ELECTRA, MiniLM"),
    KnownTensor(TOKEN, "embeddings.tok_embeddings.weight", "ModernBERT"),
    KnownTensor(TOKEN, "gpt_neox.embed_in.weight", "GPT-NeoX, Pythia"),
    KnownTensor(TOKEN, "transformer.word_embeddings.weight", "BLOOM, Falcon"),
    KnownTensor(TOKEN, "transformer.embedding.word_embeddings.weight", "ChatGLM"),
    KnownTensor(TOKEN, "transformer.embd.wte.weight", "Phi-1"),
    KnownTensor(TOKEN, "model.decoder.embed_tokens.weight", "OPT, BART"),
    KnownTensor(TOKEN, "backbone.embeddings.weight", "Mamba"),
    KnownTensor(TOKEN, "shared.weight", "T5", exact=True),
    KnownTensor(TOKEN, "tok_embeddings.weight", "Llama (Meta original)", exact=True),
    KnownTensor(TOKEN, "token_embd.weight", "GGUF (llama.cpp, Ollama)", exact=True),
    KnownTensor(POSITION, "transformer.wpe.weight", "GPT-2"),
    KnownTensor(POSITION, "wpe.weight", "GPT-2 (bare GPT2Model)"),
    KnownTensor(POSITION, "embeddings.position_embeddings.weight", "BERT, RoBERTa"),
    KnownTensor(POSITION, "model.decoder.embed_positions.weight", "OPT"),
    KnownTensor(POSITION, "position_embd.weight", "GGUF (GPT-2, BERT)", exact=True),
    KnownTensor(TOKEN_TYPE, "embeddings.token_type_embeddings.weight", "BERT"),
    KnownTensor(TOKEN_TYPE, "token_types.weight", "GGUF (BERT)", exact=True),
    KnownTensor(OUTPUT, "lm_head.weight", "most causal LMs"),
    KnownTensor(OUTPUT, "embed_out.weight", "GPT-NeoX, Pythia"),
    KnownTensor(OUTPUT, "cls.predictions.decoder.weight", "BERT masked-LM head"),
    KnownTensor(OUTPUT, "output.weight", "Llama (Meta original), GGUF", exact=True),
)


def known_entry(name: str) -> tuple[int, KnownTensor] | None:
    """The first table row that names this tensor, with its rank in the table."""
    for rank, known in enumerate(KNOWN_EMBEDDING_TENSORS):
        if name == known.name or (not known.exact and name.endswith("." + known.name)):
            return rank, known
    return None


def could_be_embedding(name: str) -> bool:
    """Whether a tensor name (from an index, before its header is read) may hold a role."""
    return known_entry(name) is not None


@dataclass(frozen=True)
class EmbeddingTensor:
    """A tensor with its role; ``family`` names where the name comes from (or 'chosen')."""

    role: str
    header: TensorHeader
    family: str


def find_embeddings(
    headers: dict[str, TensorHeader], override: str | None = None
) -> dict[str, EmbeddingTensor]:
    """Name each embedding tensor by role: ``{role: EmbeddingTensor}``.

    ``override`` (``--tensor``) names the token table explicitly. Only 2-D tensors of a
    dtype embinspect can score qualify: BERT's int64 ``position_ids`` buffer is not an
    embedding. A token table under a known name in another dtype (int8, bool) is refused
    by name rather than passed over.
    """
    best: dict[str, tuple[tuple[int, int, str], EmbeddingTensor]] = {}
    unscorable: list[TensorHeader] = []
    for name, header in headers.items():
        entry = known_entry(name)
        if entry is None or len(header.shape) != 2:
            continue
        rank, known = entry
        if not header.is_scorable:
            if known.role == TOKEN:
                unscorable.append(header)
            continue
        key = (rank, len(name), name)
        if known.role not in best or key < best[known.role][0]:
            best[known.role] = (key, EmbeddingTensor(known.role, header, known.family))
    found = {role: tensor for role, (_, tensor) in best.items()}
    if override is not None:
        header = headers.get(override)
        if header is None:
            raise ModelError(
                Option("tensor", override), ": no tensor of that name in the checkpoint"
            )
        if not header.is_scorable or len(header.shape) != 2:
            raise ModelError(
                Option("tensor", override),
                f": is {header.dtype} of shape {list(header.shape)}, "
                f"not a 2-D table of {', '.join(SCORABLE_DTYPES)}",
            )
        found[TOKEN] = EmbeddingTensor(TOKEN, header, CHOSEN)
    elif TOKEN not in found and unscorable:
        refused = unscorable[0]
        if refused.ggml_type is not None:
            raise ModelError(
                f"{refused.name}: GGUF type {refused.dtype} cannot be read as embeddings "
                "(integers, or a type unknown to embinspect); embinspect reads F32, F16, BF16, "
                "F64 and the quantized types the gguf package dequantizes"
            )
        raise ModelError(
            f"{refused.name}: dtype {refused.dtype} cannot be read as embeddings (quantized or "
            f"not real-valued); embinspect reads {', '.join(SCORABLE_DTYPES)}"
        )
    return found
