"""`embinspect undertrained` on vocabularies with no known unused tokens: the reference is
the tokens the tokenizer cannot produce (unreachable), computed here independently with the
tokenizers library, and the ranking is magikarp's indicator on them."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import checkpoints
import numpy as np
import pytest
from reference import table
from safetensors.numpy import save_file
from test_errors import assert_one_line_error
from test_undertrained_command import expected_ranking
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

import embinspect
import embinspect.progress

NEVER_IN_UTF8 = {0xC0, 0xC1, *range(0xF5, 0x100)}  # bytes no UTF-8 text holds


def unreachable_by_round_trip(tokenizer: Tokenizer) -> list[int]:
    """Ids (added tokens left out) whose text, decoded alone, does not encode back to them."""
    added = {t["id"] for t in json.loads(tokenizer.to_str())["added_tokens"]}
    ids = [i for i in range(tokenizer.get_vocab_size()) if i not in added]
    texts = tokenizer.decode_batch([[i] for i in ids], skip_special_tokens=False)
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [i for i, got in zip(ids, encoded, strict=True) if got.ids != [i]]


def gpt2_byte_of_character() -> dict[str, int]:
    """GPT-2's byte-level alphabet read backwards: the byte each character stands for."""
    shown = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in shown]
    return {chr(b): b for b in shown} | {chr(256 + n): b for n, b in enumerate(others)}


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def write_model(folder: Path, tokenizer: Tokenizer, seed: int = 0) -> Path:
    """A checkpoint of one random f32 token table, one row per token, and ``tokenizer``."""
    folder.mkdir()
    rows = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), 8))
    save_file({"model.embed_tokens.weight": rows.astype(np.float32)}, folder / "model.safetensors")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    return folder


def llama_style_tokenizer() -> Tokenizer:
    """Llama 2's scheme in small: BPE with byte fallback (<0x00>..<0xFF> are ids 3..258),
    a ▁ put before the text and for each space, and a decoder that drops the first space."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for piece in ["▁", "t", "h", "e", "A", "«", "»", "th", "the", "▁the", "▁«", "▁»", "▁A"]:
        vocab[piece] = len(vocab)
    merges = [("t", "h"), ("th", "e"), ("▁", "the"), ("▁", "«"), ("▁", "»"), ("▁", "A")]
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
         decoders.Strip(" ", 1, 0)]
    )  # fmt: skip
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tokenizer


@pytest.mark.slow
def test_smollm2_reference_is_its_unreachable_tokens(cli, smollm2):
    """SmolLM2 has no [unusedN]: the 313 tokens whose text does not encode back to them
    are the reference, all of them byte fragments (part of a UTF-8 character)."""
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    unreachable = unreachable_by_round_trip(tokenizer)
    assert len(unreachable) == 313
    assert all("\ufffd" in tokenizer.decode([i]) for i in unreachable)  # all fragments
    result = cli("undertrained", smollm2, "-k", "20", "-f", "json").json()
    assert result["reference"] == "unreachable"
    assert result["reference_count"] == 313 and result["reference_ids"] == unreachable
    assert "byte fragments" in result["reference_source"]
    assert result["unreachable"] == 313
    rows = table(smollm2, "model.embed_tokens.weight")
    ids, cosines = expected_ranking(rows, unreachable, 20)
    assert [t["token_id"] for t in result["tokens"]] == ids
    assert [t["cosine"] for t in result["tokens"]] == pytest.approx(cosines[ids].tolist(), rel=1e-9)


@pytest.mark.slow
def test_smollm2_gguf_has_the_same_reference(cli, smollm2):
    """The GGUF's own vocabulary (converted from its metadata) gives the same 313."""
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))  # saved from the GGUF
    run = cli("undertrained", checkpoints.smollm2_gguf(), "-k", "5", "-f", "json")
    result = run.json()
    assert result["reference"] == "unreachable"
    assert result["reference_ids"] == unreachable_by_round_trip(tokenizer)
    assert result["reference_count"] == 313


@pytest.mark.slow
def test_gpt2_reference_is_the_bytes_utf8_never_uses(cli, gpt2):
    """GPT-2's unreachable tokens are 331 byte fragments and 13 bytes that no UTF-8 text
    holds (C0, C1, F5-FF: magikarp's GPT-2 reference is F5-FF, ids 177-187): only those
    13 are the reference, as text does produce the fragments inside rare characters."""
    from transformers import AutoTokenizer

    from_unicode = gpt2_byte_of_character()
    tokenizer = AutoTokenizer.from_pretrained(gpt2).backend_tokenizer  # vocab.json, merges.txt
    unreachable = unreachable_by_round_trip(tokenizer)
    raw = {i: bytes(from_unicode[ch] for ch in tokenizer.id_to_token(i)) for i in unreachable}
    never = [i for i in unreachable if NEVER_IN_UTF8 & set(raw[i])]
    fragments = [i for i in unreachable if i not in never and not is_utf8(raw[i])]
    whole = [i for i in unreachable if i not in fragments]
    assert len(unreachable) == 344 and len(fragments) == 331
    assert whole == never == [124, 125, *range(177, 188)]
    result = cli("undertrained", gpt2, "-k", "5", "-f", "json").json()
    assert result["reference"] == "unreachable" and result["reference_ids"] == whole
    assert result["reference_source"] == (
        "unreachable tokens (their text does not encode back to them)"
    )


def test_byte_fallback_and_word_inside_pieces(cli, tmp_path):
    """Llama's scheme: a piece from inside a word (``the``, ``t``) reads back after a
    prefix, so it is reachable; a byte token standing for a character that has a piece of
    its own (<0x41> 'A', <0x20> ' ') is unreachable, as are C0, C1 and F5-FF; byte tokens
    of part of a character (<0x80>..<0xF4>) are not the reference; <0x0A> is reachable."""
    tokenizer = llama_style_tokenizer()
    model = write_model(tmp_path / "llama", tokenizer)
    everything = str(tokenizer.get_vocab_size())
    result = cli("undertrained", model, "-k", everything, "--keep-reference", "-f", "json").json()
    byte = {f"<0x{b:02X}>": 3 + b for b in range(256)}
    expected = sorted(
        [byte["<0x20>"], byte["<0x41>"], byte["<0x65>"], byte["<0x68>"], byte["<0x74>"]]
        + [3 + b for b in sorted(NEVER_IN_UTF8)]
    )  # ' ', 'A', 'e', 'h', 't': each has a piece, which text gives instead
    assert result["reference"] == "unreachable"
    assert result["reference_ids"] == expected and result["reference_count"] == 18
    reachable = {t["token"]: t["reachable"] for t in result["tokens"]}
    for piece in ["t", "h", "e", "th", "the", "▁the", "«", "▁«", "A", "▁", "<0x0A>"]:
        assert reachable[piece] is True, piece
    assert reachable["<0xE3>"] is False  # a fragment: unreachable, yet not the reference
    shown = " ".join(cli("undertrained", model, "-k", "2", "-f", "table").stdout.split())
    assert shown.startswith(
        "Likely under-trained tokens of model.embed_tokens.weight "
        f"({model}) (reference: unreachable tokens)"
    )
    assert (
        "reference: 18 unreachable tokens (their text does not encode back to them), as no "
        "token is known to be unused (--reference to choose)" in shown
    )
    # The API takes the same default, and reports the read-back as a step of its own.
    steps: list[str] = []

    @contextlib.contextmanager
    def record(label: str, total: int | None):
        steps.append(label)
        yield lambda n: None

    with embinspect.progress.reporting(record):
        api = embinspect.load(model).undertrained(k=3)
    assert api.reference == "unreachable" and api.reference_ids == expected
    assert "Reading every token back through the tokenizer" in steps


def test_reference_still_overrides(cli, tmp_path):
    model = write_model(tmp_path / "llama", llama_style_tokenizer())
    result = cli("undertrained", model, "--reference", "#100", "--reference", "A", "-f", "json")
    result = result.json()
    assert result["reference"] == "given" and result["reference_source"] == "--reference"
    assert result["reference_ids"] == [100, 263] and result["reference_count"] == 2


def test_every_token_reachable_is_one_line_error(cli, tmp_path):
    """A word-level vocabulary whose every token encodes back to itself: no reference."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "cat": 1, "dog": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["[UNK]"])
    model = write_model(tmp_path / "words", tokenizer)
    run = cli("undertrained", model, "-f", "json")
    assert_one_line_error(run, 2, "no reference possible", "none is unreachable", "--reference")
    with pytest.raises(embinspect.UsageError, match="no reference possible"):
        embinspect.load(model).undertrained()
    given = cli("undertrained", model, "--reference", "dog", "-f", "json").json()
    assert given["reference_ids"] == [2] and given["unreachable"] == 0


def test_word_vectors_keep_the_exit_2_rule(cli, tmp_path):
    """No tokenizer, no round trip: a word-vector file needs --reference."""
    words = tmp_path / "vectors.txt"
    words.write_text("".join(f"w{i} {i} {i % 3} 1\n" for i in range(6)))
    run = cli("undertrained", words, "-f", "json")
    assert_one_line_error(run, 2, "no tokens known to be unused", "--reference")
