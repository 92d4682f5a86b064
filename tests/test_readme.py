"""The README's example outputs are the program's: each ```console block is run
(``tests/readme_examples.py``) and compared with the README, exactly.

A block that fails here is out of date: ``make readme`` rewrites it from the program.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import readme_examples
from readme_examples import Block, cut, parse_cut, run_line

LINES = readme_examples.README.read_text(encoding="utf-8").split("\n")
BLOCKS = readme_examples.blocks(LINES)

# Blocks over ~2 s on the 2-core test machine (whole evaluation suites, parsing all of
# GloVe, the whole SmolLM2 table against its GGUF): `make test-fast` leaves them out.
SLOW = (
    "embinspect analogy glove.6B.50d.txt",
    "grep '^king ' glove.6B.50d.txt",  # GloVe's 400,000 lines parsed: 10 s
    "embinspect analogy model --file google",
    "embinspect undertrained smollm2",
    "embinspect diff smollm2 smollm2.gguf",
    "embinspect stats smollm2",
)


def _param(block: Block):
    marks = [pytest.mark.slow] if block.name.startswith(SLOW) else []
    return pytest.param(block, id=block.name[:60], marks=marks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return readme_examples.make_workdir(tmp_path_factory.mktemp("readme"))


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if not b.exempt])
def test_block_is_what_the_program_prints(block, workdir):
    rendered = Block(block.start, block.end, readme_examples.render(block, workdir))
    assert rendered.text() == block.text()


def test_every_block_is_checked_or_says_why_not():
    assert len(BLOCKS) >= 19
    exempt = {b.name: b.exempt for b in BLOCKS if b.exempt}
    assert exempt == {
        "embinspect info local/llama3-8b-shape": (
            "needs the 8B-shaped bench build served by tests/hub_server.py"
        ),
        "embinspect cache ls -f table": (
            "needs ranges fetched from a served Hub; its ids, times and paths are the machine's"
        ),
        "embinspect info sentence-transformers/all-MiniLM-L6-v2": (
            "needs a Hub repo served by tests/hub_server.py"
        ),
    }


def test_a_marker_stands_just_before_a_console_block():
    markers = [i for i, line in enumerate(LINES) if line.startswith("<!-- readme:")]
    assert markers
    assert all(LINES[i + 1] == "```console" for i in markers)
    assert len([b for b in BLOCKS if b.exempt or b.cut]) == len(markers)


@pytest.mark.parametrize(
    ("spec", "kept"),
    [
        ("1-2, last 1", ["a", "b", "...", "e"]),
        ("1-2, 4-", ["a", "b", "...", "d", "e"]),
        ("2-3", ["...", "b", "c", "..."]),
        ("1-5", ["a", "b", "c", "d", "e"]),
        ("1-3, last 3", ["a", "b", "c", "d", "e"]),
    ],
    ids=["head-and-tail", "open-range", "middle", "everything", "overlapping"],
)
def test_cut_marks_where_lines_were_left_out(spec, kept):
    assert cut(list("abcde"), parse_cut(spec)) == kept


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("<!-- readme: cut first 3 -->", "write line ranges"),
        ("<!-- readme: exempt -->", "say why"),
        ("<!-- readme: skip -->", "not a readme marker"),
    ],
    ids=["cut-not-ranges", "exempt-without-why", "unknown"],
)
def test_a_bad_marker_is_refused(marker, error):
    with pytest.raises(ValueError, match=error):
        readme_examples.blocks([marker, "```console", "$ embinspect info model", "```"])


def test_a_line_is_run_as_the_shell_would_read_it(workdir):
    # The words expanded by bash ($(...), quotes, the comment), stdin from printf, stdout
    # cut by head while stderr passes, in the order written; `echo $?` the exit code.
    line = "printf '#999999\\nking\\n' | embinspect neighbors $(echo model) - -k 1 | head -2  # x"
    ran = run_line(line, workdir)
    assert ran.code == 4
    assert [row.split("\t")[:5] for row in ran.output] == [
        ["embinspect: error: #999999: outside the table (rows 0..30521)"],
        ["query", "query_ids", "rank", "token_id", "token"],
        ["#999999", "", "", "", ""],
    ]
    assert run_line("echo $?", workdir, ran.code).output == ["4"]


def test_only_head_may_follow_embinspect(workdir):
    with pytest.raises(ValueError, match="only `head -N`"):
        run_line("embinspect info model | sort", workdir)


@pytest.mark.parametrize(
    ("head", "shown"),
    [(None, ["e", "a", "bc", "d", "f", "x"]), (2, ["e", "a", "bc", "f"]), (0, ["e", "f"])],
    ids=["no-head", "head-2", "head-0"],
)
def test_head_passes_stdout_lines_and_all_of_stderr(head, shown):
    # Writes as they came: a line of stdout may span two writes.
    log = [("stderr", b"e\n"), ("stdout", b"a\nb"), ("stdout", b"c\nd\n"), ("stderr", b"f\n")]
    assert readme_examples._merged([*log, ("stdout", b"x\n")], head) == shown
