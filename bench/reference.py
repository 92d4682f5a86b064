"""Float64 reference neighbors, independent of embinspect: safetensors + numpy only.

Cosine of one row against every row in float64, read in chunks so that a 2.5 GB bf16
table needs no 10 GB float64 copy; ranked best first, ties to the lower id, the query's
own row left out. Usage: reference.py TENSOR_FILE TENSOR_NAME K ID... Prints JSON
{id: {"ids": [...], "scores": [...]}}.
"""

import json
import sys

import numpy as np
from safetensors import safe_open

CHUNK_ROWS = 16384

path, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
query_ids = [int(a) for a in sys.argv[4:]]

with safe_open(path, framework="pt") as handle:
    sliced = handle.get_slice(name)
    rows = sliced.get_shape()[0]
    queries = np.stack([sliced[q : q + 1].double().numpy()[0] for q in query_ids])
    units = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = np.empty((len(query_ids), rows), dtype=np.float64)
    for start in range(0, rows, CHUNK_ROWS):
        block = sliced[start : start + CHUNK_ROWS].double().numpy()
        scores[:, start : start + block.shape[0]] = (units @ block.T) / np.linalg.norm(
            block, axis=1
        )

out = {}
for q, row in zip(query_ids, scores, strict=True):
    order = np.lexsort((np.arange(rows), -row))  # by score descending, then lower id
    ids = [int(i) for i in order[: k + 1] if i != q][:k]
    out[str(q)] = {"ids": ids, "scores": [float(row[i]) for i in ids]}
print(json.dumps(out))
