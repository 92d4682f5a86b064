"""`embinspect --help` and `embinspect info` must not import torch or transformers."""

from __future__ import annotations

import os
import subprocess
import sys

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


def _commands() -> list[str]:
    from embinspect.cli import app

    return [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in _commands())])
def test_help_imports_nothing_heavy(args):
    assert imported_heavy_modules(*args) == []


def test_info_imports_nothing_heavy(minilm, smollm2, gpt2):
    for model in (minilm, smollm2, gpt2):
        for fmt in ("table", "json", "tsv"):
            assert imported_heavy_modules("info", str(model), "--format", fmt) == []


def test_every_command_has_help_text(cli):
    from embinspect.cli import app

    for command in app.registered_commands:
        assert command.callback.__doc__, command.callback.__name__
        run = cli(command.callback.__name__, "--help")
        assert run.returncode == 0 and "Usage" in run.stdout
