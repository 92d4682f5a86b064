"""How a QUERY becomes one vector: text, ``#1234`` (a token id) or ``=Ġking`` (a vocabulary
entry spelled exactly so).

Plain text is tokenized the way a word appears inside a sentence: for byte-level BPE that
is the form with the leading space (``Ġking``); SentencePiece tokenizers add ``▁`` by
themselves. A word of several tokens is pooled (mean, first or last row) or refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embinspect.errors import Option, QueryError, UsageError
from embinspect.model.tokenizer import BYTE_LEVEL, METASPACE, Vocabulary
from embinspect.text import quoted as shown

if TYPE_CHECKING:
    import numpy as np

    from embinspect.tables.table import EmbeddingTable

POOLS = ("mean", "first", "last", "error")
# A query names one vector: a word or a phrase. Longer text is a mistake (a whole file
# on one line), and pooling its tokens would gather one float64 row per token.
MAX_QUERY_CHARS = 4096
# Lone surrogates: what bytes that are not UTF-8 become when argv or stdin is decoded
# with surrogateescape, as Python does for argv and embinspect does for stdin.
_NOT_UTF8 = re.compile("[\ud800-\udfff]")
# How repr() writes a byte that surrogateescape decoding kept (0x80..0xff -> U+DC80..U+DCFF).


def printable(text: str) -> str:
    """``text`` with any bytes that were not UTF-8 written ``\\xNN``, safe to print."""
    if not _NOT_UTF8.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte became
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class ResolvedQuery:
    """A query and the rows it stands for; ``pooled`` names the pooling when rows > 1;
    ``lowercased``: the text was lowercased to be looked up (an uncased word-vector file)."""

    query: str
    token_ids: list[int]
    tokens: list[str]
    pooled: str | None
    lowercased: bool = False

    def echo(self) -> dict:
        echo = {
            "query": self.query,
            "token_ids": self.token_ids,
            "tokens": self.tokens,
            "pooled": self.pooled,
        }
        if self.lowercased:  # only then: every other query's JSON stays as it was
            echo["lowercased"] = True
        return echo


class QueryResolver:
    def __init__(
        self,
        vocabulary: Vocabulary | None,
        rows: int,
        *,
        leading_space: bool = True,
        pool: str = "mean",
        unlabelled: str | None = None,
    ) -> None:
        """``unlabelled``: why the vocabulary does not name the table's rows (a position
        table chosen with --tensor), said when a query is text."""
        if pool not in POOLS:
            raise UsageError(Option("pool", pool), f": choose one of {', '.join(POOLS)}")
        self.vocabulary = vocabulary
        self.rows = rows
        self.leading_space = leading_space
        self.pool = pool
        self.unlabelled = unlabelled

    def resolve(self, query: str) -> ResolvedQuery:
        """Token ids of a query; raises QueryError when it names no row."""
        # A stdin line too long to keep is its first characters and its whole ``length``.
        length = getattr(query, "length", len(query))
        if length > MAX_QUERY_CHARS:
            raise QueryError(
                f"{shown(query[:60])}... ({length:,} characters): a query is at most "
                f"{MAX_QUERY_CHARS:,} characters"
            )
        if _NOT_UTF8.search(query):
            raise QueryError(f"{shown(query)}: not valid UTF-8")
        lowercased = False
        if query.startswith("#") and len(query) > 1:
            ids = [self._token_id(query[1:])]
        elif query.startswith("=") and len(query) > 1:
            ids = [self._vocabulary_entry(query[1:])]
        else:
            ids = self._tokenize(query)
            lowercased = self._require_vocabulary(query).lowercased(query)
        tokens = [self._stored(token_id) for token_id in ids]
        if len(ids) > 1 and self.pool == "error":
            raise QueryError(
                f"{shown(query)} is {len(ids)} tokens ({shown(' '.join(tokens))}); "
                "pool 'error' refuses to pool them"
            )
        return ResolvedQuery(query, ids, tokens, self.pool if len(ids) > 1 else None, lowercased)

    def _token_id(self, text: str) -> int:
        try:
            token_id = int(text)
        except ValueError:
            raise QueryError(f"{shown('#' + text)}: not a token id (write #1234)") from None
        if not 0 <= token_id < self.rows:
            raise QueryError(f"#{token_id}: outside the table (rows 0..{self.rows - 1})")
        return token_id

    def _vocabulary_entry(self, token: str) -> int:
        token_id = self._require_vocabulary(f"={token}").token_to_id(token)
        # As typed when it prints as it is (=Ġking), else quoted with its escapes.
        named = f"={token}" if token.isprintable() else shown(f"={token}")
        if token_id is None:
            raise QueryError(f"{named}: no vocabulary entry spelled exactly so")
        if token_id >= self.rows:
            raise QueryError(f"{named}: token id {token_id} has no row in the table")
        return token_id

    def _tokenize(self, text: str) -> list[int]:
        if not text.strip():
            raise QueryError(f"{text!r}: empty query (give a word, #id or =entry)")
        vocabulary = self._require_vocabulary(text)
        if vocabulary.scheme == BYTE_LEVEL and self.leading_space and not text.startswith(" "):
            ids = vocabulary.encode(" " + text, query=text)
        else:
            ids = vocabulary.encode(text)
            if vocabulary.scheme == METASPACE and not self.leading_space:
                ids = _drop_metaspace(vocabulary, ids)
        if not ids:
            raise QueryError(f"{shown(text)} tokenizes to nothing")
        for token_id in ids:
            if token_id >= self.rows:
                raise QueryError(f"{shown(text)}: token id {token_id} has no row in the table")
        return ids

    def _require_vocabulary(self, query: str) -> Vocabulary:
        if self.unlabelled is not None:
            raise QueryError(
                f"{shown(query)}: text names no row here ({self.unlabelled}); query rows "
                "by index (#12)"
            )
        if self.vocabulary is None:
            raise QueryError(
                f"{shown(query)}: no tokenizer; query by id (#1234) or give a tokenizer"
            )
        return self.vocabulary

    def _stored(self, token_id: int) -> str:
        if self.vocabulary is None:
            return f"#{token_id}"
        return self.vocabulary.id_to_token(token_id) or f"#{token_id}"


def _drop_metaspace(vocabulary: Vocabulary, ids: list[int]) -> list[int]:
    """The bare form of a SentencePiece word: ``▁king`` becomes ``king`` when it exists."""
    first = vocabulary.id_to_token(ids[0]) or ""
    if first == "\u2581":
        return ids[1:]
    if first.startswith("\u2581"):
        bare = vocabulary.token_to_id(first[1:])
        if bare is not None:
            return [bare, *ids[1:]]
    return ids


def query_array(table: EmbeddingTable, resolved: ResolvedQuery) -> np.ndarray:
    """The query's vector in float64, shape (dim,): its row, or its rows pooled (numpy,
    read without torch)."""
    rows = table.gather_array(resolved.token_ids)
    if resolved.pooled == "first":
        return rows[0]
    if resolved.pooled == "last":
        return rows[-1]
    return rows.mean(axis=0)
