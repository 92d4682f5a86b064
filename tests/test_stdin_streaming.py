"""``neighbors -`` and ``analogy -`` answer each stdin line as it arrives: a real process,
its stdin a pipe held open, one line written, and its answer read from stdout before
anything more is written (no EOF). Lines already waiting in a pipe are still answered
together, a batch at a time (tests/test_batches.py)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest
from conftest import _cli_env

WAIT = 30.0  # seconds: generous for a loaded machine; the answer must not need EOF


class Live:
    """``python -m embinspect ARGS`` with stdin a pipe kept open."""

    def __init__(self, *args) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "embinspect", *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_cli_env(None),
        )
        self.seen = b""
        self.errors = b""

    def ask(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def read_until(self, marker: bytes, stream: str = "stdout") -> bytes:
        """``stream`` (stdout or stderr) up to and including the line that holds ``marker``;
        fails after WAIT s."""
        pipe = getattr(self.process, stream)
        seen = getattr(self, "seen" if stream == "stdout" else "errors")
        fd = pipe.fileno()
        deadline = time.monotonic() + WAIT
        while marker not in seen:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(left, 0))
            if not readable:
                self.process.kill()
                raise AssertionError(f"no answer within {WAIT:.0f} s; {stream} so far: {seen!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"{stream} closed early: {seen!r}")
            seen += chunk
        end = seen.index(b"\n", seen.index(marker)) + 1
        answer, rest = seen[:end], seen[end:]
        setattr(self, "seen" if stream == "stdout" else "errors", rest)
        return answer

    def close(self) -> tuple[int, bytes, bytes]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=WAIT)
        rest, errors = self.process.stdout.read(), self.process.stderr.read()
        return self.process.returncode, self.seen + rest, self.errors + errors


@pytest.fixture
def live():
    started: list[Live] = []

    def start(*args) -> Live:
        started.append(Live(*args))
        return started[-1]

    yield start
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.slow
def test_neighbors_jsonl_answers_each_line_before_eof(live, cli, minilm):
    run = live("neighbors", minilm, "-", "-k", "3", "-f", "jsonl")
    run.ask("king")
    first = json.loads(run.read_until(b'"query": "king"'))
    run.ask("paris")
    second = json.loads(run.read_until(b'"query": "paris"'))
    code, rest, errors = run.close()
    assert (code, rest, errors) == (0, b"", b"")
    expected = cli("neighbors", minilm, "king", "paris", "-k", "3", "-f", "jsonl").jsonl()
    assert [first, second] == expected
    assert [n["token"] for n in first["neighbors"]] == ["kings", "queen", "monarch"]


@pytest.mark.slow
def test_neighbors_table_answers_each_line_before_eof(live, minilm):
    run = live("neighbors", minilm, "-", "-k", "2", "-f", "table")
    run.ask("king")
    table = run.read_until(b"queen").decode()  # the second row: the table is out
    assert table.startswith("Neighbors of 'king' = king #2332\n")
    assert "kings" in table
    run.ask("#999999")  # an error is answered at once too, on stderr (write-through)
    error = b"embinspect: error: #999999: outside the table (rows 0..30521)\n"
    assert run.read_until(b"outside the table", "stderr") == error
    run.ask("paris")
    assert "parisian" in run.read_until(b"parisian").decode()
    code, _, errors = run.close()
    assert (code, errors) == (4, b"")


@pytest.mark.slow
def test_analogy_answers_each_line_before_eof(live, cli, minilm):
    run = live("analogy", minilm, "-", "-k", "2", "-f", "jsonl")
    run.ask("king man woman")
    answer = json.loads(run.read_until(b'"formula": "king - man + woman"'))
    assert [r["token"] for r in answer["results"]] == ["queen", "kings"]
    run.ask("paris france italy")
    answer = json.loads(run.read_until(b'"formula": "paris - france + italy"'))
    expected = cli("analogy", minilm, "paris", "france", "italy", "-k", "2", "-f", "json").json()
    assert [answer] == expected
    code, rest, errors = run.close()
    assert (code, rest, errors) == (0, b"", b"")
