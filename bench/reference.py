"""Float64 reference neighbors, independent of embinspect: safetensors + numpy only.

Cosine of one row against every row in float64, read in chunks so that a 2.5 GB bf16
table needs no 10 GB float64 copy; ranked best first, ties to the lower id, the query's
own row left out. Queries go 256 at a time, so a thousand queries against a 256k-row
table need no 2 GB score matrix. Usage: reference.py TENSOR_FILE TENSOR_NAME K ID...
Prints JSON {id: {"ids": [...], "scores": [...]}}.
"""

import json
import sys

import numpy as np
from safetensors import safe_open

CHUNK_ROWS = 16384
QUERY_BLOCK = 256


def top(row: np.ndarray, k: int) -> list[int]:
    """The k best ids of one score row, by score descending then lower id: every id tied
    with the k-th best score is a candidate, so a tie at the edge goes to the lower id."""
    k = min(k, row.size)
    edge = row[np.argpartition(-row, k - 1)[:k]].min()
    candidates = np.nonzero(row >= edge)[0]
    return [int(i) for i in candidates[np.lexsort((candidates, -row[candidates]))][:k]]


def main() -> None:
    path, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    query_ids = list(dict.fromkeys(int(a) for a in sys.argv[4:]))
    out = {}
    with safe_open(path, framework="pt") as handle:
        sliced = handle.get_slice(name)
        rows = sliced.get_shape()[0]
        norms = np.empty(rows, dtype=np.float64)
        for start in range(0, rows, CHUNK_ROWS):
            block = sliced[start : start + CHUNK_ROWS].double().numpy()
            norms[start : start + block.shape[0]] = np.linalg.norm(block, axis=1)
        for first in range(0, len(query_ids), QUERY_BLOCK):
            ids = query_ids[first : first + QUERY_BLOCK]
            queries = np.stack([sliced[q : q + 1].double().numpy()[0] for q in ids])
            units = queries / np.linalg.norm(queries, axis=1, keepdims=True)
            scores = np.empty((len(ids), rows), dtype=np.float64)
            for start in range(0, rows, CHUNK_ROWS):
                block = sliced[start : start + CHUNK_ROWS].double().numpy()
                stop = start + block.shape[0]
                scores[:, start:stop] = (units @ block.T) / norms[start:stop]
            for q, row in zip(ids, scores, strict=True):
                row[q] = -np.inf  # the query's own row is left out
                best = top(row, k)
                out[str(q)] = {"ids": best, "scores": [float(row[i]) for i in best]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
