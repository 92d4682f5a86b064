"""gensim's KeyedVectors answering the same queries, one ``most_similar`` call each.

The table is read with safetensors as float32 (bf16 through torch) and added with
``add_vectors``; keys are the row ids, so gensim leaves the query's own row out just
as embinspect does. Load (read + add_vectors + norms) and the query loop are timed
separately in-process. Usage: peer_gensim.py TENSOR_FILE TENSOR_NAME K < ids (one a line)
Prints JSON: load_s, loop_s, ids (one list per query).
"""

import json
import sys
import time

import numpy as np
from gensim.models import KeyedVectors
from safetensors import safe_open

path, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = [int(line) for line in sys.stdin.read().split()]

start = time.perf_counter()
with safe_open(path, framework="pt") as handle:
    weights = handle.get_tensor(name).float().numpy()
kv = KeyedVectors(vector_size=weights.shape[1], count=0, dtype=np.float32)
kv.add_vectors(list(range(weights.shape[0])), weights)
del weights
kv.fill_norms()  # gensim would do this lazily on the first query; count it as load
load_s = time.perf_counter() - start

start = time.perf_counter()
ids = [[int(key) for key, _ in kv.most_similar(q, topn=k)] for q in queries]
loop_s = time.perf_counter() - start
print(json.dumps({"load_s": load_s, "loop_s": loop_s, "ids": ids}))
