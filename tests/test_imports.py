"""`embinspect --help` and `embinspect info` must not import torch or transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

HEAVY = ("torch", "transformers", "tokenizers", "numpy")

PROBE = """
import sys
from embinspect.cli import main
sys.argv = ["embinspect", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_NAMES))
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


def imported_heavy_modules(*args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY_NAMES", repr(HEAVY)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("HEAVY:")][-1]
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def imported_heavy_modules_each(runs: list[tuple[str, ...]]) -> list[list[str]]:
    """``imported_heavy_modules`` for each argument list, two processes at a time (one per
    core: each is mostly Python starting up)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: imported_heavy_modules(*args), runs))


def _commands() -> list[str]:
    from embinspect.cli import app

    return [c.name or c.callback.__name__ for c in app.registered_commands]


HELP = [("--help",), *((c, "--help") for c in _commands())]


@pytest.fixture(scope="module")
def help_imports() -> dict[tuple[str, ...], list[str]]:
    """What each ``--help`` imported, all probed up front, two at a time."""
    return dict(zip(HELP, imported_heavy_modules_each(HELP), strict=True))


@pytest.mark.parametrize("args", [list(args) for args in HELP])
def test_help_imports_nothing_heavy(help_imports, args):
    assert help_imports[tuple(args)] == []


def test_info_imports_nothing_heavy(minilm, smollm2, gpt2):
    runs = [
        ("info", str(model), "--format", fmt)
        for model in (minilm, smollm2, gpt2)
        for fmt in ("table", "json", "tsv")
    ]
    for args, heavy in zip(runs, imported_heavy_modules_each(runs), strict=True):
        assert heavy == [], args


def test_every_command_has_help_text(cli):
    from embinspect.cli import app

    for command in app.registered_commands:
        assert command.callback.__doc__, command.callback.__name__
        run = cli(command.callback.__name__, "--help")
        assert run.returncode == 0 and "Usage" in run.stdout
