"""An analogy suite (``analogy --file``) gives gensim's answers, question by question,
whatever its screening pass leaves out: each test compares the CLI's answers with an
independent float64 reference of gensim's protocol (b - a + c over every row, a, b and c
left out, ties to the lower row, the first of the five best whose word is none of a, b,
c), on a real checkpoint and on tables built to defeat a screening that cut corners.

Every test runs on both suite paths (``scan_engine``): numpy's word products
(``tables/suite_scan``, 3CosAdd) and torch's screening (``tables/screening``, and 3CosMul
on either).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference import ranked, unit

pytest.importorskip("gensim")
from gensim_reference import gensim_data, token_table, word_of  # noqa: E402

TOP = 5  # gensim looks through its five best
pytestmark = pytest.mark.usefixtures("scan_engine")


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows over their norms, each first scaled by a power of two to a largest |value| in
    [0.5, 1) (exact; a cosine is scale-invariant, and a row of 1e-30 or 1e20 keeps its
    direction where its squares would underflow or overflow); NaN for a zero row."""
    _, exponents = np.frexp(np.abs(rows).max(axis=1))
    table = np.ldexp(rows, -exponents[:, None])
    with np.errstate(all="ignore"):
        return table / np.linalg.norm(table, axis=1, keepdims=True)


def gensim_answers(rows, keys, questions, *, restrict=None, mul=False):
    """[(question, predicted row, correct)] for each question whose four words are among
    the first ``restrict`` rows' keys (``keys[i]`` None: row i spells no word; words
    folded to upper case, gensim's case_insensitive); only finite nonzero rows compete.
    3CosAdd as gensim's most_similar, 3CosMul as its most_similar_cosmul."""
    limit = len(keys) if restrict is None else restrict
    folded = [k.upper() if k is not None else None for k in keys[:limit]]
    first: dict[str, int] = {}
    for row, key in enumerate(folded):
        if key is not None:
            first.setdefault(key, row)
    usable = np.isfinite(rows).all(axis=1) & (rows != 0).any(axis=1)
    usable[limit:] = False
    units = unit_rows(rows)
    asked = []
    for question in questions:
        words = [w.upper() for w in question.split()]
        if all(w in first for w in words):
            asked.append((words, *(first[w] for w in words)))
    with np.errstate(all="ignore"):
        if mul:
            shifted = [(1 + units @ units[[q[i] for q in asked]].T) / 2 for i in (2, 1, 3)]
            scores = (shifted[0] * shifted[2] / (shifted[1] + 1e-6)).T
        else:
            queries = [unit(units[b] - units[a] + units[c]) for _, a, b, c, _ in asked]
            scores = np.array(queries) @ units.T
    answers = []
    for (words, a, b, c, d), row_scores in zip(asked, scores, strict=True):
        predicted = None
        for row in best(row_scores, {a, b, c}, usable):
            predicted = row
            if folded[row] not in words[:3]:
                break
        answers.append((" ".join(words), predicted, predicted == d))
    return answers


def best(scores: np.ndarray, exclude: set[int], usable: np.ndarray) -> list[int]:
    """``ranked``'s top five of one question's scores, from the rows that reach its fifth
    score (ties included) rather than a sort of every row."""
    scores = np.where(usable & np.isfinite(scores), scores, -np.inf)
    scores[list(exclude)] = -np.inf
    fifth = np.partition(scores, -TOP)[-TOP]
    reach = np.flatnonzero(scores >= fifth)
    ids, _ = ranked(scores[reach], TOP)
    return [int(reach[i]) for i in ids]


def our_answers(result) -> list[tuple[str, int | None, bool]]:
    return [(a["question"], a["predicted_id"], a["correct"]) for a in result["answers"]]


@pytest.fixture
def torch_screenings(monkeypatch) -> list[int]:
    """The batch sizes torch's screening (``screening.screened_top_k``) was called with."""
    from embinspect.tables import screening

    calls: list[int] = []
    original = screening.screened_top_k

    def spy(table, scorer, *args, **kwargs):
        calls.append(scorer.batch)
        return original(table, scorer, *args, **kwargs)

    monkeypatch.setattr(screening, "screened_top_k", spy)
    return calls


@pytest.mark.slow  # about 2 s on its own: the first scan of MiniLM, its bf16 copy
def test_minilm_questions_equal_a_float64_reference(cli, minilm, tmp_path):
    """Six questions of each Google section on MiniLM (30,522 × 384 float32, screened in
    its bf16 copy): the predicted row of every question, not only the count right."""
    rows, tokens, special = token_table(minilm, "embeddings.word_embeddings.weight")
    keys: list[str | None] = []
    seen: set[str] = set()
    for token_id, token in enumerate(tokens):  # as gensim_reference.keyed_vectors keys them
        word = None if token is None or token_id in special else word_of(token, "wordpiece")
        keys.append(None if word is None or word in seen else word)
        seen.add(word or "")
    lines, taken = [], 0
    for line in gensim_data("questions-words.txt").read_text().splitlines():
        taken = 0 if line.startswith(": ") else taken + 1
        if taken <= 6:
            lines.append(line)
    suite = tmp_path / "subset.txt"
    suite.write_text("\n".join(lines) + "\n")
    result = cli("analogy", minilm, "--file", suite, "-f", "json").json()
    questions = [line for line in lines if not line.startswith(": ")]
    expected = gensim_answers(rows.astype(np.float64), keys, questions)
    assert len(expected) > 64  # a batch large enough for the bf16 screening
    assert our_answers(result) == expected


# --- a table built against the screening -------------------------------------------------

DIM = 16


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A GloVe-style file of float32 rows and a suite over its words.

    w0..w199 are random words. For questions q0..q5 (b - a + c over random words) a crowd
    of 40 rows sits around the answer's direction, all within 1e-9 of each other in
    cosine (far inside bf16's and float32's resolution), with exact duplicates of one of
    them (a tie, to the lower row); for q6 and q7 the best row is a row of 1e-30 and one
    of 1e20 (outside the fast pass: screened never, kept always). Row "w3" has a second
    spelling "W3" (one word once folded) that is the best row of a question with w3 in
    it, so gensim's answer is its second best. A zero row and a NaN row never answer.
    """
    rng = np.random.default_rng(41)
    words = [f"w{i}" for i in range(200)]
    rows = [rng.standard_normal(DIM) for _ in words]
    questions = []
    for _ in range(90):  # plain questions: the screening's ordinary case, > 64 of them
        a, b, c, d = rng.choice(200, 4, replace=False)
        questions.append(f"w{a} w{b} w{c} w{d}")

    def direction(a, b, c):
        return unit(unit(rows[b]) - unit(rows[a]) + unit(rows[c]))

    crowd_questions = []
    for q in range(6):
        a, b, c = rng.choice(200, 3, replace=False)
        target = direction(a, b, c)
        first = len(words)
        for j in range(40):
            noise = rng.standard_normal(DIM)
            words.append(f"crowd{q}_{j}")
            rows.append(target + 1e-5 * (noise - (noise @ target) * target))
        # Exact copies of the crowd's best float64 row, later in the table: a tie.
        best = max(range(first, len(words)), key=lambda r: unit(rows[r]) @ target)
        for j in range(3):
            words.append(f"twin{q}_{j}")
            rows.append(rows[best].copy())
        crowd_questions.append(f"w{a} w{b} w{c} crowd{q}_0")
    for q, scale in ((6, 1e-30), (7, 1e20)):
        a, b, c = rng.choice(200, 3, replace=False)
        words.append(f"extreme{q}")
        rows.append(direction(a, b, c) * scale)
        crowd_questions.append(f"w{a} w{b} w{c} w{(a + 1) % 200}")
    # "W3" folds to "W3" as w3 does: a second row of the word, next to w3 in direction.
    words.append("W3")
    rows.append(rows[3] + 1e-3 * rng.standard_normal(DIM))
    questions.append("w10 w3 w3 w12")
    words += ["zero", "nan"]
    rows += [np.zeros(DIM), np.full(DIM, np.nan)]
    questions += ["zero w1 w2 w3", "w1 nan w2 w3"]  # no direction: failures, not answers
    stored = np.array(rows, dtype=np.float32)
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "vectors.txt"
    lines = [
        f"{w} " + " ".join(repr(float(v)) for v in row)
        for w, row in zip(words, stored, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    suite = folder / "suite.txt"
    suite.write_text(
        ": plain\n" + "\n".join(questions) + "\n: crowds\n" + "\n".join(crowd_questions) + "\n"
    )
    return path, suite, stored.astype(np.float64), words, questions + crowd_questions


@pytest.mark.parametrize(
    "options",
    [[], ["--method", "mul"], ["--restrict", "300"], ["--batch-size", "7"]],
    ids=["add", "mul", "restrict", "small-batches"],
)
def test_hostile_table_answers_equal_gensim_protocol(
    cli, hostile, options, scan_engine, torch_screenings
):
    path, suite, rows, words, questions = hostile
    run = cli("analogy", path, "--file", suite, *options, "-f", "json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    restrict = int(options[1]) if options[0:1] == ["--restrict"] else None
    expected = gensim_answers(
        rows, words, questions, restrict=restrict, mul=options[0:2] == ["--method", "mul"]
    )
    assert our_answers(result) == expected  # the two without a direction: None, wrong
    # Rows 300 and on (the later crowds, the extreme rows, W3, zero, nan) are past --restrict.
    failed = [] if restrict else ["ZERO W1 W2 W3", "W1 NAN W2 W3"]
    assert [f["question"] for f in result["failures"]] == failed
    # Which path answered: numpy's word products take every 3CosAdd question here.
    word_products = scan_engine == "numpy" and "mul" not in options
    assert (torch_screenings == []) == word_products


def test_rows_too_many_to_copy_are_ranked_on_the_whole_table(cli, hostile, monkeypatch):
    """Past the size of the copy of the rows kept, top_k ranks the whole table: the same
    answers."""
    from embinspect.tables import screening

    path, suite, rows, words, questions = hostile
    monkeypatch.setattr(screening, "SUBSET_MAX_BYTES", 0)
    result = cli("analogy", path, "--file", suite, "-f", "json").json()
    assert our_answers(result) == gensim_answers(rows, words, questions)


def test_hostile_table_reaches_every_trap(hostile):
    """The traps are live: the crowds tie and near-tie, the extreme rows and the second
    spelling of w3 are the best rows of their questions (else the test above proves less)."""
    _, _, rows, words, questions = hostile
    position = {w.upper(): i for i, w in reversed(list(enumerate(words)))}
    best_rows = {}
    for question in questions:
        a, b, c, _ = (position[w.upper()] for w in question.split())
        if not np.isfinite(rows[[a, b, c]]).all() or not rows[a].any():
            continue
        usable = np.isfinite(rows).all(axis=1) & (rows != 0).any(axis=1)
        units = unit_rows(rows)
        with np.errstate(all="ignore"):
            scores = units @ unit(units[b] - units[a] + units[c])
        best, values = ranked(scores, TOP, exclude={a, b, c}, allowed=usable)
        best_rows[question] = ([words[i] for i in best], values)
    for q in range(6):
        ((top, values),) = (best_rows[x] for x in questions if x.endswith(f"crowd{q}_0"))
        # The crowd's best row, then its exact copies (a tie), all within 1e-8 in cosine,
        # where float32 (6e-8) cannot tell them apart and float64 can.
        assert top[0].startswith(f"crowd{q}_") and top[1:4] == [f"twin{q}_{j}" for j in range(3)]
        assert values[0] == values[3] and 0 < values[0] - values[4] < 1e-8
    best_rows = {q: top[0] for q, (top, _) in best_rows.items()}
    assert {best_rows[q] for q in questions[-2:]} == {"extreme6", "extreme7"}
    assert best_rows["w10 w3 w3 w12"] == "W3"


@pytest.mark.parametrize("limit", ["MAX_EXTREME_PAIRS", "MAX_KEPT"])
def test_what_the_word_products_hand_back_torch_answers_the_same(
    cli, hostile, monkeypatch, limit, torch_screenings
):
    """More extreme rows to rescore, or more rows within reach, than the numpy path takes:
    torch's screening answers the suite instead, the same answers."""
    from embinspect.tables import suite_scan

    path, suite, rows, words, questions = hostile
    monkeypatch.setattr(suite_scan, limit, 0)
    result = cli("analogy", path, "--file", suite, "-f", "json").json()
    assert our_answers(result) == gensim_answers(rows, words, questions)
    assert torch_screenings  # handed over


def test_fewer_rows_than_the_five_looked_through(cli, tmp_path):
    """Six rows: for "a b c d" the best row is B, a second spelling of b (one word once
    folded), so gensim looks through its five best, of which only three can answer (a, b
    and c are left out): d wins. The zero row never answers."""
    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal(DIM) for _ in range(3))
    target = unit(unit(b) - unit(a) + unit(c))
    d = target + 0.3 * rng.standard_normal(DIM)
    words = ["a", "b", "c", "d", "B", "zero"]
    stored = np.array([a, b, c, d, target + 1e-3 * b, np.zeros(DIM)], dtype=np.float32)
    path = tmp_path / "six.txt"
    path.write_text(
        "".join(
            f"{w} " + " ".join(repr(float(v)) for v in row) + "\n"
            for w, row in zip(words, stored, strict=True)
        )
    )
    suite = tmp_path / "suite.txt"
    suite.write_text(": tiny\na b c d\nb a d c\n")
    result = cli("analogy", path, "--file", suite, "-f", "json").json()
    expected = gensim_answers(stored.astype(np.float64), words, ["a b c d", "b a d c"])
    assert our_answers(result) == expected
    units = unit_rows(stored.astype(np.float64))
    with np.errstate(all="ignore"):
        scores = units @ unit(units[1] - units[0] + units[2])
    assert best(scores, {0, 1, 2}, np.isfinite(scores))[:2] == [4, 3]  # the trap is live
    assert expected[0] == ("A B C D", 3, True)  # B ranked first, and looked past
