"""The README's example outputs, regenerated from the program.

Every ```console block of README.md holds ``$ embinspect ...`` lines, each followed by what it
prints. This module runs each line with the real CLI, in this process (``conftest.run_main``),
as a person at a terminal would see it: stdout is a terminal (so the default format is the
table), ``COLUMNS`` pins its width, ``NO_COLOR`` and ``TERM=dumb`` keep escape sequences out,
and stderr's lines (notes, errors) land between stdout's in the order they were written.
Progress bars are not drawn (stderr is not a terminal here): on a terminal they vanish
when done, which is what a block shows.

The commands run in a temporary folder holding links named as the README names its models:

========================  ==================================================================
README name               what it is (``tests/checkpoints.py`` builds or finds each)
========================  ==================================================================
``model``                 sentence-transformers/all-MiniLM-L6-v2 (``minilm_dir()``)
``smollm2``               HuggingFaceTB/SmolLM2-135M-Instruct as bf16 shards (``smollm2_dir()``)
``smollm2.gguf``          its GGUF as shipped, Q8_0 token table (``smollm2_gguf()``)
``glove.6B.50d.txt``      GloVe 6B 50d (``glove_6b_50d()``)
========================  ==================================================================

so the output shows the names as written and no absolute path of this machine.

A line may be a small pipeline: ``printf '...' | embinspect ...`` (the first stage, run by
bash, is the command's stdin), ``embinspect ... | head -N`` (stdout's first N lines; stderr
passes), and ``echo $?`` (the previous line's exit code). The words of the ``embinspect``
stage are expanded by bash (quotes, ``$(...)``, a trailing ``# comment``), never run by it.

An HTML comment on the line just before a block changes how it is treated:

* ``<!-- readme: exempt (WHY) -->``: not run (it needs what the tests do not have: say what);
* ``<!-- readme: cut 1-17, last 3 -->``: the block's one command shows only these lines of
  its output (1-based ranges, ``N-`` to the end, ``last N``); a ``...`` line stands where
  lines were left out.

Output lines are compared and written without trailing spaces, and a path into Python's
packages as ``…/site-packages/...`` (where gensim's test data lies differs by machine).

``python tests/readme_examples.py`` (``make readme``) rewrites README.md's blocks in place
(``... readme_examples.py stats`` only the blocks whose command contains ``stats``);
``--check`` only reports the blocks that differ (exit 1). ``tests/test_readme.py`` runs each
block and compares, exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import checkpoints  # noqa: E402
from conftest import run_main  # noqa: E402

README = checkpoints.repo_root() / "README.md"

# The terminal a block is drawn for: wide enough for `info`'s tables without wrapping a
# cell, and what the tests pin (conftest's COLUMNS).
COLUMNS = 120

# Rich draws a dumb terminal 80 columns wide unless LINES is set too.
TERMINAL = {
    "COLUMNS": str(COLUMNS),
    "LINES": "50",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "HF_HUB_OFFLINE": "1",
}
# Variables that would make Rich draw colours or a terminal other than the one above.
UNSET = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLORTERM", "CLICOLOR_FORCE")

MARKER = re.compile(r"^<!-- readme: (?P<what>exempt|cut) ?(?P<how>.*?) ?-->$")
PROMPT = "$ "
CUT = "..."


def models() -> dict[str, Path]:
    """The README's model names and the test checkpoints they stand for."""
    return {
        "model": checkpoints.minilm_dir(),
        "smollm2": checkpoints.smollm2_dir(),
        "smollm2.gguf": checkpoints.smollm2_gguf(),
        "glove.6B.50d.txt": checkpoints.glove_6b_50d(),
    }


def make_workdir(folder: Path) -> Path:
    """``folder`` with a link per README model name, and the ``docs/`` plots are written to."""
    for name, target in models().items():
        (folder / name).symlink_to(target)
    (folder / "docs").mkdir()
    return folder


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="embinspect-readme-") as folder:
        yield make_workdir(Path(folder))


# --- the README's blocks ---------------------------------------------------------------------


Range = tuple[int, int | None]  # 1-based first and last line; negative: from the end


@dataclass
class Command:
    line: str  # as written after the prompt
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    start: int  # index of the ```console line in the README's lines
    end: int  # index of the closing ``` line
    commands: list[Command]
    exempt: str | None = None  # why, when it is not run
    cut: list[Range] | None = None

    @property
    def name(self) -> str:
        """The first command without its comment: a test id."""
        first = self.commands[0].line if self.commands else "empty"
        return first.split("  #")[0].split(" # ")[0].strip()

    def text(self) -> list[str]:
        return [line for c in self.commands for line in [PROMPT + c.line, *c.output]]


def parse_cut(spec: str) -> list[Range]:
    ranges: list[Range] = []
    for part in spec.split(","):
        last = re.fullmatch(r"last (\d+)", part.strip())
        if last:
            ranges.append((-int(last[1]), None))
            continue
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"readme cut {spec!r}: write line ranges as 1-17, 40-, last 3")
        ranges.append((int(low), (int(high) if high else None) if dash else int(low)))
    return ranges


def blocks(lines: list[str]) -> list[Block]:
    """The ```console blocks of a README given as lines (without line ends)."""
    found = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        end = index + 1
        while lines[end].strip() != "```":
            end += 1
        commands: list[Command] = []
        for line in lines[index + 1 : end]:
            if line.startswith(PROMPT):
                commands.append(Command(line[len(PROMPT) :]))
            elif not commands:
                raise ValueError(f"README.md:{index + 2}: a console block starts with output")
            else:
                commands[-1].output.append(line)
        block = Block(index, end, commands)
        above = lines[index - 1].strip() if index else ""
        marker = MARKER.match(above)
        if above.startswith("<!-- readme:") and not marker:
            raise ValueError(f"README.md:{index}: not a readme marker (exempt (WHY), cut ...)")
        if marker and marker["what"] == "exempt":
            why = marker["how"]
            if not (why.startswith("(") and why.endswith(")") and why[1:-1].strip()):
                raise ValueError(f"README.md:{index}: say why a block is exempt, in ()")
            block.exempt = why[1:-1]
        elif marker:
            if len(commands) != 1:
                raise ValueError(f"README.md:{index + 1}: a cut applies to a one-command block")
            block.cut = parse_cut(marker["how"])
        found.append(block)
        index = end + 1
    return found


def cut(output: list[str], ranges: list[Range]) -> list[str]:
    """The lines ``ranges`` keep, with ``...`` where lines were left out."""
    kept: list[str] = []
    shown = 0  # lines of output passed so far
    for low, high in ranges:
        if low < 0:
            low = max(len(output) + low + 1, shown + 1)
        high = len(output) if high is None else min(high, len(output))
        if low - 1 > shown:
            kept.append(CUT)
        kept.extend(output[low - 1 : high])
        shown = max(shown, high)
    if shown < len(output):
        kept.append(CUT)
    return kept


# --- running a line ----------------------------------------------------------------------------


class _Sink(io.BytesIO):
    """One standard stream of a run: what is written goes to a log shared with the other,
    in order; ``terminal`` says whether it answers as a terminal."""

    def __init__(self, log: list[tuple[str, bytes]], name: str, terminal: bool) -> None:
        super().__init__()
        self.log, self.name, self.terminal = log, name, terminal

    def write(self, data) -> int:  # type: ignore[override]
        self.log.append((self.name, bytes(data)))
        return len(data)

    def isatty(self) -> bool:
        return self.terminal


def _text_stream(sink: io.BytesIO, errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(sink, "utf-8", errors, write_through=True)


def _stages(line: str) -> list[str]:
    """A command line split at its top-level ``|`` (not in quotes or ``$(...)``)."""
    stages, current, quote, depth = [], "", "", 0
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\" and quote == '"':
                current += line[index : index + 2]
                index += 2
                continue
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif line.startswith("$(", index):
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == "|" and not depth:
            stages.append(current.strip())
            current = ""
            index += 1
            continue
        current += char
        index += 1
    stages.append(current.strip())
    return stages


def _bash(script: str, cwd: Path) -> bytes:
    done = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, check=True)
    return done.stdout


def _words(stage: str, cwd: Path) -> list[str]:
    """The words of ``embinspect ARGS`` as bash expands them (nothing else is run)."""
    expanded = _bash('printf "%s\\0" ' + stage.removeprefix("embinspect").lstrip(), cwd)
    return [word.decode() for word in expanded.split(b"\0")[:-1]]


def _head(stage: str) -> int:
    words = shlex.split(stage, comments=True)
    if words[:1] == ["head"] and len(words) == 2 and re.fullmatch(r"-\d+", words[1]):
        return int(words[1][1:])
    if words[:2] == ["head", "-n"] and len(words) == 3 and words[2].isdigit():
        return int(words[2])
    raise ValueError(f"readme: after embinspect only `head -N` is understood, not {stage!r}")


@dataclass
class Ran:
    output: list[str]
    code: int


def run_line(line: str, cwd: Path, last_code: int = 0) -> Ran:
    """Run one ``$`` line in ``cwd``: its output lines (stdout and stderr as written)."""
    if line.strip() == "echo $?":
        return Ran([str(last_code)], 0)
    stages = _stages(line)
    at = [i for i, stage in enumerate(stages) if stage.split()[:1] == ["embinspect"]]
    if len(at) != 1:
        raise ValueError(f"readme: a line runs embinspect once: {line!r}")
    before, command, after = stages[: at[0]], stages[at[0]], stages[at[0] + 1 :]
    stdin = _bash(" | ".join(before), cwd) if before else b""
    heads = [_head(stage) for stage in after]
    log: list[tuple[str, bytes]] = []
    # Through `head` stdout is a pipe, as in a shell: the default format is then TSV.
    stdout = _text_stream(_Sink(log, "stdout", terminal=not after), "strict")
    stderr = _text_stream(_Sink(log, "stderr", terminal=False), "backslashreplace")
    stdin_stream = io.TextIOWrapper(io.BytesIO(stdin), "utf-8", "strict")
    with _terminal_environment():
        code = run_main(_words(command, cwd), stdin_stream, stdout, stderr, TERMINAL, cwd)
    stdout.flush()
    stderr.flush()
    return Ran(_merged(log, min(heads) if heads else None), code)


def _merged(log: list[tuple[str, bytes]], head: int | None) -> list[str]:
    """The lines a terminal shows: both streams in the order written, stdout's cut at
    ``head`` lines when it goes through ``head``."""
    text = ""
    stdout_lines = 0
    for name, data in log:
        chunk = data.decode("utf-8")
        if name == "stdout" and head is not None:
            room = head - stdout_lines  # lines head still passes on
            pieces = chunk.split("\n")
            if len(pieces) - 1 >= room:  # its room-th line ends in this chunk
                chunk = "".join(piece + "\n" for piece in pieces[:room])
            stdout_lines += chunk.count("\n")
        text += chunk
    return [_PACKAGES.sub("…/site-packages/", line.rstrip()) for line in text.splitlines()]


# A path into Python's packages (a venv's site-packages, Debian's dist-packages).
_PACKAGES = re.compile(r"(?<![\w/])/\S*/(?:site|dist)-packages/")


@contextlib.contextmanager
def _terminal_environment() -> Iterator[None]:
    """This process's environment without the variables that would change the drawing
    (a run's environment starts from it)."""
    saved = {name: os.environ.pop(name) for name in UNSET if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def render(block: Block, cwd: Path) -> list[Command]:
    """The block's commands with the output the program gives now."""
    commands = []
    code = 0
    for command in block.commands:
        ran = run_line(command.line, cwd, code)
        code = ran.code
        output = cut(ran.output, block.cut) if block.cut else ran.output
        commands.append(Command(command.line, output))
    return commands


# --- rewriting the README ----------------------------------------------------------------------


def rewrite(
    text: str, cwd: Path, only: list[str] | None = None, verbose: bool = False
) -> tuple[str, list[str]]:
    """``text`` (a README) with every block's output regenerated (or the blocks whose
    first command contains one of ``only``), and the names of the blocks that changed."""
    lines = text.split("\n")
    changed = []
    # From the last block up, so earlier blocks' line indexes stay valid.
    for block in reversed(blocks(lines)):
        if block.exempt or (only and not any(word in block.name for word in only)):
            continue
        began = time.perf_counter()
        new = Block(block.start, block.end, render(block, cwd))
        if verbose:
            print(f"{time.perf_counter() - began:6.1f} s  {block.name}", file=sys.stderr)
        if new.text() != block.text():
            changed.append(block.name)
            lines[block.start + 1 : block.end] = new.text()
    return "\n".join(lines), changed[::-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument(
        "only", nargs="*", help="only the blocks whose first command contains this text"
    )
    args = parser.parse_args(argv)
    old = args.readme.read_text(encoding="utf-8")
    with workdir() as cwd:
        new, changed = rewrite(old, cwd, args.only, verbose=True)
    for name in changed:
        print(f"{'differs' if args.check else 'rewritten'}: {name}")
    if args.check:
        diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "README.md", "program")
        sys.stdout.writelines(line + "\n" for line in diff)
        return 1 if changed else 0
    if changed:
        args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
