"""gensim on a GloVe text file, as a user would run it: load_word2vec_format(no_header=True),
then most_similar(WORD) or evaluate_word_analogies on the Google set. Load and the work
are timed separately in-process.
Usage: peer_gensim_glove.py GLOVE_FILE (WORD K | --google)
Prints JSON: load_s, work_s, and the neighbors or the accuracy and right questions.
"""

import json
import sys
import time
import warnings
from pathlib import Path

from gensim.models import KeyedVectors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gensim_reference import gensim_data  # noqa: E402

warnings.simplefilter("ignore")
path = sys.argv[1]
start = time.perf_counter()
vectors = KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)
vectors.fill_norms()
load_s = time.perf_counter() - start
start = time.perf_counter()
if sys.argv[2] == "--google":
    accuracy, sections = vectors.evaluate_word_analogies(gensim_data("questions-words.txt"))
    answer = {"accuracy": accuracy, "correct": sorted(" ".join(q) for q in sections[-1]["correct"])}
else:
    word, k = sys.argv[2], int(sys.argv[3])
    answer = {"words": [w for w, _ in vectors.most_similar(word, topn=k)]}
print(json.dumps({"load_s": load_s, "work_s": time.perf_counter() - start, **answer}))
