"""`embinspect undertrained` on the real tables: the ranking against magikarp's indicator
computed here with numpy (PCA by an eigen-decomposition of the centred covariance), and
reachability against the tokenizer's own round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest
from reference import table
from test_errors import assert_one_line_error
from tokenizers import Tokenizer

UNUSED = re.compile(r"\[unused\d+\]")


def magikarp_cosines(rows: np.ndarray, reference: list[int]) -> np.ndarray:
    """cos(x', u): x' is x without the first principal component, u the mean reference x'."""
    centred = rows - rows.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    pc = vectors[:, -1]
    projected = rows - np.outer(rows @ pc, pc)
    u = projected[reference].mean(axis=0)
    return projected @ u / (np.linalg.norm(projected, axis=1) * np.linalg.norm(u))


def expected_ranking(rows, reference, k, keep_reference=False):
    cosines = magikarp_cosines(rows, reference)
    ids = np.arange(len(rows))
    if not keep_reference:
        ids = np.setdiff1d(ids, reference)
    order = ids[np.lexsort((ids, -cosines[ids]))]
    return order[:k].tolist(), cosines


def round_trips(tokenizer: Tokenizer, ids: list[int]) -> list[bool]:
    texts = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    pairs = zip(texts, ids, strict=True)
    return [tokenizer.encode(text, add_special_tokens=False).ids == [i] for text, i in pairs]


def test_minilm_unused_tokens_are_the_reference_and_the_ranking_is_magikarps(cli, minilm):
    rows = table(minilm, "embeddings.word_embeddings.weight")
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    unused = [
        i for i in range(tokenizer.get_vocab_size()) if UNUSED.fullmatch(tokenizer.id_to_token(i))
    ]
    assert len(unused) == 994
    result = cli("undertrained", minilm, "-k", "30", "-f", "json").json()
    assert result["reference_source"] == "[unusedN] (BERT)" and result["reference"] == "unused"
    assert result["reference_ids"] == unused and result["reference_count"] == 994
    ids, cosines = expected_ranking(rows, unused, 30)
    assert [t["token_id"] for t in result["tokens"]] == ids
    assert [t["cosine"] for t in result["tokens"]] == pytest.approx(cosines[ids].tolist(), rel=1e-9)
    assert [t["norm"] for t in result["tokens"]] == pytest.approx(
        np.linalg.norm(rows[ids], axis=1).tolist(), rel=1e-12
    )
    assert not any(t["reference"] for t in result["tokens"])


def test_held_out_unused_tokens_rank_at_the_top(cli, minilm):
    """With the first 100 [unusedN] as the reference, the other 894 all rank in the top 5%
    of the 30,422 other tokens (the rows above them: rare CJK pieces, also untrained)."""
    refs = [arg for i in range(100) for arg in ("--reference", f"[unused{i}]")]
    result = cli("undertrained", minilm, *refs, "-k", "1521", "-f", "json").json()
    assert result["reference_source"] == "--reference" and len(result["reference_ids"]) == 100
    held_out = [t for t in result["tokens"] if UNUSED.fullmatch(t["token"])]
    assert len(held_out) == 894  # every one of them in the top 1,521 (5% of 30,422)
    assert all(t["reachable"] is False for t in held_out)  # "[unused5]" encodes as [ unused5 ]


@pytest.mark.slow
def test_smollm2_glitch_tokens_next_to_its_unused_code_tokens(cli, smollm2):
    """SmolLM2's code-repository special tokens (<file_sep> ... <empty_output>, ids 5-16)
    were never trained; the tokens nearest them are the classic glitch tokens, whose rows
    are bit-identical to theirs."""
    rows = table(smollm2, "model.embed_tokens.weight")
    refs = [arg for i in range(5, 17) for arg in ("--reference", f"#{i}")]
    result = cli("undertrained", smollm2, *refs, "-k", "20", "-f", "json").json()
    assert result["reference"] == "given" and result["reference_count"] == 12
    ids, cosines = expected_ranking(rows, list(range(5, 17)), 20)
    assert [t["token_id"] for t in result["tokens"]] == ids
    assert [t["cosine"] for t in result["tokens"]] == pytest.approx(cosines[ids].tolist(), rel=1e-9)
    top = {t["token"] for t in result["tokens"][:4]}
    assert top == {"PlaneProtection", "ManagementPlaneProtection", "ĠInstancePreprocess",
                   "Ġtransistorsum"}  # fmt: skip
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    assert [t["reachable"] for t in result["tokens"]] == round_trips(tokenizer, ids)
    everything = round_trips(tokenizer, list(range(tokenizer.get_vocab_size())))
    assert result["unreachable"] == everything.count(False)


@pytest.mark.slow
def test_reference_mistakes(cli, minilm, glove):
    run = cli("undertrained", minilm, "--reference", "notatoken", "-f", "json")
    assert_one_line_error(run, 4, "=notatoken: no vocabulary entry spelled exactly so")
    run = cli("undertrained", glove, "-f", "json")  # word vectors: no unused tokens to find
    assert_one_line_error(run, 2, "no tokens known to be unused")
    with_ref = cli("undertrained", glove, "--reference", "#399999", "-k", "3", "-f", "json")
    assert [t["reachable"] for t in with_ref.json()["tokens"]] == [None, None, None]
