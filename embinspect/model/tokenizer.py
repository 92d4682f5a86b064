"""The checkpoint's tokenizer: count its vocabulary cheaply, load it, and show tokens as text.

``count_vocabulary`` parses the tokenizer files as plain JSON/text so that ``info`` imports
neither ``tokenizers`` nor ``transformers``. ``load_vocabulary`` prefers the fast
``tokenizers.Tokenizer.from_file("tokenizer.json")`` and falls back to
``transformers.AutoTokenizer`` (never with ``trust_remote_code``) when only
``vocab.json``/``merges.txt``, ``vocab.txt`` or SentencePiece files exist.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embinspect import progress
from embinspect.errors import ModelError, Option, QueryError, UsageError, note, reading
from embinspect.sources.cache import GGUF_TOKENIZERS, cached_file, keep_derived, read_derived
from embinspect.sources.files import load_json
from embinspect.sources.locate import CheckpointFiles
from embinspect.text import brief, quoted

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from embinspect.sources.gguf_file import GgufFile

TOKENIZER_JSON = "tokenizer.json"
# Files from which transformers can build a tokenizer when tokenizer.json is absent.
LEGACY_TOKENIZER_FILES = ("vocab.json", "tokenizer.model", "vocab.txt", "spiece.model")
TOKENIZER_COMPANION_FILES = (
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

GGUF_TOKENS = "tokenizer.ggml.tokens"  # the vocabulary in a GGUF file's metadata

# How a vocabulary spells a word's leading space, which decides how a token reads as text.
BYTE_LEVEL, METASPACE, WORDPIECE, PLAIN = "byte-level", "metaspace", "wordpiece", "plain"
WORDS = "words"  # a word-vector file: every key is a whole word, spelled as it reads
WORD_KEYS = "the file's words"  # what a word-vector file's vocabulary is counted from


@dataclass(frozen=True)
class VocabularyCount:
    size: int  # distinct token ids, added tokens included (what len(tokenizer) gives)
    source: str  # the file counted


def count_vocabulary(files: CheckpointFiles) -> VocabularyCount | None:
    """Size of the tokenizer's vocabulary from its files, without loading a tokenizer.

    None when there are no tokenizer files or they name no ids; ModelError when a file
    cannot be read or parsed. Entries that are not ids (a string where an id belongs) are
    not counted.
    """
    if files.gguf is not None:
        count = files.gguf.string_array_length(GGUF_TOKENS)
        return VocabularyCount(count, GGUF_TOKENS) if count is not None else None
    if files.word_vectors is not None:
        return VocabularyCount(files.word_vectors.shape.rows, WORD_KEYS)
    if files.exported is not None:
        return _exported_count(files)
    path = files.optional(TOKENIZER_JSON)
    if path is not None:
        data = load_json(path)
        model = data.get("model")
        model_vocab = model.get("vocab") if isinstance(model, dict) else None
        if isinstance(model_vocab, dict):
            ids = {i for i in model_vocab.values() if _is_id(i)}
        elif isinstance(model_vocab, list):  # Unigram: [[piece, score], ...], id = position
            ids = set(range(len(model_vocab)))
        else:
            return None
        added = data.get("added_tokens")
        if isinstance(added, list):
            ids.update(t["id"] for t in added if isinstance(t, dict) and _is_id(t.get("id")))
        return VocabularyCount(len(ids), TOKENIZER_JSON)
    added = _added_token_ids(files)
    for name, counter in (
        ("vocab.json", _count_vocab_json),
        ("vocab.txt", _count_lines),
        ("tokenizer.model", _count_sentencepiece),
        ("spiece.model", _count_sentencepiece),
    ):
        path = files.optional(name)
        if path is not None:
            ids = counter(path)
            return VocabularyCount(len(ids | added), name)
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count_vocab_json(path: Path) -> set[int]:
    return {i for i in load_json(path).values() if _is_id(i)}


def _read_bytes(path: Path) -> bytes:
    with reading(path, "a tokenizer file"):
        return path.read_bytes()


def _count_lines(path: Path) -> set[int]:
    data = _read_bytes(path)
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return set(range(lines))


def _count_sentencepiece(path: Path) -> set[int]:
    """Ids of a SentencePiece ModelProto: one per ``pieces`` entry (field 1), in order."""
    data = _read_bytes(path)
    pos, count = 0, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _varint(data, pos)
            pos += length
            count += field == 1
        elif wire == 0:
            _, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ModelError(f"{path}: not a SentencePiece model")
    return set(range(count))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ModelError("truncated SentencePiece model")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _added_token_ids(files: CheckpointFiles) -> set[int]:
    ids: set[int] = set()
    added = files.read_json("added_tokens.json")
    if added:
        ids.update(i for i in added.values() if _is_id(i))
    config = files.read_json("tokenizer_config.json") or {}
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        ids.update(int(key) for key in decoder if key.isascii() and key.isdigit() and len(key) < 19)
    return ids


def _tokenizer_failed(err: BaseException) -> bool:
    """Whether ``err`` is the tokenizer library failing on its input: an Exception, or a
    Rust panic (a hostile regex, a malformed normalizer), which PyO3 raises as
    ``pyo3_runtime.PanicException``: a BaseException, so ``except Exception`` misses it, of
    a module no one can import. KeyboardInterrupt and SystemExit are not failures."""
    return isinstance(err, Exception) or type(err).__name__ == "PanicException"


def _reason(err: BaseException) -> str:
    """The library's own words for a failure, on one line and cut short."""
    return brief(err) or type(err).__name__


class _HiddenStderr:
    """File descriptor 2 pointed at the null device while any thread is inside a
    ``hidden()`` block, and back where it was when the last one leaves: threads tokenizing
    at once cannot leave it hidden, whatever order they leave in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0  # blocks inside, in all threads
        self.saved: int | None = None  # a duplicate of the real fd 2 while it is hidden

    @contextmanager
    def hidden(self) -> Iterator[None]:
        entered = self._enter()
        try:
            yield
        finally:
            if entered:
                self._leave()

    def _enter(self) -> bool:
        with self.lock:
            if self.depth == 0:
                try:
                    saved = os.dup(2)
                except OSError:  # no fd 2: nothing to keep clean
                    return False
                try:
                    null = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(null, 2)
                    finally:
                        os.close(null)
                except OSError:
                    os.close(saved)
                    return False
                self.saved = saved
            self.depth += 1
            return True

    def _leave(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.saved is not None:
                os.dup2(self.saved, 2)
                os.close(self.saved)
                self.saved = None


_STDERR = _HiddenStderr()


@contextmanager
def _rust_panics_unprinted() -> Iterator[None]:
    """While ``tokenizers`` runs, file descriptor 2 points at the null device.

    A Rust panic inside it is printed by Rust's panic hook straight to fd 2 ("thread
    '<unnamed>' panicked at ...", and a whole backtrace when RUST_BACKTRACE is set) before
    PyO3 raises it in Python, where embinspect reports it in one line of its own. No hook
    can be set from Python, and RUST_BACKTRACE=0 still prints the message, so the bytes are
    sent nowhere. Only the tokenizers library runs meanwhile (no Python code of this thread
    writes to stderr); a process with no fd 2 is left as it is. With EMBINSPECT_DEBUG set,
    Rust's report is printed.
    """
    if os.environ.get("EMBINSPECT_DEBUG", "") not in {"", "0"}:
        yield
        return
    with _STDERR.hidden():
        yield


# Text put before a token's to read it back where it would not alone (magikarp's choice:
# characters that stand as one token of their own in most vocabularies).
_READ_BACK_PREFIXES = ("\u00ab", "\u00bb")  # « »
# Bytes that no UTF-8 text holds: a token made of them is never produced from text.
_NEVER_IN_UTF8 = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _token_bytes(token: str, scheme: str) -> bytes | None:
    """The bytes a byte-level token (GPT-2's alphabet) or a ``<0xNN>`` byte-fallback token
    stands for; None for any other token."""
    fallback = _BYTE_FALLBACK.fullmatch(token)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    if scheme == BYTE_LEVEL and token and all(ch in _UNICODE_TO_BYTE for ch in token):
        return bytes(_UNICODE_TO_BYTE[ch] for ch in token)
    return None


class Vocabulary:
    """A loaded tokenizer: text to ids, ids to stored tokens, stored tokens to text."""

    def __init__(self, backend: Tokenizer, source: str) -> None:
        backend.no_padding()  # the MiniLM tokenizer.json pads every input to 128
        backend.no_truncation()
        self.backend = backend
        self.source = source
        self.size = backend.get_vocab_size(with_added_tokens=True)
        spec = json.loads(backend.to_str())
        self.scheme = _space_scheme(spec)
        # Added tokens are stored as their text, not in the byte-level or ▁ alphabet.
        self.added_ids = {t["id"] for t in spec.get("added_tokens") or []}
        self.special_ids = {t["id"] for t in spec.get("added_tokens") or [] if t.get("special")}
        self.lowercases = _lowercases(spec.get("normalizer"))

    def encode(
        self, text: str, special_tokens: bool = False, *, query: str | None = None
    ) -> list[int]:
        """Token ids of ``text``; QueryError naming ``query`` (default: the text) when the
        tokenizer fails on it, with an error or a panic (as a hostile pre-tokenizer regex
        does on some inputs)."""
        try:
            with _rust_panics_unprinted():
                encoding = self.backend.encode(text, add_special_tokens=special_tokens)
        except BaseException as err:
            if not _tokenizer_failed(err):
                raise
            named = quoted(text if query is None else query)
            raise QueryError(f"{named}: the tokenizer failed on it ({_reason(err)})") from None
        return list(encoding.ids)

    def lowercased(self, text: str) -> bool:
        """False: a tokenizer's own normalizer lowercases where it does (see ``lowercases``);
        only a word-vector file's lookup changes the text (``WordKeys.lowercased``)."""
        return False

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    @functools.cached_property
    def reachability(self) -> tuple[bool | None, ...]:
        """For each token id (0 to size - 1): whether its own text gives it back, tried as
        magikarp does (Land & Bartolo 2024): the token decoded alone and that text encoded
        (no special tokens added) is exactly ``[id]``; or, where not, the same after a
        prefix (``«``, then ``»``): the prefix's tokens and the token decoded together,
        encoded back as the prefix's tokens and ``id`` (Llama's ``▁`` vocabularies put a
        space before the first word, so a piece from inside a word reads back only after
        something else). False: no text gives it back (unreachable). None where the round
        trip cannot tell: a WordPiece continuation (``##ing``), which only ever follows
        another piece, or a token the tokenizer fails on. Computed once, in batches."""
        with progress.task("Reading every token back through the tokenizer"):
            return self._reachability()

    def _reachability(self) -> tuple[bool | None, ...]:
        ids = list(range(self.size))
        texts = self._each(self._decode, [[i] for i in ids])
        found: list[bool | None] = [None] * self.size
        alone = {i: t for i, t in enumerate(texts) if t is not None}
        left, failed = self._read_back(ids, [], alone, found)
        if self.scheme == WORDPIECE:  # a continuation is not judged: not worth a read-back
            left = [i for i in left if not (self.backend.id_to_token(i) or "").startswith("##")]
        for prefix in _READ_BACK_PREFIXES:
            head = self._each(self._encode, [prefix])[0]
            shown = self._each(self._decode, [head])[0] if head else None
            if not head or not shown or not left:
                continue
            pairs = self._each(self._decode, [[*head, i] for i in left])
            after = {
                i: prefix + pair[len(shown) :]
                for i, pair in zip(left, pairs, strict=True)
                if pair is not None and pair.startswith(shown)
            }
            left, _ = self._read_back(left, head, after, found)
        for i in left:  # None where the tokenizer failed on the token or its text
            found[i] = None if texts[i] is None or i in failed else False
        return tuple(found)

    @functools.cached_property
    def byte_fragments(self) -> frozenset[int]:
        """The unreachable tokens that are part of a character: a byte-level or ``<0xNN>``
        byte-fallback token whose bytes are not whole UTF-8 (decoded alone as U+FFFD), so
        no text gives it back alone, yet text does produce it inside a character that has
        no token of its own. Not one holding a byte that UTF-8 never uses (C0, C1, F5 to
        FF): no text ever holds it."""
        fragments = set()
        for token_id, reachable in enumerate(self.reachability):
            if reachable is not False or token_id in self.added_ids:
                continue
            raw = _token_bytes(self.backend.id_to_token(token_id) or "", self.scheme)
            if raw is not None and not _NEVER_IN_UTF8.intersection(raw):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    fragments.add(token_id)
        return frozenset(fragments)

    def _decode(self, batch: list[list[int]]) -> list[str]:
        return self.backend.decode_batch(batch, skip_special_tokens=False)

    def _encode(self, batch: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.backend.encode_batch(batch, add_special_tokens=False)]

    def _each(self, call: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
        """``call(items)``, a batch call of the tokenizer library; where it fails (an error
        or a panic on some item), item by item, with None for an item that fails alone."""
        try:
            with _rust_panics_unprinted():
                return call(items)
        except BaseException as err:
            if not _tokenizer_failed(err):
                raise
        if len(items) == 1:
            return [None]
        return [self._each(call, [item])[0] for item in items]

    def _read_back(
        self, ids: list[int], head: list[int], texts: dict[int, str], found: list[bool | None]
    ) -> tuple[list[int], set[int]]:
        """Marks True each id whose text (``texts``) encodes to ``head`` and then the id;
        returns the ids not so marked, and those whose text the tokenizer failed on."""
        tried = [i for i in ids if i in texts]
        encoded = self._each(self._encode, [texts[i] for i in tried])
        failed = set()
        for token_id, got in zip(tried, encoded, strict=True):
            if got == [*head, token_id]:
                found[token_id] = True
            elif got is None:
                failed.add(token_id)
        return [i for i in ids if found[i] is not True], failed

    def token_text(self, token_id: int) -> str:
        """What a token reads as: ``Ġcat`` is ' cat', ``##ing`` is 'ing', ``▁the`` is ' the'."""
        token = self.backend.id_to_token(token_id)
        if token is None:
            return ""
        if token_id in self.added_ids:
            return token
        return stored_to_text(token, self.scheme)


class WordKeys:
    """The vocabulary of a word-vector file: row i is keyed by ``words[i]``; no tokenizer.

    Text that is a key (surrounding spaces dropped) is that key. Other text is split as
    the vectors' corpus was (GloVe's Stanford tokenizer, word2vec's): at spaces, then
    punctuation off the words (``sat,`` is ``sat`` and ``,``; ``don't`` is ``do`` and
    ``n't`` where the file has them; ``U.S.`` and ``e.g.`` stay whole where they are
    keys), and its words' rows are pooled like the tokens of a word. Punctuation the file
    has no row for is left out; a word it has no row for is a QueryError. A vocabulary
    with no uppercase letter at all (uncased, as GloVe 6B) has text lowercased before
    lookup (``lowercased`` says when that changed it); a cased one is matched exactly
    (``King`` is not ``king``). A word that several rows spell names the first of them.
    Same interface as ``Vocabulary``."""

    scheme = WORDS
    added_ids: frozenset[int] = frozenset()
    special_ids: frozenset[int] = frozenset()

    def __init__(self, words: list[str], source: str) -> None:
        self.words = words
        self.source = source
        self.size = len(words)
        # Built backwards so that the first row of a repeated word is the one kept: one
        # pass in C (a Python loop over GloVe's 400,000 words took a quarter second).
        backwards = range(len(words) - 1, -1, -1)
        self.rows: dict[str, int] = dict(zip(reversed(words), backwards, strict=True))
        self._noted = False

    @functools.cached_property
    def lowercases(self) -> bool:
        """Whether no word has an uppercase letter (one pass over the words, on first use)."""
        joined = "\n".join(self.words)
        return joined == joined.lower()

    def lowercased(self, text: str) -> bool:
        """Whether looking ``text`` up lowercases it (an uncased file; text with capitals
        that is no key as it is)."""
        text = text.strip()
        return text != text.lower() and text not in self.rows and self.lowercases

    def encode(
        self, text: str, special_tokens: bool = False, *, query: str | None = None
    ) -> list[int]:
        """The rows of a key, or of each word of a text; QueryError naming the first missing
        word (and the spelling the file has, when only case differs)."""
        text = text.strip()
        if text in self.rows:
            return [self.rows[text]]
        if self.lowercased(text):
            self._note_lowercased(text)
            text = text.lower()
            if text in self.rows:
                return [self.rows[text]]
        ids = []
        for word in _split_words(text, self.rows):
            row = self.rows.get(word)
            if row is not None:
                ids.append(row)
            elif not _is_punctuation(word):
                hint = self._other_case(word)
                raise QueryError(
                    f"{quoted(word)}: not a word of {Path(self.source).name}"
                    + (f" (it has {quoted(hint)})" if hint else "")
                )
        if not ids:
            raise QueryError(f"{quoted(text)}: no word of {Path(self.source).name} in it")
        return ids

    def _note_lowercased(self, text: str) -> None:
        if not self._noted:  # once a run: every query of an uncased file is lowercased
            self._noted = True
            note(
                f"{Path(self.source).name} has no uppercase words (uncased): text is "
                f"lowercased before lookup ({quoted(text)} as {quoted(text.lower())})"
            )

    def _other_case(self, word: str) -> str | None:
        for candidate in (word.lower(), word.capitalize(), word.upper()):
            if candidate != word and candidate in self.rows:
                return candidate
        return None

    def id_to_token(self, token_id: int) -> str | None:
        return self.words[token_id] if 0 <= token_id < self.size else None

    def token_to_id(self, token: str) -> int | None:
        return self.rows.get(token)

    def token_text(self, token_id: int) -> str:
        return self.id_to_token(token_id) or ""


# Clitics the Penn Treebank tokenizer (GloVe's corpus, word2vec's) splits off a word.
_CLITIC = re.compile(r"(?i)(.+?)(n't|'s|'re|'ve|'ll|'d|'m)")
_LEADING = re.compile(r"[^\w\s]+")
_TRAILING = re.compile(r"[^\w\s]+$")
_RUNS = re.compile(r"\w+|[^\w\s]+")
_LONGEST_MARK = 8  # punctuation keys are short: "...", "--", "-lrb-"


def _is_punctuation(word: str) -> bool:
    return not any(ch.isalnum() for ch in word)


def _split_words(text: str, keys: Container[str]) -> list[str]:
    """Text as the vectors' corpus was split: at spaces, then each piece that is no key
    into words and punctuation (``_split_piece``)."""
    return [word for piece in text.split() for word in _split_piece(piece, keys)]


def _split_piece(piece: str, keys: Container[str]) -> list[str]:
    """A piece without spaces as keys where it can be: whole when it is a key; else the
    punctuation before it, then the word with as much of the punctuation after it as
    makes a key (``U.S.,`` is ``U.S.`` and ``,``), then the rest; a word that is no key
    loses a clitic (``don't``: ``do`` ``n't``) or is cut at its inner punctuation."""
    if piece in keys:
        return [piece]
    words: list[str] = []
    lead = _LEADING.match(piece)
    if lead:
        if lead.end() == len(piece):
            return _marks(piece, keys)
        words += _marks(lead.group(), keys)
        piece = piece[lead.end() :]
        if piece in keys:
            return [*words, piece]
    trail = _TRAILING.search(piece)
    run = trail.group() if trail else ""
    core = piece[: len(piece) - len(run)]
    for kept in range(len(run) - 1, 0, -1):  # the word with some of its punctuation
        if core + run[:kept] in keys:
            return [*words, core + run[:kept], *_marks(run[kept:], keys)]
    return [*words, *_inner(core, keys), *_marks(run, keys)]


def _inner(word: str, keys: Container[str]) -> list[str]:
    """A word with no punctuation at its ends: whole, less a clitic, or cut at its inner
    punctuation (``state-of-the-art`` where the file has no such key)."""
    if word in keys:
        return [word]
    clitic = _CLITIC.fullmatch(word)
    if clitic and clitic.group(1) in keys and clitic.group(2) in keys:
        return [clitic.group(1), clitic.group(2)]
    return [part for run in _RUNS.findall(word) for part in _marks(run, keys)]


def _marks(run: str, keys: Container[str]) -> list[str]:
    """A run of characters as the longest keys from its start (``...``, then ``"``), a
    character at a time where none is; a run of letters or digits is one word."""
    if run in keys or not _is_punctuation(run):
        return [run]
    marks = []
    while run:
        size = next((n for n in range(min(len(run), _LONGEST_MARK), 1, -1) if run[:n] in keys), 1)
        marks.append(run[:size])
        run = run[size:]
    return marks


def stored_to_text(token: str, scheme: str) -> str:
    if scheme == BYTE_LEVEL:
        # Bytes that are not valid UTF-8 on their own (half a character) show as \xNN.
        raw = bytes(_UNICODE_TO_BYTE.get(ch, ord(ch) & 0xFF) for ch in token)
        return raw.decode("utf-8", errors="backslashreplace")
    if scheme == METASPACE:
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            return bytes([int(token[3:5], 16)]).decode("utf-8", errors="backslashreplace")
        return token.replace("\u2581", " ")
    if scheme == WORDPIECE and token.startswith("##"):
        return token[2:]
    return token


# A SentencePiece byte token (<0x0A>): already its readable form.
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def readable_token(token: str, scheme: str) -> str:
    """A token as a person reads it in a picture: the word-start marker (``Ġ``, ``▁``) and
    any space as ``␣`` (``Ġthe`` is ``␣the``), a byte or control character as its byte
    (``Ċ`` and ``<0x0A>`` are ``<0x0A>``; half a UTF-8 character is ``<0xE2>``), another
    character no font draws as ``<U+2028>``; WordPiece's ``##ing`` stays as stored.
    Pass ``PLAIN`` for an added token (``<|endoftext|>``), which is stored as it reads.
    A byte-level token holding a character outside the byte alphabet (``中``, which no
    byte spells) is not bytes: it is shown as stored, its unprintable characters escaped."""
    if scheme == METASPACE and _BYTE_TOKEN.fullmatch(token):
        return token.upper().replace("0X", "0x")
    if scheme == BYTE_LEVEL and all(ch in _UNICODE_TO_BYTE for ch in token):
        raw = bytes(_UNICODE_TO_BYTE[ch] for ch in token)
        text = raw.decode("utf-8", errors="surrogateescape")
    elif scheme == METASPACE:
        text = token.replace("\u2581", " ")
    else:
        text = token
    return "".join(_readable_char(char) for char in text)


def _readable_char(char: str) -> str:
    code = ord(char)
    if char == " ":
        return "\u2423"
    if code < 0x20 or code == 0x7F:
        return f"<0x{code:02X}>"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"<0x{code - 0xDC00:02X}>"
    if not char.isprintable():
        return f"<U+{code:04X}>"
    return char


def whole_word(token: str, vocabulary: Vocabulary, token_id: int) -> str | None:
    """The word a token spells if it is letters only, with an optional leading-space marker
    (``Ġking``, ``▁king``, ``king``); None for fragments, punctuation and special tokens."""
    if token_id in vocabulary.special_ids:
        return None
    if token_id in vocabulary.added_ids:
        return token if token.isalpha() else None
    if vocabulary.scheme == WORDPIECE and token.startswith("##"):
        return None
    text = stored_to_text(token, vocabulary.scheme)
    if text.startswith(" "):
        text = text[1:]
    return text if text.isalpha() else None


def _lowercases(normalizer: Any) -> bool:
    """Whether the normalizer folds text to lower case (uncased BERT, some others)."""
    if not isinstance(normalizer, dict):
        return False
    kind = normalizer.get("type")
    if kind == "Lowercase":
        return True
    if kind == "BertNormalizer":
        return bool(normalizer.get("lowercase"))
    if kind == "Sequence":
        return any(_lowercases(n) for n in normalizer.get("normalizers") or [])
    return False


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (Ġ is the space byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_UNICODE_TO_BYTE = {ch: b for b, ch in _byte_to_unicode().items()}


def _space_scheme(spec: dict[str, Any]) -> str:
    """Read the decoder (and pre-tokenizer) types out of a tokenizer.json document."""
    kinds: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                kinds.add(node["type"])
            if node.get("type") == "Replace" and "\u2581" in json.dumps(node.get("pattern")):
                kinds.add("Metaspace")
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    collect(spec.get("decoder"))
    collect(spec.get("pre_tokenizer"))
    if "ByteLevel" in kinds:
        return BYTE_LEVEL
    if "Metaspace" in kinds:
        return METASPACE
    if "WordPiece" in kinds or (spec.get("model") or {}).get("type") == "WordPiece":
        return WORDPIECE
    return PLAIN


def load_vocabulary(
    files: CheckpointFiles,
    override: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    offline: bool = False,
) -> Vocabulary:
    """The tokenizer for a checkpoint, or for ``--tokenizer PATH_OR_ID`` when given.

    A Hub repo id given as ``override`` is fetched at ``revision`` (a branch, tag or commit;
    default the repo's main branch) into ``cache_dir`` (huggingface_hub's cache; default
    HF_HUB_CACHE), and with ``offline`` read from that cache only (the Python API's
    offline, which leaves HF_HUB_OFFLINE alone). ``revision`` goes with a repo id only."""
    if revision is not None and override is None:
        raise UsageError(
            Option("tokenizer_revision", revision),
            " goes with ",
            Option("tokenizer", metavar="REPO_ID"),
        )
    if override is not None:
        return _load_override(override, revision, cache_dir, offline)
    if files.gguf is not None:
        return _from_gguf(files.gguf)
    if files.word_vectors is not None:
        return WordKeys(files.word_vectors.load().words, str(files.word_vectors.path))
    if files.exported is not None:
        return _exported_keys(files)
    path = files.optional(TOKENIZER_JSON)
    if path is not None:
        return _from_tokenizer_json(path)
    for name in LEGACY_TOKENIZER_FILES:
        legacy = files.optional(name)
        if legacy is not None:
            # transformers reads the files beside it (merges.txt next to vocab.json): from
            # the Hub, they must be fetched into the same snapshot folder first.
            for companion in TOKENIZER_COMPANION_FILES:
                files.optional(companion)
            return _from_transformers(str(legacy.parent), revision=None)
    raise UsageError(
        f"{files.model}: no tokenizer files; query by token id (#1234) or pass ",
        Option("tokenizer", metavar="PATH_OR_ID"),
    )


def _exported_count(files: CheckpointFiles) -> VocabularyCount | None:
    """An exported table's vocabulary size (one token per row), or None without one; its
    tokens read and checked as every command reads them (``ExportedTable.tokens``), so
    that ``info`` refuses the vocabulary a query would refuse (ModelError)."""
    exported = files.exported
    assert exported is not None
    if exported.tokens() is None or exported.vocabulary is None:
        return None
    return VocabularyCount(exported.header.shape[0], exported.vocabulary)


def _exported_keys(files: CheckpointFiles) -> WordKeys:
    """The vocabulary of a table ``embinspect export`` wrote: its tokens, looked up as
    the words of a word-vector file are (no tokenizer); UsageError when it has none."""
    exported = files.exported
    assert exported is not None
    tokens = exported.tokens()
    if tokens is None:
        raise UsageError(
            f"{files.model}: no vocabulary beside it ({exported.path.stem}.vocab.json); query "
            "by row id (#1234)"
        )
    return WordKeys(tokens, str(exported.path))


def _from_tokenizer_json(path: Path) -> Vocabulary:
    from tokenizers import Tokenizer

    try:
        with _rust_panics_unprinted():
            return Vocabulary(Tokenizer.from_file(str(path)), str(path))
    except BaseException as err:  # an Exception on a bad file, a panic on a hostile one
        if not _tokenizer_failed(err):
            raise
        raise ModelError(f"{path}: cannot load tokenizer ({_reason(err)})") from None


def _from_gguf(gguf: GgufFile) -> Vocabulary:
    """The tokenizer a GGUF file's metadata describes (``tokenizer.ggml.*``), as transformers
    builds it (``AutoTokenizer`` given ``gguf_file``).

    Building takes seconds (transformers converts the vocabulary and merges); the result is
    kept in embinspect's cache, named by the metadata's SHA-256 and the transformers
    version, and read back in milliseconds on later runs. The entry records both, and the
    SHA-256 of the tokenizer.json it holds: one that does not match (tampered, truncated,
    another entry's) is built again, never used.
    """
    from importlib.metadata import version

    from tokenizers import Tokenizer

    if gguf.string_array_length(GGUF_TOKENS) is None:
        raise UsageError(
            f"{gguf.path}: no tokenizer in its metadata ({GGUF_TOKENS}); query by token id "
            "(#1234) or pass ",
            Option("tokenizer", metavar="PATH_OR_ID"),
        )
    derived_from = {"gguf_metadata_sha256": gguf.metadata_digest()}
    derived_from["transformers"] = version("transformers")
    key = f"{derived_from['gguf_metadata_sha256']}-transformers-{derived_from['transformers']}"
    cached = cached_file(GGUF_TOKENIZERS, f"{key}.tokenizer.json")
    source = f"{gguf.path} (GGUF metadata)"
    kept = read_derived(cached, derived_from, f"tokenizer of {gguf.path}")
    if kept is not None:
        try:
            with _rust_panics_unprinted():
                return Vocabulary(Tokenizer.from_str(kept), source)
        except BaseException as err:  # one another tokenizers version wrote: build it again
            if not _tokenizer_failed(err):
                raise
    with progress.task("Converting the GGUF tokenizer (once: kept in the cache)"):
        backend = _build_gguf_tokenizer(gguf)
    try:
        with _rust_panics_unprinted():
            vocabulary = Vocabulary(backend, source)
            text = backend.to_str()
    except BaseException as err:
        if not _tokenizer_failed(err):
            raise
        raise ModelError(f"{gguf.path}: cannot build its tokenizer ({_reason(err)})") from None
    stat = gguf.path.stat()
    # Absolute: `embinspect cache prune` looks for the file from wherever it runs.
    where = str(gguf.path.absolute())
    provenance = {"path": where, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    keep_derived(cached, text, derived_from, provenance)
    return vocabulary


def _build_gguf_tokenizer(gguf: GgufFile) -> Tokenizer:
    """transformers' conversion of a GGUF file's tokenizer metadata, as a ``Tokenizer``.

    Built in a temporary folder (``embinspect-gguf-*``) that is removed however the build
    ends: an error, a panic, Ctrl-C or SIGTERM (which the CLI turns into an exception).
    """
    import tempfile

    from transformers import AutoTokenizer

    # transformers reads a tokenizer.json or tokenizer_config.json lying beside the file
    # before the metadata: build in a folder that holds nothing but a link to the GGUF.
    with tempfile.TemporaryDirectory(prefix="embinspect-gguf-") as alone:
        link = Path(alone) / "model.gguf"
        link.symlink_to(gguf.path.resolve())
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                alone, gguf_file=link.name, trust_remote_code=False
            )
        except BaseException as err:  # transformers raises many types; tokenizers panics
            if not _tokenizer_failed(err):
                raise
            raise ModelError(f"{gguf.path}: cannot build its tokenizer ({_reason(err)})") from None
    return tokenizer.backend_tokenizer


def _load_override(
    override: str, revision: str | None, cache_dir: str | None, offline: bool
) -> Vocabulary:
    path = Path(override).expanduser()
    local = path.is_file() or path.is_dir()
    if revision is not None and local:
        raise UsageError(
            Option("tokenizer_revision", revision),
            f" goes with a Hub repo id; {override} is a local ",
            "file" if path.is_file() else "folder",
        )
    if path.is_file():
        return _from_tokenizer_json(path)
    if path.is_dir():
        if (path / TOKENIZER_JSON).is_file():
            return _from_tokenizer_json(path / TOKENIZER_JSON)
        return _from_transformers(str(path), revision=None)
    if override.startswith((".", "/", "~")) or override.count("/") > 1:  # a path, not owner/name
        raise UsageError(Option("tokenizer", override), ": no such file or directory")
    # A Hub repo id: transformers fetches what it needs through huggingface_hub's cache.
    return _from_transformers(override, revision, offline=offline, cache_dir=cache_dir)


def _from_transformers(
    name_or_path: str, revision: str | None, offline: bool = False, cache_dir: str | None = None
) -> Vocabulary:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            trust_remote_code=False,
            local_files_only=offline,
        )
    except BaseException as err:  # transformers raises many types; tokenizers panics
        if not _tokenizer_failed(err):
            raise
        raise ModelError(f"{name_or_path}: cannot build a tokenizer ({_reason(err)})") from None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(f"{name_or_path}: only a slow tokenizer is available; add tokenizer.json")
    try:
        with _rust_panics_unprinted():
            return Vocabulary(backend, name_or_path)
    except BaseException as err:
        if not _tokenizer_failed(err):
            raise
        raise ModelError(f"{name_or_path}: cannot build a tokenizer ({_reason(err)})") from None
