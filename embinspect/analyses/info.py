"""``embinspect info``: what a checkpoint's embedding tables are, from headers and JSON only.

Nothing here may import torch or transformers (a test checks it): ``info`` must answer
in well under a second even for a checkpoint of many gigabytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from embinspect.errors import ModelError, Option, note
from embinspect.model.checkpoint import Checkpoint
from embinspect.model.config import config_count
from embinspect.model.tensor_names import OUTPUT, POSITION, ROLES, TOKEN, TOKEN_TYPE
from embinspect.model.tokenizer import count_vocabulary
from embinspect.result import Displayable
from embinspect.sources.gguf_file import FILE_TYPES
from embinspect.sources.tensor import DTYPE_BYTES, TensorHeader


@dataclass(frozen=True)
class TensorInfo:
    role: str
    name: str
    shape: list[int]
    dtype: str
    file: str
    bytes: int
    family: str


@dataclass(frozen=True)
class CommandFetch:
    """What the first run of some commands would download from the Hub (0 once cached).

    ``parts`` are ``{tensor, file, how, bytes}`` with ``how`` ``cached``, ``range`` (the
    tensor's bytes only) or ``file`` (the whole file); config and tokenizer files, which
    ``info`` fetched already, are not counted.
    """

    commands: str
    bytes: int
    parts: list[dict[str, Any]]


@dataclass(frozen=True)
class Info(Displayable):
    """Everything ``info`` reports; ``to_dict`` is the documented JSON schema."""

    model: str
    tensors: list[TensorInfo]
    tied: bool | None  # None: no output head at all (BertModel, sentence-transformers)
    tied_reason: str
    vocab_size: int | None  # from the tokenizer files; None without a tokenizer
    vocab_source: str | None
    rows: int  # rows of the token table
    padding_rows: int | None  # rows no token id reaches (rows - vocab_size)
    hidden_size: int
    embedding_params: int
    total_params: int
    total_params_exact: bool  # False: estimated from the index's total_size
    embedding_share: float
    position: dict[str, Any]
    format: str = "safetensors"  # or "gguf", "word2vec-text", "word2vec-binary", "glove"
    architecture: str | None = None  # config's architectures[0] or model_type; GGUF's own
    gguf: dict[str, Any] | None = None  # GGUF files only: version, name, file type, tensors
    fetch: list[CommandFetch] | None = None  # Hub repos only
    # Hub repos only: the tensors held in embinspect's cache as ranges, {id, tensor, file,
    # bytes} (bytes on disk), as `embinspect cache ls` lists them.
    cached_ranges: list[dict[str, Any]] | None = None
    # Word-vector files only: whether the parse is kept in embinspect's cache, and read
    # from it (``{kept: true, id, bytes, path}``) or not (``{kept: false, reason}``).
    cached_parse: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("fetch", "gguf", "cached_ranges", "cached_parse"):
            if data[optional] is None:
                del data[optional]
        return data


def inspect_checkpoint(checkpoint: Checkpoint) -> Info:
    embeddings = checkpoint.embeddings
    token = checkpoint.token_table.header
    tensors = [
        TensorInfo(
            role=role,
            name=embeddings[role].header.name,
            shape=list(embeddings[role].header.shape),
            dtype=embeddings[role].header.dtype,
            file=embeddings[role].header.file,
            bytes=embeddings[role].header.nbytes,
            family=embeddings[role].family,
        )
        for role in ROLES
        if role in embeddings
    ]
    warnings: list[tuple[str | Option, ...]] = []
    try:
        vocab = count_vocabulary(checkpoint.files)
    except ModelError as err:
        if checkpoint.files.exported is not None:
            raise  # an exported table's vocabulary is part of the file: broken, as for a query
        # info describes tensors; a broken tokenizer file only leaves the vocabulary unknown.
        vocab = None
        warnings.append((*err.parts, "; vocabulary size unknown"))
    rows = token.shape[0]
    tied, tied_reason = checkpoint.tying()
    embedding_params = sum(h.numel for h in {e.header for e in embeddings.values()})
    total_params, exact = _total_params(checkpoint, token)
    cfg = checkpoint.text_config
    for warning in warnings:
        note(*warning, kind="warning")
    return Info(
        model=checkpoint.files.model,
        tensors=tensors,
        tied=tied,
        tied_reason=tied_reason,
        vocab_size=vocab.size if vocab else None,
        vocab_source=vocab.source if vocab else None,
        rows=rows,
        padding_rows=rows - vocab.size if vocab else None,
        hidden_size=config_count(cfg, "hidden_size", "n_embd") or token.shape[1],
        embedding_params=embedding_params,
        total_params=total_params,
        total_params_exact=exact,
        embedding_share=embedding_params / total_params if total_params else 0.0,
        position=checkpoint.position_scheme(),
        format=_format(checkpoint),
        architecture=_architecture(checkpoint),
        gguf=_gguf_facts(checkpoint),
        fetch=_fetch_plan(checkpoint),
        cached_ranges=_cached_ranges(checkpoint),
        cached_parse=_cached_parse(checkpoint),
    )


# (commands, the role that makes them differ, the roles whose tensors they read): the
# --positions row only for a learned position table, --table output only for a stored head.
_COMMAND_TENSORS = (
    ("tokens, neighbors, compare, analogy", TOKEN, (TOKEN,)),
    ("tokens --positions", POSITION, (TOKEN, POSITION, TOKEN_TYPE)),
    ("--table output", OUTPUT, (OUTPUT,)),
)


def _fetch_plan(checkpoint: Checkpoint) -> list[CommandFetch] | None:
    """For a Hub repo, the bytes each command would download (``HubRepo.plan``)."""
    hub = checkpoint.files.hub
    if hub is None:
        return None
    plan = []
    for commands, needed, roles in _COMMAND_TENSORS:
        if needed not in checkpoint.embeddings:
            continue
        parts = [
            hub.plan(checkpoint.embeddings[r].header) for r in roles if r in checkpoint.embeddings
        ]
        whole_files = {part.file: part.bytes for part in parts if part.how == "file"}
        ranges = sum(part.bytes for part in parts if part.how == "range")
        plan.append(
            CommandFetch(commands, ranges + sum(whole_files.values()), [asdict(p) for p in parts])
        )
    return plan


def _format(checkpoint: Checkpoint) -> str:
    files = checkpoint.files
    if files.gguf is not None:
        return "gguf"
    if files.word_vectors is not None:
        return files.word_vectors.shape.format
    if files.exported is not None:
        return files.exported.format  # "npy", or "safetensors" with its vocabulary
    return "safetensors"


def _architecture(checkpoint: Checkpoint) -> str | None:
    if checkpoint.files.gguf is not None:
        return checkpoint.files.gguf.architecture
    cfg = checkpoint.text_config
    names = cfg.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    model_type = cfg.get("model_type")
    return model_type if isinstance(model_type, str) else None


def _gguf_facts(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """What a GGUF file says of itself: format version, model name, the file's type (what
    most of its tensors are stored as) and the tensor count."""
    gguf = checkpoint.files.gguf
    if gguf is None:
        return None
    file_type = gguf.metadata.get("general.file_type")
    name = gguf.metadata.get("general.name")
    return {
        "version": gguf.version,
        "name": name if isinstance(name, str) else None,
        "file_type": FILE_TYPES.get(file_type) if type(file_type) is int else None,
        "tensors": len(gguf.tensors),
        "tokenizer": _text(gguf.metadata.get("tokenizer.ggml.model")),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _total_params(checkpoint: Checkpoint, token: TensorHeader) -> tuple[int, bool]:
    if checkpoint.headers_complete or checkpoint.files.index_total_size is None:
        return sum(h.numel for h in checkpoint.headers.values()), checkpoint.headers_complete
    # Shards left on the Hub: the index's byte count over the table's element size.
    return checkpoint.files.index_total_size // DTYPE_BYTES.get(token.dtype, 2), False


def _cached_ranges(checkpoint: Checkpoint) -> list[dict[str, Any]] | None:
    """For a Hub repo, the tensors of its commit held in embinspect's cache as ranges."""
    hub = checkpoint.files.hub
    if hub is None:
        return None
    from embinspect.analyses.cache import cached_ranges

    return [
        {"id": e.id, "tensor": e.tensor, "file": e.file, "bytes": e.size}
        for e in cached_ranges(hub.repo_id, hub.commit)
    ]


def _cached_parse(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """For a word-vector file, the cache entry its rows and words are read from (and its
    shape, here), or why there is none."""
    word_vectors = checkpoint.files.word_vectors
    if word_vectors is None:
        return None
    cache = word_vectors.cache
    if cache is not None:
        cache.note_untrusted(reading_rows=False)
    if cache is None or cache.kept is None:
        reason = cache.reason if cache is not None else None
        return {"kept": False, "reason": reason or "not kept"}
    from embinspect.analyses.cache import derived_entry_id

    kept = cache.kept
    return {
        "kept": True,
        "id": derived_entry_id(kept.path),
        "bytes": kept.size,
        "path": str(kept.path),
    }
