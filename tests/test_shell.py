"""`embinspect shell`: scripted through stdin, each answer equal to the command's own output
for the same query and settings (and to float64 references); every setting; each bad line
one line on stderr with the session going on; and once under a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from reference import cosines, ranked, table

EXIT_USAGE = 2
EXIT_QUERY = 4
MINILM_WORDS = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def minilm_table(minilm):
    return table(minilm, MINILM_WORDS)


def shell(cli, model, lines: list[str], *options: str, env=None):
    """A scripted session: ``lines`` on stdin, one a line."""
    return cli("shell", model, *options, input="".join(line + "\n" for line in lines), env=env)


# --- the same answers as the commands ---------------------------------------------------------


def test_each_command_answers_as_the_command_does(cli, minilm):
    """A session's stdout is what the five commands print, one after the other (tsv: stdin
    is no terminal), from one opening of the checkpoint."""
    lines = [
        "neighbors king queen",
        "compare cat dog car",
        "analogy king man woman",
        "tokens The cat sat",
        "info",
    ]
    run = shell(cli, minilm, lines)
    assert (run.returncode, run.stderr) == (0, "")
    expected = [
        cli("neighbors", minilm, "king", "queen"),
        cli("compare", minilm, "cat", "dog", "car"),
        cli("analogy", minilm, "king", "man", "woman"),
        cli("tokens", minilm, "The cat sat"),
        cli("info", minilm),
    ]
    assert all(r.returncode == 0 for r in expected)
    assert run.stdout == "".join(r.stdout for r in expected)


def test_format_setting_gives_each_format_of_the_command(cli, minilm):
    formats = ["table", "tsv", "csv", "json", "jsonl"]
    lines = [line for fmt in formats for line in (f":format {fmt}", "neighbors king #1000")]
    run = shell(cli, minilm, [":k 3", *lines])
    assert (run.returncode, run.stderr) == (0, "")
    commands = [cli("neighbors", minilm, "king", "#1000", "-k", "3", "-f", fmt) for fmt in formats]
    assert run.stdout == "".join(r.stdout for r in commands)
    assert "Neighbors of 'king' = king #2332" in run.stdout  # the table's own title


def test_format_option_sets_the_starting_format(cli, minilm):
    run = shell(cli, minilm, ["neighbors king", ":format"], "-f", "jsonl", "-k", "2")
    expected = cli("neighbors", minilm, "king", "-k", "2", "-f", "jsonl").stdout
    assert run.stdout == expected + ":format jsonl\n"


def test_k_metric_and_center_settings_equal_the_float64_reference(cli, minilm, minilm_table):
    lines = [
        ":k 4",
        ":metric dot",
        "neighbors king",
        ":center on",
        ":metric cosine",
        "neighbors king",
        ":metric l2",
        "compare cat dog car",
        ":k",
        ":metric",
        ":center",
    ]
    run = shell(cli, minilm, lines, "-f", "jsonl")
    assert (run.returncode, run.stderr) == (0, "")
    # The commands with the same options print the same lines.
    dot = cli("neighbors", minilm, "king", "-k", "4", "--metric", "dot", "-f", "jsonl")
    centered = cli("neighbors", minilm, "king", "-k", "4", "--center", "-f", "jsonl")
    l2 = cli("compare", minilm, "cat", "dog", "car", "--metric", "l2", "--center", "-f", "jsonl")
    shown = ":k 4\n:metric l2\n:center on\n"
    assert run.stdout == dot.stdout + centered.stdout + l2.stdout + shown
    # ... which are the float64 reference's.
    king = minilm_table[2332]
    ids, _ = ranked(minilm_table @ king, 4, exclude={2332})
    assert [n["token_id"] for n in json.loads(dot.stdout)["neighbors"]] == ids
    shifted = minilm_table - minilm_table.mean(axis=0)
    ids, scores = ranked(cosines(shifted, shifted[2332]), 4, exclude={2332})
    result = json.loads(centered.stdout)
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert {record["metric"] for record in l2.jsonl()} == {"l2"}


def test_start_options_are_the_first_settings(cli, minilm):
    run = shell(cli, minilm, ["neighbors king"], "-k", "3", "--metric", "dot", "--center")
    expected = cli("neighbors", minilm, "king", "-k", "3", "--metric", "dot", "--center")
    assert (run.returncode, run.stdout) == (0, expected.stdout)


def test_quoted_words_are_one_query_and_other_quotes_stay(cli, minilm):
    run = shell(cli, minilm, ['neighbors "new york" don\'t'], "-k", "3")
    expected = cli("neighbors", minilm, "new york", "don't", "-k", "3")
    assert (run.returncode, run.stdout) == (0, expected.stdout)
    assert "new york\t2047 2259\t1\t" in run.stdout


def test_vector_is_the_stored_row_in_its_shortest_round_trip_form(cli, minilm, minilm_table):
    run = shell(cli, minilm, ["vector king", ":format json", "vector #2332", 'vector "new york"'])
    assert (run.returncode, run.stderr) == (0, "")
    text, listed, pooled = run.stdout.splitlines()
    row = minilm_table[2332].astype(np.float32)
    assert text == " ".join(str(v) for v in row)  # numpy's shortest repr of each float32
    assert np.array_equal(np.array(text.split(), dtype=np.float32), row)
    assert np.array_equal(np.array(json.loads(listed), dtype=np.float32), row)
    york = (minilm_table[2047].astype(np.float64) + minilm_table[2259]) / 2  # mean pooling
    assert np.array_equal(np.array(json.loads(pooled), dtype=np.float32), york.astype(np.float32))


def test_comments_and_blank_lines_are_skipped(cli, minilm):
    run = shell(cli, minilm, ["# a comment", "", "   ", "neighbors king"], "-k", "2")
    expected = cli("neighbors", minilm, "king", "-k", "2")
    assert (run.returncode, run.stdout, run.stderr) == (0, expected.stdout, "")


def test_quit_ends_the_session(cli, minilm):
    run = shell(cli, minilm, [":quit", "neighbors king", "nonsense"])
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_help_lists_commands_and_current_settings(cli, minilm):
    run = shell(cli, minilm, [":k 7", ":help"])
    assert run.returncode == 0
    for piece in ("neighbors QUERY...", "vector QUERY", ":metric cosine|dot|l2", "(now 7)"):
        assert piece in run.stdout


@pytest.mark.slow
def test_gguf_session_table_setting_and_vector(cli):
    """SmolLM2's GGUF as shipped (Q8_0): :table output is its tied head (noted once), and
    vector is the dequantized row, exactly."""
    import checkpoints
    from gguf import GGUFReader
    from gguf.quants import dequantize

    gguf_file = checkpoints.smollm2_gguf()
    lines = ["neighbors Paris", ":table output", "neighbors Paris", "vector #1000"]
    run = shell(cli, gguf_file, lines, "-k", "3", "-f", "jsonl")
    assert run.returncode == 0
    assert run.stderr == "embinspect: note: the output head is tied: it is the token table\n"
    token, output, vector = run.stdout.splitlines()
    assert token + "\n" == cli("neighbors", gguf_file, "Paris", "-k", "3", "-f", "jsonl").stdout
    command = cli("neighbors", gguf_file, "Paris", "-k", "3", "--table", "output", "-f", "jsonl")
    assert output + "\n" == command.stdout
    tensor = next(t for t in GGUFReader(gguf_file).tensors if t.name == "token_embd.weight")
    row = dequantize(tensor.data[1000:1001], tensor.tensor_type)[0].astype(np.float32)
    assert np.array_equal(np.array(json.loads(vector), dtype=np.float32), row)


# --- bad lines: one line on stderr, the session goes on ---------------------------------------

BAD_LINES = [
    (
        "frobnicate king",
        EXIT_USAGE,
        "'frobnicate': not a shell command; the commands are neighbors, compare, analogy, "
        "tokens, vector, info, and :k, :metric, :table, :center, :format, :help, :quit",
    ),
    (":k zero", EXIT_USAGE, ":k 'zero': give a whole number of at least 1 (:k 20)"),
    (":k 0", EXIT_USAGE, ":k '0': give a whole number of at least 1 (:k 20)"),
    (":k -3", EXIT_USAGE, ":k '-3': give a whole number of at least 1 (:k 20)"),
    (":metric foo", EXIT_USAGE, ":metric 'foo': choose cosine, dot, l2"),
    (":table words", EXIT_USAGE, ":table 'words': choose input, output"),
    (":center maybe", EXIT_USAGE, ":center 'maybe': choose on, off"),
    (":format xml", EXIT_USAGE, ":format 'xml': choose table, json, jsonl, tsv, csv"),
    ("compare cat", EXIT_USAGE, "compare needs at least two queries"),
    ("analogy king man", EXIT_USAGE, "analogy takes three queries A B C (analogy king man woman)"),
    ("neighbors", EXIT_USAGE, "neighbors needs a query (neighbors king)"),
    ("vector king queen", EXIT_USAGE, 'vector takes one query (vector king; vector "New York")'),
    ("tokens", EXIT_USAGE, "tokens needs a text (tokens The cat sat)"),
    ("info please", EXIT_USAGE, "info takes no arguments"),
    (
        'neighbors "new york',
        EXIT_USAGE,
        "'\"new york': a query in double quotes lacks its closing quote",
    ),
    ("neighbors #99999999", EXIT_QUERY, "#99999999: outside the table (rows 0..30521)"),
    ("vector #99999999", EXIT_QUERY, "#99999999: outside the table (rows 0..30521)"),
    ("compare cat #99999999", EXIT_QUERY, "#99999999: outside the table (rows 0..30521)"),
    (
        "frob\x1b]52;c;aGk=\x07 king",
        EXIT_USAGE,
        "'frob\\x1b]52;c;aGk=\\x07': not a shell command; the commands are neighbors, compare, "
        "analogy, tokens, vector, info, and :k, :metric, :table, :center, :format, :help, :quit",
    ),
]


@pytest.mark.parametrize(
    ("line", "code", "error"),
    BAD_LINES,
    ids=[
        "unknown-command",
        "k-not-a-number",
        "k-zero",
        "k-negative",
        "unknown-metric",
        "unknown-table",
        "center-not-on-off",
        "unknown-format",
        "compare-one-query",
        "analogy-two-queries",
        "neighbors-no-query",
        "vector-two-queries",
        "tokens-no-text",
        "info-with-arguments",
        "unclosed-quote",
        "neighbors-unknown-token",
        "vector-unknown-token",
        "compare-unknown-token",
        "terminal-escape-in-command",
    ],
)
def test_a_bad_line_is_one_error_and_the_session_goes_on(cli, minilm, line, code, error):
    run = shell(cli, minilm, [line, "neighbors king"], "-k", "2")
    assert run.stderr == f"embinspect: error: {error}\n"
    expected = cli("neighbors", minilm, "king", "-k", "2").stdout
    assert run.stdout.endswith(expected) and run.returncode == code
    assert "\x1b" not in run.stdout + run.stderr


def test_table_output_without_a_head_is_refused_in_the_shells_words(cli, minilm):
    run = shell(cli, minilm, [":table output", ":table", "neighbors king"], "-k", "2")
    assert run.stderr == (
        f"embinspect: error: {minilm}: BertModel has no output head; "
        ":table output reads an output head\n"
    )
    expected = cli("neighbors", minilm, "king", "-k", "2").stdout
    assert (run.returncode, run.stdout) == (EXIT_USAGE, ":table input\n" + expected)


def test_scripted_exit_code_is_the_first_failed_lines(cli, minilm):
    run = shell(cli, minilm, ["neighbors #99999999", "frobnicate", "neighbors king"], "-k", "1")
    assert run.returncode == EXIT_QUERY
    assert run.stderr.splitlines() == [
        "embinspect: error: #99999999: outside the table (rows 0..30521)",
        "embinspect: error: 'frobnicate': not a shell command; the commands are neighbors, "
        "compare, analogy, tokens, vector, info, and :k, :metric, :table, :center, :format, "
        ":help, :quit",
    ]


def test_a_line_too_long_is_refused_and_the_session_goes_on(cli, minilm):
    run = shell(cli, minilm, ["neighbors " + "king " * 5000, "neighbors king"], "-k", "1")
    assert run.returncode == EXIT_USAGE
    (error,) = run.stderr.splitlines()
    assert error.startswith("embinspect: error: 'neighbors king king")
    assert error.endswith("... (25,010 characters): a line is at most 4,096 characters")
    assert run.stdout == cli("neighbors", minilm, "king", "-k", "1").stdout


def test_a_line_too_long_but_read_whole_says_its_length_once(cli, minilm):
    """5,010 characters: read whole (not cut on reading, as 25,010 are), then refused; the
    length is said once, not by the quoting and again by the message."""
    run = shell(cli, minilm, ["neighbors " + "a" * 5000, "neighbors king"], "-k", "1")
    assert run.returncode == EXIT_USAGE
    (error,) = run.stderr.splitlines()
    quoted = "'neighbors " + "a" * 50 + "'"
    assert error == (
        f"embinspect: error: {quoted}... (5,010 characters): a line is at most 4,096 characters"
    )
    assert run.stdout == cli("neighbors", minilm, "king", "-k", "1").stdout


def test_a_librarys_note_is_worded_for_the_shell_and_shown_once_per_value(cli, tmp_path):
    """``:k`` larger than the table: the note names ``:k`` (the shell has no -k) and comes
    once for each value, not with every line."""
    words = tmp_path / "words.txt"
    words.write_text("king 1 0 0\nqueen 1 1 0\nman 0 1 0\nwoman 0 1 1\ncar 0 0 1\n")
    lines = [":k 99999999", "neighbors king", "neighbors queen", ":k 88888888",
             "analogy king man woman", "neighbors king"]  # fmt: skip
    run = shell(cli, words, lines, "-f", "jsonl")
    assert run.returncode == 0, run.stderr
    rows = "the 5 rows of vectors; listing every row that can be a result"
    assert run.stderr.splitlines() == [
        f"embinspect: note: :k 99,999,999 is more than {rows}",
        f"embinspect: note: :k 88,888,888 is more than {rows}",
    ]


@pytest.mark.slow  # a process with stdin closed
def test_stdin_closed_is_worded_for_the_shell(minilm):
    """``<&-``: exit 74, in the shell's words (it reads its lines from stdin; it has no -)."""
    from test_environment import run_shell

    returncode, stdout, stderr = run_shell("<&-", ["shell", minilm])
    assert (returncode, stdout) == (74, "")
    assert (
        stderr == "embinspect: error: standard input: closed (the shell reads its lines from it)\n"
    )


def test_a_model_that_cannot_be_opened_ends_before_the_session(cli, tmp_path):
    run = shell(cli, tmp_path / "nowhere", ["neighbors king"])
    assert run.returncode == 3 and run.stdout == ""
    assert run.stderr.startswith("embinspect: error: ") and len(run.stderr.splitlines()) == 1


def test_bad_device_ends_before_the_session(cli, minilm):
    run = shell(cli, minilm, ["neighbors king"], "--device", "abacus")
    assert run.returncode == EXIT_USAGE and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and "abacus" in run.stderr


# --- completion -------------------------------------------------------------------------------


def test_completion_offers_only_what_a_terminal_shows_as_it_is():
    """Vocabulary entries come from the checkpoint: one with an escape sequence, a control
    character, a space or a bidi override is never offered (readline would print it)."""
    from embinspect.cli.shell import Completions
    from embinspect.model.tokenizer import WordKeys

    words = ["king", "kings", "ki\x1b[31mng", "ki\nng", "ki ng", "ki\u202eng", "queen", 'ki"ng']
    offered = Completions(WordKeys(words, "test"))
    assert offered.matching("ki") == ["king", "kings"]
    assert offered.matching("=ki") == ["=king", "=kings"]
    assert offered.matching("x") == []


def test_completion_of_a_tokenizer_vocabulary_spells_words(minilm, gpt2):
    """WordPiece continuations (##ing) and special tokens are not words; byte-level BPE's
    Ġ is the space before a word: Ġking is offered as king, and as =Ġking after =."""
    import embinspect
    from embinspect.cli.shell import COMPLETIONS, Completions

    mini = Completions(embinspect.load(minilm)._vocabulary())
    assert mini.matching("kingdo") == ["kingdom", "kingdoms"]
    assert "[CLS]" not in mini.words and not any(w.startswith("##") for w in mini.words)
    assert mini.matching("=##ingdo") == ["=##ingdon"]  # a stored entry, after =
    assert len(mini.matching("a")) == COMPLETIONS  # bounded
    bpe = Completions(embinspect.load(gpt2)._vocabulary())
    assert bpe.matching("Paris") == ["Paris", "Parish"] and bpe.matching("=ĠParis") == [
        "=ĠParis",
        "=ĠParish",
    ]
    assert not any(word.startswith("Ġ") for word in bpe.words)


def test_hostile_tokens_reach_no_terminal_raw(cli, tmp_path):
    """A checkpoint whose tokens hold escape sequences, controls and bidi overrides: every
    format the shell prints shows them escaped, and Tab never offers them."""
    from test_security import CONTROL, VOCAB, assert_terminal_safe, write_model

    import embinspect
    from embinspect.cli.shell import Completions

    model = write_model(tmp_path / "hostile")
    lines = ["neighbors king", "compare king queen", "tokens king queen"]
    for fmt in ("table", "tsv", "csv", "json", "jsonl"):
        run = shell(cli, model, [f":format {fmt}", ":k 100", *lines, "vector king"])
        assert run.returncode == 0, run.stderr
        assert_terminal_safe(run.stdout, "\n\t" if fmt == "tsv" else "\n")
        assert_terminal_safe(run.stderr)
        if fmt in ("tsv", "csv"):
            assert all(shown in run.stdout for _, shown, _ in CONTROL.values())
    offered = Completions(embinspect.load(model)._vocabulary())
    hostile = {raw for raw, _, _ in CONTROL.values()}
    spaced = {word for word in VOCAB if " " in word}  # one word each, or not offered
    assert offered.words == sorted(set(VOCAB) - hostile - spaced)
    assert "king" in offered.words and "[bold]x[/bold]" in offered.words


# --- as a process: answers as lines arrive, and at a real terminal -----------------------------


def _process_env(tmp_path) -> dict[str, str]:
    env = {
        **os.environ,
        "EMBINSPECT_CACHE": str(tmp_path / "cache"),
        "COLUMNS": "100",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    env.pop("EMBINSPECT_DEBUG", None)
    return env


@pytest.mark.slow
def test_each_line_is_answered_as_it_arrives(minilm, tmp_path):
    """A pipe held open: each answer comes before the next line is written (no waiting for
    EOF, no batch); Ctrl-C (SIGINT) then ends the session with 130."""
    child = subprocess.Popen(
        [sys.executable, "-m", "embinspect", "shell", str(minilm), "-k", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_process_env(tmp_path),
        text=True,
    )
    try:
        for word, first in (("king", "kings"), ("paris", "parisian")):
            child.stdin.write(f"neighbors {word}\n")
            child.stdin.flush()
            lines = [child.stdout.readline() for _ in range(3)]  # header and two rows
            assert lines[0].startswith("query\t") and f"\t{first}\t" in lines[1]
        child.stdin.write("frobnicate\n")
        child.stdin.flush()
        assert child.stderr.readline().startswith("embinspect: error: 'frobnicate'")
        child.send_signal(signal.SIGINT)  # Ctrl-C ends a scripted session, as any command
        assert child.wait(timeout=60) == 130
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_at_a_terminal_prompt_completion_cancel_history_and_ctrl_d(minilm, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    env = _process_env(tmp_path)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "embinspect", "shell", str(minilm), "-k", "3"],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 100),
    )
    try:
        child.expect_exact("Ctrl-D leaves")  # the banner, on stderr
        child.expect_exact("embinspect> ")
        child.sendline("neighbors king")
        child.expect_exact("Neighbors of 'king' = king #2332")
        child.expect_exact("kings")
        child.expect_exact("embinspect> ")
        # Tab completes a vocabulary prefix (kingdo: kingdom and kingdoms share "kingdom").
        child.send("neighbors kingdo\t")
        child.expect("kingdo\x07?m")  # readline rings: kingdom is not the only completion
        child.send("\r")
        child.expect_exact("Neighbors of 'kingdom' = kingdom #2983")
        child.expect_exact("embinspect> ")
        # Tab completes command names and setting values.
        child.send("neigh\t")
        child.expect_exact("neighbors ")
        child.sendintr()  # Ctrl-C at the prompt: the line is dropped, the session goes on
        child.expect_exact("embinspect> ")
        # Ctrl-C during a long answer (every row of the table, drawn as a table).
        child.sendline(":k 30000")
        child.expect_exact("embinspect> ")
        child.sendline("neighbors queen")
        child.expect_exact("Neighbors of 'queen'")
        time.sleep(0.3)
        child.sendintr()
        child.expect_exact("embinspect: cancelled")
        child.expect_exact("embinspect> ")
        child.sendline(":k 2")
        child.expect_exact("embinspect> ")
        child.sendline("frobnicate")
        child.expect_exact("embinspect: error: 'frobnicate': not a shell command")
        child.expect_exact("embinspect> ")
        child.sendline("compare cat dog")
        child.expect_exact("0.4239")
        child.expect_exact("embinspect> ")
        child.sendeof()  # Ctrl-D: leaves with 0, errors or not
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = tmp_path / "cache" / "shell-history"
    lines = history.read_text().splitlines()
    assert "neighbors king" in lines and "neighbors kingdom" in lines and "frobnicate" in lines
    assert history.stat().st_mode & 0o777 == 0o600
