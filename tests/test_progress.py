"""Progress of the long steps: what the library reports through ``embinspect.progress``
(each step reaches its total exactly), and what the CLI draws: Rich bars on stderr only
when stderr is a terminal, nothing with ``--quiet`` or in a pipe, no colour under NO_COLOR,
stdout the same either way."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import _cli_env
from test_gguf import tiny_gguf  # noqa: F401 (a fixture)
from test_help import click_group
from test_hub import env, fake_hub, hf_home, hub, odd_repos, untied  # noqa: F401 (fixtures)

import embinspect
from embinspect import progress
from embinspect.cli import progress as cli_progress
from embinspect.sources.word_vectors import BLOCK_BYTES

PARSING = "Parsing word vectors"
CONVERTING = "Converting the GGUF tokenizer (once: kept in the cache)"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and style codes
# Every command of the app (the `cache` group's own commands are tested in test_cache).
COMMANDS = [
    name for name, command in click_group().commands.items() if not hasattr(command, "commands")
]


class Recorder:
    """A reporter keeping every step as ``[label, total, done, calls to advance, ended]``."""

    def __init__(self) -> None:
        self.steps: list[list] = []

    @contextlib.contextmanager
    def __call__(self, label: str, total: int | None):
        step = [label, total, 0, 0, False]
        self.steps.append(step)

        def advance(n: int) -> None:
            step[2] += n
            step[3] += 1

        try:
            yield advance
        finally:
            step[4] = True

    def close(self) -> None:
        """What the CLI calls as a command ends (``RichBars.close``)."""

    def done(self) -> list[tuple]:
        """(label, total, done) of each step, in the order they started; all ended."""
        assert all(step[4] for step in self.steps), self.steps
        return [(label, total, done) for label, total, done, _, _ in self.steps]


@pytest.fixture
def recorder():
    reporter = Recorder()
    with progress.reporting(reporter):
        yield reporter


@pytest.fixture
def terminal(monkeypatch):
    """The CLI run as if stderr were a terminal (Rich bars drawn into the captured stderr)."""
    monkeypatch.setattr(cli_progress, "stderr_is_terminal", lambda: True)


@pytest.fixture
def cli_recorder(monkeypatch, terminal):
    """The CLI run as if stderr were a terminal, its bars recorded instead of drawn."""
    reporter = Recorder()
    monkeypatch.setattr(cli_progress, "RichBars", lambda: reporter)
    return reporter


def rows(count: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    values = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return [f"w{i}" for i in range(count)], values


def write_glove(path: Path, count: int, dim: int = 4, seed: int = 0) -> Path:
    words, values = rows(count, dim, seed)
    pairs = zip(words, values, strict=True)
    lines = (w + " " + " ".join(repr(float(x)) for x in v) for w, v in pairs)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_word2vec_binary(path: Path, count: int, dim: int) -> Path:
    words, values = rows(count, dim)
    with path.open("wb") as out:
        out.write(f"{count} {dim}\n".encode())
        for word, vector in zip(words, values, strict=True):
            out.write(word.encode() + b" " + struct.pack(f"<{dim}f", *vector) + b"\n")
    return path


@pytest.fixture
def seven(tmp_path) -> Path:
    """A GloVe file of seven words (w0 ... w6) and four dimensions."""
    return write_glove(tmp_path / "seven.txt", 7)


# --- the hook ------------------------------------------------------------------------------


def test_nothing_listens_by_default():
    assert not progress.enabled()
    with progress.task("a step", total=3) as advance:
        assert advance(3) is None
    items = [1, 2, 3]
    assert progress.track(items, "a step", 3).__next__() == 1
    assert progress.counting(5, "a step") == range(5)


def test_steps_nest_and_each_ends(recorder):
    assert progress.enabled()
    with progress.task("outer", total=2) as outer:
        assert list(progress.track(["a", "b", "c"], "inner", 6, size=lambda _: 2)) == [
            "a",
            "b",
            "c",
        ]
        outer(2)
    assert recorder.done() == [("outer", 2, 2), ("inner", 6, 6)]


def test_advance_moves_the_innermost_task_only(recorder):
    progress.advance(5)  # no step open: nothing
    with progress.task("outer", total=5):
        progress.advance(1)
        with progress.task("inner", total=4):
            progress.advance(4)
        for _ in progress.track(range(2), "tracked", 2):
            progress.advance(2)  # a tracked loop counts itself: this is the outer task's
    progress.advance(7)
    assert recorder.done() == [("outer", 5, 5), ("inner", 4, 4), ("tracked", 2, 2)]


def test_counting_reports_a_block_at_a_time(recorder):
    assert list(progress.counting(10, "rows", block=4)) == list(range(10))
    assert recorder.steps == [["rows", 10, 10, 3, True]]


def test_a_step_ends_when_its_loop_fails(recorder):
    with pytest.raises(ZeroDivisionError):
        for item in progress.track([1, 0, 2], "failing", 3):
            1 / item  # noqa: B018
    assert recorder.steps == [["failing", 3, 1, 1, True]]


def test_the_reporter_is_taken_off_after_the_block():
    with progress.reporting(Recorder()):
        assert progress.enabled()
    assert not progress.enabled()


# --- each long step reports, through the public hook ------------------------------------------


def test_parsing_glove_text_counts_every_row_a_block_at_a_time(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBINSPECT_NO_CACHE", "1")  # parsed, not kept (over 1 MiB)
    path = write_glove(tmp_path / "many.txt", 40_000, dim=8)
    model = embinspect.load(path)
    assert model.vector("w39999").shape == (8,)
    assert recorder.done() == [(PARSING, 40_000, 40_000)]
    blocks = -(-path.stat().st_size // BLOCK_BYTES)
    assert blocks >= 2
    assert recorder.steps[0][3] in (blocks, blocks + 1)  # a call per block read, not per row


def test_parsing_word2vec_binary_counts_every_row_a_block_at_a_time(
    recorder, tmp_path, monkeypatch
):
    monkeypatch.setenv("EMBINSPECT_NO_CACHE", "1")  # parsed, not kept (over 1 MiB)
    path = write_word2vec_binary(tmp_path / "many.bin", 50_000, dim=8)
    model = embinspect.load(path)
    assert model.vector("w49999").shape == (8,)
    assert recorder.done() == [(PARSING, 50_000, 50_000)]
    assert 2 <= recorder.steps[0][3] <= path.stat().st_size // BLOCK_BYTES + 3


def test_stats_reports_both_passes_and_the_pairs(recorder, seven):
    embinspect.load(seven).stats(pairs=100)
    assert recorder.done() == [
        (PARSING, 7, 7),
        ("Norms and duplicates", 7, 7),
        ("Cosines to the mean row", 7, 7),
        ("Cosines of random pairs", 100, 100),
    ]


def test_undertrained_reports_both_passes(recorder, seven):
    embinspect.load(seven).undertrained(k=3, reference=["w0", "w1"])
    assert recorder.done() == [
        (PARSING, 7, 7),
        ("Covariance of the rows", 7, 7),
        ("Cosines to the unused rows", 7, 7),
    ]


def test_diff_reports_its_paired_rows(recorder, seven, tmp_path):
    other = write_glove(tmp_path / "other.txt", 7, seed=1)
    embinspect.diff(seven, other)
    assert recorder.done() == [(PARSING, 7, 7), (PARSING, 7, 7), ("Comparing paired rows", 7, 7)]


def test_word_pairs_report_the_word_index(recorder, seven, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("w0\tw1\t5.0\nw2\tw3\t1.0\nw4\tw5\t3.0\n")
    embinspect.load(seven).evaluate_pairs(pairs)
    assert recorder.done() == [(PARSING, 7, 7), ("Indexing words", 7, 7)]


def test_analogy_file_reports_every_question(recorder, seven, tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text(": one\nw0 w1 w2 w3\nw4 w5 w6 w0\nw0 w1 w2 absent\n")
    result = embinspect.load(seven).evaluate_analogies(questions)
    assert result.total.scored == 2
    assert recorder.done() == [
        (PARSING, 7, 7),
        ("Indexing words", 7, 7),
        ("Answering analogies", 2, 2),
    ]


def test_a_gguf_tokenizer_is_converted_as_one_step_once(
    cli,
    cli_recorder,
    tiny_gguf,  # noqa: F811 (the fixture)
    tmp_path,
):
    cache = {"EMBINSPECT_CACHE": str(tmp_path / "cache")}
    first = cli("tokens", tiny_gguf, "king", "-f", "json", env=cache)
    assert first.returncode == 0, first.stderr
    # A step of unknown length (transformers converts in one call): a pulsing bar.
    assert cli_recorder.done() == [(CONVERTING, None, 0)]
    again = cli("tokens", tiny_gguf, "king", "-f", "json", env=cache)
    assert again.stdout == first.stdout
    assert cli_recorder.done() == [(CONVERTING, None, 0)]  # read back from the cache


@pytest.mark.slow
def test_the_real_glove_reports_its_400000_rows(cli, cli_recorder, glove):
    # Parsed, not read back from a parse kept in the cache (test_word_vectors_cache).
    run = cli("tokens", glove, "king", "-f", "json", env={"EMBINSPECT_NO_CACHE": "1"})
    assert run.json()["tokens"][0]["token"] == "king"
    assert cli_recorder.done() == [(PARSING, 400_000, 400_000)]


# --- what the CLI draws ---------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet(cli, command):
    run = cli(command, "--help")
    assert "-q, --quiet" in run.stdout


def test_a_terminal_gets_bars_and_the_same_stdout(cli, terminal, seven):
    args = ("stats", seven, "--pairs", "100", "-f", "json")
    drawn = cli(*args)
    quiet = cli(*args, "--quiet")
    assert drawn.returncode == quiet.returncode == 0
    assert drawn.stdout == quiet.stdout
    assert quiet.stderr == ""
    for label, count in [
        (PARSING, "7/7"),
        ("Norms and duplicates", "7/7"),
        ("Cosines to the mean row", "7/7"),
        ("Cosines of random pairs", "100/100"),
    ]:
        assert re.search(re.escape(label) + r"[ ━╸╺]+" + re.escape(count), drawn.stderr), label


def test_no_color_draws_no_colour(cli, terminal, seven):
    args = ("neighbors", seven, "w0", "-k", "2")
    coloured = cli(*args, env={"NO_COLOR": None, "TERM": "xterm-256color"})  # unset
    plain = cli(*args, env={"NO_COLOR": "1", "TERM": "xterm-256color"})
    assert PARSING in coloured.stderr and PARSING in plain.stderr
    assert SGR.search(coloured.stderr)  # the bar is coloured by default
    assert SGR.findall(plain.stderr) == []
    assert coloured.stdout == plain.stdout


@pytest.mark.parametrize("how", ["pipe", "quiet-terminal", "q-terminal"])
def test_a_pipe_or_quiet_gets_stderr_as_before(cli, monkeypatch, seven, how):
    note = (
        "embinspect: note: -k 9 is more than the 7 rows of vectors; listing every row that can "
        "be a result\n"
    )
    args = ["neighbors", seven, "w0", "-k", "9"]
    if how != "pipe":
        monkeypatch.setattr(cli_progress, "stderr_is_terminal", lambda: True)
        args.append("--quiet" if how == "quiet-terminal" else "-q")
    run = cli(*args)
    assert run.returncode == 0
    assert run.stderr == note
    assert run.stdout.splitlines()[0] == "query\tquery_ids\trank\ttoken_id\ttoken\tcosine\terror"
    assert len(run.stdout.splitlines()) == 7  # the header and six neighbours


def test_bars_stop_with_the_command_even_if_a_step_is_left_open(terminal, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with cli_progress.bars(quiet=False):
        steps = progress.track(range(3), "left open", 3)
        assert next(steps) == 0  # started, and still referenced: never finished
    drawn = stream.getvalue()
    assert "left open" in drawn
    assert drawn.rindex("\x1b[?25h") > drawn.rindex("\x1b[?25l")  # the cursor shown again
    assert sys.stderr is stream  # Rich's redirection of stderr is undone
    steps.close()  # the step ends after its display: nothing more is drawn
    assert stream.getvalue() == drawn


def test_a_note_while_a_bar_is_drawn_is_printed_whole(cli, terminal, seven):
    run = cli("neighbors", seven, "w0", "-k", "9")
    assert "embinspect: note: -k 9 is more than the 7 rows of vectors" in run.stderr
    assert PARSING in run.stderr


@pytest.mark.parametrize("quiet", [False, True], ids=["terminal", "quiet"])
def test_hub_download_bars_follow_the_same_switch(cli, terminal, env, quiet):  # noqa: F811
    args = ["tokens", "test-org/minilm", "king", "--vectors", "-f", "json"]
    run = cli(*args, *(["--quiet"] if quiet else []), env=env)
    assert run.returncode == 0, run.stderr
    if quiet:
        assert run.stderr == ""
    else:
        assert "word_embeddings" in run.stderr  # the range read's tqdm bar names its tensor


def test_a_hub_download_bar_escapes_the_names_it_shows(cli, terminal, env, hub, tmp_path):  # noqa: F811
    """A tensor's name, from the repo, labels its download bar: escaped, never a terminal
    command (an OSC title sequence here)."""
    from safetensors.numpy import save_file

    hostile = "emb\x1b]0;owned\x07.weight"
    folder = tmp_path / "repo"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tensors = {
        hostile: rng.standard_normal((16, 4)).astype(np.float32),
        "other.weight": rng.standard_normal((1000, 16)).astype(np.float32),  # so a range is read
    }
    save_file(tensors, str(folder / "model.safetensors"))
    hub.add("test-org/hostile-names", folder)
    run = cli("neighbors", "test-org/hostile-names", "#1", "-k", "2", "--tensor", hostile, env=env)
    assert run.returncode == 0, run.stderr
    assert "emb\\x1b]0;owned\\x07.weight" in run.stderr  # the bar's label, escaped
    assert "\x1b]" not in run.stderr and "\x07" not in run.stderr


def _on_a_terminal(
    *args: str | os.PathLike, extra: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``python -m embinspect ARGS`` with stderr on a pseudo-terminal and stdout a pipe:
    (exit code, stdout, what the terminal received)."""
    import fcntl
    import pty
    import termios

    leader, follower = pty.openpty()
    # 24 rows of 100 columns, as a terminal window has (a new pty has 0 × 0).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "embinspect", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=_cli_env({"NO_COLOR": "1", **(extra or {})}),
    )
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    stdout = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=120), stdout, received.decode(errors="replace")


@pytest.mark.slow
def test_a_real_terminal_is_found(cli, seven):
    args = ("neighbors", seven, "w0", "-k", "2", "-f", "json")
    code, stdout, terminal = _on_a_terminal(*args)
    assert code == 0
    assert stdout == cli(*args).stdout
    assert [n["token"] for n in json.loads(stdout)[0]["neighbors"]] == ["w1", "w4"]
    assert PARSING in terminal and "7/7" in terminal
    assert "\x1b[?25l" in terminal  # Rich hid the cursor while drawing, as on a terminal


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True], ids=["terminal", "quiet"])
def test_quiet_silences_what_transformers_downloads(minilm, env, quiet):  # noqa: F811
    # huggingface_hub's own bars (drawn only on a real terminal) for a --tokenizer repo.
    args = ["tokens", minilm, "king", "--tokenizer", "test-org/minilm", "-f", "json"]
    code, _, terminal = _on_a_terminal(*args, *(["-q"] if quiet else []), extra=env)
    assert code == 0, terminal
    if quiet:
        assert terminal == ""
    else:
        assert "tokenizer.json" in terminal
