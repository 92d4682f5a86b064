"""`embinspect diff A B`: per-row cosine and L2 change between two checkpoints' tables, on
the real SmolLM2 folder against the GGUF it was built from, and on MiniLM against
"fine-tuned" and renumbered copies built here; every figure against numpy on tables read
independently (safetensors, gguf's own dequantize)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import checkpoints
import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize
from reference import table as read_table
from safetensors.numpy import load_file, save_file
from test_errors import EXIT_USAGE, assert_one_line_error
from test_imports import imported_heavy_modules

MINILM_TABLE = "embeddings.word_embeddings.weight"
SMOLLM2_TABLE = "model.embed_tokens.weight"
THRESHOLDS = (0.999, 0.99, 0.9, 0.5)
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75)

# The "fine-tuned" MiniLM: these many rows moved, two broken, three tokens added.
MOVED_ROWS = 30
ZERO_ROW, NAN_ROW = 5000, 6000
ADDED_TOKENS = ("[NEW0]", "[NEW1]", "finetuneword")
# The renumbered MiniLM: king/queen and cat/dog swap ids, paris is renamed.
SWAPS = (("king", "queen"), ("cat", "dog"))
RENAMED = ("paris", "paris_renamed")


# --- independent references ----------------------------------------------------------


def reference(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair of rows (a[i], b[i]), float64: cosine, norms, distance, and which pairs
    are scored (finite and non-zero in both)."""
    with np.errstate(all="ignore"):
        norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = np.einsum("ij,ij->i", a, b) / (norm_a * norm_b)
        dist = np.linalg.norm(a - b, axis=1)
    scored = np.isfinite(norm_a) & np.isfinite(norm_b) & (norm_a > 0) & (norm_b > 0)
    identical = (a == b).all(axis=1)
    cos = np.where(identical & scored, 1.0, np.clip(cos, -1.0, 1.0))
    return {"cos": cos, "norm_a": norm_a, "norm_b": norm_b, "dist": dist, "scored": scored,
            "identical": identical}  # fmt: skip


def lowest(ref: dict[str, np.ndarray], ids: np.ndarray, k: int) -> list[int]:
    """Indices of the k scored pairs of lowest cosine, ties by id."""
    kept = np.flatnonzero(ref["scored"])
    return kept[np.lexsort((ids[kept], ref["cos"][kept]))][:k].tolist()


def assert_figures(result: dict, ref: dict[str, np.ndarray]) -> None:
    """The summary of a diff equals numpy's on the same pairs."""
    kept = ref["scored"]
    cos = ref["cos"][kept]
    relative = ref["dist"][kept] / ref["norm_a"][kept]
    assert result["compared"] == len(ref["cos"])
    assert result["scored"] == int(kept.sum())
    assert result["identical"] == int(ref["identical"].sum())
    figures = result["cosine"]
    assert figures["mean"] == pytest.approx(cos.mean(), abs=1e-13)
    assert figures["median"] == pytest.approx(np.median(cos), abs=1e-13)
    assert figures["min"] == pytest.approx(cos.min(), abs=1e-13)
    assert figures["max"] == pytest.approx(cos.max(), abs=1e-13)
    assert [q["q"] for q in figures["quantiles"]] == list(QUANTILES)
    want = np.quantile(cos, QUANTILES)
    assert [q["cosine"] for q in figures["quantiles"]] == pytest.approx(want, abs=1e-13)
    assert result["below"] == [{"threshold": t, "rows": int((cos < t).sum())} for t in THRESHOLDS]
    change = result["relative_change"]
    assert change["mean"] == pytest.approx(relative.mean(), rel=1e-10)
    assert change["median"] == pytest.approx(np.median(relative), rel=1e-10)
    assert change["max"] == pytest.approx(relative.max(), rel=1e-10)
    drift = np.sqrt((ref["dist"][kept] ** 2).sum() / (ref["norm_a"][kept] ** 2).sum())
    assert result["drift"] == pytest.approx(drift, rel=1e-10)


def assert_moved(moved: list[dict], ref, ids_a, ids_b, tokens: list[str | None], k: int) -> None:
    """The moved-most list is numpy's ranking, each row's figures numpy's."""
    order = lowest(ref, ids_a, k)
    assert [m["token_id"] for m in moved] == [int(ids_a[i]) for i in order]
    assert [m["token_id_b"] for m in moved] == [int(ids_b[i]) for i in order]
    assert [m["rank"] for m in moved] == list(range(1, len(order) + 1))
    assert [m["token"] for m in moved] == [tokens[int(ids_a[i])] for i in order]
    got = np.array([[m["cosine"], m["norm_a"], m["norm_b"], m["relative_change"]] for m in moved])
    want = np.stack(
        [
            ref["cos"][order],
            ref["norm_a"][order],
            ref["norm_b"][order],
            ref["dist"][order] / ref["norm_a"][order],
        ],
        axis=1,
    )
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-12)


def vocabulary_tokens(folder) -> list[str | None]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size(True))]


# --- checkpoints built from the real ones --------------------------------------------


@pytest.fixture(scope="module")
def minilm_table(minilm) -> np.ndarray:
    return read_table(minilm, MINILM_TABLE)


@pytest.fixture(scope="module")
def finetuned(minilm, tmp_path_factory):
    """MiniLM "fine-tuned": MOVED_ROWS rows moved by seeded noise of growing size, row
    ZERO_ROW zeroed, row NAN_ROW holding a NaN, and ADDED_TOKENS appended (rows and
    tokenizer entries). Returns (folder, moved ids)."""
    out = tmp_path_factory.mktemp("finetuned") / "minilm-finetuned"
    shutil.copytree(minilm, out, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = load_file(minilm / "model.safetensors")
    table = tensors[MINILM_TABLE].copy()
    rng = np.random.default_rng(20240601)
    candidates = np.setdiff1d(np.arange(1000, table.shape[0]), [ZERO_ROW, NAN_ROW])
    moved = rng.choice(candidates, MOVED_ROWS, replace=False)
    for scale, row in zip(np.linspace(0.02, 1.5, MOVED_ROWS), moved, strict=True):
        noise = rng.standard_normal(table.shape[1]).astype(np.float32)
        table[row] += np.float32(scale) * noise * np.linalg.norm(table[row]) / np.sqrt(384)
    table[ZERO_ROW] = 0.0
    table[NAN_ROW, 7] = np.nan
    added = rng.standard_normal((len(ADDED_TOKENS), table.shape[1])).astype(np.float32) * 0.05
    tensors[MINILM_TABLE] = np.concatenate([table, added])
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    spec = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))
    for offset, token in enumerate(ADDED_TOKENS):
        spec["added_tokens"].append(
            {"id": table.shape[0] + offset, "content": token, "single_word": False,
             "lstrip": False, "rstrip": False, "normalized": False, "special": False}
        )  # fmt: skip
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return out, sorted(int(i) for i in moved)


@pytest.fixture(scope="module")
def renumbered(minilm, tmp_path_factory):
    """MiniLM's rows, unchanged, under a tokenizer.json that numbers four words differently
    (SWAPS) and spells one otherwise (RENAMED): the same width, another vocabulary."""
    out = tmp_path_factory.mktemp("renumbered") / "minilm-renumbered"
    shutil.copytree(minilm, out, ignore=shutil.ignore_patterns("model.safetensors"))
    (out / "model.safetensors").symlink_to(minilm / "model.safetensors")
    spec = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    for one, other in SWAPS:
        vocab[one], vocab[other] = vocab[other], vocab[one]
    vocab[RENAMED[1]] = vocab.pop(RENAMED[0])
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return out


# --- SmolLM2: bf16 folder against its own Q8_0 GGUF ----------------------------------


@pytest.mark.slow
def test_smollm2_against_its_gguf_equals_numpy_row_by_row(cli, smollm2):
    gguf_path = checkpoints.smollm2_gguf()
    tensor = next(t for t in GGUFReader(gguf_path).tensors if t.name == "token_embd.weight")
    b = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float64)
    a = read_table(smollm2, SMOLLM2_TABLE)
    rows = a.shape[0]
    # Every row listed (-k past the table): each row's cosine can be checked.
    result = cli("diff", smollm2, gguf_path, "-k", str(rows + 5), "-f", "json").json()
    assert result["a"] | {"model": None, "vocab_source": None} == {
        "model": None, "tensor": SMOLLM2_TABLE, "dtype": "BF16", "rows": 49152, "dim": 576,
        "vocab_size": 49152, "vocab_source": None,
    }  # fmt: skip
    assert (result["b"]["tensor"], result["b"]["dtype"]) == ("token_embd.weight", "Q8_0")
    assert result["vocabulary"] == {
        "same": True, "shared_ids": 49152, "differing_ids": 0, "first_difference": None,
    }  # fmt: skip
    assert result["paired_by"] == "token id"
    ref = reference(a, b)
    ids = np.arange(rows)
    assert_figures(result, ref)
    assert len(result["moved"]) == rows
    assert_moved(result["moved"], ref, ids, ids, vocabulary_tokens(smollm2), rows)
    # Rounding to bf16 is all that separates them: tiny drift, nothing below 0.999.
    assert 0.99999 < result["cosine"]["min"] < 1.0
    assert result["below"][0] == {"threshold": 0.999, "rows": 0}
    assert 5e-4 < result["drift"] < 3e-3
    assert (result["added_count"], result["removed_count"]) == (0, 0)
    assert result["left_out"]["total"] == 0


# --- MiniLM against a "fine-tuned" copy ------------------------------------------------


def test_finetuned_minilm_moved_rows_added_tokens_and_left_out_rows(
    cli, minilm, finetuned, minilm_table
):
    folder, moved_ids = finetuned
    b_full = read_table(folder, MINILM_TABLE)
    result = cli("diff", minilm, folder, "-k", "10", "-f", "json").json()
    rows = minilm_table.shape[0]
    ref = reference(minilm_table, b_full[:rows])
    ids = np.arange(rows)
    assert_figures(result, ref)
    assert_moved(result["moved"], ref, ids, ids, vocabulary_tokens(minilm), 10)
    # The ten that moved most are among the rows the noise moved; every other row is equal.
    assert {m["token_id"] for m in result["moved"]} <= set(moved_ids)
    assert result["identical"] == rows - MOVED_ROWS - 2
    assert result["left_out"] == {
        "zero_a": 0, "zero_b": 1, "non_finite_a": 0, "non_finite_b": 1, "total": 2,
    }  # fmt: skip
    assert result["vocabulary"] == {
        "same": True, "shared_ids": rows, "differing_ids": 0, "first_difference": None,
    }  # fmt: skip
    assert (result["a"]["vocab_size"], result["b"]["vocab_size"]) == (rows, rows + 3)
    assert result["added_count"] == 3
    assert result["added"] == [
        {"token_id": rows + i, "token": token} for i, token in enumerate(ADDED_TOKENS)
    ]
    assert (result["removed_count"], result["removed"]) == (0, [])
    assert result["rows_without_token"] is None


def test_finetuned_minilm_reversed_lists_removed_rows_in_tsv_and_notes(cli, minilm, finetuned):
    folder, _ = finetuned
    run = cli("diff", folder, minilm, "-k", "2", "-f", "tsv")
    assert run.returncode == 0, run.stderr
    header, *lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert header == [
        "kind", "rank", "token_id", "token_id_b", "token", "cosine", "norm_a", "norm_b",
        "relative_change",
    ]  # fmt: skip
    assert [line[0] for line in lines] == ["moved", "moved", "removed", "removed", "removed"]
    assert [line[2:5] for line in lines[2:]] == [
        [str(30522 + i), "", token] for i, token in enumerate(ADDED_TOKENS)
    ]
    notes = run.stderr.splitlines()
    assert notes[0] == (
        "embinspect: note: 2 of 30,522 paired rows left out of the figures: all zeros (1 in A, "
        "0 in B) or with NaN or infinite values (1 in A, 0 in B)"
    )
    assert notes[1].startswith("embinspect: 30,522 rows paired by token id, 30,520 scored: ")
    assert "; 0 added, 3 removed" in notes[1]
    assert len(notes) == 2


def test_center_subtracts_each_tables_mean_row(cli, minilm, finetuned, minilm_table):
    folder, _ = finetuned
    b_full = read_table(folder, MINILM_TABLE)

    def centred(table):
        finite = np.isfinite(table).all(axis=1)
        return table - table[finite].mean(axis=0)

    rows = minilm_table.shape[0]
    result = cli("diff", minilm, folder, "--center", "-k", "5", "-f", "json").json()
    assert result["centered"] is True
    # Centred rows are never equal (the means differ); "identical" counts the stored rows.
    ref = reference(centred(minilm_table), centred(b_full)[:rows])
    ref["identical"] = (minilm_table == b_full[:rows]).all(axis=1)
    assert_figures(result, ref)
    ids = np.arange(rows)
    assert_moved(result["moved"], ref, ids, ids, vocabulary_tokens(minilm), 5)


def test_a_model_against_itself_is_identical_and_tied_heads_are_noted(cli, gpt2):
    run = cli("diff", gpt2, gpt2, "--table", "output", "-k", "3", "-f", "json")
    result = run.json()
    tied = f"embinspect: note: {gpt2}: the output head is tied: it is the token table"
    assert run.stderr.splitlines() == [tied, tied]
    assert result["table"] == "output"
    assert (result["identical"], result["scored"]) == (50304, 50304)
    assert result["cosine"]["min"] == result["cosine"]["max"] == 1.0
    assert result["drift"] == 0.0
    assert [(m["token_id"], m["cosine"]) for m in result["moved"]] == [(0, 1.0), (1, 1.0), (2, 1.0)]
    assert all(b["rows"] == 0 for b in result["below"])


# --- refusals ----------------------------------------------------------------------------


def test_refuses_tables_of_different_widths(cli, minilm, smollm2):
    run = cli("diff", minilm, smollm2)
    assert_one_line_error(run, EXIT_USAGE)
    assert run.stderr == (
        f"embinspect: error: different widths: {minilm}'s {MINILM_TABLE} is 30522 × 384, "
        f"{smollm2}'s {SMOLLM2_TABLE} is 49152 × 576; cosine between rows of different "
        "widths is meaningless\n"
    )
    # --align cannot help: the widths are checked first.
    assert_one_line_error(cli("diff", minilm, smollm2, "--align"), EXIT_USAGE, "different widths")


def test_refuses_different_vocabularies_naming_the_first_differing_id(cli, minilm, renumbered):
    vocab = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert (vocab["king"], vocab["queen"], vocab["cat"], vocab["dog"]) == (2332, 3035, 4937, 3899)
    assert vocab["paris"] == 3000
    run = cli("diff", minilm, renumbered)
    assert_one_line_error(run, EXIT_USAGE)
    assert run.stderr == (
        f"embinspect: error: different vocabularies: token id 2332 is 'king' in {minilm} but "
        f"'queen' in {renumbered} (5 of 30,522 shared ids differ); pass --align to pair rows "
        "by token string\n"
    )


def test_align_pairs_rows_by_token_string(cli, minilm, renumbered, minilm_table):
    result = cli("diff", minilm, renumbered, "--align", "-k", "4", "-f", "json").json()
    assert result["paired_by"] == "token string"
    assert result["vocabulary"]["same"] is False
    assert result["vocabulary"]["first_difference"] == {
        "token_id": 2332, "token_a": "king", "token_b": "queen",
    }  # fmt: skip
    rows = minilm_table.shape[0]
    # Every token but the renamed one is in both; in B, king's row is the one queen had.
    tokens_a = vocabulary_tokens(minilm)
    tokens_b = vocabulary_tokens(renumbered)
    index_b = {token: i for i, token in enumerate(tokens_b)}
    ids_a = np.array([i for i, t in enumerate(tokens_a) if t in index_b])
    ids_b = np.array([index_b[tokens_a[i]] for i in ids_a])
    assert result["compared"] == len(ids_a) == rows - 1
    ref = reference(minilm_table[ids_a], minilm_table[ids_b])
    assert_figures(result, ref)
    assert_moved(result["moved"], ref, ids_a, ids_b, tokens_a, 4)
    # The swapped pairs moved, each with the cosine between its two words' rows (cat and
    # dog 0.4239, king and queen 0.6273: both directions alike, the tie to A's lower id).
    assert [(m["token"], m["token_id"], m["token_id_b"]) for m in result["moved"]] == [
        ("dog", 3899, 4937), ("cat", 4937, 3899), ("king", 2332, 3035), ("queen", 3035, 2332),
    ]  # fmt: skip
    assert [m["cosine"] for m in result["moved"]] == pytest.approx(
        [0.42385633524930705] * 2 + [0.6272520926934622] * 2, abs=1e-14
    )
    assert result["identical"] == rows - 1 - 4
    assert (result["added_count"], result["removed_count"]) == (1, 1)
    assert result["added"] == [{"token_id": 3000, "token": RENAMED[1]}]
    assert result["removed"] == [{"token_id": 3000, "token": RENAMED[0]}]
    assert result["rows_without_token"] == {"a": 0, "b": 0}


def test_without_a_tokenizer_rows_pair_by_id_and_align_is_refused(cli, minilm):
    single = minilm / "model.safetensors"  # a file alone: no tokenizer
    run = cli("diff", minilm, single, "-k", "1", "-f", "json")
    result = run.json()
    assert run.stderr.splitlines() == [
        f"embinspect: note: {single} has no tokenizer: rows are paired by id, and the "
        "vocabularies are not checked"
    ]
    assert result["identical"] == 30522
    assert result["moved"][0]["token"] == "[PAD]"  # named by A's tokenizer
    assert result["b"]["vocab_size"] is None
    run = cli("diff", minilm, single, "--align")
    assert run.stderr == (
        f"embinspect: error: --align pairs rows by token string, but {single} has no "
        "tokenizer files\n"
    )
    assert run.returncode == EXIT_USAGE


# --- every format from one result -----------------------------------------------------


def test_formats_agree(cli, minilm, finetuned):
    folder, _ = finetuned
    document = cli("diff", minilm, folder, "-k", "3", "-f", "json").json()
    records = cli("diff", minilm, folder, "-k", "3", "-f", "jsonl").jsonl()
    summary = {k: v for k, v in document.items() if k not in ("moved", "added", "removed")}
    assert records[0] == {"kind": "summary", **summary}
    assert [r["kind"] for r in records[1:]] == ["moved"] * 3 + ["added"] * 3
    assert [{k: v for k, v in r.items() if k != "kind"} for r in records[1:4]] == document["moved"]
    assert records[4] == {"kind": "added", "token_id_b": 30522, "token": "[NEW0]"}
    run = cli("diff", minilm, folder, "-k", "3", "-f", "csv")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [float(r["cosine"]) for r in rows[:3]] == [m["cosine"] for m in document["moved"]]
    assert [r["token"] for r in rows[3:]] == list(ADDED_TOKENS)
    table = cli("diff", minilm, folder, "-k", "3", "-f", "table")
    assert table.returncode == 0, table.stderr
    first = document["moved"][0]
    assert "Moved most (lowest cosine)" in table.stdout
    assert f"{first['token_id']} │ {first['token']}" in table.stdout
    assert "3 rows only in B: [NEW0] #30522, [NEW1] #30523, finetuneword #30524" in table.stdout
    assert "30,520 (2 left out" in table.stdout


def test_diff_help_imports_nothing_heavy():
    assert imported_heavy_modules("diff", "--help") == []
