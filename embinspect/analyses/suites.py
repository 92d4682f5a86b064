"""The standard word-embedding suites on a checkpoint's own token table, by gensim's
protocol, so the figures can be set beside published ones.

* Analogies (Google's questions-words.txt): ``: section`` lines, then ``a b c d``
  questions meaning a is to b as c is to d, answered by the row nearest to b - a + c with
  a, b and c left out, as gensim's ``evaluate_word_analogies``.
* Word pairs (WordSim-353, SimLex-999): ``w1 TAB w2 TAB score`` with ``#`` comments; the
  cosine of each pair against the human score, Pearson and Spearman, as gensim's
  ``evaluate_word_pairs``.

A word is in the vocabulary when one token spells it: with the leading-space form for
byte-level BPE and SentencePiece (``Ġking``, ``▁king``), a whole-word piece for WordPiece,
as plain-text queries resolve (``--no-space`` for the bare form). Every row keeps one key
(its word, or none for fragments and specials), so the protocol is gensim's on a
``KeyedVectors`` whose keys are those words in row order: the same questions are scored,
the same candidates compete and the same answer counts, question by question.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embinspect import progress
from embinspect.errors import Option, UsageError, note
from embinspect.model.tokenizer import (
    BYTE_LEVEL,
    METASPACE,
    WORDPIECE,
    WORDS,
    Vocabulary,
    stored_to_text,
)
from embinspect.result import Displayable
from embinspect.tables import scaling
from embinspect.tables.search import paused_collection

if TYPE_CHECKING:
    from embinspect.tables.search import Searcher

# Shorthands for the suites gensim ships in its test data: name -> (kind, file name).
SUITES = {
    "google": ("analogies", "questions-words.txt"),
    "wordsim353": ("pairs", "wordsim353.tsv"),
    "simlex999": ("pairs", "simlex999.txt"),
}
GENSIM_RESTRICT = 300_000  # evaluate_word_analogies' and evaluate_word_pairs' default
GENSIM_TOPN = 5  # evaluate_word_analogies looks through this many answers
# Sections of the Google set whose names start so test morphology and syntax.
SYNTACTIC_PREFIX = "gram"


def find_suite(name: str, kind: str) -> Path:
    """The file for ``--file``/``--pairs``: a path, or a suite's shorthand read from an
    installed gensim's test data (with a note that says where it was found)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shorthand = SUITES.get(name.lower())
    if shorthand is None or shorthand[0] != kind:
        names = ", ".join(n for n, (k, _) in SUITES.items() if k == kind)
        raise UsageError(f"{name}: no such file, and not a suite name ({names})")
    spec = importlib.util.find_spec("gensim")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / "test" / "test_data" / shorthand[1]
        if candidate.is_file():
            note(f"{name}: {candidate} (gensim's test data)")
            return candidate
    raise UsageError(
        f"{name}: {shorthand[1]} is read from gensim's test data, and no installed gensim "
        "has it; pip install gensim, or give the file's path"
    )


# ---------------------------------------------------------------------------------------
# Words to rows


def word_key(token: str, vocabulary: Vocabulary, token_id: int, leading_space: bool) -> str | None:
    """The word a token spells on its own, or None (fragments, special tokens).

    With ``leading_space`` a byte-level or SentencePiece token counts only in the form
    that starts a word inside a sentence (``Ġking`` is "king"; ``king`` is the inside of
    a longer word); without it, only the bare form does.
    """
    if token_id in vocabulary.special_ids:
        return None
    if token_id in vocabulary.added_ids:
        return token if token.strip() == token and token else None
    scheme = vocabulary.scheme
    if scheme == WORDPIECE:
        return None if token.startswith("##") else token
    text = stored_to_text(token, scheme)
    if scheme in (BYTE_LEVEL, METASPACE):
        spaced = text.startswith(" ")
        if spaced != leading_space:
            return None
        text = text[1:] if spaced else text
    return text if text and not any(ch.isspace() for ch in text) else None


class WordIndex:
    """The table's first ``restrict`` rows as gensim's KeyedVectors would hold them: a key
    per row (its word; None where no word) and word -> row, where the first row spelling
    a word wins (after case folding with ``case_insensitive``, as gensim upper-cases)."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        rows: int,
        *,
        restrict: int = GENSIM_RESTRICT,
        case_insensitive: bool = False,
        leading_space: bool = True,
    ) -> None:
        if restrict < 1:
            raise UsageError(Option("restrict"), " must be at least 1")
        self.case_insensitive = case_insensitive
        self.rows = min(restrict, rows)
        self.keys: list[str | None] = []
        seen: set[str] = set()
        for token_id in progress.counting(self.rows, "Indexing words"):
            token = vocabulary.id_to_token(token_id)
            key = None if token is None else word_key(token, vocabulary, token_id, leading_space)
            if key in seen:
                key = None  # a KeyedVectors key is unique: a second spelling is not a word
            if key is not None:
                seen.add(key)
            self.keys.append(key)
        self.lookup: dict[str, int] = {}
        for token_id in reversed(range(self.rows)):
            key = self.keys[token_id]
            if key is not None:
                self.lookup[self.fold(key)] = token_id

    def fold(self, word: str) -> str:
        return word.upper() if self.case_insensitive else word

    def row(self, word: str) -> int | None:
        """The row of an already folded word, or None when no single token spells it."""
        return self.lookup.get(word)

    def folded_key(self, token_id: int) -> str | None:
        key = self.keys[token_id] if token_id < self.rows else None
        return self.fold(key) if key is not None else None


# ---------------------------------------------------------------------------------------
# Analogies


def word_index(
    searcher: Searcher, restrict: int, case_insensitive: bool | None, leading_space: bool
) -> WordIndex:
    """Words to rows for a suite, among the first ``restrict`` rows; case folding follows
    the tokenizer unless ``case_insensitive`` says."""
    vocabulary = searcher.vocabulary
    if vocabulary is None:
        raise UsageError(
            "a suite's words need a tokenizer; pass ", Option("tokenizer", metavar="PATH_OR_ID")
        )
    if case_insensitive is None:
        # Word vectors: gensim's own default (case_insensitive=True), the protocol their
        # published figures use; a tokenizer's vocabulary: folded only if it lower-cases.
        case_insensitive = vocabulary.lowercases or vocabulary.scheme == WORDS
    return WordIndex(
        vocabulary,
        searcher.table.rows,
        restrict=restrict,
        case_insensitive=case_insensitive,
        leading_space=leading_space,
    )


@dataclass(frozen=True)
class AnalogySection:
    name: str
    questions: list[tuple[int, tuple[str, str, str, str]]]  # (line number, a b c d)


@dataclass(frozen=True)
class AnalogyFile:
    path: str
    sections: list[AnalogySection]
    invalid_lines: list[int]  # lines that are neither a section nor four words


def read_analogies(path: Path) -> AnalogyFile:
    """The Google analogy format, read as gensim does: ``: name`` starts a section, a line
    of four words is a question, any other line is skipped (and counted)."""
    sections: list[AnalogySection] = []
    invalid: list[int] = []
    for line_no, line in _lines(path):
        if line.startswith(": "):
            sections.append(AnalogySection(line.lstrip(": ").strip(), []))
            continue
        if not sections:
            raise UsageError(f"{path}:{line_no}: a question before the first ': section' line")
        words = line.split()
        if len(words) != 4:
            invalid.append(line_no)
            continue
        sections[-1].questions.append((line_no, (words[0], words[1], words[2], words[3])))
    return AnalogyFile(str(path), sections, invalid)


@dataclass(frozen=True)
class SectionScore:
    section: str
    kind: str  # semantic, syntactic, or all for the totals
    questions: int
    correct: int
    incorrect: int
    skipped: int  # a word is not one token (or not in the first --restrict rows)

    @property
    def scored(self) -> int:
        return self.correct + self.incorrect

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "kind": self.kind,
            "questions": self.questions,
            "scored": self.scored,
            "correct": self.correct,
            "incorrect": self.incorrect,
            "skipped": self.skipped,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class AnalogyEvaluation(Displayable):
    """Accuracy per section and in total, with coverage, for one analogy file."""

    file: str
    method: str
    restrict: int
    case_insensitive: bool
    sections: list[SectionScore]
    total: SectionScore
    semantic: SectionScore
    syntactic: SectionScore
    invalid_lines: int
    answers: list[Answer] = field(default_factory=list)  # every scored question, in order
    failures: list[dict[str, Any]] = field(default_factory=list)  # rows that cannot be scored

    @property
    def coverage(self) -> float | None:
        return self.total.scored / self.total.questions if self.total.questions else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "method": self.method,
            "restrict": self.restrict,
            "case_insensitive": self.case_insensitive,
            "questions": self.total.questions,
            "scored": self.total.scored,
            "skipped": self.total.skipped,
            "coverage": self.coverage,
            "invalid_lines": self.invalid_lines,
            "total": self.total.to_dict(),
            "semantic": self.semantic.to_dict(),
            "syntactic": self.syntactic.to_dict(),
            "sections": [s.to_dict() for s in self.sections],
            "failures": self.failures,
            "answers": [vars(a) for a in self.answers],
        }


@dataclass(frozen=True)
class Answer:
    """One scored question: its words (folded as compared), what the table answered (the
    word of the row chosen, None for a row that spells no word) and whether it is right."""

    section: str
    line: int
    question: str
    predicted: str | None
    predicted_id: int | None
    correct: bool


def evaluate_analogies(
    searcher: Searcher,
    index: WordIndex,
    suite: AnalogyFile,
    *,
    method: str = "add",
) -> AnalogyEvaluation:
    """Every question of ``suite`` whose four words are in ``index``, answered in batches
    (one pass over the table per batch), scored as gensim's evaluate_word_analogies."""
    # A suite names a few hundred words tens of thousands of times: each is folded and
    # looked up once.
    seen: dict[str, tuple[str, int | None]] = {}
    for section in suite.sections:
        for _, words in section.questions:
            for word in words:
                if word not in seen:
                    folded_word = index.fold(word)
                    seen[word] = (folded_word, index.row(folded_word))
    jobs: list[tuple[int, int, tuple[str, ...], list[int]]] = []
    skipped = [0] * len(suite.sections)
    for number, section in enumerate(suite.sections):
        for line, words in section.questions:
            found = [seen[w] for w in words]
            folded = tuple(f for f, _ in found)
            rows = [r for _, r in found]
            if None in rows:
                skipped[number] += 1
            else:
                jobs.append((number, line, folded, rows))  # type: ignore[arg-type]
    with paused_collection():  # tens of thousands of answers, none in a cycle
        return _evaluation(searcher, index, suite, method, jobs, skipped)


def _evaluation(searcher, index, suite, method, jobs, skipped) -> AnalogyEvaluation:
    results = _ranked_answers(searcher, index, jobs, method)
    correct = [0] * len(suite.sections)
    incorrect = [0] * len(suite.sections)
    answers, failures = [], []
    for job, result in zip(jobs, results, strict=True):
        number, line, folded, _ = job
        if isinstance(result, str):
            failures.append({"question": " ".join(folded), "error": result})
            result = []
        predicted, predicted_id = _predicted(result, index, folded)
        right = predicted == folded[3]
        if right:
            correct[number] += 1
        else:
            incorrect[number] += 1
        name = suite.sections[number].name
        answers.append(Answer(name, line, " ".join(folded), predicted, predicted_id, right))
    scores = [
        SectionScore(
            section.name,
            "syntactic" if section.name.startswith(SYNTACTIC_PREFIX) else "semantic",
            len(section.questions),
            correct[n],
            incorrect[n],
            skipped[n],
        )
        for n, section in enumerate(suite.sections)
    ]
    return AnalogyEvaluation(
        suite.path,
        method,
        index.rows,
        index.case_insensitive,
        scores,
        _sum("total", "all", scores),
        _sum("semantic", "semantic", [s for s in scores if s.kind == "semantic"]),
        _sum("syntactic", "syntactic", [s for s in scores if s.kind == "syntactic"]),
        len(suite.invalid_lines),
        answers,
        failures,
    )


def _ranked_answers(
    searcher: Searcher,
    index: WordIndex,
    jobs: list[tuple[int, int, tuple[str, ...], list[int]]],
    method: str,
) -> list[list[int] | str]:
    """Each job's ranked rows (enough of gensim's top five for ``_predicted``), or why it
    cannot be answered.

    gensim answers with the first of its five best rows whose word is none of a, b, c;
    the three rows themselves are left out of the ranking, so the best row decides unless
    it is another row folding to one of their words. Every question is asked for its
    best row, and only those few again for all five: the same answer, from a screening
    that keeps about one row per question instead of five.
    """
    # b - a + c, written for the searcher as A - B + C with A = b, B = a, C = c.
    questions = [(rows[1], rows[0], rows[2]) for _, _, _, rows in jobs]
    best = searcher.analogies_of_rows(questions, 1, method)
    results = list(progress.track(best, "Answering analogies", len(jobs)))
    again = [
        n
        for n, (result, (_, _, folded, _)) in enumerate(zip(results, jobs, strict=True))
        if not isinstance(result, str) and result and index.folded_key(result[0]) in folded[:3]
    ]
    if again:
        five = searcher.analogies_of_rows([questions[n] for n in again], GENSIM_TOPN, method)
        for n, result in zip(again, five, strict=True):
            results[n] = result
    return results


def _predicted(
    ranked: list[int], index: WordIndex, question: tuple[str, ...]
) -> tuple[str | None, int | None]:
    """gensim's answer: the first of the top five whose word is none of a, b, c (another
    case or spelling of them can still rank; a row with no word stops the search, wrong).
    When all five are such words, gensim keeps the last one looked at."""
    ignore = set(question[:3])
    predicted, predicted_id = None, None
    for token_id in ranked:
        predicted, predicted_id = index.folded_key(token_id), token_id
        if predicted not in ignore:
            break
    return predicted, predicted_id


def _sum(name: str, kind: str, parts: list[SectionScore]) -> SectionScore:
    return SectionScore(
        name,
        kind,
        sum(p.questions for p in parts),
        sum(p.correct for p in parts),
        sum(p.incorrect for p in parts),
        sum(p.skipped for p in parts),
    )


# ---------------------------------------------------------------------------------------
# Word pairs


@dataclass(frozen=True)
class PairsFile:
    path: str
    pairs: list[tuple[int, str, str, float]]  # (line number, word 1, word 2, human score)
    invalid_lines: list[int]


def read_pairs(path: Path) -> PairsFile:
    """WordSim/SimLex as gensim reads them: ``#`` lines are comments; a line is three
    tab-separated fields, the last a number; any other line is skipped (and counted)."""
    pairs, invalid = [], []
    for line_no, line in _lines(path):
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            first, second, score = fields
            human = float(score)
        except ValueError:
            invalid.append(line_no)
            continue
        pairs.append((line_no, first, second, human))
    return PairsFile(str(path), pairs, invalid)


@dataclass(frozen=True)
class PairScore:
    word1: str
    word2: str
    human: float
    cosine: float | None  # None: a word is not one token


@dataclass(frozen=True)
class PairsEvaluation(Displayable):
    """Cosine of each pair against human judgement: Pearson and Spearman correlations."""

    file: str
    restrict: int
    case_insensitive: bool
    pairs: list[PairScore]
    pearson: float | None
    spearman: float | None
    invalid_lines: int

    @property
    def scored(self) -> int:
        return sum(p.cosine is not None for p in self.pairs)

    @property
    def skipped(self) -> int:
        return len(self.pairs) - self.scored

    @property
    def oov_ratio(self) -> float | None:
        """Share of pairs skipped, in percent (gensim's oov_ratio)."""
        return 100 * self.skipped / len(self.pairs) if self.pairs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "restrict": self.restrict,
            "case_insensitive": self.case_insensitive,
            "pairs_total": len(self.pairs),
            "scored": self.scored,
            "skipped": self.skipped,
            "oov_ratio": self.oov_ratio,
            "invalid_lines": self.invalid_lines,
            "metric": "cosine",  # what each pair's score is, as compare's metric
            "pearson": self.pearson,
            "spearman": self.spearman,
            "pairs": [vars(p) for p in self.pairs],
        }


def evaluate_pairs(searcher: Searcher, index: WordIndex, suite: PairsFile) -> PairsEvaluation:
    """Float64 cosines of every pair whose two words are in ``index``."""
    rows_needed: dict[int, None] = {}
    resolved = []
    for _, first, second, human in suite.pairs:
        a, b = index.row(index.fold(first)), index.row(index.fold(second))
        resolved.append((first, second, human, a, b))
        if a is not None and b is not None:
            rows_needed.update({a: None, b: None})
    ids = list(rows_needed)
    vectors = searcher.table.gather(ids) if ids else None
    if searcher.center is not None and vectors is not None:
        vectors = vectors - searcher.center
    position = {token_id: i for i, token_id in enumerate(ids)}
    both = [(position[a], position[b]) for *_, a, b in resolved if a is not None and b is not None]
    values: list[float] = []
    if vectors is not None:
        # Rows scaled by their own power of two: exact for rows of 1e-200 or of 1e300.
        left, right = vectors[[i for i, _ in both]], vectors[[j for _, j in both]]
        values = scaling.paired_cosines(left, right).tolist()
    found = iter(values)
    pairs = []
    for first, second, human, a, b in resolved:
        cosine = next(found) if a is not None and b is not None else None
        pairs.append(PairScore(first, second, human, cosine))
    scored = [(p.human, p.cosine) for p in pairs if p.cosine is not None]
    if not scored:
        raise UsageError(f"{suite.path}: no pair has both words as single tokens")
    humans = [h for h, _ in scored]
    cosines = [c for _, c in scored]
    return PairsEvaluation(
        suite.path,
        index.rows,
        index.case_insensitive,
        pairs,
        pearson(humans, cosines),
        pearson(average_ranks(humans), average_ranks(cosines)),
        len(suite.invalid_lines),
    )


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson's r in float64; None when either side is constant (r is undefined)."""
    n = len(x)
    if n < 2:
        return None
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    dx = [v - mx for v in x]
    dy = [v - my for v in y]
    sxx = math.fsum(v * v for v in dx)
    syy = math.fsum(v * v for v in dy)
    if sxx == 0 or syy == 0:
        return None
    return math.fsum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy)


def average_ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span (Spearman's convention)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for i in order[start : stop + 1]:
            ranks[i] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a UTF-8 text file."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise UsageError(f"{path}:{number}: not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror})") from None
