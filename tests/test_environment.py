"""What surrounds a run: a GPU that is not there, a reader that leaves early, Ctrl-C, and a
second process reading the same checkpoint at the same time; and a hostile environment:
standard streams full or closed, paths that are too long, loop, or are FIFOs, missing paths
that must never reach the Hub, SIGTERM, and a 300 MB stdin line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from reference import cosines, ranked, table
from test_errors import assert_one_line_error

EXIT_USAGE, EXIT_MODEL, EXIT_QUERY, EXIT_NETWORK, EXIT_IO = 2, 3, 4, 5, 74
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


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


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
@pytest.mark.parametrize("case", list(CLOSED_STDOUT))
def test_stdout_closed_before_the_first_write(closed_stdout_runs, case):
    """Every write fails with EPIPE: the run stops quietly with 0, as `| head` expects."""
    returncode, stderr = closed_stdout_runs[case]
    assert returncode == 0, stderr
    assert stderr == ""


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
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


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
    ids=["ctrl-c", "sigterm"],
)
def test_signal_while_waiting_for_stdin(minilm, signum, code):
    """Ctrl-C ends with 130, SIGTERM with 143 and nothing said; neither prints a traceback."""
    process = cli_process(
        ["neighbors", minilm, "-", "-k", "1", "--batch-size", "1", "-f", "jsonl"],
        ctrl_c=signum == signal.SIGINT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdin.write("king\n")
    process.stdin.flush()
    process.stdout.readline()  # answered; now blocked reading the next line
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    assert "Traceback" not in stderr
    if signum == signal.SIGTERM:
        assert stderr == ""


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


# --- hostile environments: standard streams, paths, signals, huge lines ----------------------

NO_SPACE = "embinspect: error: standard output: cannot write (No space left on device)\n"


def run_shell(redirections: str, args, **kwargs) -> tuple[int, str, str]:
    process = subprocess.Popen(
        ["sh", "-c", f'exec "$@" {redirections}', "sh", sys.executable, "-m", "embinspect"]
        + [str(a) for a in args],
        env={k: v for k, v in {**os.environ, "COLUMNS": "120"}.items() if k != "EMBINSPECT_DEBUG"},
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=kwargs.pop("stderr", subprocess.PIPE),
        text=True,
        **kwargs,
    )
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout or "", stderr or ""


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "json", "jsonl"])
def test_stdout_is_dev_full(minilm, fmt):
    """A full disk under stdout: exit 74, one line on stderr, no traceback, in every format."""
    returncode, stdout, stderr = run_shell(">/dev/full", ["info", minilm, "-f", fmt])
    assert (returncode, stderr) == (EXIT_IO, NO_SPACE)


def test_help_to_dev_full():
    returncode, _, stderr = run_shell(">/dev/full", ["--help"])
    assert (returncode, stderr) == (EXIT_IO, NO_SPACE)


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_streamed_results_to_dev_full(minilm):
    """Results streamed a line at a time (after torch was imported and a query answered)."""
    returncode, _, stderr = run_shell(">/dev/full", ["neighbors", minilm, "king", "-f", "jsonl"])
    assert (returncode, stderr) == (EXIT_IO, NO_SPACE)


def test_stdout_closed(minilm):
    """``>&-``: Python starts without a stdout; the first write fails, exit 74."""
    returncode, _, stderr = run_shell(">&-", ["info", minilm, "-f", "json"])
    assert returncode == EXIT_IO
    assert stderr == "embinspect: error: standard output: closed (nothing can be written to it)\n"


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_stdin_closed(minilm):
    """``<&-`` with ``-``: a closed descriptor is an I/O error (exit 74), not empty input."""
    returncode, stdout, stderr = run_shell("<&-", ["neighbors", minilm, "-", "-f", "jsonl"])
    assert (returncode, stdout) == (EXIT_IO, "")
    assert stderr == "embinspect: error: standard input: closed (- reads the queries from it)\n"


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_stdin_dev_null_is_no_queries(minilm):
    returncode, stdout, stderr = run_shell("</dev/null", ["neighbors", minilm, "-", "-f", "jsonl"])
    assert (returncode, stdout, stderr) == (0, "", "")


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_stderr_closed_keeps_the_exit_code(minilm, tmp_path):
    """``2>&-``: errors cannot be told, but the exit code still is, and nothing (no error)
    reaches stdout."""
    missing = tmp_path / "missing.safetensors"
    assert run_shell("2>&-", ["info", missing]) == (EXIT_MODEL, "", "")
    returncode, stdout, _ = run_shell("2>&-", ["neighbors", minilm, "#0", "#99999", "-f", "jsonl"])
    assert returncode == EXIT_QUERY
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r.get("error") for r in records] == [
        None,
        "#99999: outside the table (rows 0..30521)",
    ]


def test_stderr_closed_and_stdout_full(minilm):
    assert run_shell(">/dev/full 2>&-", ["info", minilm], stdout=None) == (EXIT_IO, "", "")


HEAD_FORMATS = ["table", "tsv", "csv", "json", "jsonl"]


@pytest.fixture(scope="module")
def head_runs(minilm):
    """``embinspect neighbors ... -k 1000 | head -1`` in every format, all started at once:
    the output (over 64 KB) outgrows the pipe, so the reader leaves while it is written.
    {format: (first line, exit code, stderr)}."""
    started = {}
    for fmt in HEAD_FORMATS:
        args = ["neighbors", minilm, "king", "queen", "-k", "1000", "-f", fmt]
        started[fmt] = cli_process(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = {}
    for fmt, process in started.items():
        first = process.stdout.readline()
        process.stdout.close()  # as head -1 does
        stderr = process.stderr.read()
        runs[fmt] = (first, process.wait(timeout=300), stderr)
    return runs


@pytest.mark.slow  # five processes importing torch: ~10 s on two cores
@pytest.mark.parametrize("fmt", HEAD_FORMATS)
def test_head_one_in_every_format(head_runs, fmt):
    first, returncode, stderr = head_runs[fmt]
    assert first.strip()
    assert (returncode, stderr) == (0, "")


def test_help_into_a_closed_pipe():
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = cli_process(["--help"], stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    _, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr) == (0, "")


# Paths: what can only be a local path is never sent to the Hub.


@pytest.fixture(scope="module")
def empty_hub():
    from hub_server import FakeHub

    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def no_hub_env(empty_hub, tmp_path) -> dict[str, str]:
    empty_hub.reset()
    return {"HF_ENDPOINT": empty_hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}


@pytest.mark.parametrize(
    "model",
    [
        "models/minilm",  # models/ is a folder here: a path, not a repo id
        "glove.6B.50d.txt",
        "./x",
        "x.vec",
        "x.bin",
        "x.gz",
        "x.gguf",
        "model.safetensors",
        "~/embinspect-no-such-file",
    ],
)
def test_missing_path_that_could_be_a_repo_id(cli, empty_hub, no_hub_env, tmp_path, model):
    (tmp_path / "models").mkdir()
    run = cli("info", model, env=no_hub_env, cwd=tmp_path)
    assert_one_line_error(run, EXIT_MODEL, f"{model}: no such file or directory")
    assert run.stderr == f"embinspect: error: {model}: no such file or directory\n"
    empty_hub.settle()
    assert empty_hub.requests == []


def test_name_of_both_kinds_is_tried_locally_then_on_the_hub(cli, empty_hub, no_hub_env, tmp_path):
    run = cli("info", "models/minilm", env=no_hub_env, cwd=tmp_path)  # no models/ here
    assert_one_line_error(
        run, EXIT_MODEL, "models/minilm: no such local path, and no such Hub repo at"
    )
    empty_hub.settle()  # the server logs a request once it has answered it
    assert empty_hub.requests  # the Hub was asked, after the local path


def test_name_of_both_kinds_with_the_hub_unreachable(cli, tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    run = cli("info", "models/minilm", env=env, cwd=tmp_path)
    assert_one_line_error(
        run,
        EXIT_NETWORK,
        "models/minilm: no such file or directory here, and as a Hub repo: models/minilm: "
        f"cannot reach the Hub at http://127.0.0.1:{port}",
    )


def test_file_name_too_long(cli, empty_hub, no_hub_env):
    name = "a" * 300
    run = cli("info", name, env=no_hub_env)
    assert_one_line_error(run, EXIT_MODEL, "(300 characters): file name too long")
    assert len(run.stderr) < 200
    deep = "/tmp/" + "d/" * 3000
    assert_one_line_error(cli("info", deep, env=no_hub_env), EXIT_MODEL, "file name too long")
    empty_hub.settle()
    assert empty_hub.requests == []


def test_home_of_no_such_user(cli, empty_hub, no_hub_env):
    run = cli("info", "~nosuchuser/x", env=no_hub_env)
    assert run.stderr == (
        "embinspect: error: ~nosuchuser/x: no such file or directory "
        "(~nosuchuser: no such user or home folder)\n"
    )
    empty_hub.settle()
    assert run.returncode == EXIT_MODEL and empty_hub.requests == []


def test_fifo_is_never_opened(cli, tmp_path):
    """Opening a FIFO to read its magic would wait for a writer forever."""
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    run = cli("info", fifo)
    assert_one_line_error(run, EXIT_MODEL, f"{fifo}: is a named pipe (FIFO), not a file or folder")


def test_socket_and_device(cli, tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        assert_one_line_error(cli("info", tmp_path / "sock"), EXIT_MODEL, "is a socket")
    assert_one_line_error(cli("info", "/dev/zero"), EXIT_MODEL, "/dev/zero: is a device")


def test_symlink_loop(cli, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    run = cli("info", tmp_path / "a")
    assert_one_line_error(run, EXIT_MODEL, "a: a symbolic link loop (too many levels of links)")


# SIGTERM: the run unwinds (temp files and folders removed) and ends with 143.


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_sigterm_while_streaming_exits_143_and_cleans_up(minilm, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    args = ["neighbors", minilm, "-", "-k", "1", "--batch-size", "1", "-f", "jsonl"]
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("EMBINSPECT_DEBUG", None)
    start = [sys.executable, "-m", "embinspect", *map(str, args)]
    process = subprocess.Popen(
        start, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdin.write(b"king\n" + b"#42\n" * 2000)
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["query"] == "king"  # it is answering now
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_TERMINATED
    assert b"Traceback" not in stderr and b"Exception" not in stderr
    left = [p.name for p in temp.rglob("*") if "embinspect" in p.name or "incomplete" in p.name]
    assert left == []
    again = subprocess.run(start, env=env, input=b"king\n", capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["neighbors"][0]["token"] == "kings"


def test_an_interrupted_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """What SIGTERM raises mid-write (Terminated, a BaseException) removes the partial file."""
    from embinspect.errors import Terminated
    from embinspect.sources import files

    def interrupted(source, target):
        raise Terminated

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(Terminated):
        files.write_atomically(tmp_path / "cache" / "tokenizer.json", b"{}")
    assert list((tmp_path / "cache").iterdir()) == []


# A huge stdin line is skipped, not stored: memory stays that of a short line.


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1])


def _stream_line(minilm, length: int) -> tuple[int, list[dict], str]:
    """Feed ``king``, a line of ``length`` bytes (written 1 MB at a time), ``queen``; the
    child's peak RSS (KiB) once the three are answered, its records, its stderr."""
    process = cli_process(
        ["neighbors", minilm, "-", "-k", "1", "--batch-size", "1", "-f", "jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdin.write(b"king\n")
    chunk = b"a" * (1 << 20)
    written = 0
    while written < length:
        process.stdin.write(chunk[: length - written])
        written += min(len(chunk), length - written)
    process.stdin.write(b"\nqueen\n")
    process.stdin.flush()
    records = [json.loads(process.stdout.readline()) for _ in range(3)]
    peak = _peak_rss_kib(process.pid)  # before it ends: /proc holds it only while it runs
    process.stdin.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == EXIT_QUERY
    return peak, records, stderr


@pytest.mark.slow
def test_a_300_megabyte_line_keeps_memory_bounded(minilm):
    length = 300 * (1 << 20)
    peak, records, stderr = _stream_line(minilm, length)
    short_peak, _, _ = _stream_line(minilm, 5000)
    assert [r["query"] for r in records] == ["king", "a" * 60, "queen"]
    message = f"'{'a' * 60}'... ({length:,} characters): a query is at most 4,096 characters"
    assert records[1]["error"] == message
    assert stderr == f"embinspect: error: {message}\n"
    assert peak - short_peak < 50 * 1024, (peak, short_peak)


def test_a_long_analogy_line(cli, minilm):
    line = b"king man " + "é".encode() * 30000 + b"\nking man woman\n"
    run = cli("analogy", minilm, "-", "-k", "1", "-f", "jsonl", input=line)
    assert run.returncode == EXIT_QUERY
    message = f"'king man {'é' * 51}'... (30,009 characters): a query is at most 4,096 characters"
    assert run.stderr == f"embinspect: error: {message}\n"
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r.get("error") for r in records] == [message, None]
