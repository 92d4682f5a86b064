"""gensim's KeyedVectors holding a checkpoint's token table, keyed by word, built
independently of embinspect: the reference side of the evaluation tests and benchmark.

A WordPiece token that does not start with ``##`` is its own word; a byte-level token
that starts with ``Ġ`` is the word after it; any other row (fragments, special tokens, a
second spelling of a word) gets a key with a space in it, which no question can name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

GENSIM_DATA_FILES = ("questions-words.txt", "wordsim353.tsv", "simlex999.txt")


def gensim_data(name: str) -> Path:
    import gensim

    return Path(gensim.__file__).parent / "test" / "test_data" / name


def token_table(folder: Path, tensor: str) -> tuple[np.ndarray, list[str | None], set[int]]:
    """(float32 rows, stored token of each row, ids of special tokens)."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    rows = None
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            if tensor in set(handle.keys()):
                rows = handle.get_tensor(tensor).float().numpy()
    if rows is None:
        raise KeyError(f"{tensor} not in {folder}")
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    for added in spec.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
    return rows, [by_id.get(i) for i in range(rows.shape[0])], special


def word_of(token: str, scheme: str) -> str | None:
    if scheme == "wordpiece":
        return None if token.startswith("##") else token
    if scheme == "byte-level":
        return token[1:] if token.startswith("Ġ") and len(token) > 1 else None
    raise ValueError(scheme)


def keyed_vectors(folder: Path, tensor: str, scheme: str):
    """(float32 rows, KeyedVectors over every row with word keys)."""
    from gensim.models import KeyedVectors

    rows, tokens, special = token_table(folder, tensor)
    keys, seen = [], set()
    for token_id, token in enumerate(tokens):
        word = None if token is None or token_id in special else word_of(token, scheme)
        if word is None or word in seen:
            word = f"<row {token_id}>"
        seen.add(word)
        keys.append(word)
    vectors = KeyedVectors(rows.shape[1])
    vectors.add_vectors(keys, rows)
    return rows, vectors


def evaluate_word_analogies(vectors, path: Path, **options: Any) -> tuple[float, list[dict]]:
    """gensim's ``vectors.evaluate_word_analogies(path, **options)``, kept on disk under the
    test cache: gensim's loop takes 10-15 s a set, the same every run. The entry is named by
    a digest of everything the answer depends on (the rows, the keys, the questions, the
    options, gensim's version), so a change to any of them computes it afresh."""
    import gensim
    from checkpoints import cache_root  # tests/ is on sys.path, as for every test module

    digest = hashlib.sha256()
    digest.update(vectors.vectors.tobytes())
    digest.update("\n".join(map(str, vectors.index_to_key)).encode())
    digest.update(Path(path).read_bytes())
    digest.update(json.dumps([options, gensim.__version__], sort_keys=True).encode())
    entry = cache_root() / "gensim-reference" / f"analogies-{digest.hexdigest()[:32]}.json"
    if entry.is_file():
        score, sections = json.loads(entry.read_text())
        return score, sections
    score, sections = vectors.evaluate_word_analogies(path, **options)
    record = [
        float(score),
        [{**s, "correct": [list(q) for q in s["correct"]],
          "incorrect": [list(q) for q in s["incorrect"]]} for s in sections],
    ]  # fmt: skip
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.with_name(f".{entry.name}.{os.getpid()}")
    partial.write_text(json.dumps(record))
    partial.replace(entry)
    return record[0], record[1]


def load_word2vec_format(path: Path, **options: Any) -> Any:
    """gensim's ``KeyedVectors.load_word2vec_format(path, **options)``'s words and rows
    (``index_to_key``, ``vectors``), kept on disk under the test cache: gensim reads the
    400,000 lines of GloVe 6B in 13 s, the same every run. Named by a digest of the file,
    the options and gensim's version."""
    from types import SimpleNamespace

    import gensim
    import numpy as np
    from checkpoints import cache_root

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    digest.update(json.dumps([options, gensim.__version__], sort_keys=True).encode())
    entry = cache_root() / "gensim-reference" / f"vectors-{digest.hexdigest()[:32]}"
    if not (entry / "done").is_file():
        import shutil
        import tempfile

        from gensim.models import KeyedVectors

        loaded = KeyedVectors.load_word2vec_format(str(path), **options)
        entry.parent.mkdir(parents=True, exist_ok=True)
        # Assembled beside it and renamed into place whole: test workers running at once
        # never read another's half-written arrays.
        partial = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        np.save(partial / "vectors.npy", loaded.vectors)
        (partial / "words.json").write_text(json.dumps(loaded.index_to_key))
        (partial / "done").write_text("")
        try:
            os.rename(partial, entry)
        except OSError:  # another worker's (equal) copy is in place: keep it
            shutil.rmtree(partial, ignore_errors=True)
    words = json.loads((entry / "words.json").read_text())
    return SimpleNamespace(index_to_key=words, vectors=np.load(entry / "vectors.npy"))
