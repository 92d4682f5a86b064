"""`embinspect tokens MODEL -`: one text a stdin line, each answered as `tokens MODEL TEXT`
answers it, the line named; a bad line is reported and the others are still answered."""

from __future__ import annotations

import json

import pytest

EXIT_QUERY = 4
LINES = "the king\n\n  cat dog  \nThe cat is unbelievably happy\n"
# Real all-MiniLM-L6-v2 WordPiece ids (bert-base-uncased's vocabulary).
IDS = {
    "the king": [1996, 2332],
    "cat dog": [4937, 3899],
    "The cat is unbelievably happy": [1996, 4937, 2003, 4895, 8671, 2666, 3567, 6321, 3407],
}


def test_jsonl_one_record_per_token_named_by_its_line(cli, minilm):
    records = cli("tokens", minilm, "-", "-f", "jsonl", input=LINES).jsonl()
    # Blank lines are skipped and lines stripped, as every command reads stdin.
    assert [(r["input"], r["position"], r["token_id"]) for r in records] == [
        (line, position, token_id)
        for line, ids in IDS.items()
        for position, token_id in enumerate(ids)
    ]
    assert [r["token"] for r in records[4:]] == [
        "the", "cat", "is", "un", "##bel", "##ie", "##va", "##bly", "happy",
    ]  # fmt: skip


def test_json_is_the_list_of_each_texts_document(cli, minilm):
    """Each element is exactly what `tokens MODEL LINE -f json` prints for that line."""
    documents = cli("tokens", minilm, "-", "-f", "json", "--vectors", input=LINES).json()
    assert [d["text"] for d in documents] == list(IDS)
    for document, line in zip(documents, IDS, strict=True):
        assert document == cli("tokens", minilm, line, "-f", "json", "--vectors").json()
        assert [t["token_id"] for t in document["tokens"]] == IDS[line]


def test_tsv_leads_with_the_input_column(cli, minilm):
    run = cli("tokens", minilm, "-", "-f", "tsv", "--components", "1", input="the king\ncat\n")
    assert run.returncode == 0, run.stderr
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert lines[0] == ["input", "position", "token_id", "token", "text", "norm", "head"]
    assert [row[:5] for row in lines[1:]] == [
        ["the king", "0", "1996", "the", "the"],
        ["the king", "1", "2332", "king", "king"],
        ["cat", "0", "4937", "cat", "cat"],
    ]
    single = cli("tokens", minilm, "the king", "-f", "tsv", "--components", "1").stdout
    assert [row[1:] for row in lines[1:3]] == [r.split("\t") for r in single.splitlines()[1:]]


def test_csv_header_once_even_when_the_first_line_fails(cli, minilm):
    run = cli("tokens", minilm, "-", "-f", "csv", "--components", "0", input="\x01\ncat\ndog\n")
    assert run.returncode == EXIT_QUERY
    assert run.stderr == "embinspect: error: '\\x01': the text tokenizes to no tokens\n"
    lines = run.stdout.splitlines()
    assert lines[0] == "input,position,token_id,token,text,norm,head"
    rows = [line.split(",")[:3] for line in lines[1:]]
    assert rows == [["cat", "0", "4937"], ["dog", "0", "3899"]]


def test_table_names_each_line(cli, minilm):
    run = cli("tokens", minilm, "-", "-f", "table", "--components", "1", input="the king\ncat\n")
    assert run.returncode == 0, run.stderr
    titles = [line for line in run.stdout.splitlines() if line.startswith("tokens of ")]
    assert titles == ['tokens of "the king"', 'tokens of "cat"']
    # Each line's table under its own title (Rich wraps a long model path: read it unwrapped).
    assert run.stdout.count("embeddings.word_embeddings.weight of ") == 2
    assert "".join(run.stdout.split()).count("".join(f"weightof{minilm}".split())) == 2


def test_position_note_is_given_once(cli, minilm):
    run = cli("tokens", minilm, "-", "--positions", "-f", "tsv", input="a\nb\nc\n")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("input = token + position") == 1
    assert run.stderr.count("special tokens added") == 1  # --positions adds them
    rows = [line.split("\t") for line in run.stdout.splitlines()[1:]]
    assert [(row[0], row[2], row[7]) for row in rows] == [
        (line, token_id, position)
        for line, word in (("a", "1037"), ("b", "1038"), ("c", "1039"))
        for token_id, position in (("101", "0"), (word, "1"), ("102", "2"))
    ]


LONG = "a" * 5000
HUGE = "b" * 20000  # past what a line may take into memory: skipped, only counted


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"\xff", "'\\xff': not valid UTF-8"),
        (b"\x01", "'\\x01': the text tokenizes to no tokens"),
        (
            LONG.encode(),
            f"'{'a' * 60}'... (5,000 characters): a line is at most 4,096 characters",
        ),
        (
            HUGE.encode(),
            f"'{'b' * 60}'... (20,000 characters): a line is at most 4,096 characters",
        ),
    ],
    ids=["not-utf8", "no-tokens", "too-long", "too-long-to-read"],
)
def test_a_bad_line_is_reported_and_the_others_answered(cli, minilm, line, error):
    run = cli("tokens", minilm, "-", "-f", "jsonl", input=b"cat\n" + line + b"\ndog\n")
    assert run.returncode == EXIT_QUERY
    assert run.stderr == f"embinspect: error: {error}\n"
    records = [json.loads(r) for r in run.stdout.splitlines()]
    assert [r.get("token_id") for r in records] == [4937, None, 3899]
    assert records[1]["error"] == error


def test_too_many_tokens_for_the_positions_names_the_line(cli, minilm):
    run = cli("tokens", minilm, "-", "--positions", "-f", "json", input="a " * 600 + "\ncat\n")
    assert run.returncode == EXIT_QUERY
    named = "'" + "a a " * 15 + "'..."
    # 600 words and [CLS], [SEP]: --positions adds the special tokens
    expected = f"{named}: the text is 602 tokens; embeddings.position_embeddings.weight has "
    assert run.stderr == f"embinspect: error: {expected}positions for 512\n"
    documents = json.loads(run.stdout)
    assert documents[0] == {"text": ("a " * 600).strip(), "error": expected + "positions for 512"}
    assert [t["token_id"] for t in documents[1]["tokens"]] == [101, 4937, 102]


def test_no_lines_no_texts(cli, minilm):
    run = cli("tokens", minilm, "-", "-f", "json", input="\n\n")
    assert (run.returncode, run.stdout, run.stderr) == (0, "[]\n", "")


def test_a_line_with_control_characters_is_shown_escaped(cli, minilm):
    """A stdin line is outside text: its title and its error line show escapes, never a
    terminal command (an OSC title, a screen clear)."""
    run = cli(
        "tokens", minilm, "-", "-f", "table", "--components", "1",
        input=b"a\x1b]0;x\x07b\n\xff\x1b[2J\n",
    )  # fmt: skip
    assert run.returncode == 4
    assert 'tokens of "a\\x1b]0;x\\x07b"' in run.stdout.splitlines()
    assert run.stderr == "embinspect: error: '\\xff\\x1b[2J': not valid UTF-8\n"
    assert "\x1b" not in run.stdout + run.stderr and "\x07" not in run.stdout
