"""`neighbors`, `compare` and `analogy` on real tables against float64 references computed
here with numpy from the safetensors files."""

from __future__ import annotations

import numpy as np
import pytest
from reference import cos_add, cos_mul, cosines, ranked, table
from tokenizers import Tokenizer

# Every test here runs on both scan engines (numpy for a few queries, torch for the
# rest): their answers must be the same exact ones.
pytestmark = pytest.mark.usefixtures("scan_engine")

MINILM_WORDS = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def minilm_table(minilm):
    return table(minilm, MINILM_WORDS)


@pytest.fixture(scope="module")
def smollm2_table(smollm2):
    return table(smollm2, "model.embed_tokens.weight")


def answer(run) -> dict:
    results = run.json()
    assert len(results) == 1
    return results[0]


def test_minilm_neighbors_of_king_equal_the_float64_reference(cli, minilm, minilm_table):
    result = answer(cli("neighbors", minilm, "king", "-k", "8", "-f", "json"))
    assert (result["query"], result["token_ids"], result["tokens"]) == ("king", [2332], ["king"])
    ids, scores = ranked(cosines(minilm_table, minilm_table[2332]), 8, exclude={2332})
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["rank"] for n in result["neighbors"]] == list(range(1, 9))
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert [n["token"] for n in result["neighbors"]][:2] == ["kings", "queen"]


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_minilm_other_metrics(cli, minilm, minilm_table, metric):
    result = answer(cli("neighbors", minilm, "king", "-k", "6", "--metric", metric, "-f", "json"))
    query = minilm_table[2332]
    if metric == "dot":
        ids, scores = ranked(minilm_table @ query, 6, exclude={2332})
    else:
        distances = np.sqrt(((minilm_table - query) ** 2).sum(axis=1))
        ids, scores = ranked(distances, 6, exclude={2332}, ascending=True)
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)


def test_keep_query_and_center(cli, minilm, minilm_table):
    kept = answer(cli("neighbors", minilm, "king", "-k", "3", "--keep-query", "-f", "json"))
    assert kept["neighbors"][0]["token_id"] == 2332
    assert kept["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-12)
    centered = answer(cli("neighbors", minilm, "king", "-k", "8", "--center", "-f", "json"))
    shifted = minilm_table - minilm_table.mean(axis=0)
    ids, scores = ranked(cosines(shifted, shifted[2332]), 8, exclude={2332})
    assert [n["token_id"] for n in centered["neighbors"]] == ids
    assert [n["score"] for n in centered["neighbors"]] == pytest.approx(scores, rel=1e-10)


def test_word_filter(cli, minilm, minilm_table):
    result = answer(cli("neighbors", minilm, "#3", "-k", "20", "--filter", "words", "-f", "json"))
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    allowed = np.array(
        [vocab[i].isalpha() and not vocab[i].startswith("##") for i in range(len(vocab))]
    )
    allowed[[0, 100, 101, 102, 103]] = False  # [PAD] [UNK] [CLS] [SEP] [MASK] are special
    ids, _ = ranked(cosines(minilm_table, minilm_table[3]), 20, exclude={3}, allowed=allowed)
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert all(n["token"].isalpha() for n in result["neighbors"])


def test_minilm_analogy_king_man_woman_is_queen(cli, minilm, minilm_table):
    a, b, c = (minilm_table[i] for i in (2332, 2158, 2450))  # king, man, woman
    for method, formula in (("add", cos_add), ("mul", cos_mul)):
        run = cli("analogy", minilm, "king", "man", "woman", "--method", method, "-f", "json")
        result = answer(run)
        assert result["formula"] == "king - man + woman"
        assert result["method"] == method
        assert [q["token_ids"] for q in result["queries"]] == [[2332], [2158], [2450]]
        assert result["results"][0]["token"] == "queen"
        ids, scores = ranked(formula(minilm_table, a, b, c), 5, exclude={2332, 2158, 2450})
        assert [r["token_id"] for r in result["results"]] == ids
        assert [r["score"] for r in result["results"]] == pytest.approx(scores, rel=1e-12)


def test_minilm_compare_equals_reference_cosines(cli, minilm, minilm_table):
    result = cli("compare", minilm, "cat", "dog", "car", "-f", "json").json()
    ids = [4937, 3899, 2482]
    assert [item["token_ids"] for item in result["items"]] == [[i] for i in ids]
    expected = [[float(cosines(minilm_table[[j]], minilm_table[i])[0]) for j in ids] for i in ids]
    for row, expected_row in zip(result["matrix"], expected, strict=True):
        assert row == pytest.approx(expected_row, rel=1e-12)
    long = cli("compare", minilm, "cat", "dog", "car", "-f", "tsv").stdout.splitlines()
    assert long[0] == "a\tb\tcosine"
    pairs = [line.split("\t") for line in long[1:]]
    assert [(a, b) for a, b, _ in pairs] == [("cat", "dog"), ("cat", "car"), ("dog", "car")]
    assert float(pairs[0][2]) == pytest.approx(expected[0][1], rel=1e-12)


def test_smollm2_neighbors_of_paris(cli, smollm2, smollm2_table):
    result = answer(cli("neighbors", smollm2, "Paris", "-k", "10", "-f", "json"))
    assert result["tokens"] == ["ĠParis"]
    paris = result["token_ids"][0]
    ids, scores = ranked(cosines(smollm2_table, smollm2_table[paris]), 10, exclude={paris})
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    bare = answer(cli("neighbors", smollm2, "Paris", "--no-space", "-k", "1", "-f", "json"))
    assert bare["tokens"] == ["Paris"]


def test_smollm2_multi_token_word_pools_and_reports_pieces(cli, smollm2, smollm2_table):
    word = "antidisestablishmentarianism"
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    pieces = tokenizer.encode(" " + word, add_special_tokens=False)
    assert len(pieces.ids) > 1
    result = answer(cli("neighbors", smollm2, word, "-k", "5", "-f", "json"))
    assert result["token_ids"] == pieces.ids
    assert result["tokens"] == pieces.tokens
    assert result["pooled"] == "mean"
    mean = smollm2_table[pieces.ids].mean(axis=0)
    ids, scores = ranked(cosines(smollm2_table, mean), 5, exclude=set(pieces.ids))
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    last = answer(cli("neighbors", smollm2, word, "--pool", "last", "-k", "3", "-f", "json"))
    ids, _ = ranked(cosines(smollm2_table, smollm2_table[pieces.ids[-1]]), 3, set(pieces.ids))
    assert [n["token_id"] for n in last["neighbors"]] == ids
    refused = cli("neighbors", smollm2, word, "--pool", "error", "-f", "json")
    assert refused.returncode == 4
    assert "pool 'error' refuses to pool them" in refused.stderr


def test_smollm2_id_and_exact_entry_queries(cli, smollm2):
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    paris = tokenizer.token_to_id("ĠParis")
    by_id = answer(cli("neighbors", smollm2, f"#{paris}", "-k", "5", "-f", "json"))
    by_entry = answer(cli("neighbors", smollm2, "=ĠParis", "-k", "5", "-f", "json"))
    assert by_id["token_ids"] == by_entry["token_ids"] == [paris]
    assert by_id["tokens"] == by_entry["tokens"] == ["ĠParis"]
    assert by_id["neighbors"] == by_entry["neighbors"]


def test_gpt2_tied_output_table_and_padding_rows_left_out(cli, gpt2):
    run = cli("neighbors", gpt2, "cat", "--table", "output", "-k", "50", "-f", "json")
    assert "tied" in run.stderr
    result = answer(run)
    assert result["tokens"] == ["Ġcat"]
    # rows 50257..50303 pad the table; no token reaches them, so no result names them
    wte = table(gpt2, "transformer.wte.weight")
    allowed = np.arange(len(wte)) < 50257
    ids, _ = ranked(cosines(wte, wte[3797]), 50, exclude={3797}, allowed=allowed)
    assert [n["token_id"] for n in result["neighbors"]] == ids


def test_word_filter_drops_fragments_and_the_querys_own_variants(cli, smollm2, smollm2_table):
    result = answer(
        cli("neighbors", smollm2, "Paris", "-k", "10", "--filter", "words", "-f", "json")
    )
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    texts = [tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())]
    words = {i: t.removeprefix(" ") for i, t in enumerate(texts)}
    allowed = np.array([words[i].isalpha() for i in range(len(texts))])
    own = {i for i, w in words.items() if w.casefold() == "paris" and allowed[i]}
    assert own >= {7042, 38634}  # ĠParis and Paris at least
    paris = 7042
    ids, _ = ranked(cosines(smollm2_table, smollm2_table[paris]), 10, own, allowed)
    assert [n["token_id"] for n in result["neighbors"]] == ids
