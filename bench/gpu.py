"""``make bench-gpu``: the bench's scan cases on a CUDA GPU, against the GPU's own floors.

One prepared script, run in one go on a machine with a GPU: one query's scan, 1,000 and
10,000 queries (warm, in this process, timed with torch.cuda.synchronize around each run)
on MiniLM (30522×384 f32) and the llama3-8b shape (128256×4096 bf16, built by
bench/build.py with the CPU bench's seed), and the Google analogy suite as whole
processes (`analogy MODEL --file google --device cuda`). Floors measured in the same run:
memory bandwidth from a device-to-device copy, bf16 (and f32) GEMM rates from matmuls.
Every answer is compared with the CPU's answer to the same queries (same ids, in order);
the single query also with the float64 reference. Writes bench/RESULTS-gpu.md.

Without CUDA it prints one line and exits 0, writing nothing. ``--device cpu --dry-run``
runs the same code path on the CPU with a tiny table and small counts (the check that
can be made on a machine without a GPU); its report goes to .cache/bench/ only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import sys
import time
from importlib.metadata import version
from pathlib import Path

from common import (
    BENCH,
    CACHE,
    EMBINSPECT,
    PY,
    fmt_s,
    run_json,
    run_timed,
    tensor_file,
    test_checkpoint,
)

K = 10
QUERY_ID = 1000
SEED = 1234
SINGLE_TARGET = 2.0  # one query ≤ 2× its memory floor
GEMM_TARGET = 2.0  # 10,000 queries ≤ 2× the GEMM floor


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, device, repeat: int) -> float:
    fn()  # warm-up: allocation, kernel selection
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def copy_time(size: int, device) -> float:
    """Best time of a device-to-device copy of ``size`` bytes (buffers freed on return)."""
    import torch

    src = torch.ones(size // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return best_of(lambda: dst.copy_(src), device, repeat=10)


def floors(device, small: bool) -> dict:
    """Copy bandwidth (bytes read + written per second) and matmul rates on ``device``."""
    import torch

    size = (64 if small else 4096) * 1024**2  # bytes per buffer
    out = {"copy_bytes": size, "bandwidth": 2 * size / copy_time(size, device)}
    # A large square product and the scan's own shape (queries × dim against rows).
    shapes = [(512, 512, 512)] if small else [(8192, 8192, 8192), (10000, 4096, 128256)]
    for dtype, key in ((torch.bfloat16, "matmul_bf16"), (torch.float32, "matmul_f32")):
        best = 0.0
        for m, k, n in shapes:
            a = torch.randn(m, k, device=device).to(dtype)
            b = torch.randn(n, k, device=device).to(dtype)
            seconds = best_of(lambda a=a, b=b: a @ b.T, device, repeat=3 if small else 10)
            best = max(best, 2 * m * k * n / seconds)
            del a, b
        out[key] = best
    out["shapes"] = shapes
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


class Case:
    """One table opened twice in this process: on the device, and on the CPU to compare."""

    def __init__(self, label: str, folder: str, device) -> None:
        from embinspect.model.checkpoint import open_checkpoint
        from embinspect.tables.search import Searcher

        self.label, self.folder, self.device = label, folder, device
        self.searcher = Searcher(open_checkpoint(folder), None, device=str(device))
        self.cpu = Searcher(open_checkpoint(folder), None, device="cpu")
        header = self.searcher.table.header
        self.rows, self.dim = header.shape
        self.nbytes = header.nbytes
        self.half = header.nbytes == 2 * self.rows * self.dim  # bf16 is multiplied in bf16
        self.file = tensor_file(Path(folder), header.name)
        self.tensor = header.name

    def answer(self, searcher, queries: list[str]) -> list[list[int]]:
        from embinspect.analyses.neighbors import neighbors

        return [[n.token_id for n in r.neighbors] for r in neighbors(searcher, queries, K)]

    def timed(self, queries: list[str], repeat: int) -> tuple[list[float], list[list[int]]]:
        ids: list[list[int]] = []
        times = []
        for _ in range(repeat):
            sync(self.device)
            start = time.perf_counter()
            ids = self.answer(self.searcher, queries)
            sync(self.device)
            times.append(time.perf_counter() - start)
        return times, ids


def median(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[len(ordered) // 2]


def scans(case: Case, f: dict, counts: list[int], rows: list[str], targets: list) -> None:
    """One query, then each batch size, on the device against its floors and the CPU."""
    memory = case.nbytes / f["bandwidth"]
    rate = f["matmul_bf16" if case.half else "matmul_f32"]
    first = time.perf_counter()
    case.answer(case.searcher, [f"#{QUERY_ID}"])  # moves the table to the device
    sync(case.device)
    first_s = time.perf_counter() - first
    times, ids = case.timed([f"#{QUERY_ID}"], repeat=5)
    same_cpu = ids == case.answer(case.cpu, [f"#{QUERY_ID}"])
    ref, _ = run_json(
        [PY, str(BENCH / "reference.py"), str(case.file), case.tensor, str(K), str(QUERY_ID)]
    )
    same_ref = ids[0] == ref[str(QUERY_ID)]["ids"]
    t = median(times)
    met = t <= SINGLE_TARGET * memory
    targets.append((f"one query ≤ {SINGLE_TARGET:.0f}× memory floor, {case.label}", met))
    rows.append(
        f"| one query's scan, {case.label} | {fmt_s(t)} ({fmt_s(min(times))}–"
        f"{fmt_s(max(times))}, n={len(times)}) | {fmt_s(memory)} (memory) | "
        f"{t / memory:.1f}× | ids {'=' if same_cpu else '≠'} CPU, "
        f"{'=' if same_ref else '≠'} float64 reference; first scan (table to device) "
        f"{fmt_s(first_s)}; target ≤ {SINGLE_TARGET:.0f}× floor: "
        f"**{'met' if met else 'MISSED'}** |"
    )
    rng = random.Random(SEED)
    for n in counts:
        queries = [f"#{rng.randrange(case.rows)}" for _ in range(n)]
        times, ids = case.timed(queries, repeat=3)
        cpu_ids = case.answer(case.cpu, queries)
        same = sum(a == b for a, b in zip(ids, cpu_ids, strict=True))
        compute = 2 * case.rows * case.dim * n / rate
        floor, kind = max((memory, "memory"), (compute, "compute"))
        t = median(times)
        note = f"ids = CPU for {same:,}/{n:,}; {fmt_s(t / n)}/query"
        if n == counts[-1]:
            met = t <= GEMM_TARGET * compute
            targets.append((f"{n:,} queries ≤ {GEMM_TARGET:.0f}× GEMM floor, {case.label}", met))
            note += f"; target ≤ {GEMM_TARGET:.0f}× GEMM floor: **{'met' if met else 'MISSED'}**"
        targets.append((f"{n:,} queries = CPU, {case.label}", same == n))
        rows.append(
            f"| {n:,} queries, {case.label} | {fmt_s(t)} ({fmt_s(min(times))}–"
            f"{fmt_s(max(times))}, n={len(times)}) | {fmt_s(floor)} ({kind}) | "
            f"{t / floor:.1f}× | {note} |"
        )


def suite(label: str, folder: str, device, rows: list[str], targets: list, repeat: int = 3) -> None:
    """The Google analogy suite as whole processes, on the device and on the CPU."""
    cmd = [EMBINSPECT, "analogy", folder, "--file", "google", "-f", "json", "--device"]
    ours = run_timed(cmd + [str(device)], repeat=repeat, warmup=1 if repeat > 1 else 0)
    cpu = run_timed(cmd + ["cpu"], repeat=1, warmup=0)

    def picks(out: bytes) -> list:
        return [(a["question"], a["predicted_id"]) for a in json.loads(out)["answers"]]

    got, want = picks(ours.stdout), picks(cpu.stdout)
    same = got == want
    targets.append((f"Google analogies = CPU, {label}", same))
    rows.append(
        f"| Google analogies (19,544), {label}, whole process | {ours.summary()} | – | – | "
        f"answers {'=' if same else '≠'} CPU's ({len(got):,} scored); CPU process "
        f"{cpu.summary()} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny tables and counts")
    args = parser.parse_args()
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench-gpu: no CUDA GPU here (torch sees none); nothing measured, no results file")
        return
    if device.type != "cuda" and not args.dry_run:
        sys.exit("bench-gpu: --device cpu is for --dry-run only (the CPU bench is make bench)")
    start = time.perf_counter()
    sys.path.insert(0, str(BENCH))
    import build

    CACHE.mkdir(parents=True, exist_ok=True)
    minilm = test_checkpoint("minilm")
    if args.dry_run:
        big = ("tiny (2048×256 bf16)", build.build("gpu-dry-2k-256", tiny_plan, build.SEED))
        counts = [100, 1000]
    else:
        llama = build.build("llama3-8b-shape", build.llama_plan, build.SEED)
        big = ("llama3-8b-shape (128256×4096 bf16)", llama)
        counts = [1000, 10000]
    print(f"[bench-gpu] floors on {device}", file=sys.stderr, flush=True)
    f = floors(device, small=args.dry_run)
    rows: list[str] = []
    targets: list[tuple[str, bool]] = []
    for label, folder in (("MiniLM (30522×384 f32)", minilm), big):
        print(f"[bench-gpu] scans: {label}", file=sys.stderr, flush=True)
        scans(Case(label, folder, device), f, counts, rows, targets)
    print("[bench-gpu] Google analogies", file=sys.stderr, flush=True)
    suite("MiniLM", minilm, device, rows, targets, repeat=1 if args.dry_run else 3)
    if not args.dry_run:
        suite("SmolLM2-135M (49152×576 bf16)", test_checkpoint("smollm2"), device, rows, targets)
    elapsed = time.perf_counter() - start
    report = markdown(device, f, rows, targets, elapsed, args.dry_run)
    target = CACHE / "RESULTS-gpu-dry-run.md" if args.dry_run else BENCH / "RESULTS-gpu.md"
    target.write_text(report)
    print(report)
    print(f"[bench-gpu] wrote {target} in {elapsed / 60:.1f} min", file=sys.stderr)


def tiny_plan() -> tuple[dict, list[dict]]:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "num_hidden_layers": 0,
        "vocab_size": 2048,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    return config, [{"model.embed_tokens.weight": ((2048, 256), "randn")}]


def fmt_rate(flops: float) -> str:
    return f"{flops / 1e12:.1f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.0f} GFLOP/s"


def markdown(device, f: dict, rows: list[str], targets: list, elapsed: float, dry: bool) -> str:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    missed = [what for what, met in targets if not met]
    head = "# embinspect GPU benchmark" + (" (DRY RUN on CPU, tiny table)" if dry else "")
    return "\n".join(
        [
            head,
            "",
            "Generated by `make bench-gpu` (bench/gpu.py); numbers from one run.",
            "",
            f"- device: {device} — {name}",
            f"- torch {version('torch')} (CUDA {torch.version.cuda}), Python "
            f"{platform.python_version()}, {platform.platform()}",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- memory bandwidth: {f['bandwidth'] / 1e9:.0f} GB/s (device-to-device copy of "
            f"{f['copy_bytes'] / 1024**2:.0f} MiB, read + written bytes ÷ time, best of 10)",
            f"- bf16 GEMM: {fmt_rate(f['matmul_bf16'])}; f32 (no TF32 assumed): "
            f"{fmt_rate(f['matmul_f32'])} (best of a @ b.T over (m, k, n) = "
            f"{', '.join(map(str, f['shapes']))})",
            "- memory floor = table bytes ÷ bandwidth; GEMM floor of n queries = "
            "2·rows·dim·n ÷ the GEMM rate of the table's dtype; floor = the larger. Scans are "
            "timed in one warm process (torch.cuda.synchronize before and after each run; "
            "median of 5 runs for one query, 3 for batches), after a first scan that moves "
            "the table to the device.",
            "",
            "| case | embinspect | floor | ÷ floor | notes |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Targets: {len(targets) - len(missed)} met, {len(missed)} missed"
            + (f" ({'; '.join(missed)})." if missed else "."),
            f"Total run time: {elapsed / 60:.1f} min.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
