"""`embinspect tokens`: ids equal the tokenizer's, rows equal the tensor read independently."""

from __future__ import annotations

import numpy as np
import pytest
from reference import table
from tokenizers import Tokenizer


def token_rows(run) -> list[dict]:
    return run.json()["tokens"]


def test_minilm_ids_tokens_and_rows(cli, minilm):
    text = "The cat is unbelievably happy"
    result = cli("tokens", minilm, text, "--vectors", "--format", "json").json()
    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tokenizer.no_padding()  # this tokenizer.json pads every input to 128
    expected = tokenizer.encode(text, add_special_tokens=False)
    rows = result["tokens"]
    assert [r["token_id"] for r in rows] == expected.ids
    assert [r["token"] for r in rows] == expected.tokens
    assert [r["text"] for r in rows] == [
        "the",
        "cat",
        "is",
        "un",
        "bel",
        "ie",
        "va",
        "bly",
        "happy",
    ]
    words = table(minilm, "embeddings.word_embeddings.weight")
    for r in rows:
        assert r["vector"] == words[r["token_id"]].tolist()  # exact: f32 values, no rounding
        assert r["head"] == words[r["token_id"], :4].tolist()
        assert r["norm"] == pytest.approx(np.linalg.norm(words[r["token_id"]]), rel=1e-12)


def test_minilm_special_tokens_on_request(cli, minilm):
    rows = token_rows(cli("tokens", minilm, "hello", "--special", "--format", "json"))
    assert [r["token"] for r in rows] == ["[CLS]", "hello", "[SEP]"]
    assert [r["token_id"] for r in rows] == [101, 7592, 102]


def test_minilm_positions_add_special_tokens_at_the_models_positions(cli, minilm):
    """With --positions, [CLS] is at position 0 and the first word at 1, as BERT sees it."""
    run = cli("tokens", minilm, "cat sat", "--positions", "--format", "json")
    result = run.json()
    assert result["special_tokens"] is True
    assert [(r["position_id"], r["token"]) for r in result["tokens"]] == [
        (0, "[CLS]"),
        (1, "cat"),
        (2, "sat"),
        (3, "[SEP]"),
    ]
    assert [r["token_id"] for r in result["tokens"]] == [101, 4937, 2938, 102]
    positions = table(minilm, "embeddings.position_embeddings.weight")
    assert result["tokens"][1]["position_norm"] == pytest.approx(
        np.linalg.norm(positions[1]), rel=1e-12
    )


def test_minilm_positions_say_special_tokens_were_added(cli, minilm):
    run = cli("tokens", minilm, "cat", "--positions", "--format", "table")
    assert run.returncode == 0
    assert (
        "special tokens added, as the model sees the text; --no-special leaves them out"
        in " ".join(run.stdout.split())
    )
    tsv = cli("tokens", minilm, "cat", "--positions", "--format", "tsv")
    assert tsv.stderr.splitlines()[-1] == (
        "embinspect: note: special tokens added, as the model sees the text; "
        "--no-special leaves them out"
    )


def test_minilm_positions_no_special_drops_them(cli, minilm):
    result = cli("tokens", minilm, "cat sat", "--positions", "--no-special", "-f", "json").json()
    assert result["special_tokens"] is False
    assert [(r["position_id"], r["token"]) for r in result["tokens"]] == [(0, "cat"), (1, "sat")]
    table_run = cli("tokens", minilm, "cat", "--positions", "--no-special", "-f", "table")
    assert "special tokens" not in table_run.stdout


def test_without_positions_special_tokens_stay_off(cli, minilm):
    result = cli("tokens", minilm, "cat", "--format", "json").json()
    assert result["special_tokens"] is False
    assert [r["token"] for r in result["tokens"]] == ["cat"]


def test_api_tokens_positions_add_special_tokens(minilm):
    import embinspect

    model = embinspect.load(minilm)
    lookup = model.tokens("cat", positions=True)
    assert [(r.position_id, r.token) for r in lookup.tokens] == [
        (0, "[CLS]"),
        (1, "cat"),
        (2, "[SEP]"),
    ]
    assert lookup.to_dict()["special_tokens"] is True
    bare = model.tokens("cat", positions=True, special=False)
    assert [(r.position_id, r.token) for r in bare.tokens] == [(0, "cat")]
    assert [r.token for r in model.tokens("cat").tokens] == ["cat"]


def test_minilm_positions_add_position_and_segment_rows(cli, minilm):
    rows = token_rows(
        cli("tokens", minilm, "a b c", "--positions", "--no-special", "--format", "json")
    )
    words = table(minilm, "embeddings.word_embeddings.weight")
    positions = table(minilm, "embeddings.position_embeddings.weight")
    segments = table(minilm, "embeddings.token_type_embeddings.weight")
    for index, r in enumerate(rows):
        assert r["position_id"] == index
        assert r["position_norm"] == pytest.approx(np.linalg.norm(positions[index]), rel=1e-12)
        summed = words[r["token_id"]] + positions[index] + segments[0]
        assert r["input_norm"] == pytest.approx(np.linalg.norm(summed), rel=1e-12)


def test_smollm2_byte_level_ids_and_bf16_rows(cli, smollm2):
    text = "The capital of France is Paris."
    result = cli("tokens", smollm2, text, "--vectors", "--format", "json").json()
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    expected = tokenizer.encode(text, add_special_tokens=False)
    rows = result["tokens"]
    assert [r["token_id"] for r in rows] == expected.ids
    assert [r["token"] for r in rows] == expected.tokens
    assert "".join(r["text"] for r in rows) == text
    assert rows[-2]["token"] == "ĠParis" and rows[-2]["text"] == " Paris"
    embed = table(smollm2, "model.embed_tokens.weight")
    for r in rows:
        assert r["vector"] == embed[r["token_id"]].tolist()


def test_smollm2_positions_say_rotary(cli, smollm2):
    run = cli("tokens", smollm2, "hi there", "--positions", "--format", "json")
    result = run.json()
    assert result["position"]["kind"] == "rotary"
    assert "inside attention" in result["position_note"]
    assert all("position_norm" not in r or r["position_norm"] is None for r in result["tokens"])


def test_gpt2_fallback_tokenizer_and_learned_positions(cli, gpt2):
    from transformers import AutoTokenizer

    text = "Hello world, the cat sat."
    result = cli("tokens", gpt2, text, "--positions", "--vectors", "--format", "json").json()
    expected = AutoTokenizer.from_pretrained(str(gpt2)).encode(text, add_special_tokens=False)
    rows = result["tokens"]
    assert [r["token_id"] for r in rows] == expected
    assert rows[0]["token_id"] == 15496 and rows[1]["token"] == "Ġworld"
    assert "".join(r["text"] for r in rows) == text
    wte = table(gpt2, "transformer.wte.weight")  # synthetic weights, real tokenizer
    wpe = table(gpt2, "transformer.wpe.weight")
    for index, r in enumerate(rows):
        assert r["vector"] == wte[r["token_id"]].tolist()
        assert r["input_norm"] == pytest.approx(
            np.linalg.norm(wte[r["token_id"]] + wpe[index]), rel=1e-12
        )


def test_tsv_and_jsonl_carry_the_same_rows(cli, minilm):
    tsv = cli("tokens", minilm, "cat dog", "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t") == ["position", "token_id", "token", "text", "norm", "head"]
    jsonl = cli("tokens", minilm, "cat dog", "--format", "jsonl").jsonl()
    assert [line.split("\t")[1] for line in tsv[1:]] == [str(r["token_id"]) for r in jsonl]
    assert [float(line.split("\t")[4]) for line in tsv[1:]] == [r["norm"] for r in jsonl]
