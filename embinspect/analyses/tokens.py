"""``embinspect tokens``: how a text becomes rows of the token table (and position table)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from embinspect.errors import QueryError, UsageError
from embinspect.model.checkpoint import Checkpoint, Provenance, stamped
from embinspect.model.position_scheme import first_position_id
from embinspect.model.tensor_names import POSITION, TOKEN_TYPE
from embinspect.model.tokenizer import Vocabulary
from embinspect.result import Displayable
from embinspect.tables import scaling
from embinspect.tables.queries import printable, shown
from embinspect.tables.rows import read_row_array


@dataclass(frozen=True)
class TokenRow:
    """One token of the text. Norms are L2, computed in float64 from the stored row, scaled
    by its power of two (exact for rows of any size)."""

    position: int  # index in the text's token sequence
    token_id: int
    token: str  # as stored in the vocabulary: Ġcat, ##ing, ▁the
    text: str  # as it reads: ' cat', 'ing', ' the'
    norm: float
    head: list[float]  # the first components of the row
    vector: list[float] | None = None  # the whole row, with --vectors
    position_id: int | None = None  # row of the learned position table, with --positions
    position_norm: float | None = None
    input_norm: float | None = None  # norm of token + position (+ token type 0)


@dataclass(frozen=True)
class TokenLookup(Displayable):
    model: str
    text: str
    tensor: str
    position: dict[str, Any]
    position_note: str | None
    tokens: list[TokenRow]
    special_tokens: bool = False  # the tokenizer's special tokens ([CLS] ... [SEP]) added
    lowercased: bool = False  # the text was lowercased to be looked up (uncased word vectors)
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        """``lowercased`` only when true: every other lookup's JSON stays as it was."""
        data = asdict(self)
        del data["provenance"]
        if not self.lowercased:
            del data["lowercased"]
        return stamped(data, self.provenance)


def lookup_tokens(
    checkpoint: Checkpoint,
    vocabulary: Vocabulary,
    text: str,
    *,
    components: int = 4,
    positions: bool = False,
    vectors: bool = False,
    special_tokens: bool | None = None,
) -> TokenLookup:
    """Tokenize ``text`` and read each token's row (and position row, with ``positions``).

    ``special_tokens`` None: added with ``positions`` (the positions the model really uses:
    BERT's ``[CLS]`` at 0, the first word at 1), left out without.

    Rows are read and their norms computed with numpy, in float64: a lookup of a few rows
    never waits on torch's import."""
    table = checkpoint.token_table.header
    unlabelled = checkpoint.unlabelled(table, vocabulary)
    if unlabelled is not None:
        raise UsageError(
            f"{unlabelled}: tokens reads a token's row, and token ids do not name these "
            "rows; drop --tensor, or look rows up by index (#12) with neighbors or compare"
        )
    if special_tokens is None:
        special_tokens = positions
    if printable(text) != text:
        raise QueryError(f"{shown(text)}: not valid UTF-8")
    ids = vocabulary.encode(text, special_tokens=special_tokens)
    if not ids:
        raise QueryError("the text tokenizes to no tokens")
    token_rows = read_row_array(checkpoint.files, table, ids)
    scheme = checkpoint.position_scheme()
    note = None
    added = None
    position_ids: list[int | None] = [None] * len(ids)
    if positions:
        added, position_ids, note = _position_rows(checkpoint, scheme, len(ids))
    # Scaled by each row's power of two: rows of 1e-200 or 1e300 have their norm, not 0 or inf.
    token_norms = scaling.array_norms(token_rows).tolist()
    if added is not None:
        position_norms = scaling.array_norms(added[0]).tolist()
        input_norms = scaling.array_norms(token_rows + added[1]).tolist()
    result = []
    for index, token_id in enumerate(ids):
        row = token_rows[index]
        stored = vocabulary.id_to_token(token_id) or ""
        extra: dict[str, Any] = {}
        if added is not None:
            extra = {
                "position_id": position_ids[index],
                "position_norm": position_norms[index],
                "input_norm": input_norms[index],
            }
        result.append(
            TokenRow(
                position=index,
                token_id=token_id,
                token=stored,
                text=vocabulary.token_text(token_id),
                norm=token_norms[index],
                head=_floats(row[:components]),
                vector=_floats(row) if vectors else None,
                **extra,
            )
        )
    return TokenLookup(
        checkpoint.files.model, text, table.name, scheme, note, result, special_tokens,
        vocabulary.lowercased(text), checkpoint.provenance(table),
    )  # fmt: skip


def _position_rows(
    checkpoint: Checkpoint, scheme: dict[str, Any], count: int
) -> tuple[tuple[Any, Any] | None, list[int | None], str]:
    """(position rows, position rows + token-type row 0), their ids, and what was added."""
    if scheme["kind"] != "learned":
        where = {
            "rotary": "rotary: position is applied inside attention (to queries and keys), "
            "not added to the token vector",
            "alibi": "ALiBi: position is a bias on attention scores, not added to the token vector",
            "none": "word vectors carry no position",
        }
        return None, [None] * count, where.get(scheme["kind"], "no position table found")
    header = checkpoint.embeddings[POSITION].header
    first = first_position_id(checkpoint.text_config)
    ids = list(range(first, first + count))
    if ids[-1] >= header.shape[0]:
        available = max(header.shape[0] - first, 0)  # a config's pad_token_id may be absurd
        raise QueryError(f"the text is {count} tokens; {header.name} has positions for {available}")
    position = read_row_array(checkpoint.files, header, ids)
    total = position
    note = f"input = token + position ({header.name})"
    token_type = checkpoint.embeddings.get(TOKEN_TYPE)
    if token_type is not None:
        # BERT adds segment embedding 0 for a single sentence, before its LayerNorm.
        segment = read_row_array(checkpoint.files, token_type.header, [0])
        total = position + segment
        note += f" + token type 0 ({token_type.header.name}), before the embedding LayerNorm"
    return (position, total), ids, note


def _floats(values: Any) -> list[float]:
    """Row values as Python floats, exactly the stored values (bf16/f16/f32 fit in float64)."""
    return [float(v) for v in values.tolist()]
