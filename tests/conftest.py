"""Shared fixtures: the real test checkpoints, and a runner for the real CLI.

The checkpoints are built once into an ignored cache by ``tests/checkpoints.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import checkpoints  # noqa: E402


@pytest.fixture(scope="session")
def minilm() -> Path:
    """Real sentence-transformers/all-MiniLM-L6-v2 (BERT, one f32 model.safetensors)."""
    return checkpoints.minilm_dir()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """Real SmolLM2-135M-Instruct values (dequantized from its GGUF) as bf16 HF shards."""
    return checkpoints.smollm2_dir()


@pytest.fixture(scope="session")
def gpt2() -> Path:
    """Real GPT-2 tokenizer files with SYNTHETIC seeded-random GPT-2 weights (50304 rows)."""
    return checkpoints.gpt2_dir()


@pytest.fixture(scope="session")
def glove() -> Path:
    """Real GloVe 6B 50d as ``glove.6B.50d.txt`` (400,000 words x 50, no header)."""
    return checkpoints.glove_6b_50d()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)

    def jsonl(self):
        assert self.returncode == 0, self.stderr
        return [json.loads(line) for line in self.stdout.splitlines()]


def run_cli(*args: str | os.PathLike, env: dict[str, str] | None = None, **kwargs) -> Run:
    """Run ``python -m embinspect ARGS`` in a fresh process, as a user would."""
    # embinspect's own cache (GGUF tokenizers) in the ignored test cache, not in ~/.cache.
    own_cache = str(checkpoints.cache_root() / "embinspect-cache")
    full_env = {
        **os.environ,
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "EMBINSPECT_CACHE": own_cache,
        **(env or {}),
    }
    full_env.pop("EMBINSPECT_DEBUG", None) if "EMBINSPECT_DEBUG" not in (env or {}) else None
    done = subprocess.run(
        [sys.executable, "-m", "embinspect", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        **kwargs,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli():
    return run_cli
