"""What this machine can do at best: memory read bandwidth and matrix-multiply rates.

A full-table scan cannot beat reading the table once (bytes ÷ read bandwidth), and a
batch of queries cannot beat the multiply-adds it needs (2·rows·dim·queries ÷ matmul
rate). Prints a JSON object with the measured rates.
"""

import json
import sys
import time

import torch

BANDWIDTH_BYTES = 2 * 1024**3  # far beyond the caches, so this reads DRAM
# (queries, width, rows): a large square-ish product, and the scan's own shape (a batch of
# 256 queries against a chunk of rows, the rows transposed). The floor is the best of both.
SHAPES = [(1024, 4096, 8192, False), (256, 4096, 8192, True)]


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up: page faults, thread pool start, kernel selection
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bandwidth() -> float:
    # ones, not empty: every page must be resident before timing the sum.
    x = torch.ones(BANDWIDTH_BYTES // 4, dtype=torch.float32)
    seconds = best_of(lambda: x.sum(), repeat=7)
    return BANDWIDTH_BYTES / seconds


def matmul_rate(dtype: torch.dtype) -> float:
    best = 0.0
    for m, k, n, transposed in SHAPES:
        a = torch.randn(m, k).to(dtype)
        b = torch.randn(n, k).to(dtype).T if transposed else torch.randn(k, n).to(dtype)
        start = time.perf_counter()
        a @ b
        once = time.perf_counter() - start
        # The machine may be shared: more runs give a better chance of an unloaded one;
        # slow kernels (bf16 without native support) are timed fewer times to save minutes.
        seconds = best_of(lambda a=a, b=b: a @ b, repeat=7 if once < 2 else 1)
        best = max(best, 2 * m * k * n / seconds)
    return best


def matvec_rate(dtype: torch.dtype) -> float:
    """Table bytes per second that torch's own product of one query with a 1 GiB table
    reads: the best a single-query scan built on torch's kernels can do, whatever the
    memory bandwidth allows."""
    dim = 4096
    rows = BANDWIDTH_BYTES // 2 // (dim * torch.finfo(dtype).bits // 8)
    table = torch.randn(rows, dim).to(dtype)
    query = torch.randn(1, dim).to(dtype)
    seconds = best_of(lambda: query @ table.T, repeat=7)
    return table.numel() * table.element_size() / seconds


def main() -> None:
    if sys.argv[1:2] == ["--matmul"]:
        # One rate alone, for a case that wants its floor measured beside it (the machine
        # is shared: its speed drifts over a quarter-hour run).
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[sys.argv[2]]
        print(json.dumps({"matmul": matmul_rate(dtype)}))
        return
    out = {
        "threads": torch.get_num_threads(),
        "read_bandwidth": bandwidth(),
        "matmul_f32": matmul_rate(torch.float32),
        "matmul_bf16": matmul_rate(torch.bfloat16),
        "matmul_shapes": SHAPES,
        "matvec_f32": matvec_rate(torch.float32),
        "matvec_bf16": matvec_rate(torch.bfloat16),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
