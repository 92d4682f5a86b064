"""Shared helpers of the benchmark: paths, timed child processes, safetensors lookups.

Only the standard library is imported here, so that ``run.py`` (the orchestrator) stays a
small process: every measurement that needs torch, gensim or transformers runs in a child
process of its own, whose wall time and peak RSS are what a user would see.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = ROOT / ".cache" / "bench"  # ignored by git: checkpoints and logs live here
PY = sys.executable
EMBINSPECT = str(Path(PY).parent / "embinspect")

# Children must never reach the network and should keep stderr quiet.
CHILD_ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
}
# An installed package has its bytecode; a machine that sets PYTHONDONTWRITEBYTECODE
# would have every timed run compile embinspect's sources again (0.1 s a run): the
# warm-up run writes the bytecode, as installing would have.
CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)


@dataclass
class Timed:
    """Wall times of the measured runs of one command, its peak RSS and its last output."""

    times: list[float] = field(default_factory=list)
    peak_rss: int = 0  # bytes, the largest over the measured runs
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)

    def summary(self) -> str:
        if len(self.times) == 1:
            return f"{fmt_s(self.median)} (1 run)"
        return f"{fmt_s(self.median)} ({fmt_s(self.low)}–{fmt_s(self.high)}, n={len(self.times)})"

    def json(self) -> dict:
        return {"times": self.times, "peak_rss": self.peak_rss}


def run_timed(
    cmd: list[str],
    *,
    stdin: bytes | None = None,
    repeat: int = 5,
    warmup: int = 1,
    env: dict[str, str] | None = None,
) -> Timed:
    """Run ``cmd`` ``warmup + repeat`` times as a whole process; time the last ``repeat``.

    stdin/stdout go through temporary files rather than pipes so that no reader thread
    is needed, and the child is reaped with ``os.wait4`` (not ``Popen.wait``) because
    only wait4 returns the child's own resource usage: ``ru_maxrss`` is its peak RSS.
    """
    result = Timed()
    for run in range(warmup + repeat):
        with (
            tempfile.TemporaryFile() as fin,
            tempfile.TemporaryFile() as fout,
            tempfile.TemporaryFile() as ferr,
        ):
            if stdin is not None:
                fin.write(stdin)
                fin.seek(0)
            start = time.perf_counter()
            child_env = {**CHILD_ENV, **(env or {})}
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, env=child_env)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
            fout.seek(0)
            ferr.seek(0)
            out, err = fout.read(), ferr.read()
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {proc.returncode}:\n{err.decode(errors='replace')}"
            )
        if run >= warmup:
            result.times.append(elapsed)
            result.peak_rss = max(result.peak_rss, usage.ru_maxrss * 1024)  # KiB on Linux
            result.stdout, result.stderr = out, err
    return result


def run_json(cmd: list[str], *, stdin: bytes | None = None) -> tuple[dict, Timed]:
    """Run a bench helper script once (no warm-up) and parse the JSON it prints last."""
    timed = run_timed(cmd, stdin=stdin, repeat=1, warmup=0)
    return json.loads(timed.stdout.decode().strip().splitlines()[-1]), timed


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def tensor_file(folder: Path, name: str) -> Path:
    """The shard of ``folder`` (HF layout) that holds tensor ``name``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return folder / json.loads(index.read_text())["weight_map"][name]
    return folder / "model.safetensors"


def test_checkpoint(name: str) -> str:
    """The folder of one of the tests' real checkpoints (built by tests/checkpoints.py)."""
    return subprocess.run(
        [PY, str(ROOT / "tests" / "checkpoints.py"), "--print", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
