"""embinspect's library inside one warm process: single-query scans and query batches.

Times what the CLI cannot show apart: one query's scan once the checkpoint is open and
torch is imported (against the memory floor), and batches of 1 to 10,000 queries (against
the compute floor). Usage: inproc.py MODEL_DIR --single 5 --counts 1,10,100 --budget S
[--repeat-large 1] [--answers]. Prints JSON: open_s, single (times, ids, scores), counts
({n: times} or a skip note; with --answers also each count's query ids and the ids and
scores of its answers, for the float64 check).
"""

import argparse
import json
import random
import time

OPEN_START = time.perf_counter()
from embinspect.analyses.neighbors import neighbors  # noqa: E402
from embinspect.model.checkpoint import open_checkpoint  # noqa: E402 (timed with the open)
from embinspect.tables.search import Searcher  # noqa: E402

QUERY = "#1000"
K = 10
SEED = 7


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate_beside(stored_dtype: str) -> float:
    """The matmul rate of the kind of product embinspect runs on this table (bf16 for a
    bf16 table, float32 otherwise: run.compute_floor), measured now, as floors.py does."""
    import torch
    from floors import matmul_rate  # bench/, this script's folder

    return matmul_rate(torch.bfloat16 if stored_dtype == "bfloat16" else torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--single", type=int, default=5, help="timed runs of one query")
    parser.add_argument("--counts", default="1,10,100,1000,10000")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per count")
    parser.add_argument("--repeat-large", type=int, default=1, help="timed runs above 100")
    parser.add_argument("--answers", action="store_true", help="report every answer")
    args = parser.parse_args()

    searcher = Searcher(open_checkpoint(args.model), None, device="cpu")
    out: dict = {"open_s": time.perf_counter() - OPEN_START, "rows": searcher.table.rows}
    out["dim"] = searcher.table.dim

    # The first scan pays page faults on the mapping and torch's first-call costs.
    first = time.perf_counter()
    answer = list(neighbors(searcher, [QUERY], K))[0]
    out["first_scan_s"] = time.perf_counter() - first
    out["single"] = {
        "times": [timed(lambda: list(neighbors(searcher, [QUERY], K))) for _ in range(args.single)],
        "ids": [n.token_id for n in answer.neighbors],
        "scores": [n.score for n in answer.neighbors],
    }

    rng = random.Random(SEED)
    counts: dict = {}
    per_query = None  # seconds per query at the last count, to predict the next one
    for n in (int(c) for c in args.counts.split(",")):
        if per_query is not None and per_query * n > args.budget:
            counts[n] = {"skipped": f"predicted {per_query * n:.0f} s > budget {args.budget:.0f} s"}
            continue
        ids = [rng.randrange(searcher.table.rows) for _ in range(n)]
        queries = [f"#{i}" for i in ids]
        repeat = 3 if n <= 100 else args.repeat_large  # small counts are noisy
        results: list = []

        def run(q=queries, into=results) -> None:
            into[:] = list(neighbors(searcher, q, K))

        times = [timed(run) for _ in range(repeat)]
        counts[n] = {"times": times}
        if n >= 1000:  # the floor's rate measured beside it (a shared machine drifts)
            counts[n]["matmul_rate"] = rate_beside(searcher.table.stored_dtype)
        if args.answers:
            counts[n]["queries"] = ids
            counts[n]["ids"] = [[x.token_id for x in r.neighbors] for r in results]
            counts[n]["scores"] = [[x.score for x in r.neighbors] for r in results]
        per_query = min(times) / n
    out["counts"] = counts
    print(json.dumps(out))


if __name__ == "__main__":
    main()
