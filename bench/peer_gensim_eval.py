"""gensim's evaluate_word_analogies on the Google set, on a KeyedVectors holding the same
rows as embinspect reads, keyed by word (tests/gensim_reference.py). Load and evaluation
are timed separately in-process.
Usage: peer_gensim_eval.py FOLDER TENSOR_NAME SCHEME CASE_INSENSITIVE(0|1)
Prints JSON: load_s, eval_s, accuracy, correct (each right question, "A B C D").
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gensim_reference import gensim_data, keyed_vectors  # noqa: E402

folder, tensor, scheme, case_insensitive = sys.argv[1:5]
start = time.perf_counter()
_, vectors = keyed_vectors(Path(folder), tensor, scheme)
vectors.fill_norms()
load_s = time.perf_counter() - start
start = time.perf_counter()
accuracy, sections = vectors.evaluate_word_analogies(
    gensim_data("questions-words.txt"), case_insensitive=case_insensitive == "1"
)
eval_s = time.perf_counter() - start
correct = sorted(" ".join(q) for q in sections[-1]["correct"])
print(json.dumps({"load_s": load_s, "eval_s": eval_s, "accuracy": accuracy, "correct": correct}))
