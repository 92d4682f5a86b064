"""`embinspect --help` and `embinspect info` must not import torch or transformers; nor do
`tokens`, `compare` and `positions`, which read a few rows with numpy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import checkpoints
import pytest

HEAVY = ("torch", "transformers", "tokenizers", "numpy")

PROBE = """
import sys
from embinspect.cli import main
sys.argv = ["embinspect", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_NAMES))
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
print(f"EXIT:{code}", file=sys.stderr)
"""


def imported_heavy_modules(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return probe(*args, env=env)[0]


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[list[str], int, str]:
    """(heavy modules imported, exit code, stdout) of one run of the CLI in a process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY_NAMES", repr(HEAVY)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("HEAVY:")][-1]
    code = [x for x in done.stderr.splitlines() if x.startswith("EXIT:")][-1]
    heavy = [m for m in line.removeprefix("HEAVY:").split(",") if m]
    return heavy, int(code.removeprefix("EXIT:") or 0), done.stdout


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


# Commands that read a few rows: numpy reads them (bf16 by a shift, GGUF blocks by gguf's
# numpy dequantization) and computes their norms and scores; torch's import would be most
# of the run.
ROW_LOOKUPS = [
    ("tokens", "hello world"),
    ("compare", "cat", "dog", "car"),
]


def test_row_lookups_import_neither_torch_nor_transformers(minilm, glove):
    """MiniLM (f32 safetensors, learned positions), SmolLM2's GGUF (Q8_0 token table, RoPE)
    and GloVe (a word-vector file, its parse cached): each command answers, without torch."""
    models = [minilm, checkpoints.smollm2_gguf(), glove]
    runs = [(args[0], str(model), *args[1:]) for model in models for args in ROW_LOOKUPS]
    runs.append(("tokens", str(minilm), "hello world", "--positions"))  # + position rows
    runs += [("positions", str(minilm)), ("positions", str(checkpoints.smollm2_gguf()))]
    env = {"EMBINSPECT_CACHE": str(checkpoints.cache_root() / "embinspect-cache")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda args: probe(*args, "-f", "json", env=env), runs))
    for args, (heavy, code, stdout) in zip(runs, done, strict=True):
        assert code == 0, args
        answer = json.loads(stdout)
        if args[0] == "tokens":
            assert len(answer["tokens"]) >= 2 and answer["tokens"][0]["norm"] > 0, args
        elif args[0] == "positions":  # a learned table read, or RoPE's figures
            assert answer["kind"] in {"learned", "rotary"}, args
            assert answer["kind"] != "learned" or answer["learned"]["positions"] == 512, args
        else:
            assert len(answer["matrix"]) == 3, args
            assert answer["matrix"][0][0] == pytest.approx(1.0, abs=1e-15), args
        assert not {"torch", "transformers"} & set(heavy), (args, heavy)
        assert "numpy" in heavy, args  # the rows were read: numpy did it


# One query's search: numpy scans the table (array_scan) and torch is never imported;
# --device auto finds no GPU without asking torch (no /dev/nvidia* node).
SINGLE_SEARCHES = [
    ("neighbors", "king", "-k", "7"),
    ("neighbors", "king", "-k", "7", "--metric", "l2"),
    ("analogy", "king", "man", "woman", "-k", "7"),
]


def test_single_searches_import_neither_torch_nor_transformers(minilm, glove):
    from embinspect.tables import array_scan

    if not array_scan.cpu_without_torch("auto"):
        pytest.skip("a GPU device node is present: --device auto asks torch")
    models = [minilm, checkpoints.smollm2_gguf(), glove]
    runs = [(args[0], str(model), *args[1:]) for model in models for args in SINGLE_SEARCHES]
    env = {"EMBINSPECT_CACHE": str(checkpoints.cache_root() / "embinspect-cache")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda args: probe(*args, "-f", "json", env=env), runs))
    for args, (heavy, code, stdout) in zip(runs, done, strict=True):
        assert code == 0, args
        (answer,) = json.loads(stdout)
        listed = answer["neighbors"] if args[0] == "neighbors" else answer["results"]
        assert len(listed) == 7, args
        scores = [n["score"] for n in listed]
        assert scores == sorted(scores, reverse="l2" not in args), args
        assert not {"torch", "transformers"} & set(heavy), (args, heavy)


def test_an_analogy_suite_imports_neither_torch_nor_transformers(minilm):
    """The Google set on MiniLM: every question answered by numpy's word products
    (``tables/suite_scan``), torch never imported."""
    from embinspect.tables import array_scan

    if not array_scan.cpu_without_torch("auto"):
        pytest.skip("a GPU device node is present: --device auto asks torch")
    if importlib.util.find_spec("gensim") is None:
        pytest.skip("the Google set is read from gensim's test data")
    heavy, code, stdout = probe("analogy", str(minilm), "--file", "google", "-f", "json")
    assert code == 0
    result = json.loads(stdout)
    assert result["scored"] > 10_000 and len(result["answers"]) == result["scored"]
    assert not {"torch", "transformers"} & set(heavy), heavy


API_PROBE = """
import sys
import embinspect
model = embinspect.load(sys.argv[1])
assert model.tokens("hello world").tokens[0].norm > 0
assert len(model.compare(["cat", "dog", "car"]).matrix) == 3
assert model.positions().kind == "learned"
assert [n.token for n in model.neighbors("king", k=2).neighbors] == ["kings", "queen"]
assert model.analogy("king", "man", "woman", k=1).results[0].token == "queen"
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})))
"""


def test_api_row_lookups_import_neither_torch_nor_transformers(minilm):
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", API_PROBE, str(minilm)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout == "\n"
