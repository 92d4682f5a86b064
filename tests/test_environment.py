"""What surrounds a run: a GPU that is not there, a reader that leaves early, Ctrl-C, and a
second process reading the same checkpoint at the same time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from reference import cosines, ranked, table
from test_errors import assert_one_line_error

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


# `python -m embinspect` with Ctrl-C raising KeyboardInterrupt, as at a terminal, even when
# this test runs with SIGINT ignored (a background job: `pytest &`), which a child inherits
# and Python then leaves ignored. Set in the child itself, not with preexec_fn: this process
# has threads (torch's, the fake Hub's), and preexec_fn is unsafe with threads.
WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('embinspect', run_name='__main__', alter_sys=True)"
)


def cli_process(args, ctrl_c: bool = False, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("EMBINSPECT_DEBUG", None)
    start = ["-c", WITH_CTRL_C] if ctrl_c else ["-m", "embinspect"]
    return subprocess.Popen([sys.executable, *start, *map(str, args)], env=env, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu(cli, minilm):
    for command in (["neighbors", minilm, "king"], ["analogy", minilm, "a", "b", "c"]):
        run = cli(*command, "--device", "cuda")
        assert_one_line_error(run, EXIT_USAGE, "--device cuda: torch sees no CUDA GPU here")


CLOSED_STDOUT = {
    "info": ["info", "{m}"],
    "info-json": ["info", "{m}", "-f", "json"],
    "tokens-table": ["tokens", "{m}", "the cat sat", "--vectors", "-f", "table"],
    "neighbors": ["neighbors", "{m}", "king", "queen", "-f", "jsonl"],
    "compare": ["compare", "{m}", "cat", "dog", "-f", "csv"],
    "analogy": ["analogy", "{m}", "king", "man", "woman", "-f", "json"],
}


@pytest.fixture(scope="module")
def closed_stdout_runs(minilm):
    """Every case's process with its stdout closed, all started at once (most of each is
    importing torch: two cores run them two at a time): {case: (exit code, stderr)}."""
    started = {}
    for case, args in CLOSED_STDOUT.items():
        read_end, write_end = os.pipe()
        os.close(read_end)
        started[case] = cli_process(
            [a.format(m=minilm) for a in args], stdout=write_end, stderr=subprocess.PIPE, text=True
        )
        os.close(write_end)
    stderrs = {case: process.communicate(timeout=300)[1] for case, process in started.items()}
    return {case: (process.returncode, stderrs[case]) for case, process in started.items()}


@pytest.mark.parametrize("case", list(CLOSED_STDOUT))
def test_stdout_closed_before_the_first_write(closed_stdout_runs, case):
    """Every write fails with EPIPE: the run stops quietly with 0, as `| head` expects."""
    returncode, stderr = closed_stdout_runs[case]
    assert returncode == 0, stderr
    assert stderr == ""


def test_ctrl_c_while_streaming_exits_130_without_a_traceback(minilm):
    process = cli_process(
        ["neighbors", minilm, "-", "-k", "1", "--batch-size", "1", "-f", "jsonl"],
        ctrl_c=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdin.write("king\n" + "#42\n" * 2000)  # fits the pipe: the rest keeps it busy
    process.stdin.flush()
    first = json.loads(process.stdout.readline())  # it is answering now
    assert first["query"] == "king"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in stderr and "Exception" not in stderr


def test_ctrl_c_while_waiting_for_stdin(minilm):
    process = cli_process(
        ["neighbors", minilm, "-", "-k", "1", "--batch-size", "1", "-f", "jsonl"],
        ctrl_c=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdin.write("king\n")
    process.stdin.flush()
    process.stdout.readline()  # answered; now blocked reading the next line
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_two_processes_read_one_checkpoint_at_once(smollm2):
    """Both answer the float64 reference: no lock, no shared state, no interference."""
    words = ["ĠParis", "ĠLondon", "Ġking"]
    args = ["neighbors", smollm2, *[f"={w}" for w in words], "-k", "8", "-f", "json"]
    first = cli_process(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = cli_process(
        [*args, "--batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outputs = [first.communicate(timeout=300), second.communicate(timeout=300)]
    assert first.returncode == second.returncode == 0, [err for _, err in outputs]
    rows = table(smollm2, "model.embed_tokens.weight")
    vocab = json.loads((smollm2 / "tokenizer.json").read_text())["model"]["vocab"]
    for stdout, _ in outputs:
        for answer, word in zip(json.loads(stdout), words, strict=True):
            query = vocab[word]
            ids, scores = ranked(cosines(rows, rows[query]), 8, exclude={query})
            assert [n["token_id"] for n in answer["neighbors"]] == ids
            got = [n["score"] for n in answer["neighbors"]]
            assert np.allclose(got, scores, rtol=1e-12, atol=0)
