"""``embinspect undertrained``: tokens whose rows look never or barely trained.

The indicators of Land & Bartolo 2024, "Fishing for Magikarp: Automatically Detecting
Under-trained Tokens in Large Language Models" (arXiv:2405.05417), as their code
(cohere-ai/magikarp, ``embedding_distance_metrics``) computes them:

1. the first principal component ``pc`` of the table (of its rows centred on their mean)
   is removed from every row: ``x' = x - (x·pc) pc``; it is a direction nearly every
   row shares, and it would swamp the comparison;
2. ``u`` is the mean of the reference rows so projected: tokens known to be unused
   (BERT's ``[unusedN]``, Llama 3's ``<|reserved_special_token_N|>``, Gemma's
   ``<unusedN>``), or the ones given with ``--reference``; in a tokenizer's vocabulary
   with neither, its unreachable tokens (below; ``find_reference``);
3. each token's indicator is ``cos(x', u)``: near 1, its row sits where rows go that
   training never moved. The row norm ``|x|`` is shown beside it (small for tokens that
   weight decay shrank and no gradient grew).

A token is *unreachable* when encoding its own text does not give it back: no text can
make the model see it, so training never did either (magikarp's ``UNREACHABLE``). Byte
fragments (part of a UTF-8 character) are unreachable so, yet text does produce them
inside characters that have no token of their own: rarely, so they are barely trained.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from embinspect.errors import ModelError, Option, UsageError
from embinspect.result import Displayable
from embinspect.tables import scaling
from embinspect.tables.queries import QueryResolver

if TYPE_CHECKING:
    from embinspect.model.tokenizer import Vocabulary, WordKeys
    from embinspect.tables.table import EmbeddingTable

# Spellings of tokens that model families reserve and never train, with where they come from.
UNUSED_TOKEN_PATTERNS = (
    (re.compile(r"\[unused\d+\]"), "[unusedN] (BERT)"),
    (re.compile(r"<\|reserved_special_token_\d+\|>"), "<|reserved_special_token_N|> (Llama 3)"),
    (re.compile(r"<unused\d+>"), "<unusedN> (Gemma)"),
)
DEFAULT_TOP = 50
GIVEN = "--reference"
# Where a tokenizer's vocabulary has no known unused tokens: its unreachable tokens.
UNREACHABLE = "unreachable tokens (their text does not encode back to them)"
FRAGMENTS = "unreachable tokens, all byte fragments (parts of characters that have no token)"


@dataclass(frozen=True)
class Suspect:
    rank: int
    token_id: int
    token: str | None
    text: str | None
    cosine: float | None  # cos(x', u); None for an all-zero row, which has no direction
    norm: float
    reachable: bool | None  # None where it cannot be said (word vectors, ##pieces)
    reference: bool  # one of the reference tokens itself


@dataclass(frozen=True)
class UndertrainedResult(Displayable):
    model: str
    tensor: str
    rows: int
    reference_source: str  # the pattern matched, "--reference", or the unreachable rule
    reference_ids: list[int]
    first_pc_share: float  # of the centred table's variance that the removed component held
    unreachable: int | None  # tokens whose text does not encode back to them (None: unknown)
    zero_rows: int
    tokens: list[Suspect]
    reference: str  # the rule: "unused" (a known pattern), "given" or "unreachable"
    reference_count: int  # len(reference_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_reference(
    vocabulary: Vocabulary | WordKeys | None, rows: int, given: list[str] | None
) -> tuple[list[int], str]:
    """Row ids of the reference tokens, and where the list came from (``source``).

    Tokens given (``--reference``); else the vocabulary's tokens known to be unused; else,
    for a tokenizer, its unreachable tokens that are not added tokens (``[CLS]``,
    ``<|im_start|>``: the tokenizer's own, matched whole in text or not, by its settings):
    those whose text is whole, which no text ever gives (a byte UTF-8 never uses among
    them), or where there are none, the byte fragments, produced only inside rare
    characters. UsageError where there is nothing to take.
    """
    from embinspect.model.tokenizer import Vocabulary

    if given:
        if vocabulary is None and any(not q.startswith("#") for q in given):
            raise UsageError(Option("reference"), " by token needs a tokenizer; name rows as #ID")
        resolver = QueryResolver(vocabulary, rows, pool="error")
        ids = []
        for query in given:
            # An entry spelled as the vocabulary stores it ([unused0], <|reserved_...|>).
            spelled = query if query.startswith("#") else f"={query}"
            ids.extend(resolver.resolve(spelled).token_ids)
        return sorted(set(ids)), GIVEN
    if vocabulary is not None:
        for pattern, source in UNUSED_TOKEN_PATTERNS:
            ids = [
                i
                for i in range(min(rows, vocabulary.size))
                if pattern.fullmatch(vocabulary.id_to_token(i) or "")
            ]
            if ids:
                return ids, source
    if isinstance(vocabulary, Vocabulary):
        reachable = vocabulary.reachability[: min(rows, vocabulary.size)]
        unreachable = [
            i for i, r in enumerate(reachable) if r is False and i not in vocabulary.added_ids
        ]
        whole = [i for i in unreachable if i not in vocabulary.byte_fragments]
        if whole:
            return whole, UNREACHABLE
        if unreachable:
            return unreachable, FRAGMENTS
        raise UsageError(
            "no reference possible: no token of this vocabulary is known to be unused "
            "([unusedN], <|reserved_special_token_N|>, <unusedN>) and none is unreachable "
            "(the text of each encodes back to it); name some with ",
            Option("reference", metavar="TOKEN"),
            " or #ID",
        )
    raise UsageError(
        "no tokens known to be unused in this vocabulary ([unusedN], "
        "<|reserved_special_token_N|>, <unusedN>); name some with ",
        Option("reference", metavar="TOKEN"),
        " or #ID",
    )


def reference_rule(source: str) -> str:
    """How the reference was chosen, from its ``source``: "given" (``--reference``),
    "unreachable" (a tokenizer's unreachable tokens) or "unused" (a known pattern)."""
    if source == GIVEN:
        return "given"
    return "unreachable" if source in (UNREACHABLE, FRAGMENTS) else "unused"


def rank_undertrained(
    model: str,
    table: EmbeddingTable,
    vocabulary: Vocabulary | None,
    reference: list[int],
    source: str,
    *,
    top: int = DEFAULT_TOP,
    keep_reference: bool = False,
) -> UndertrainedResult:
    """The ``top`` rows most like the reference rows, by cos(x', u) (module docstring);
    all-zero rows first, then ties by lower id. Rows with NaN or infinity are left out."""
    import numpy as np
    import torch

    rows, dim = table.rows, table.dim
    with_token = min(rows, vocabulary.size) if vocabulary is not None else rows
    total = torch.zeros(dim, dtype=torch.float64)
    gram = torch.zeros((dim, dim), dtype=torch.float64)
    norms = np.empty(rows)
    finite = np.empty(rows, dtype=bool)
    # The sums are kept for the rows times 2^-power, the power of two of the largest
    # value so far (rescaled, exactly, when a larger one comes): squares of rows of
    # 1e300 would overflow, of 1e-200 underflow. Directions and shares do not change.
    power: int | None = None
    scan = table.chunks(torch.device("cpu"), stored=True, report="Covariance of the rows")
    for start, chunk in scan:
        values = chunk.double()
        ok = torch.isfinite(values).all(dim=1)
        finite[start : start + len(values)] = ok.numpy()
        # Scaled by each row's power of two: a row of 1e-200 has a norm, not 0.
        norms[start : start + len(values)] = scaling.norms(values).numpy()
        good = values[ok]
        if not good.shape[0]:
            continue
        largest = int(scaling.exponents(good).max())
        if power is None or largest > power:
            if power is not None:
                total = scaling.ldexp(total, torch.tensor(power - largest))
                gram = scaling.ldexp(gram, torch.tensor(2 * (power - largest)))
            power = largest
        good = scaling.ldexp(good, torch.tensor(-power))
        total += good.sum(dim=0)
        gram += good.T @ good
    usable = finite & (np.arange(rows) < with_token)
    count = int(finite.sum())
    if count < 2:
        raise ModelError(f"{table.name}: fewer than two rows hold finite values")
    mean = total / count
    covariance = gram / count - torch.outer(mean, mean)
    variances, directions = torch.linalg.eigh(covariance)  # ascending eigenvalues
    pc = directions[:, -1]
    spread = float(variances.clamp(min=0).sum())
    share = float(variances[-1]) / spread if spread > 0 else 0.0
    reference = [i for i in reference if finite[i]]
    if not reference:
        raise UsageError("every reference row holds NaN or infinite values")
    ref_rows = table.gather(reference)
    u = scaling.mean(ref_rows - torch.outer(ref_rows @ pc, pc))  # u is orthogonal to pc
    if not bool(u.any()):
        raise UsageError("the reference rows average to zero once the first component is removed")
    direction = scaling.units(u[None])[0]
    # Each row scaled by its own power of two (a cosine does not see it): x·u and x·pc of
    # rows of 1e-200 do not underflow, nor their squares of 1e300 overflow.
    dots, along, lengths = np.empty(rows), np.empty(rows), np.empty(rows)
    scan = table.chunks(torch.device("cpu"), stored=True, report="Cosines to the unused rows")
    for start, chunk in scan:
        values, _ = scaling.scaled(chunk.double())
        dots[start : start + len(values)] = (values @ direction).numpy()
        along[start : start + len(values)] = (values @ pc).numpy()
        lengths[start : start + len(values)] = values.norm(dim=1).numpy()
    # x'·u = x·u (u ⟂ pc), and |x'|² = |x|² - (x·pc)², clipped at 0 against rounding.
    projected = np.sqrt(np.clip(lengths**2 - along**2, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = dots / projected
    zero = usable & (norms == 0)
    candidates = usable.copy()
    if not keep_reference:
        candidates[reference] = False
    ids = np.flatnonzero(candidates)
    key = np.where(zero[ids], np.inf, np.nan_to_num(cosine[ids], nan=-np.inf))
    order = ids[np.lexsort((ids, -key))][:top]
    reachable = _reachable(vocabulary, order.tolist())
    reference_set = set(reference)
    suspects = [
        Suspect(
            rank=rank,
            token_id=int(i),
            token=vocabulary.id_to_token(int(i)) if vocabulary is not None else None,
            text=vocabulary.token_text(int(i)) if vocabulary is not None else None,
            cosine=None if zero[i] else float(cosine[i]),
            norm=float(norms[i]),
            reachable=reachable[index] if reachable is not None else None,
            reference=int(i) in reference_set,
        )
        for index, (rank, i) in enumerate(zip(range(1, len(order) + 1), order, strict=True))
    ]
    unreachable = _reachable(vocabulary, list(range(with_token)))
    return UndertrainedResult(
        model=model,
        tensor=table.name,
        rows=rows,
        reference_source=source,
        reference_ids=reference,
        first_pc_share=share,
        unreachable=None if unreachable is None else sum(r is False for r in unreachable),
        zero_rows=int(zero.sum()),
        tokens=suspects,
        reference=reference_rule(source),
        reference_count=len(reference),
    )


def _reachable(vocabulary: Vocabulary | None, ids: list[int]) -> list[bool | None] | None:
    """For each id: whether encoding its decoded text gives back exactly that token
    (``Vocabulary.reachability``); None for a vocabulary without a tokenizer."""
    reachability = getattr(vocabulary, "reachability", None)
    return [reachability[i] for i in ids] if reachability is not None else None
