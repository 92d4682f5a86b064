"""An opened checkpoint: its files, its config, and its embedding tensors by role.

Opening reads safetensors headers and JSON only. Tensor data is read later, row by row,
by ``embinspect.tables.rows``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embinspect.errors import ModelError, Option, UsageError, note
from embinspect.model.config import load_config, text_config
from embinspect.model.position_scheme import describe_positions
from embinspect.model.tensor_names import (
    CHOSEN,
    OUTPUT,
    POSITION,
    TOKEN,
    EmbeddingTensor,
    could_be_embedding,
    find_embeddings,
)
from embinspect.result import SCHEMA_VERSION
from embinspect.sources.hub_options import HubOptions
from embinspect.sources.locate import WORD_VECTOR_FORMATS, CheckpointFiles, locate
from embinspect.sources.tensor import TensorHeader
from embinspect.text import brief

if TYPE_CHECKING:
    from embinspect.model.tokenizer import Vocabulary

# The tables a command may look at: the token table, or the output head.
TABLES = ("input", "output")


@dataclass(frozen=True)
class Provenance:
    """Where a result's numbers come from, enough to reproduce it: the model as given and
    where it resolved to, the Hub revision and commit, the tensor read and how it is
    stored, and the embinspect that read it."""

    source: str  # MODEL as given (a Hub repo id without its @revision)
    resolved: str | None  # the real local path (links followed), or the Hub repo id
    revision: str | None  # the Hub revision asked for; None: the default branch, or local
    commit: str | None  # the Hub commit the revision resolved to; None for a local model
    tensor: str  # the table's name in the checkpoint
    dtype: str  # as stored: F32, BF16, Q8_0...
    embinspect_version: str


def stamped(data: dict[str, Any], provenance: Provenance | None) -> dict[str, Any]:
    """A result's ``to_dict()`` ``data`` with, last, the schema version of the JSON it
    becomes and where its numbers come from (the same two fields in every command that
    carries them)."""
    data["schema_version"] = SCHEMA_VERSION
    data["provenance"] = asdict(provenance) if provenance is not None else None
    return data


@dataclass
class Checkpoint:
    files: CheckpointFiles
    config: dict[str, Any]  # config.json, {} when the checkpoint has none
    headers: dict[str, TensorHeader]  # every tensor whose shard header was read
    headers_complete: bool  # False when some shards were not fetched (Hub)
    embeddings: dict[str, EmbeddingTensor]  # role -> tensor

    @property
    def token_table(self) -> EmbeddingTensor:
        return self.embeddings[TOKEN]

    @property
    def text_config(self) -> dict[str, Any]:
        return text_config(self.config)

    def position_scheme(self) -> dict[str, Any]:
        """How positions reach the model (``positions.describe_positions``)."""
        if self.files.word_vectors is not None or self.files.exported is not None:
            return {"kind": "none"}  # a word's vector does not depend on where it stands
        table = self.embeddings.get(POSITION)
        rows = table.header.shape[0] if table else None
        return describe_positions(self.config, rows, table.header.name if table else None)

    def table_header(self, table: str, *, whose: bool = False) -> TensorHeader:
        """The header of the ``table`` asked for, ``input`` (the token table) or ``output``
        (the head); a note when the head asked for is the token table itself (tied), which
        names the model when ``whose`` (a command over two models)."""
        if table not in TABLES:
            raise UsageError(Option("table", table), f": choose {' or '.join(TABLES)}")
        if table == "output":
            output = self.embeddings.get(OUTPUT)
            if output is None:
                tied, reason = self.tying()
                if tied is None:
                    raise UsageError(
                        f"{self.files.model}: {reason.removeprefix('none: ')}; ",
                        Option("table", "output"),
                        " reads an output head",
                    )
                model = f"{self.files.model}: " if whose else ""
                note(f"{model}the output head is tied: it is the token table")
                return self.token_table.header
            return output.header
        return self.token_table.header

    def unlabelled(self, header: TensorHeader, vocabulary: Vocabulary | None) -> str | None:
        """Why the vocabulary's tokens do not name the rows of ``header``, or None when
        they do: a table chosen with --tensor (a position table) whose rows are fewer than
        the vocabulary's tokens and than the rows of the token table its name would find.
        A table with more rows than tokens is a token table with padding rows (GPT-2's)."""
        table = self.token_table
        if vocabulary is None or table.family != CHOSEN or header is not table.header:
            return None
        rows = header.shape[0]
        if rows >= vocabulary.size:
            return None
        try:
            known = find_embeddings(self.headers).get(TOKEN)
        except ModelError:
            known = None
        if known is not None and known.header.shape[0] == rows:
            return None
        return (
            f"{header.name} has {rows:,} rows, not one per token of the vocabulary "
            f"({vocabulary.size:,})"
        )

    def labelled(
        self, header: TensorHeader, vocabulary: Vocabulary | None
    ) -> tuple[Vocabulary | None, str | None]:
        """``(vocabulary, None)``, or ``(None, why)`` with a warning when the vocabulary's
        tokens do not name the rows of ``header`` (``unlabelled``): its rows are then named
        by index (#12), as in a checkpoint without a tokenizer."""
        why = self.unlabelled(header, vocabulary)
        if why is None:
            return vocabulary, None
        note(f"{why}: token labels do not apply; rows are named by index (#12)", kind="warning")
        return None, why

    def provenance(self, header: TensorHeader) -> Provenance:
        """Where the rows of ``header`` (a table of this checkpoint) come from."""
        from embinspect import __version__

        files = self.files
        hub = files.hub
        if hub is not None:
            return Provenance(
                hub.repo_id, hub.repo_id, hub.asked or None, hub.commit, header.name,
                header.dtype, __version__,
            )  # fmt: skip
        path = files.optional(files.weight_files[0]) if files.weight_files else None
        if path is not None and files.kind == "directory":
            path = path.parent
        # The real path: links followed, so it names the same bytes from anywhere.
        resolved = str(path.resolve()) if path is not None else None
        return Provenance(files.model, resolved, None, None, header.name, header.dtype, __version__)

    def tying(self) -> tuple[bool | None, str]:
        """Whether the output head reuses the token table (True), is a tensor of its own
        (False), or does not exist (None: an encoder such as BertModel or a
        sentence-transformers model, word vectors), and why we say so.

        Decided from what is stored and what the model says it is: config.json's
        ``architectures`` (``*ForCausalLM``, ``*ForMaskedLM``, ``*LMHeadModel``: a head;
        ``BertModel``: none) and ``tie_word_embeddings``, or a GGUF file's architecture and
        pooling type (an embedding model's)."""
        if self.files.word_vectors is not None:
            return None, "none: word vectors are not a language model"
        if self.files.exported is not None:
            return None, "none: an exported table holds only its rows"
        output = self.embeddings.get(OUTPUT)
        flag = self.text_config.get("tie_word_embeddings")
        if output is not None:
            if flag is True:
                return True, f"tie_word_embeddings is true: {output.header.name} is a stored copy"
            return False, f"separate output tensor {output.header.name}"
        headless = self._headless()
        if headless is not None:
            return None, f"none: {headless}"
        if flag is False:
            return None, "none: no output tensor is stored and tie_word_embeddings is false"
        return True, "no output tensor is stored: the head reuses the token table"

    def _headless(self) -> str | None:
        """Why this checkpoint has no output head at all, or None when it has (or may have)
        one: a base model class (BertModel, GPT2Model) or an embedding model's GGUF."""
        gguf = self.files.gguf
        if gguf is not None:
            arch = gguf.architecture or ""
            # llama.cpp's pooling types: 0 none (a language model), 1 mean, 2 cls, 3 last, 4 rank.
            pooling = gguf.metadata.get(f"{arch}.pooling_type")
            if arch in _GGUF_ENCODERS or (type(pooling) is int and pooling > 0):
                return f"{arch} is an embedding model (its outputs are pooled vectors)"
            return None
        names = self.text_config.get("architectures")
        if not isinstance(names, list) or not names:
            return None
        classes = [name for name in names if isinstance(name, str)]
        if not classes or any(name.endswith(_HEAD_CLASSES) for name in classes):
            return None
        # BertModel (sentence-transformers), GPT2Model, BertForSequenceClassification: none
        # of them scores the vocabulary.
        return f"{brief(classes[0], 80)} has no output head"


# Model classes (config.json's ``architectures``) that score the vocabulary: an output head.
_HEAD_CLASSES = (
    "ForCausalLM",
    "ForMaskedLM",
    "LMHeadModel",
    "WithLMHead",
    "ForConditionalGeneration",
    "ForPreTraining",
    "ForSeq2SeqLM",
)
# llama.cpp architectures of encoders without a language-model head.
_GGUF_ENCODERS = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "t5encoder"}
)


def open_checkpoint(
    model: str,
    revision: str | None = None,
    tensor: str | None = None,
    *,
    hub: HubOptions | None = None,
    all_headers: bool = False,
) -> Checkpoint:
    """Open MODEL (folder, file or Hub repo id) reading headers and JSON only.

    ``tensor`` (``--tensor``) names the token table when the known names do not find it.
    ``hub`` says how to reach the Hub. ``all_headers`` (``info``) reads the header of every
    shard of a Hub repo, for exact parameter counts; otherwise only the shards that may
    hold an embedding (and those on this machine already) are read.
    """
    files = locate(model, revision, hub)
    config, config_warning = load_config(files)
    headers, complete = _read_headers(files, tensor, all_headers)
    if files.word_vectors is not None:
        # One table, keyed by words: there is nothing to look for by name.
        shape = files.word_vectors.shape
        family = WORD_VECTOR_FORMATS[shape.format]
        if shape.compressed:
            family += ", gzip-compressed"
        header = files.word_vectors.header
        return Checkpoint(
            files, config, headers, True, {TOKEN: EmbeddingTensor(TOKEN, header, family)}
        )
    if files.exported is not None:
        return _exported_checkpoint(files, config, headers)
    embeddings = find_embeddings(headers, tensor)
    if TOKEN not in embeddings:
        float_tables = [h.name for h in headers.values() if h.is_scorable and len(h.shape) == 2]
        hint = f" (2-D tensors: {', '.join(float_tables[:4])}...)" if float_tables else ""
        raise ModelError(
            f"{files.model}: no token embedding tensor found; name it with ",
            Option("tensor", metavar="NAME"),
            hint,
        )
    if config_warning:  # once the checkpoint opened: a failure says one thing only
        note(*config_warning, kind="warning")
    return Checkpoint(files, config, headers, complete, embeddings)


def _exported_checkpoint(
    files: CheckpointFiles, config: dict[str, Any], headers: dict[str, TensorHeader]
) -> Checkpoint:
    """A table ``embinspect export`` wrote (``sources.exported``): its one table is the
    token table, whatever its name."""
    assert files.exported is not None
    family = f"embinspect export ({files.exported.format})"
    token = EmbeddingTensor(TOKEN, files.exported.header, family)
    return Checkpoint(files, config, headers, True, {TOKEN: token})


def _read_headers(
    files: CheckpointFiles, tensor: str | None, all_headers: bool
) -> tuple[dict[str, TensorHeader], bool]:
    """Headers of every local shard, and of the remote shards that are wanted."""
    wanted = set(files.weight_files)
    if files.kind == "hub" and files.weight_map is not None:
        everything = all_headers and files.can_download
        wanted = {
            shard
            for name, shard in files.weight_map.items()
            if everything or name == tensor or could_be_embedding(name) or files.is_present(shard)
        }
    headers: dict[str, TensorHeader] = {}
    shards = [shard for shard in files.weight_files if shard in wanted]
    for shard_headers in files.read_headers(shards).values():
        headers.update(shard_headers)
    if files.weight_map is not None:
        missing = sorted(set(files.weight_map) - set(headers))
        unread = [name for name in missing if files.weight_map[name] in wanted]
        if unread:
            raise ModelError(
                f"{files.model}: index lists {unread[0]!r} in {files.weight_map[unread[0]]}, "
                "but that shard does not hold it"
            )
    return headers, wanted == set(files.weight_files)
