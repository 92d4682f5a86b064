"""`--tensor` naming a table whose rows are not one per token (MiniLM's 512-row position
table): a warning that token labels do not apply, rows named by index (#12), text queries
refused with the reason, `tokens` refused; a token table with padding rows is not one."""

from __future__ import annotations

import json
import warnings

import pytest
from reference import cosines, ranked, table

import embinspect
from embinspect import EmbinspectWarning, QueryError, UsageError

POSITIONS = "embeddings.position_embeddings.weight"
WHY = f"{POSITIONS} has 512 rows, not one per token of the vocabulary (30,522)"
WARNING = f"embinspect: warning: {WHY}: token labels do not apply; rows are named by index (#12)"


def test_neighbors_name_rows_by_index_and_warn_once(cli, minilm):
    run = cli("neighbors", minilm, "#12", "-k", "3", "--tensor", POSITIONS, "-f", "json")
    (answer,) = run.json()
    assert run.stderr.splitlines() == [WARNING]
    rows = table(minilm, POSITIONS)
    ids, scores = ranked(cosines(rows, rows[12]), 3, exclude={12})
    assert [n["token_id"] for n in answer["neighbors"]] == ids == [13, 11, 7]
    assert [n["score"] for n in answer["neighbors"]] == pytest.approx(scores, rel=1e-12)
    assert answer["tokens"] == ["#12"]
    assert [n["token"] for n in answer["neighbors"]] == [None, None, None]  # no token names it


def test_table_format_labels_rows_by_index(cli, minilm):
    run = cli("neighbors", minilm, "#12", "-k", "2", "--tensor", POSITIONS, "-f", "table")
    lines = [line.split() for line in run.stdout.splitlines()]
    assert lines[0] == ["Neighbors", "of", "'#12'", "=", "#12", "#12"]
    assert lines[4] == ["│", "1", "│", "13", "│", "#13", "│", "0.8904", "│"]
    assert lines[5] == ["│", "2", "│", "11", "│", "#11", "│", "0.8891", "│"]
    assert run.stderr.splitlines() == [WARNING]


def test_a_text_query_is_refused_with_the_reason(cli, minilm):
    run = cli("neighbors", minilm, "#12", "king", "-k", "1", "--tensor", POSITIONS, "-f", "json")
    assert run.returncode == 4
    answers = json.loads(run.stdout)
    message = f"'king': text names no row here ({WHY}); query rows by index (#12)"
    assert answers[1]["error"] == message
    assert run.stderr.splitlines() == [WARNING, f"embinspect: error: {message}"]


def test_compare_by_index(cli, minilm):
    run = cli("compare", minilm, "#1", "#2", "--tensor", POSITIONS, "-f", "json")
    document = run.json()
    assert [item["tokens"] for item in document["items"]] == [["#1"], ["#2"]]
    rows = table(minilm, POSITIONS)
    assert document["matrix"][0][1] == pytest.approx(cosines(rows, rows[1])[2], rel=1e-12)
    assert run.stderr.splitlines() == [WARNING]


def test_tokens_is_refused(cli, minilm):
    run = cli("tokens", minilm, "cat", "--tensor", POSITIONS)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == (
        f"embinspect: error: {WHY}: tokens reads a token's row, and token ids do not name "
        "these rows; drop --tensor, or look rows up by index (#12) with neighbors or compare\n"
    )


def test_stats_counts_rows_not_tokens(cli, minilm):
    run = cli("stats", minilm, "--tensor", POSITIONS, "--pairs", "100", "-f", "json")
    result = run.json()
    assert (result["rows"], result["vocab_size"], result["padding_rows"]) == (512, None, 0)
    assert run.stderr.splitlines() == [WARNING]


@pytest.mark.parametrize(
    ("fixture", "name"),
    [
        pytest.param("gpt2", "transformer.wte.weight", id="padding-rows-past-the-vocabulary"),
        pytest.param("minilm", "embeddings.word_embeddings.weight", id="the-token-table-itself"),
    ],
)
def test_a_token_table_named_with_tensor_keeps_its_labels(cli, request, fixture, name):
    folder = request.getfixturevalue(fixture)
    run = cli("neighbors", folder, "#1000", "-k", "1", "--tensor", name, "-f", "json")
    (answer,) = run.json()
    assert run.stderr == ""
    assert answer["tokens"] != ["#1000"] and answer["neighbors"][0]["token"] is not None


def test_api_warns_and_names_rows_by_index(minilm):
    model = embinspect.load(minilm, tensor=POSITIONS)
    with pytest.warns(EmbinspectWarning, match="token labels do not apply"):
        near = model.neighbors("#12", k=2)
    assert [(n.token_id, n.token) for n in near.neighbors] == [(13, None), (11, None)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbinspectWarning)
        with pytest.raises(QueryError, match="text names no row here"):
            model.neighbors("king")
        with pytest.raises(UsageError, match="token ids do not name these rows"):
            model.tokens("cat")
