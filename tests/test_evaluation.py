"""The analogy and word-pair suites equal gensim's evaluate_word_analogies and
evaluate_word_pairs on a KeyedVectors built from the same rows (tests/gensim_reference.py
derives its word keys independently of embinspect).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gensim")
from gensim_reference import evaluate_word_analogies, gensim_data, keyed_vectors  # noqa: E402

GOOGLE = gensim_data("questions-words.txt")
# gensim 4 calls its own deprecated init_sims inside evaluate_word_analogies.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def minilm_vectors(minilm):
    return keyed_vectors(minilm, "embeddings.word_embeddings.weight", "wordpiece")


@pytest.fixture(scope="module")
def smollm2_vectors(smollm2):
    return keyed_vectors(smollm2, "model.embed_tokens.weight", "byte-level")


def _gensim_correct(sections):
    return {s["section"]: [" ".join(q) for q in s["correct"]] for s in sections}


def _our_correct(result):
    correct: dict[str, list[str]] = {}
    for answer in result["answers"]:
        if answer["correct"]:
            correct.setdefault(answer["section"], []).append(answer["question"])
    return correct


@pytest.mark.slow
def test_google_analogies_equal_gensim_on_minilm(cli, minilm, minilm_vectors):
    _, vectors = minilm_vectors
    run = cli("analogy", minilm, "--file", "google", "-f", "json")
    result = run.json()
    assert "questions-words.txt (gensim's test data)" in run.stderr
    # MiniLM's tokenizer lower-cases, so embinspect folds case as gensim does by default.
    assert result["case_insensitive"] is True
    score, sections = evaluate_word_analogies(vectors, GOOGLE)
    by_name = {s["section"]: s for s in sections}
    for ours in result["sections"]:
        theirs = by_name[ours["section"]]
        assert ours["correct"] == len(theirs["correct"]), ours["section"]
        assert ours["incorrect"] == len(theirs["incorrect"]), ours["section"]
    total = by_name["Total accuracy"]
    assert result["total"]["correct"] == len(total["correct"])
    assert result["total"]["scored"] == len(total["correct"]) + len(total["incorrect"])
    assert result["total"]["accuracy"] == pytest.approx(score, abs=1e-12)
    # To the question: the same ones right, section by section.
    gensim_right = _gensim_correct(sections[:-1])
    assert {k: v for k, v in _our_correct(result).items()} == {
        k: v for k, v in gensim_right.items() if v
    }
    assert result["questions"] == 19544
    assert result["skipped"] == 19544 - result["scored"]
    semantic = [s for s in result["sections"] if not s["section"].startswith("gram")]
    assert result["semantic"]["correct"] == sum(s["correct"] for s in semantic)
    assert result["syntactic"]["scored"] + result["semantic"]["scored"] == result["scored"]


def _subset(path: Path, per_section: int, out: Path) -> Path:
    """The first questions of each section of the Google set: gensim's loop over all
    19,544 on a 49k-row table would take minutes."""
    lines, taken = [], 0
    for line in path.read_text().splitlines():
        if line.startswith(": "):
            lines.append(line)
            taken = 0
        elif taken < per_section:
            lines.append(line)
            taken += 1
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.slow
def test_google_analogies_equal_gensim_on_smollm2(cli, smollm2, smollm2_vectors, tmp_path):
    _, vectors = smollm2_vectors
    subset = _subset(GOOGLE, 60, tmp_path / "subset.txt")
    result = cli("analogy", smollm2, "--file", subset, "-f", "json").json()
    assert result["case_insensitive"] is False  # SmolLM2 keeps case
    score, sections = evaluate_word_analogies(vectors, subset, case_insensitive=False)
    assert result["total"]["accuracy"] == pytest.approx(score, abs=1e-12)
    by_name = {s["section"]: s for s in sections}
    for ours in result["sections"]:
        assert ours["correct"] == len(by_name[ours["section"]]["correct"])
        assert ours["incorrect"] == len(by_name[ours["section"]]["incorrect"])
    assert _our_correct(result) == {k: v for k, v in _gensim_correct(sections[:-1]).items() if v}


@pytest.mark.slow
def test_cosmul_analogies_equal_gensim_cosmul_loop(cli, smollm2, smollm2_vectors, tmp_path):
    """gensim's evaluate_word_analogies is 3CosAdd only; its protocol with
    most_similar_cosmul in place of most_similar, written out here."""
    _, vectors = smollm2_vectors
    subset = _subset(GOOGLE, 15, tmp_path / "subset.txt")
    result = cli("analogy", smollm2, "--file", subset, "--method", "mul", "-f", "json").json()
    expected = []
    for line in subset.read_text().splitlines():
        words = line.split()
        if line.startswith(": ") or not all(w in vectors.key_to_index for w in words):
            continue
        a, b, c, d = words
        sims = vectors.most_similar_cosmul(positive=[b, c], negative=[a], topn=5)
        predicted = next((w for w, _ in sims if w not in {a, b, c}), sims[-1][0])
        expected.append((" ".join(words), predicted == d))
    assert [(a["question"], a["correct"]) for a in result["answers"]] == expected


@pytest.mark.parametrize(
    "suite, file", [("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")]
)
def test_word_pairs_equal_gensim(cli, minilm, minilm_vectors, suite, file):
    rows, vectors = minilm_vectors
    run = cli("compare", minilm, "--pairs", suite, "-f", "json")
    result = run.json()
    pearson, spearman, oov_ratio = vectors.evaluate_word_pairs(gensim_data(file))
    # gensim's cosines are float32; embinspect's float64.
    assert result["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
    assert result["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert result["oov_ratio"] == pytest.approx(oov_ratio, abs=1e-12)
    # Each pair's cosine against float64 computed here.
    for pair in result["pairs"]:
        if pair["cosine"] is None:
            continue
        x = rows[vectors.key_to_index[pair["word1"].lower()]].astype(np.float64)
        y = rows[vectors.key_to_index[pair["word2"].lower()]].astype(np.float64)
        truth = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
        assert pair["cosine"] == pytest.approx(truth, rel=1e-12, abs=1e-15)


def test_pairs_tsv_lists_every_pair(cli, minilm):
    run = cli("compare", minilm, "--pairs", "wordsim353", "-f", "tsv")
    lines = run.stdout.splitlines()
    assert lines[0] == "word1\tword2\thuman\tcosine"
    assert len(lines) == 1 + 353
    assert lines[1].startswith("love\tsex\t6.77\t")
    summary = run.stderr.splitlines()[-1]
    assert summary.startswith("embinspect: wordsim353.tsv: Pearson 0.")
    assert "of 353 skipped, a word not one token" in summary


def test_restrict_limits_words_and_candidates(cli, minilm, minilm_vectors):
    _, vectors = minilm_vectors
    run = cli("analogy", minilm, "--file", "google", "--restrict", "5000", "-f", "json")
    result = run.json()
    assert result["restrict"] == 5000
    score, sections = evaluate_word_analogies(vectors, GOOGLE, restrict_vocab=5000)
    total = sections[-1]
    assert result["total"]["correct"] == len(total["correct"])
    assert result["total"]["incorrect"] == len(total["incorrect"])
    assert all(a["predicted_id"] < 5000 for a in result["answers"])


def test_suite_errors_are_one_line(cli, minilm, tmp_path):
    missing = cli("analogy", minilm, "--file", tmp_path / "nope.txt")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "not a suite name (google)" in missing.stderr
    headless = tmp_path / "headless.txt"
    headless.write_text("athens greece baghdad iraq\n")
    run = cli("analogy", minilm, "--file", headless)
    assert run.returncode == 2
    assert f"{headless}:1: a question before the first ': section' line" in run.stderr
    both = cli("analogy", minilm, "king", "man", "woman", "--file", "google")
    assert both.returncode == 2 and "not both" in both.stderr
    metric = cli("compare", minilm, "--pairs", "wordsim353", "--metric", "dot")
    assert metric.returncode == 2 and "cosines" in metric.stderr
    assert "Traceback" not in missing.stderr + run.stderr + both.stderr + metric.stderr


def test_invalid_lines_are_skipped_and_counted(cli, minilm, tmp_path):
    suite = tmp_path / "suite.txt"
    suite.write_text(": family\nboy girl brother sister\nnot four words\n\nking queen man woman\n")
    result = cli("analogy", minilm, "--file", suite, "-f", "json").json()
    assert result["invalid_lines"] == 2
    assert result["questions"] == 2
    assert [a["line"] for a in result["answers"]] == [2, 5]
